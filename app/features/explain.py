"""Wires the Explain tab to live models: run and attribute in the model-runner process, bound to a session.

The window never imports torch or TensorFlow: each request goes to the runner child
(app.runner_process), which opens the live model on first use and keeps it until the model, its
options or the device change. A crash inside a framework ends that child, not the window; the user
reads one sentence and can run again. Requests go through the window's single-thread "model" job
pool, so two never overlap.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QInputDialog, QVBoxLayout, QWidget

from analyzers.errors import LayerScopeError
from analyzers.explain.inputs import Preprocess, sample_label
from analyzers.explain.model_hints import (
    arch_classes,
    needs_architecture,
    summary_input_kind,
    summary_layers,
    why_not_runnable,
)
from analyzers.explain.requests import AttributeOutcome, RunOutcome
from analyzers.loaders import LoadOptions
from analyzers.tasks import CancelToken, Steps
from app.trust import NeedsTrust, TrustQuestion, trusted_request

if TYPE_CHECKING:
    from analyzers.explain.requests import AttributeSettings, RunSettings
    from app.runner_process import RunnerProcess
    from app.session import ModelSession
    from widgets.run_panel import RunPanel

__all__ = ["AttributeOutcome", "RunController", "RunOutcome", "arch_classes", "install"]

RUN_LABEL = "Explain: running the model"
ATTRIBUTE_LABEL = "Explain: attribution"


def zoo_entry(path: Path) -> Any:
    """The bundled sample-model entry for `path`, or None (reads the manifest, imports no framework)."""
    from analyzers.samples import find_sample_model

    return find_sample_model(path)


class RunController(QObject):
    """Runs the Explain tab's requests in the model-runner process and paints the results."""

    runFinished = Signal(object)  # RunOutcome, after it was painted
    attributionFinished = Signal(object)  # AttributeOutcome, after it was painted
    requestFailed = Signal(str)  # the one-sentence error shown to the user
    requestEnded = Signal()  # any end: done, failed or cancelled

    def __init__(self, window: Any, session: ModelSession | None = None, panel: RunPanel | None = None,
                 runner: RunnerProcess | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.session: ModelSession = session if session is not None else window.session
        self.jobs = window.jobs
        self._runner = runner
        self.page = QWidget()
        QVBoxLayout(self.page).setContentsMargins(0, 0, 0, 0)
        self._panel: RunPanel | None = None
        self.tab_index = window.add_tab("Explain", self.page)
        self._job: int | None = None
        self._stale = False  # the session changed since the panel last showed it
        self._devices_listed = False
        self._warmed: set[str] = set()  # frameworks the runner was asked to import ahead of a Run
        self.trust = TrustQuestion(window, self.session)  # "run its code?" before a file's code runs
        self.trust.answered.connect(self._on_trust_answer)
        self.session.changed.connect(self.on_session_changed)
        window.layerSelected.connect(self.on_layer_selected)
        window.tabs.currentChanged.connect(self._on_tab_changed)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.cancelled.connect(self._on_cancelled)
        self.actions = self._install_menu()
        if panel is not None:
            self._attach(panel)
        if self.session.is_open:
            self.on_session_changed(self.session)

    @property
    def runner(self) -> RunnerProcess:
        """The model-runner process the requests go to (the shared one unless given)."""
        if self._runner is None:
            from app.runner_process import shared_runner

            self._runner = shared_runner()
        return self._runner

    @property
    def busy(self) -> bool:
        """True while a Run or Attribute request of this tab is awaited."""
        return self._job is not None

    @property
    def panel(self) -> RunPanel:
        """The Explain tab's panel, built on first use (it imports pyqtgraph, which start-up does not need)
        and brought up to date with the session's model."""
        if self._panel is None:
            from widgets.run_panel import RunPanel

            self._attach(RunPanel())
        assert self._panel is not None
        if self._stale:
            self._stale = False
            self._apply_session()
        return self._panel

    def _attach(self, panel: RunPanel) -> None:
        self._panel = panel
        self.page.layout().addWidget(panel)
        panel.runRequested.connect(self.run)
        panel.attributeRequested.connect(self.attribute)
        panel.cancelRequested.connect(self.cancel)
        panel.attachArchitectureRequested.connect(self.attach_architecture)

    def _install_menu(self) -> list[QAction]:
        menu = self.window.menuBar().addMenu("E&xplain")
        items = [("&Run the model", "Ctrl+Shift+R", self._click_run),
                 ("&Attribute", "Ctrl+Shift+A", self._click_attribute),
                 ("Attach &architecture…", None, self.attach_architecture)]
        actions = []
        for text, shortcut, slot in items:
            action = QAction(text, self.window)
            if shortcut:
                action.setShortcut(shortcut)
            action.triggered.connect(slot)
            menu.addAction(action)
            actions.append(action)
        return actions

    def _click_run(self) -> None:
        if self.panel.run_button.isEnabled():
            self.panel.run_button.click()

    def _click_attribute(self) -> None:
        if self.panel.attribute_button.isEnabled():
            self.panel.attribute_button.click()

    # --- the session's model -------------------------------------------------------------------------

    def on_session_changed(self, _session: Any = None) -> None:
        """A new model (or none): the panel is reset now if it is on screen, else when the tab is first shown
        (building it costs ~0.6 s that the layer tree should not wait for)."""
        self._stale = True
        if self._panel is not None and self.window.tabs.currentIndex() == self.tab_index:
            self.panel  # noqa: B018 - applies the session
        self._list_devices_if_visible()

    def _apply_session(self) -> None:
        """Reset the panel from the session's summary and the sample manifest; nothing is loaded."""
        session = self.session
        summary = session.summary
        if summary is None or session.path is None:
            if self._panel is not None:
                self._panel.set_model("", "unknown", [], None, [], ())
            return
        path, options = session.path, session.options or LoadOptions()
        entry = zoo_entry(path)
        samples: list[tuple[str, str]] = []
        preprocess = None
        labels: tuple[str, ...] = ()
        kind = summary_input_kind(summary)
        if entry is not None:
            kind = entry.input.kind
            samples = [(sample_label(entry, s), str(i)) for i, s in enumerate(entry.samples)]
            preprocess = Preprocess.from_spec(entry.input) if kind == "image" else None
            labels = tuple(entry.labels)
        elif kind == "image":
            preprocess = Preprocess(layout="NHWC" if summary.source.framework == "keras" else "NCHW")
        bundled_arch = entry is not None and bool(entry.arch)  # the sample manifest names the class already
        missing_arch = needs_architecture(summary, bool(options.arch) or bundled_arch)
        name = f"{path.name} ({summary.source.format})"
        self.panel.set_model(name, kind, samples, preprocess, summary_layers(summary), labels,
                             needs_architecture(summary, bundled_arch))
        reason = why_not_runnable(summary)
        if reason is not None:
            self.panel.run_button.setEnabled(False)
            self.panel.attribute_button.setEnabled(False)
            self.panel.show_status(reason)
        elif missing_arch:
            self.panel.show_status("This file holds weights only: attach its architecture to run it.")

    def _on_tab_changed(self, index: int) -> None:
        if index == self.tab_index:
            self.panel  # noqa: B018 - built and brought up to date when the user looks at it
        self._list_devices_if_visible()

    def _list_devices_if_visible(self) -> None:
        """Once the user looks at the Explain tab: list devices (the runner imports torch for it), and have the
        runner import the shown model's framework, so the first Run does not wait for TensorFlow's import."""
        if not self.session.is_open or why_not_runnable(self.session.summary):
            return
        if self.window.tabs.currentIndex() != self.tab_index:
            return
        if not self._devices_listed:
            self._devices_listed = True
            self.jobs.submit(self._device_steps, "Listing devices", "model", on_done=self._on_devices,
                             on_error=self._on_devices_failed)
        framework = self.session.summary.source.framework
        if framework in ("keras", "torch") and framework not in self._warmed:
            self._warmed.add(framework)
            self.jobs.submit(partial(self._warm_steps, framework), f"Preparing {framework}", "model")

    def _warm_steps(self, framework: str, token: CancelToken) -> Steps[str]:
        return (yield from self.runner.request("warm", token, framework=framework))

    def on_layer_selected(self, path: str) -> None:
        """The tree's selection becomes the Grad-CAM layer when it is one of this model's layers."""
        if self._panel is not None:
            self._panel.select_layer(path)

    # --- requests --------------------------------------------------------------------------------

    def run(self, settings: RunSettings) -> int | None:
        """Start a Run job (predict + latency + memory) in the runner process."""
        if not self.session.is_open:
            self.window.show_error("Open a model first.")
            return None
        ref = self.session.model_ref(settings.device)
        self.session.clear_results("run")
        self.panel.set_busy(True, "Running the model…")
        retry = partial(self.run, settings)
        self._job = self.jobs.submit(
            lambda token: trusted_request(self.runner, "run", token, ref, retry, settings=settings), RUN_LABEL,
            "model", on_done=self._on_run_done, on_error=self._on_error)
        return self._job

    def attribute(self, settings: AttributeSettings) -> int | None:
        """Start an Attribute job (the map, then the randomisation check when asked) in the runner process."""
        if not self.session.is_open:
            self.window.show_error("Open a model first.")
            return None
        ref = self.session.model_ref(settings.run.device)
        self.session.clear_results("attribution")
        self.panel.set_busy(True, "Computing the attribution…")
        retry = partial(self.attribute, settings)
        self._job = self.jobs.submit(
            lambda token: trusted_request(self.runner, "attribute", token, ref, retry, settings=settings),
            ATTRIBUTE_LABEL, "model", on_done=self._on_attribute_done, on_error=self._on_error)
        return self._job

    def cancel(self) -> None:
        """Cancel the running Explain job (the runner stops it and removes the hooks it placed)."""
        if self._job is not None:
            self.jobs.cancel(self._job)

    def attach_architecture(self) -> None:
        """Ask for a .py file, a class in it and constructor arguments; reopen the model with them."""
        if not self.session.is_open:
            self.window.show_error("Open a state_dict first, then attach the architecture that builds it.")
            return
        start = str(self.session.path.parent)
        file, _ = QFileDialog.getOpenFileName(self.page, "Python file with the model class", start,
                                              "Python files (*.py)")
        if not file:
            return
        try:
            classes = arch_classes(Path(file))
        except LayerScopeError as exc:
            self.window.show_error(str(exc))
            return
        if not classes:
            self.window.show_error(f"{Path(file).name} defines no class.")
            return
        cls, ok = QInputDialog.getItem(self.page, "Attach architecture", "Class", classes, 0, False)
        if not ok:
            return
        kwargs_text, ok = QInputDialog.getText(self.page, "Attach architecture",
                                               "Constructor arguments (JSON object)", text="{}")
        if ok:
            self.apply_architecture(Path(file), cls, kwargs_text)

    def apply_architecture(self, file: Path, cls: str, kwargs_text: str = "{}") -> None:
        """Reopen the current model with `--arch file.py:cls` and the JSON constructor arguments."""
        try:
            kwargs = json.loads(kwargs_text or "{}")
        except json.JSONDecodeError as exc:
            self.window.show_error(f"The constructor arguments are not valid JSON ({exc.msg}).")
            return
        if not isinstance(kwargs, dict):
            self.window.show_error("The constructor arguments must be a JSON object, e.g. {\"num_classes\": 10}.")
            return
        if not self.session.is_open:
            self.window.show_error("Open a state_dict first, then attach the architecture that builds it.")
            return
        path, options = self.session.path, self.session.options or LoadOptions()
        self.window.open_path(path, LoadOptions(options.trust, f"{Path(file).resolve()}:{cls}", kwargs,
                                                options.names_only))

    # --- job bodies (model-pool thread; the work itself happens in the runner process) ---------------

    def _device_steps(self, token: CancelToken) -> Steps[list[tuple[str, str]]]:
        return (yield from self.runner.request("devices", token))

    # --- results (GUI thread) ---------------------------------------------------------------------

    def _on_devices(self, devices: list[tuple[str, str]]) -> None:
        self.panel.set_devices(devices)

    def _on_devices_failed(self, _message: str) -> None:
        self._devices_listed = False  # the next look at the tab tries again; the device box keeps "auto"

    def _refresh_layers(self, layers: list[Any], default: str | None) -> None:
        chosen = self.panel.layer.currentData()
        self.panel.set_layers(layers)
        if chosen is not None:
            self.panel.select_layer(chosen)

    @property
    def trust_dialog(self) -> Any:
        """The open "run its code?" question, if any."""
        return self.trust.dialog

    def _ask_trust(self, request: NeedsTrust) -> None:
        """Running needs the file's code: ask (default No); on yes the session is trusted and the request retried."""
        self._job = None
        self.panel.set_busy(False, "")
        self.trust.ask(request)

    def _on_trust_answer(self, trusted: bool) -> None:
        if not trusted:
            self.panel.show_status("Not run: its code was not trusted.")
            self.requestEnded.emit()

    def _on_run_done(self, outcome: RunOutcome | NeedsTrust) -> None:
        if isinstance(outcome, NeedsTrust):
            self._ask_trust(outcome)
            return
        self._job = None
        self.panel.set_busy(False, "")
        self._refresh_layers(outcome.layers, outcome.default_layer)
        if outcome.labels and not self.panel.labels:
            self.panel.set_labels(outcome.labels)
        r = outcome.result
        self.panel.show_prediction(r.prediction, r.device, outcome.notes)
        self.panel.show_timing(r.timing)
        self.session.set_run(outcome)
        self.runFinished.emit(outcome)
        self.requestEnded.emit()

    def _on_attribute_done(self, outcome: AttributeOutcome | NeedsTrust) -> None:
        if isinstance(outcome, NeedsTrust):
            self._ask_trust(outcome)
            return
        self._job = None
        self.panel.set_busy(False, "")
        self._refresh_layers(outcome.layers, outcome.default_layer)
        self.panel.show_attribution(outcome.attribution)
        if outcome.sanity is not None:
            self.panel.show_sanity(outcome.sanity)
        self.session.set_attribution(outcome)
        self.attributionFinished.emit(outcome)
        self.requestEnded.emit()

    def _on_error(self, message: str) -> None:
        self._job = None
        self.panel.set_busy(False, message)
        self.window.show_error(message)
        self.requestFailed.emit(message)
        self.requestEnded.emit()

    def _on_progress(self, job_id: int, progress: Any) -> None:
        if job_id == self._job and self._panel is not None:
            self.panel.show_status(progress.text)

    def _on_cancelled(self, job_id: int) -> None:
        if job_id == self._job and self._panel is not None:
            self._job = None
            self.panel.set_busy(False, "Cancelled.")
            self.requestEnded.emit()


def install(window: Any) -> RunController:
    """Add the Explain tab and its menu to `window` (a MainWindow), bound to its session."""
    return RunController(window)
