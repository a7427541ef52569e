"""Before Qt starts on X11: are the system libraries its xcb plugin needs installed? Name the missing ones.

Without libxcb-icccm4 or libxcb-keysyms1 Qt aborts with several lines about platform plugins that name
neither library. Loading the plugin ourselves (`dlopen`, what Qt does next anyway) tells whether it can
load; when it cannot, `ldd` lists every library that is missing, and the user reads one sentence with
the packages to install.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def xcb_plugin() -> Path | None:
    """PySide6's X11 platform plugin (libqxcb.so), when this build has one."""
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(library: Path) -> list[str]:
    """Sonames `library` needs that the system lacks (empty when it loads)."""
    try:
        ctypes.CDLL(str(library))
        return []
    except OSError as exc:
        first = str(exc).split(":", 1)[0].strip()
    import subprocess

    try:
        out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, timeout=10).stdout
        missing = list(dict.fromkeys(_NOT_FOUND.findall(out)))
    except (OSError, subprocess.SubprocessError):
        missing = []
    return missing or ([first] if first.startswith("lib") else [])


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships a soname: libxcb-icccm.so.4 -> libxcb-icccm4."""
    match = re.match(r"^(lib[\w.+-]*?)\.so\.(\d+)", soname)
    if not match:
        return soname
    name, major = match.groups()
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def problem(library: Path | None = None) -> str | None:
    """The sentence saying which libraries to install before a window can open, or None when all load."""
    library = library if library is not None else xcb_plugin()
    if library is None:
        return None
    missing = missing_libraries(library)
    if not missing:
        return None
    packages = " ".join(debian_package(m) for m in missing)
    listed = ", ".join(missing)
    return (f"Qt cannot open a window here: the system libraries {listed} are missing "
            f"(Debian/Ubuntu: sudo apt install {packages}); the inspect, run and attribute commands work without them.")
