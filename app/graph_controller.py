"""Wires the Graph tab: a weights-free stand-in built in a worker, served by Netron on loopback.

For each model the controller asks the JobRunner for `analyzers.graph.standin.standin_steps` (off
the GUI thread), then starts an `app.netron_service.NetronServer` for the result and hands its URL
to the `GraphView`. Nothing happens until the tab is first shown, so a user who never opens the
Graph tab never starts Chromium or writes a stand-in. A result for a model that is no longer the
current one is dropped, and its files are removed.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QDesktopServices

from analyzers.graph.standin import SMALL_FILE_BYTES, StandIn, standin_steps
from analyzers.summary import ModelSummary
from analyzers.tasks import CancelToken, Steps
from app import netron_service
from app.netron_service import NetronServer
from app.workers import JobRunner
from widgets.graph_view import GraphView

JOB_LABEL = "Preparing the graph"


def _standin_job(summary: ModelSummary, out_dir: Path, max_original_bytes: int, token: CancelToken) -> Steps[StandIn]:
    """The worker's job: JobRunner passes the cancel token and drives the steps."""
    return standin_steps(summary, out_dir, max_original_bytes)


class GraphController(QObject):
    """Keeps the Graph tab showing Netron's view of the current model (or why there is none)."""

    def __init__(self, view: GraphView, jobs: JobRunner, parent: QObject | None = None,
                 max_original_bytes: int = SMALL_FILE_BYTES) -> None:
        super().__init__(parent)
        self._view = view
        self._jobs = jobs
        self._max_original_bytes = max_original_bytes
        self._summary: ModelSummary | None = None
        self._request = 0  # id of the current model; results of older ones are dropped
        self._prepared = -1  # request whose stand-in was started
        self._job: int | None = None
        self._server: NetronServer | None = None
        self._root: Path | None = None  # one temporary folder per controller, a sub-folder per model
        self._standin: StandIn | None = None
        view.shown.connect(self._on_view_shown)
        view.openInBrowserRequested.connect(self.open_in_browser)

    @property
    def server(self) -> NetronServer | None:
        """The running Netron server, None when no graph is served."""
        return self._server

    @property
    def standin(self) -> StandIn | None:
        """What Netron is shown for the current model (None until it was prepared)."""
        return self._standin

    def show_model(self, summary: ModelSummary | None) -> None:
        """Show `summary`'s graph: builds the weights-free stand-in off the GUI thread, then serves it."""
        if summary is not None and summary is self._summary and (self._job is not None or self._server is not None):
            return  # the same model again: its graph is being prepared or shown already
        self._request += 1
        self._summary = summary
        self._standin = None
        self._cancel_job()
        self._stop_server()
        self._remove_standins()
        if summary is None:
            self._view.set_message("No model is open.")
            return
        if self._view.isVisible():
            self._prepare()
        else:
            self._view.set_busy("The graph is prepared when this tab is shown.")

    def open_in_browser(self) -> bool:
        """Open the served viewer in the user's browser (the page there is offline too); False when none."""
        if self._server is None:
            return False
        return QDesktopServices.openUrl(QUrl(self._server.url))

    def shutdown(self) -> None:
        """Stop the Netron server, drop the pending job and remove every stand-in written."""
        self._request += 1
        self._cancel_job()
        self._stop_server()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # --- internals -------------------------------------------------------------------------------

    def _on_view_shown(self) -> None:
        if self._summary is not None and self._prepared != self._request:
            self._prepare()

    def _prepare(self) -> None:
        request = self._request
        self._prepared = request
        if self._root is None or not self._root.is_dir():
            self._root = Path(tempfile.mkdtemp(prefix="layerscope-graph-"))
        out_dir = self._root / f"model-{request}"
        self._view.set_busy("Preparing a weights-free stand-in for Netron…")
        self._job = self._jobs.submit(
            partial(_standin_job, self._summary, out_dir, self._max_original_bytes),
            JOB_LABEL,
            "io",
            on_done=partial(self._on_standin, request),
            on_error=partial(self._on_error, request),
        )

    def _on_standin(self, request: int, standin: StandIn) -> None:
        if request != self._request:
            return
        self._job = None
        self._standin = standin
        if standin.path is None:
            self._view.set_message(standin.reason)
            return
        try:
            options = {"names": True} if standin.show_names else None
            self._server = netron_service.serve(standin.path, standin.display_name, standin.extra_files, options)
        except OSError as exc:
            self._view.set_error(f"Netron's local server did not start ({exc.strerror or exc}).")
            return
        self._view.set_note(standin.reason if standin.kind == "standin" else "")
        self._view.set_url(self._server.url)

    def _on_error(self, request: int, message: str) -> None:
        if request != self._request:
            return
        self._job = None
        self._view.set_error(message)

    def _cancel_job(self) -> None:
        if self._job is not None:
            self._jobs.cancel(self._job)
            self._job = None

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _remove_standins(self) -> None:
        """Remove earlier models' stand-ins; a job still writing one leaves files the shutdown removes."""
        if self._root is not None:
            for folder in self._root.iterdir():
                shutil.rmtree(folder, ignore_errors=True)
