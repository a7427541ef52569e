"""Light and dark themes: follow the system's colour scheme unless the View menu says otherwise."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

_original: dict[str, object] = {}


def system_is_dark(app: QGuiApplication) -> bool:
    """True when the platform reports a dark colour scheme (or its default palette is dark)."""
    scheme = app.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    base = _original.get("palette")
    window = base.color(QPalette.ColorRole.Window) if isinstance(base, QPalette) else app.palette().color(
        QPalette.ColorRole.Window)
    return window.lightness() < 128


def dark_palette() -> QPalette:
    """A calm dark palette for the Fusion style."""
    p = QPalette()
    window, base, alt, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(38, 38, 41), QColor(225, 225, 228)
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, alt)
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor(60, 60, 64))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 140, 146))
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, window)
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor(255, 90, 90))
    p.setColor(QPalette.ColorRole.Link, QColor(90, 160, 255))
    p.setColor(QPalette.ColorRole.Highlight, QColor(42, 110, 190))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.ColorRole.Mid, QColor(70, 70, 74))
    p.setColor(QPalette.ColorRole.Dark, QColor(25, 25, 27))
    p.setColor(QPalette.ColorRole.Light, QColor(75, 75, 80))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 124))
    return p


def light_palette(app: QApplication) -> QPalette:
    """The Fusion style's own light palette."""
    style = QStyleFactory.create("Fusion")
    return style.standardPalette() if style is not None else QPalette(app.palette())


def effective_theme(app: QApplication, choice: str) -> str:
    """'light' or 'dark': what `choice` ('system', 'light', 'dark') means right now."""
    if choice in ("light", "dark"):
        return choice
    return "dark" if system_is_dark(app) else "light"


def apply_theme(app: QApplication, choice: str) -> str:
    """Switch the application to `choice`; returns the theme in force ('light' or 'dark')."""
    first = "palette" not in _original
    if first:
        _original["palette"] = QPalette(app.palette())
        _original["style"] = app.style().name()
        _original["changed"] = False
    theme = effective_theme(app, choice)
    if choice == "system" and theme == "light":
        if _original["changed"]:  # back from a forced theme: the platform's own look again
            app.setStyle(str(_original["style"]))
            app.setPalette(_original["palette"])  # type: ignore[arg-type]
            _original["changed"] = False
        return theme
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if theme == "dark" else light_palette(app))
    _original["changed"] = True
    return theme


def needs_work_at_start(app: QApplication, choice: str) -> bool:
    """True when `choice` asks for a look the platform does not already give (so it must be applied)."""
    if choice != "system":
        return True
    own_dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark and not own_dark


def follow_system(app: QApplication, choice: Callable[[], str]) -> None:
    """Re-apply the theme whenever the system's colour scheme changes while `choice()` is 'system'."""

    def changed(_scheme: object) -> None:
        if choice() == "system":
            apply_theme(app, "system")

    app.styleHints().colorSchemeChanged.connect(changed)
