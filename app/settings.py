"""What the window remembers between runs (QSettings): recent files, geometry, splitters, theme."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10
THEMES = ("system", "light", "dark")


class Settings:
    """Typed access to the QSettings store (tests point the store at a temporary folder)."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else QSettings()

    # -- recent files -----------------------------------------------------------------------------
    def recent(self) -> list[str]:
        """Recently opened files and folders, newest first."""
        value = self.store.value("recent/paths", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or []) if v][:MAX_RECENT]

    def add_recent(self, path: Path | str) -> None:
        """Put `path` first in the recent list."""
        text = str(Path(path).expanduser().resolve())
        items = [text, *[p for p in self.recent() if p != text]][:MAX_RECENT]
        self.store.setValue("recent/paths", items)

    def remove_recent(self, path: Path | str) -> None:
        """Forget one recent entry (it no longer exists)."""
        self.store.setValue("recent/paths", [p for p in self.recent() if p != str(path)])

    def clear_recent(self) -> None:
        """Forget every recent entry."""
        self.store.setValue("recent/paths", [])

    # -- theme ------------------------------------------------------------------------------------
    def theme(self) -> str:
        """'system', 'light' or 'dark'."""
        value = str(self.store.value("view/theme", "system") or "system")
        return value if value in THEMES else "system"

    def set_theme(self, theme: str) -> None:
        """Remember the theme choice."""
        self.store.setValue("view/theme", theme if theme in THEMES else "system")

    # -- window state -----------------------------------------------------------------------------
    def blob(self, key: str) -> QByteArray | None:
        """A saved Qt state (geometry, splitter, header), None when there is none."""
        value = self.store.value(f"window/{key}")
        if isinstance(value, QByteArray) and not value.isEmpty():
            return value
        if isinstance(value, bytes | bytearray) and value:
            return QByteArray(bytes(value))
        return None

    def set_blob(self, key: str, value: QByteArray) -> None:
        """Save a Qt state blob."""
        self.store.setValue(f"window/{key}", value)

    def sync(self) -> None:
        """Write to disk now."""
        self.store.sync()
