"""The Attention tab: every layer × head of a model's attention on the user's input, bound to the window's session.

The capture runs in the model-runner process (app.runner_process, op "attention") like the Explain tab's
requests, through the window's single-thread "model" job pool, with progress and Cancel; the window imports
no framework. The panel (widgets/attention_view.py, pyqtgraph) is built when the tab is first shown.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from analyzers.explain.inputs import sample_label
from analyzers.explain.model_hints import summary_input_kind, why_not_runnable
from analyzers.explain.requests import AttentionOutcome, AttentionSettings
from app.trust import NeedsTrust, TrustQuestion, trusted_request

if TYPE_CHECKING:
    from app.runner_process import RunnerProcess
    from app.session import ModelSession
    from widgets.attention_view import AttentionPanel

ATTENTION_LABEL = "Attention: capturing the maps"


class AttentionController(QObject):
    """Sends attention requests for the session's model to the runner and shows the maps."""

    attentionFinished = Signal(object)  # AttentionOutcome, after it was painted
    requestFailed = Signal(str)
    requestEnded = Signal()  # any end: done, failed or cancelled

    def __init__(self, window: Any, session: ModelSession | None = None, runner: RunnerProcess | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.session: ModelSession = session if session is not None else window.session
        self.jobs = window.jobs
        self._runner = runner
        self.page = QWidget()
        QVBoxLayout(self.page).setContentsMargins(0, 0, 0, 0)
        self._panel: AttentionPanel | None = None
        self.tab_index = window.add_tab("Attention", self.page)
        self._job: int | None = None
        self._stale = True
        self.last_outcome: AttentionOutcome | None = None
        self.trust = TrustQuestion(window, self.session)  # "run its code?" before a file's code runs
        self.trust.answered.connect(self._on_trust_answer)
        self.session.changed.connect(self.on_session_changed)
        window.tabs.currentChanged.connect(self._on_tab_changed)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.cancelled.connect(self._on_cancelled)

    @property
    def runner(self) -> RunnerProcess:
        """The model-runner process the requests go to (the shared one unless given)."""
        if self._runner is None:
            from app.runner_process import shared_runner

            self._runner = shared_runner()
        return self._runner

    @property
    def busy(self) -> bool:
        """True while a capture of this tab is awaited."""
        return self._job is not None

    @property
    def panel(self) -> AttentionPanel:
        """The tab's panel, built on first use (pyqtgraph) and brought up to date with the session's model."""
        if self._panel is None:
            from widgets.attention_view import AttentionPanel

            panel = AttentionPanel()
            self._panel = panel
            self.page.layout().addWidget(panel)
            panel.attentionRequested.connect(self.compute)
            panel.cancelRequested.connect(self.cancel)
            panel.saved.connect(lambda path: self.window.statusBar().showMessage(f"Saved {path}", 5000))
        if self._stale:
            self._stale = False
            self._apply_session()
        return self._panel

    # --- the session's model -------------------------------------------------------------------------

    def on_session_changed(self, _session: Any = None) -> None:
        """A new model (or none): the panel resets now if it is on screen, else when the tab is next shown."""
        self._stale = True
        self.last_outcome = None
        if self._panel is not None and self.window.tabs.currentIndex() == self.tab_index:
            self.panel  # noqa: B018 - applies the session

    def _apply_session(self) -> None:
        session = self.session
        if session.summary is None or session.path is None:
            self.panel.set_model("", "unknown", [])
            return
        from analyzers.samples import find_sample_model

        path = session.path
        entry = find_sample_model(path)
        kind = entry.input.kind if entry is not None else summary_input_kind(session.summary)
        samples = [(sample_label(entry, s), str(i)) for i, s in enumerate(entry.samples)] if entry is not None else []
        self.panel.set_model(f"{path.name} ({session.summary.source.format})", kind, samples)
        reason = why_not_runnable(session.summary)
        if reason is not None:
            self.panel.show_button.setEnabled(False)
            self.panel.show_status(reason)

    def _on_tab_changed(self, index: int) -> None:
        if index == self.tab_index:
            self.panel  # noqa: B018 - built and brought up to date when the user looks at it

    # --- requests --------------------------------------------------------------------------------

    def compute(self, settings: AttentionSettings) -> int | None:
        """Start a capture of every attention layer on the chosen input, in the runner process."""
        if not self.session.is_open:
            self.window.show_error("Open a model first.")
            return None
        ref = self.session.model_ref(settings.device)
        self.last_outcome = None
        self.panel.set_busy(True, "Capturing attention…")
        retry = partial(self.compute, settings)
        self._job = self.jobs.submit(lambda token: trusted_request(self.runner, "attention", token, ref, retry,
                                                                   settings=settings), ATTENTION_LABEL, "model",
                                     on_done=self._on_done, on_error=self._on_error)
        return self._job

    def cancel(self) -> None:
        """Cancel the running capture (the runner stops it between layers and removes its hooks)."""
        if self._job is not None:
            self.jobs.cancel(self._job)

    # --- results (GUI thread) ---------------------------------------------------------------------

    def _on_done(self, outcome: AttentionOutcome | NeedsTrust) -> None:
        if isinstance(outcome, NeedsTrust):
            self._ask_trust(outcome)
            return
        self._job = None
        self.last_outcome = outcome
        self.session.set_attention(outcome)
        self.panel.set_busy(False, "")
        self.panel.set_result(outcome.result, caption(outcome))
        self.attentionFinished.emit(outcome)
        self.requestEnded.emit()

    @property
    def trust_dialog(self) -> Any:
        """The open "run its code?" question, if any."""
        return self.trust.dialog

    def _ask_trust(self, request: NeedsTrust) -> None:
        self._job = None
        self.panel.set_busy(False, "")
        self.trust.ask(request)

    def _on_trust_answer(self, trusted: bool) -> None:
        if not trusted:
            self.panel.show_status("Not run: its code was not trusted.")
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


def caption(outcome: AttentionOutcome) -> str:
    """One line under the maps: what ran where, the prediction, the layers and heads."""
    result = outcome.result
    parts = [f"{len(result.layers)} attention layer{'s' if len(result.layers) != 1 else ''}, up to "
             f"{result.heads} head{'s' if result.heads != 1 else ''}", f"{result.framework} on {result.device}",
             f"{result.seconds:.2f} s"]
    prediction = result.prediction
    if prediction is not None:
        if prediction.answer is not None:
            parts.insert(0, f"answer: {prediction.answer.text!r}")
        elif prediction.kind == "classes" and prediction.top:
            best = prediction.top[0]
            parts.insert(0, f"predicted: {best.label} ({best.probability:.1%})")
    source = outcome.input.get("source")
    if source:
        parts.append(f"input: {Path(str(source)).name if '/' in str(source) else source}")
    notes = [n for n in outcome.notes if n not in result.notes]
    return " · ".join(parts) + ("\n" + "\n".join(notes) if notes else "")


def install(window: Any) -> AttentionController:
    """Add the Attention tab to `window` (a MainWindow), bound to its session."""
    return AttentionController(window)
