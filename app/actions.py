"""The window's menus and shortcuts, built in one place so the window class stays about layout and data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from app.settings import THEMES

if TYPE_CHECKING:
    from app.main_window import MainWindow


@dataclass
class Actions:
    """Every QAction of the window, for tests and for enabling/disabling."""

    open_file: QAction
    open_folder: QAction
    reload: QAction
    close_model: QAction
    quit: QAction
    focus_filter: QAction
    save_screenshot: QAction
    themes: dict[str, QAction]
    recent_menu: QMenu
    tab_actions: list[QAction]


def menu_bar_titles(window: MainWindow) -> dict[str, QMenu]:
    """The empty File, View and Help menus, so the first paint shows the menu bar as it will be."""
    bar = window.menuBar()
    return {name: bar.addMenu(title) for name, title in (("file", "&File"), ("view", "&View"), ("help", "&Help"))}


def install_menus(window: MainWindow, menus: dict[str, QMenu] | None = None) -> Actions:
    """Fill the File, View and Help menus of `window` and connect them to its methods."""
    menus = menus or menu_bar_titles(window)
    file_menu = menus["file"]
    open_file = _action(window, "&Open file…", QKeySequence.StandardKey.Open, lambda: choose_file(window))
    open_folder = _action(window, "Open &folder…", "Ctrl+Shift+O", lambda: choose_folder(window))
    recent_menu = QMenu("Open &recent", window)
    recent_menu.aboutToShow.connect(lambda: fill_recent(window, recent_menu))
    reload = _action(window, "&Reload", QKeySequence.StandardKey.Refresh, window.reload)
    close_model = _action(window, "&Close model", QKeySequence.StandardKey.Close, window.close_model)
    close_model.setShortcut("Ctrl+W")
    quit_action = _action(window, "&Quit", QKeySequence.StandardKey.Quit, window.close)
    file_menu.addActions([open_file, open_folder])
    file_menu.addMenu(recent_menu)
    file_menu.addSeparator()
    file_menu.addActions([reload, close_model])
    file_menu.addSeparator()
    file_menu.addAction(quit_action)

    view_menu = menus["view"]
    focus_filter = _action(window, "&Filter layers", QKeySequence.StandardKey.Find, window.focus_filter)
    save_shot = _action(window, "&Save screenshot of this tab…", "Ctrl+Shift+S", lambda: choose_screenshot(window))
    view_menu.addAction(focus_filter)
    tab_actions = []
    for i in range(9):
        # triggered(bool) would fill a lambda's first default: `checked` takes it, so `i` stays the tab.
        act = _action(window, f"Tab {i + 1}", f"Ctrl+{i + 1}",
                      lambda checked=False, i=i: window.tabs.setCurrentIndex(i))
        window.addAction(act)  # shortcut only, not shown in a menu
        tab_actions.append(act)
    theme_menu = view_menu.addMenu("&Theme")
    group = QActionGroup(window)
    themes: dict[str, QAction] = {}
    for name in THEMES:
        act = QAction(name.capitalize() if name != "system" else "Follow the system", window)
        act.setCheckable(True)
        act.setChecked(window.theme_choice == name)
        act.triggered.connect(lambda checked, name=name: window.set_theme(name))
        group.addAction(act)
        theme_menu.addAction(act)
        themes[name] = act
    view_menu.addSeparator()
    view_menu.addAction(save_shot)

    help_menu = menus["help"]
    help_menu.addAction(_action(window, "&About LayerScope", None, lambda: about(window)))
    return Actions(open_file, open_folder, reload, close_model, quit_action, focus_filter, save_shot, themes,
                   recent_menu, tab_actions)


def _action(window: MainWindow, text: str, shortcut, slot) -> QAction:
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    act.triggered.connect(slot)
    return act


def _start_folder(window: MainWindow) -> str:
    if window.session.path is not None:
        return str(window.session.path.parent)
    recent = window.settings.recent()
    return str(Path(recent[0]).parent) if recent else str(Path.home())


def choose_file(window: MainWindow) -> None:
    """File ▸ Open file…: a dialog filtered to the formats the loaders register."""
    from PySide6.QtWidgets import QFileDialog

    from analyzers.loaders import file_dialog_filter

    path, _ = QFileDialog.getOpenFileName(window, "Open a model file", _start_folder(window), file_dialog_filter())
    if path:
        window.open_path(Path(path))


def choose_folder(window: MainWindow) -> None:
    """File ▸ Open folder…: Hugging Face and SavedModel folders."""
    from PySide6.QtWidgets import QFileDialog

    path = QFileDialog.getExistingDirectory(window, "Open a model folder (Hugging Face, SavedModel)",
                                            _start_folder(window))
    if path:
        window.open_path(Path(path))


def fill_recent(window: MainWindow, menu: QMenu) -> None:
    """Rebuild File ▸ Open recent from the settings (missing entries greyed out)."""
    menu.clear()
    recent = window.settings.recent()
    for i, path in enumerate(recent):
        act = menu.addAction(f"&{i + 1}  {Path(path).name}" if i < 9 else Path(path).name)
        act.setToolTip(path)
        act.setStatusTip(path)
        act.setEnabled(Path(path).exists())
        act.triggered.connect(lambda checked=False, p=path: window.open_path(Path(p)))
    if not recent:
        menu.addAction("No recent models").setEnabled(False)
    menu.addSeparator()
    clear = menu.addAction("Clear the list")
    clear.setEnabled(bool(recent))
    clear.triggered.connect(window.settings.clear_recent)


def choose_screenshot(window: MainWindow) -> None:
    """View ▸ Save screenshot: the current tab as a PNG."""
    from PySide6.QtWidgets import QFileDialog

    title = window.tabs.tabText(window.tabs.currentIndex()).replace("&", "").lower() or "tab"
    stem = window.session.path.stem if window.session.path else "layerscope"
    default = str(Path(_start_folder(window)) / f"{stem}-{title}.png")
    path, _ = QFileDialog.getSaveFileName(window, "Save a screenshot of this tab", default, "PNG image (*.png)")
    if path:
        if not path.lower().endswith(".png"):
            path += ".png"
        if window.save_tab_screenshot(Path(path)):
            window.statusBar().showMessage(f"Saved {path}", 5000)
        else:
            window.show_error(f"{Path(path).name}: the screenshot could not be written.")


def about(window: MainWindow) -> None:
    """Help ▸ About."""
    from PySide6.QtWidgets import QMessageBox

    QMessageBox.about(window, "About LayerScope",
                      "<b>LayerScope</b><p>See what is inside a neural-network checkpoint: layers, parameters, "
                      "bytes, memory what-ifs and the graph, without loading the weights.</p>")
