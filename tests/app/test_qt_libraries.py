"""Missing X11 libraries are named, with their packages, in one sentence before Qt starts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from app.qt_libraries import debian_package, missing_libraries, problem


def test_debian_package_names_follow_the_soname() -> None:
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-keysyms.so.1") == "libxcb-keysyms1"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None, reason="needs gcc and ldd")
def test_a_plugin_whose_libraries_are_gone_is_one_sentence_naming_them(tmp_path) -> None:
    """A stand-in plugin linked against two libraries that are then deleted, as on a bare desktop."""
    for name in ("xcb-fakeicccm", "xcb-fakekeysyms"):
        src = tmp_path / f"{name}.c"
        src.write_text(f"int {name.replace('-', '_')}(void) {{ return 1; }}\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / f"lib{name}.so.4"), str(src),
                        f"-Wl,-soname,lib{name}.so.4"], check=True)
    plugin_src = tmp_path / "plugin.c"
    plugin_src.write_text("int xcb_fakeicccm(void); int xcb_fakekeysyms(void);\n"
                          "int plugin(void) { return xcb_fakeicccm() + xcb_fakekeysyms(); }\n")
    plugin = tmp_path / "libqfake.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugin), str(plugin_src), f"-L{tmp_path}",
                    "-l:libxcb-fakeicccm.so.4", "-l:libxcb-fakekeysyms.so.4"], check=True)
    for name in ("xcb-fakeicccm", "xcb-fakekeysyms"):
        (tmp_path / f"lib{name}.so.4").unlink()
    assert missing_libraries(plugin) == ["libxcb-fakeicccm.so.4", "libxcb-fakekeysyms.so.4"]
    message = problem(plugin)
    assert message == ("Qt cannot open a window here: the system libraries libxcb-fakeicccm.so.4, "
                       "libxcb-fakekeysyms.so.4 are missing (Debian/Ubuntu: sudo apt install libxcb-fakeicccm4 "
                       "libxcb-fakekeysyms4); the inspect, run and attribute commands work without them.")
    assert "\n" not in message

