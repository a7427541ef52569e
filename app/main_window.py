"""The main window: layer tree on the left, Overview / Memory / Graph tabs in the centre, inspector right.

It paints before any framework is imported: chart and graph tabs (pyqtgraph, QtWebEngine) are
built right after the first paint, models load in a worker (and a loader process), and the
result is shown from data prepared off the GUI thread.
"""

from __future__ import annotations

import importlib
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMainWindow, QSplitter, QTabWidget, QVBoxLayout, QWidget

from app.session import ModelSession
from app.settings import Settings

if TYPE_CHECKING:  # imported when first needed, so that the window paints sooner
    from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QMenu, QMessageBox

    from analyzers.loaders import LoadOptions
    from app.actions import Actions
    from app.loading import Loaded
    from app.status import JobStatus
    from app.workers import JobRunner
    from widgets.inspector import Inspector
    from widgets.layer_tree import LayerTree

LOAD_LABEL = "Loading model"
DEFAULT_SPLIT = (515, 665, 320)  # tree (wide enough for Total params and % of model), tabs, inspector
TAB_TITLES = ("Overview", "Memory", "Graph")


# What the chart and graph tabs import (pyqtgraph, QtWebEngine: ~0.6 s), imported off the GUI thread.
VIEW_MODULES = ("pyqtgraph", "widgets.charts", "widgets.overview", "widgets.memory_view", "widgets.graph_view",
                "app.graph_controller", "app.netron_service")


def import_view_modules() -> None:
    """Import VIEW_MODULES; a failure is left for ensure_views to meet (and report) on the GUI thread."""
    for name in VIEW_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - reported where the module is used
            return


class MainWindow(QMainWindow):
    """LayerScope's window: open a checkpoint and inspect it."""

    layerSelected = Signal(str)  # the selected layer path
    loadFinished = Signal(bool, str)  # ok, "" or the one-sentence error (also after a refusal or cancel)
    firstPainted = Signal()
    viewsBuilt = Signal()

    def __init__(self, settings: Settings | None = None, isolated_loading: bool = True,
                 interactive: bool = True, defer_panes: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.isolated_loading = isolated_loading
        self.interactive = interactive
        self._jobs: JobRunner | None = None
        self.job_status: JobStatus | None = None
        self.actions: Actions | None = None
        self.session = ModelSession("A", self)  # the open model; features bind to it
        self.session_b: ModelSession | None = None  # compare mode's second model (app/features/compare.py)
        self.last_error: str | None = None
        self.error_dialog: QMessageBox | None = None
        self.theme_choice = self.settings.theme()
        self.overview = self.memory_view = self.graph_view = self.graph = None
        self._painted = False
        self._restored_split: list[int] | None = None
        self._tree_fitted = False  # the tree pane is widened to its columns once, for the first model
        self._prewarm: threading.Thread | None = None  # imports the chart/graph modules beside the event loop
        self._closed = False
        self._stale: set[str] = set()  # tabs that have not been given the current model yet
        self._load_job: int | None = None
        self.first_paint_at: float | None = None
        self.tree: LayerTree | None = None
        self.inspector: Inspector | None = None

        self.setWindowTitle("LayerScope")
        self.setAcceptDrops(True)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self._pages: dict[str, QWidget] = {}
        for title in TAB_TITLES:
            page = QWidget(self.tabs)
            QVBoxLayout(page).setContentsMargins(0, 0, 0, 0)
            self._pages[title] = page
            self.tabs.addTab(page, title)
        # QSplitter(parent) makes PySide build all 94 Qt-namespace enums to resolve the overload
        # (~30 ms before the first paint); QSplitter() does not, and setCentralWidget adopts it.
        self.splitter = QSplitter()  # horizontal
        self._slots = (QWidget(self.splitter), QWidget(self.splitter))  # the tree and the inspector, soon
        self.splitter.addWidget(self._slots[0])
        self.splitter.addWidget(self.tabs)
        self.splitter.addWidget(self._slots[1])
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 6)
        self.splitter.setStretchFactor(2, 3)
        self.splitter.setSizes(list(DEFAULT_SPLIT))  # the centre tabs (charts, graph, Explain) get the room
        self.splitter.setChildrenCollapsible(False)
        self._slots[0].setMinimumWidth(260)
        self._slots[1].setMinimumWidth(220)
        self.tabs.setMinimumWidth(360)
        self.setCentralWidget(self.splitter)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.statusBar()
        bar = self.menuBar()  # empty menus now, so the first paint shows the bar; filled after it
        self._menus = {name: bar.addMenu(title) for name, title in (("file", "&File"), ("view", "&View"),
                                                                     ("help", "&Help"))}
        self.installEventFilter(self)
        self.resize(1500, 900)
        if interactive:  # a --screenshot run looks the same on every machine
            self._restore_state()
        if not defer_panes:
            self.ensure_panes()

    # -- public API (see the GUI contract) -------------------------------------------------------
    @property
    def jobs(self) -> JobRunner:
        """The window's JobRunner (created on first use, with its status-bar progress and Cancel)."""
        if self._jobs is None:
            from app.status import JobStatus
            from app.workers import JobRunner

            self._jobs = JobRunner(self)
            self.job_status = JobStatus(self._jobs, self)
            self.statusBar().addPermanentWidget(self.job_status)
            self._jobs.cancelled.connect(self._on_job_cancelled)
        return self._jobs

    def add_tab(self, title: str, widget: QWidget) -> int:
        """Add a centre tab (Run / Explain and other features); returns its index.

        The page scrolls when it is wider or taller than the centre, so its minimum size never
        squeezes the tree and the inspector (a tab widget is as wide as its widest page)."""
        from PySide6.QtWidgets import QFrame, QScrollArea

        scroll = QScrollArea(self.tabs)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(widget)
        return self.tabs.addTab(scroll, title)

    def menu(self, name: str) -> QMenu:
        """The window's File, View or Help menu ("file", "view", "help"), for features to add their actions."""
        return self._menus[name]

    def select_layer(self, path: str) -> None:
        """Select the layer at `path` in the tree (and so in the inspector and the charts)."""
        self.tree.select_path(path)

    def open_path(self, path: Path | str, options: LoadOptions | None = None) -> None:
        """Open a file or folder in a worker; the current model stays until the new one is ready."""
        from analyzers.loaders import LoadOptions
        from app.loading import load_steps

        self.ensure_panes()
        path = Path(path).expanduser()
        options = options or LoadOptions()
        self.statusBar().showMessage(f"Opening {path}…")
        self._load_job = None  # a load this one supersedes is not reported as cancelled
        self._load_job = self.jobs.submit(
            partial(load_steps, path, options, self.isolated_loading),
            LOAD_LABEL, "io", on_done=self._on_loaded, on_error=self._on_load_error,
        )

    def show_error(self, message: str) -> None:
        """The one-sentence error dialog (window-modal, not blocking); the status bar repeats it."""
        from PySide6.QtWidgets import QMessageBox

        self.last_error = message
        self.statusBar().showMessage(message, 15000)
        if not self.interactive:
            return
        if self.error_dialog is not None:
            self.error_dialog.close()
        box = QMessageBox(QMessageBox.Icon.Warning, "LayerScope", message, QMessageBox.StandardButton.Ok, self)
        from PySide6.QtCore import Qt  # the Qt namespace's enums cost ~30 ms: not before the first paint

        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_dialog = box
        box.open()

    # -- more actions ------------------------------------------------------------------------------
    def is_loading(self) -> bool:
        """True while a model load is running."""
        return self._load_job is not None and self._load_job in self.jobs.active()

    def cancel_loading(self) -> None:
        """Stop the running load; the model shown stays."""
        if self._load_job is not None:
            self.jobs.cancel(self._load_job)

    def reload(self) -> None:
        """Open the current file again (it changed on disk)."""
        if self.session.path is not None:
            self.open_path(self.session.path, self.session.options)

    def show_loaded(self, loaded: Loaded | None) -> None:
        """Show an already opened model (compare mode's swap and close hand one session's model to the other)."""
        self._show(loaded)

    def close_model(self) -> None:
        """Show no model (Ctrl+W)."""
        self.cancel_loading()
        self._show(None)

    def focus_filter(self) -> None:
        """Ctrl+F: type to filter the layer tree."""
        self.tree.focus_filter()

    def set_theme(self, choice: str) -> None:
        """Light, dark or follow the system; remembered."""
        self.theme_choice = choice
        self.settings.set_theme(choice)
        from app.theme import apply_theme

        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, choice)
        if self.actions is not None and choice in self.actions.themes:
            self.actions.themes[choice].setChecked(True)

    def tab_index(self, name: str) -> int:
        """Index of the tab called `name` (any case), -1 when there is none."""
        wanted = name.strip().lower()
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i).replace("&", "").lower() == wanted:
                return i
        return -1

    def current_tab_title(self) -> str:
        """Title of the tab shown."""
        return self.tabs.tabText(self.tabs.currentIndex()).replace("&", "")

    def save_tab_screenshot(self, path: Path) -> bool:
        """Save the current tab as a PNG; True on success."""
        widget = self.tabs.currentWidget()
        return bool(widget is not None and widget.grab().save(str(path), "PNG"))

    def ensure_panes(self) -> None:
        """Build the menus' actions, the layer tree and the inspector (right after the first paint, or at once)."""
        if self.tree is not None:
            return
        from app.actions import install_menus
        from widgets.inspector import Inspector
        from widgets.layer_tree import LayerTree

        sizes = self.splitter.sizes()
        if min(sizes, default=0) <= 0 or not self._painted:  # not laid out yet: sizes() says nothing real
            sizes = self._split_for(self.width())
        self.tree, self.inspector = LayerTree(), Inspector()  # no parent: the splitter adopts them below
        for i, (slot, pane) in enumerate(zip(self._slots, (self.tree, self.inspector))):
            pane.setMinimumWidth(slot.minimumWidth())
            self.splitter.replaceWidget(0 if i == 0 else 2, pane)
            slot.deleteLater()
        self.splitter.setSizes(sizes)
        if self.interactive and (blob := self.settings.blob("inspector_splitter")) is not None:
            self.inspector.splitter.restoreState(blob)
        if self.interactive and (blob := self.settings.blob("tree_header")) is not None:
            self.tree.view.header().restoreState(blob)
        self.tree.layerSelected.connect(self._on_layer_selected)
        self.actions = install_menus(self, self._menus)
        self.jobs  # noqa: B018 - creates the JobRunner and its status-bar widget

    def _fit_tree_pane(self) -> None:
        """Widen the tree pane (from the centre tabs) until Total params and % of model show, unless the
        user's own split was restored; the centre keeps at least its minimum width."""
        if self._restored_split is not None or self._tree_fitted:
            return
        self._tree_fitted = True
        sizes = self.splitter.sizes()
        if len(sizes) != 3 or min(sizes) <= 0:
            return
        need = self.tree.width_to_show() - sizes[0]
        if need <= 0:
            return
        from_inspector = max(0, min(need, sizes[2] - 260))  # the inspector gives first, the charts last
        from_centre = max(0, min(need - from_inspector, sizes[1] - max(self.tabs.minimumWidth(), 620)))
        grow = from_inspector + from_centre
        if grow:
            self.splitter.setSizes([sizes[0] + grow, sizes[1] - from_centre, sizes[2] - from_inspector])

    def _split_for(self, width: int) -> list[int]:
        """The default tree | tabs | inspector widths for a window `width` wide, or the restored ones."""
        if self._restored_split is not None:
            return self._restored_split
        total = sum(DEFAULT_SPLIT)
        scale = max(width, 800) / (total + 16)
        return [int(w * scale) for w in DEFAULT_SPLIT]

    def ensure_views(self) -> None:
        """Build the chart and graph tabs (imports pyqtgraph and QtWebEngine) if not done yet."""
        if self._closed:
            return
        self.ensure_panes()
        if self.overview is not None:
            return
        from app.graph_controller import GraphController
        from app.netron_service import prepare_webengine_environment
        from widgets.graph_view import GraphView
        from widgets.memory_view import MemoryView
        from widgets.overview import OverviewView

        prepare_webengine_environment()  # Chromium's flags, read when the first web view starts
        self.overview = OverviewView(self._pages["Overview"])
        self.memory_view = MemoryView(self._pages["Memory"])
        self.graph_view = GraphView(self._pages["Graph"])
        self.graph = GraphController(self.graph_view, self.jobs, self)
        for title, widget in zip(TAB_TITLES, (self.overview, self.memory_view, self.graph_view)):
            self._pages[title].layout().addWidget(widget)
        self.overview.blockClicked.connect(self.select_layer)
        self.overview.typeClicked.connect(self._filter_by_type)
        self.memory_view.parametersChanged.connect(self._recompute_memory)
        if self.session.loaded is not None:
            self._fill_views(self.session.loaded)
        else:
            self.overview.set_model(None, None)
        self.viewsBuilt.emit()

    # -- loading -----------------------------------------------------------------------------------
    def _on_loaded(self, result: object) -> None:
        from app.loading import Loaded

        self._load_job = None
        assert isinstance(result, Loaded)
        if self.interactive:  # a --screenshot run leaves the user's recent files alone
            self.settings.add_recent(result.path)
        self._show(result)
        self.statusBar().showMessage(f"Opened {result.path}", 8000)
        self.loadFinished.emit(True, "")

    def _on_load_error(self, message: str) -> None:
        self._load_job = None
        self.show_error(message)
        self.loadFinished.emit(False, message)

    def _on_job_cancelled(self, job_id: int) -> None:
        if job_id == self._load_job:
            self._load_job = None
            self.statusBar().showMessage("Loading cancelled; the model shown before stays.", 8000)
            self.loadFinished.emit(False, "Loading was cancelled.")

    # -- showing -----------------------------------------------------------------------------------
    def _show(self, loaded: Loaded | None) -> None:
        self.ensure_panes()
        self.setWindowTitle(f"{loaded.path.name} — LayerScope" if loaded else "LayerScope")
        self.tree.set_summary(loaded.summary if loaded else None)
        if loaded is not None:
            self._fit_tree_pane()
        self.session.set_loaded(loaded)  # bound features (Explain, ...) refresh from the session
        if loaded is None:
            self.inspector.set_layer(None, None)
        if self.overview is None:
            # The tree paints first; the chart tabs (about a second to build) follow in a later turn.
            QTimer.singleShot(0, self._views_when_imported)
        else:
            self._fill_views(loaded)

    def _fill_views(self, loaded: Loaded | None) -> None:
        """Hand the new model to the tabs: the visible one in the next event-loop turn, the others after
        it, one per turn, so that no single turn keeps the window from painting for long."""
        self._stale = {"Overview", "Memory"}
        self.graph.show_model(loaded.summary if loaded else None)  # it works once the Graph tab is shown
        QTimer.singleShot(0, self._fill_next_view)

    def views_pending(self) -> bool:
        """True while a tab still waits for the current model's data (or is not built yet)."""
        if self.overview is None:
            return self.session.is_open and not self._closed
        return bool(self._stale) or self.overview.pending()

    def _fill_next_view(self) -> None:
        if self._closed:
            return
        current = self.current_tab_title()
        if current in self._stale:
            self._fill_view(current)
        elif self._stale:
            self._fill_view(sorted(self._stale)[0])
        if self._stale:
            QTimer.singleShot(60, self._fill_next_view)

    def _fill_view(self, title: str) -> None:
        self._stale.discard(title)
        loaded = self.session.loaded
        summary = loaded.summary if loaded else None
        if title == "Overview":
            self.overview.set_model(summary, loaded.overview if loaded else None)
            selected = self.tree.selected_path()
            if summary is not None and selected is not None and selected in summary:
                self.overview.highlight(summary.node(selected))
        elif title == "Memory":
            self._recompute_memory(*self.memory_view.parameters(), fresh=True)

    def _on_tab_changed(self, index: int) -> None:
        title = self.tabs.tabText(index).replace("&", "")
        if title in self._stale:
            self._fill_view(title)

    def _recompute_memory(self, batch: int, seq_len: int, group: int, fresh: bool = False) -> None:
        from analyzers.summary.memory import estimate_memory, kv_cache_spec

        if self.memory_view is None:
            return
        summary = self.session.summary
        if summary is None:
            self.memory_view.set_report(None)
            return
        if fresh or kv_cache_spec(summary.config) is None:
            seq_len = 0  # a new model starts at its own context length (capped)
        self.memory_view.set_report(estimate_memory(summary, batch=batch, seq_len=seq_len or None, int4_group=group))

    def _on_layer_selected(self, path: str) -> None:
        summary = self.session.summary
        if summary is None or path not in summary:
            return
        node = summary.node(path)
        self.inspector.set_layer(node, summary.totals)
        if self.overview is not None and "Overview" not in self._stale:
            self.overview.highlight(node)
        self.layerSelected.emit(path)

    def _filter_by_type(self, layer_type: str) -> None:
        if layer_type and layer_type not in ("other", "(untyped)"):
            self.tree.set_filter(layer_type)
            self.statusBar().showMessage(f"Tree filtered to '{layer_type}'; clear the filter box to see every layer.",
                                         8000)

    # -- events ------------------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        """Notice the first paint: the chart tabs are built only after it."""
        if watched is self and not self._painted and event.type() == QEvent.Type.Paint:
            self._painted = True
            self.first_paint_at = time.perf_counter()
            QTimer.singleShot(0, self._after_first_paint)
        return super().eventFilter(watched, event)

    def _after_first_paint(self) -> None:
        if self._closed:
            return
        self.ensure_panes()
        self.firstPainted.emit()
        if self.overview is None and self._prewarm is None:
            self._prewarm = threading.Thread(target=import_view_modules, name="layerscope-views", daemon=True)
            self._prewarm.start()
        QTimer.singleShot(0, self._views_when_imported)

    def _views_when_imported(self) -> None:
        """Build the chart and graph tabs once a helper thread has imported their modules.

        Importing pyqtgraph and QtWebEngine on the GUI thread froze the window for 0.6-1 s right after
        it appeared; imported beside the event loop, the longest pause is the widgets' construction."""
        if self._closed or self.overview is not None:
            return
        waiting_for_tree = self.is_loading() and not self.session.is_open  # the first model's tree goes first
        if (self._prewarm is not None and self._prewarm.is_alive()) or waiting_for_tree:
            QTimer.singleShot(15, self._views_when_imported)
            return
        self.ensure_views()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        """Accept local files and folders."""
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        """Open the first dropped file or folder; with Ctrl, Alt or Shift held, compare it with the open model."""
        for url in event.mimeData().urls():
            if url.isLocalFile():
                event.acceptProposedAction()
                compare = getattr(self, "compare", None)  # app/features/compare.py
                if compare is not None and self.session.is_open and compare.wants_drop(event.modifiers()):
                    compare.open_b(Path(url.toLocalFile()))
                else:
                    self.open_path(Path(url.toLocalFile()))
                return

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Remember the layout (not after a --screenshot run), stop the jobs and the graph server."""
        self._closed = True
        self.wait_for_background()
        if self.interactive:
            self._save_state()
        if self.graph is not None:
            self.graph.shutdown()
        if self._jobs is not None:
            self._jobs.shutdown(2000)
        super().closeEvent(event)

    def wait_for_background(self, timeout_s: float = 30.0) -> None:
        """Let the helper thread that imports the chart and graph modules finish: an interpreter that exits
        while a thread is inside an import of a Qt module crashed (SIGSEGV, one --screenshot error in three)."""
        if self._prewarm is not None:
            self._prewarm.join(timeout_s)

    def _save_state(self) -> None:
        s = self.settings
        s.set_blob("geometry", self.saveGeometry())
        s.set_blob("state", self.saveState())
        s.set_blob("splitter", self.splitter.saveState())
        if self.tree is not None and self.inspector is not None:
            s.set_blob("inspector_splitter", self.inspector.splitter.saveState())
            s.set_blob("tree_header", self.tree.view.header().saveState())
        s.sync()

    def _restore_state(self) -> None:
        s = self.settings
        if (blob := s.blob("geometry")) is not None:
            self.restoreGeometry(blob)
        if (blob := s.blob("state")) is not None:
            self.restoreState(blob)
        if (blob := s.blob("splitter")) is not None and self.splitter.restoreState(blob):
            sizes = self.splitter.sizes()
            self._restored_split = sizes if min(sizes, default=0) > 0 else None

