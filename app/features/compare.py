"""Compare mode: two sessions in one window, their layers aligned, weights compared, the same input through both.

`layerscope A B`, File ▸ Compare with… or dropping a second file with Ctrl (or Alt/Shift) held opens B in
a second `ModelSession` ("B", `window.session_b`) beside the window's own (A); the window's centre then
shows the CompareView (widgets/compare_view.py) instead of the single-model panes, until the user
leaves compare mode or closes one side. The structure is aligned in a window thread (plain Python over
the two summaries); weight drift and running the models happen in the model-runner process, as jobs
with progress and Cancel, so the window imports no framework and no model-file library.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QStackedWidget

from analyzers.errors import LayerScopeError, TrustRequired
from analyzers.loaders import LoadOptions
from analyzers.tasks import CancelToken, Steps
from app.session import ModelSession

if TYPE_CHECKING:
    from analyzers.compare.structure import StructureDiff
    from app.runner_process import RunnerProcess
    from widgets.compare_view import CompareView

LOAD_B_LABEL = "Compare: loading B"
ALIGN_LABEL = "Compare: aligning the layers"
DRIFT_LABEL = "Compare: weight drift"
EXPLAIN_LABEL = "Compare: running both models"
DROP_MODIFIERS = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | \
    Qt.KeyboardModifier.ShiftModifier


def align_steps(a: Any, b: Any, _token: CancelToken) -> Steps[StructureDiff]:
    """Align two summaries (a job: a 10^5-layer pair takes a moment)."""
    from analyzers.compare.structure import align
    from analyzers.tasks import Progress

    yield Progress(0, None, "Aligning the layers")
    return align(a, b)


class CompareController(QObject):
    """Holds session B, switches the window into and out of compare mode and runs the comparison's jobs."""

    ready = Signal()  # the compare view shows a fresh alignment
    driftFinished = Signal(object)  # DriftReport | None (failed or cancelled)
    explainFinished = Signal(object)  # CompareOutcome | None

    def __init__(self, window: Any, runner: RunnerProcess | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.session_b = ModelSession("B", window)
        window.session_b = self.session_b
        window.compare = self
        self._runner = runner
        self.view: CompareView | None = None
        self._stack: QStackedWidget | None = None
        self.active = False  # compare mode is on (B requested or shown)
        self._pending_b = False
        self._align_job: int | None = None
        self._drift_job: int | None = None
        self._explain_job: int | None = None
        self._explain_sign: str | None = None
        self.diff: StructureDiff | None = None
        self.last_outcome: Any = None
        self.last_drift: Any = None  # DriftReport of the Drift page's last run (for reports)
        self.last_explained: tuple[Any, Any, tuple[Any, Any]] | None = None  # (comparison, maps, displays)
        self._trust_question: Any = None  # the open "run its code?" question, if any
        self.actions = self._install_menu()
        window.jobs.progress.connect(self._on_progress)
        window.jobs.cancelled.connect(self._on_cancelled)
        window.session.changed.connect(self._on_sessions_changed)
        self.session_b.changed.connect(self._on_sessions_changed)

    @property
    def runner(self) -> RunnerProcess:
        """The model runner the drift and run requests go to."""
        if self._runner is None:
            from app.runner_process import shared_runner

            self._runner = shared_runner()
        return self._runner

    def _install_menu(self) -> list[QAction]:
        menu = self.window.menu("file")
        compare = QAction("Compare &with…", self.window)
        compare.setShortcut("Ctrl+Shift+K")
        compare.triggered.connect(self.choose_b)
        swap = QAction("S&wap A and B", self.window)
        swap.triggered.connect(self.swap)
        leave = QAction("Leave compare mode", self.window)
        leave.triggered.connect(self.leave)
        first = menu.actions()[2] if len(menu.actions()) > 2 else None  # after Open file / Open folder
        menu.insertActions(first, [compare, swap, leave])
        return [compare, swap, leave]

    # -- opening B -------------------------------------------------------------------------------
    def choose_b(self) -> None:
        """File ▸ Compare with…: pick the second model."""
        if not self.window.session.is_open:
            self.window.show_error("Open a model first, then compare it with another.")
            return
        start = str(self.window.session.path.parent)
        path, _ = QFileDialog.getOpenFileName(self.window, "Compare with", start, _file_filter())
        if path:
            self.open_b(Path(path))

    def open_b(self, path: Path | str, options: LoadOptions | None = None) -> None:
        """Load `path` as B (in the loader process) and show both models in compare mode."""
        from app.loading import load_steps

        self.window.ensure_panes()
        self.active = True
        self._pending_b = True
        self._enter()
        self.view.set_waiting(f"Opening {Path(path).name} as B…")
        self.window.jobs.submit(partial(load_steps, Path(path).expanduser(), options or LoadOptions(),
                                        self.window.isolated_loading),
                                LOAD_B_LABEL, "io", on_done=self._on_b_loaded, on_error=self._on_b_failed)

    def _on_b_loaded(self, result: Any) -> None:
        from app.loading import Loaded

        self._pending_b = False
        if not isinstance(result, Loaded):  # a pickled module asks before opening: not in compare mode
            self._on_b_failed(getattr(result, "message", "B could not be opened."))
            return
        self.session_b.set_loaded(result)

    def _on_b_failed(self, message: str) -> None:
        self._pending_b = False
        self.window.show_error(message)
        if not self.session_b.is_open:
            self.leave()
        elif self.view is not None:
            self.view.set_waiting("")

    def pending(self) -> bool:
        """True while B loads, or the alignment of the shown pair is not on screen yet."""
        if not self.active:
            return False
        return self._pending_b or self._align_job is not None or self.diff is None or self.window.is_loading()

    # -- compare mode ----------------------------------------------------------------------------
    def _enter(self) -> None:
        if self.view is None:
            from widgets.compare_view import CompareView

            self.view = CompareView()
            self.view.swapRequested.connect(self.swap)
            self.view.closeRequested.connect(self.close_side)
            self.view.exitRequested.connect(self.leave)
            self.view.driftRequested.connect(self.compute_drift)
            self.view.driftCancelRequested.connect(self.cancel_drift)
            self.view.explain.runRequested.connect(self.run_both)
            self.view.explain.cancelRequested.connect(self.cancel_explain)
        if self._stack is None:
            central = self.window.takeCentralWidget()  # the single-model splitter, kept for leaving
            self._stack = QStackedWidget()
            self._stack.addWidget(central)
            self._stack.addWidget(self.view)
            self.window.setCentralWidget(self._stack)
        self._stack.setCurrentWidget(self.view)
        self._update_title()

    def leave(self) -> None:
        """Back to the single-model window (A stays); B's session is emptied."""
        self.active = False
        self._pending_b = False
        for job in (self._drift_job, self._explain_job, self._align_job):
            if job is not None:
                self.window.jobs.cancel(job)
        self._align_job = self._drift_job = self._explain_job = None
        if self._stack is not None:
            self._stack.setCurrentIndex(0)
        if self.session_b.is_open:
            self.session_b.set_loaded(None)
        self.last_drift = None
        self.last_explained = None
        self.diff = None
        self._update_title()

    def swap(self) -> None:
        """A becomes B and B becomes A (the trees, the tables and the window's own panes follow)."""
        if not (self.active and self.window.session.is_open and self.session_b.is_open):
            return
        a, b = self.window.session.loaded, self.session_b.loaded
        self.session_b.blockSignals(True)
        self.session_b.set_loaded(a)
        self.session_b.blockSignals(False)
        self.window.show_loaded(b)  # emits the session's change: realigned once

    def close_side(self, side: str) -> None:
        """Close A or B: the other model stays, alone, in the single-model window."""
        if side == "A" and self.session_b.is_open:
            b = self.session_b.loaded
            self.leave()
            self.window.show_loaded(b)
        else:
            self.leave()

    def _update_title(self) -> None:
        a, b = self.window.session.path, self.session_b.path
        if self.active and a is not None and b is not None:
            self.window.setWindowTitle(f"{a.name} ↔ {b.name} — LayerScope compare")
        elif a is not None:
            self.window.setWindowTitle(f"{a.name} — LayerScope")

    def _on_sessions_changed(self, _session: Any = None) -> None:
        if not self.active or self.view is None:
            return
        self.diff = None
        self.last_outcome = None
        self.last_drift = None
        self.last_explained = None
        self.view.explain.clear()
        a, b = self.window.session.summary, self.session_b.summary
        self._update_title()
        if a is None or b is None:
            self.view.set_waiting("Waiting for " + ("A" if a is None else "B") + " to open…")
            return
        self.view.set_waiting("Aligning the layers…")
        self._align_job = self.window.jobs.submit(partial(align_steps, a, b), ALIGN_LABEL, "io",
                                                  on_done=self._on_aligned, on_error=self._on_align_failed)

    def _on_aligned(self, diff: StructureDiff) -> None:
        self._align_job = None
        if diff.a is not self.window.session.summary or diff.b is not self.session_b.summary:
            return  # a later change is being aligned
        self.diff = diff
        names = (self.window.session.path.name, self.session_b.path.name)
        self.view.set_diff(diff, names)
        self.view.set_waiting("")
        self.view.explain.set_inputs(*self._explain_choices())
        self.ready.emit()

    def _on_align_failed(self, message: str) -> None:
        self._align_job = None
        self.window.show_error(message)

    # -- drift -------------------------------------------------------------------------------------
    def compute_drift(self) -> int | None:
        """Compare the weight values in the model runner (progress and Cancel in the status bar and the page)."""
        if self.diff is None or self.view is None:
            return None
        a, b = self.diff.a, self.diff.b
        self._drift_job = self.window.jobs.submit(partial(self._drift_steps, a, b), DRIFT_LABEL, "model",
                                                  on_done=self._on_drift, on_error=self._on_drift_failed)
        self.view.set_drift_busy(True, "Reading both checkpoints tensor by tensor…")
        return self._drift_job

    def _drift_steps(self, a: Any, b: Any, token: CancelToken) -> Steps[Any]:
        return (yield from self.runner.request("drift", token, a.source.path, a=a, b=b))

    def cancel_drift(self) -> None:
        """Stop the running drift job (the runner stops at its next block)."""
        if self._drift_job is not None:
            self.window.jobs.cancel(self._drift_job)  # reported through _on_cancelled

    def _on_drift(self, report: Any) -> None:
        self._drift_job = None
        if self.diff is None or self.view is None or report.path_a != self.diff.a.source.path:
            return
        self.last_drift = report
        self.view.set_drift_busy(False, f"Relative change of the whole model: {report.model.relative_change:.4g}")
        self.view.set_drift(report)
        self.driftFinished.emit(report)

    def _on_drift_failed(self, message: str) -> None:
        self._drift_job = None
        if self.view is not None:
            self.view.set_drift_busy(False, message)
        self.window.show_error(message)
        self.driftFinished.emit(None)

    def _on_progress(self, job_id: int, progress: Any) -> None:
        if self.view is None:
            return
        share = progress.fraction
        text = progress.text + (f" ({100 * share:.0f} %)" if share is not None else "")
        if job_id == self._drift_job:
            self.view.set_drift_busy(True, text)
        elif job_id == self._explain_job:
            self.view.explain.set_busy(True, text)

    def _on_cancelled(self, job_id: int) -> None:
        """A job stopped from the status bar's Cancel: its page is usable again."""
        if job_id == self._drift_job:
            self._drift_job = None
            self.view.set_drift_busy(False, "Cancelled.")
            self.driftFinished.emit(None)
        elif job_id == self._explain_job:
            self._explain_job = None
            self.view.explain.set_busy(False, "Cancelled.")
            self.explainFinished.emit(None)

    # -- the same input through both -----------------------------------------------------------------
    def _explain_choices(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
        from analyzers.explain.inputs import sample_label
        from analyzers.methods import methods
        from analyzers.samples import find_sample_model

        samples: list[tuple[str, str]] = []
        for path in (self.window.session.path, self.session_b.path):
            entry = find_sample_model(path) if path is not None else None
            if entry is not None:
                samples = [(sample_label(entry, s), str(i)) for i, s in enumerate(entry.samples)]
                break
        return samples, [(key, m.title) for key, m in methods().items()], "saliency"

    def run_both(self, asked: dict) -> int | None:
        """Run both models on one input and, with a method, attribute both (B explains A's target)."""
        from analyzers.explain.attribution import AttributionRequest
        from analyzers.explain.requests import CompareSettings, InputChoice, RunSettings

        if self.diff is None or self.view is None:
            return None
        if asked["kind"] == "auto" and not asked["value"]:
            self.window.show_error("Type a file path, a text or random:SHAPE as the input first.")
            return None
        request = AttributionRequest(asked["method"]) if asked.get("method") else None
        settings = CompareSettings(RunSettings(InputChoice(asked["kind"], asked["value"]), runs=1, warmup=0), request)
        self._explain_sign = asked.get("sign")
        ref_a, ref_b = self.window.session.model_ref(), self.session_b.model_ref()
        self._explain_job = self.window.jobs.submit(partial(self._explain_steps, ref_a, ref_b, settings, asked),
                                                    EXPLAIN_LABEL, "model", on_done=self._on_explained,
                                                    on_error=self._on_explain_failed)
        self.view.explain.set_busy(True, "Running both models…")
        return self._explain_job

    def _explain_steps(self, ref_a: Any, ref_b: Any, settings: Any, asked: dict, token: CancelToken) -> Steps[Any]:
        from app.trust import NeedsTrust

        try:
            return (yield from self.runner.request("compare", token, ref_a.path, ref=ref_a, ref_b=ref_b,
                                                   settings=settings))
        except TrustRequired as exc:  # one of them carries code: ask about that file, then run both again
            return exc.path, NeedsTrust(str(exc), partial(self.run_both, asked))

    def _ask_trust(self, path: Path, request: Any) -> None:
        from app.trust import TrustQuestion

        session = self.session_b if self.session_b.path is not None and Path(path) == self.session_b.path \
            else self.window.session
        self.view.explain.set_busy(False, "")
        self._trust_question = TrustQuestion(self.window, session)
        self._trust_question.answered.connect(self._on_trust_answer)
        self._trust_question.ask(request)

    def _on_trust_answer(self, yes: bool) -> None:
        if not yes:
            self.view.explain.set_busy(False, "Not run: its code was not trusted.")
            self.explainFinished.emit(None)

    def cancel_explain(self) -> None:
        """Stop the running compare run (the runner stops at its next forward pass)."""
        if self._explain_job is not None:
            self.window.jobs.cancel(self._explain_job)  # reported through _on_cancelled

    def _on_explained(self, outcome: Any) -> None:
        from analyzers.compare.outputs import compare_predictions, shared_scale_maps
        from analyzers.explain.display import default_sign

        self._explain_job = None
        if self.view is None:
            return
        if isinstance(outcome, tuple):  # (path, NeedsTrust): the runner would run a file's code
            self._ask_trust(*outcome)
            return
        self.last_outcome = outcome
        self.view.explain.set_busy(False, "")
        pa, pb = outcome.a.result.prediction, outcome.b.result.prediction
        comparison = compare_predictions(pa, pb, outcome.probs_a, outcome.probs_b)
        maps = None
        displays: tuple[Any, Any] = (None, None)
        target = ""
        if outcome.attribution_a is not None and outcome.attribution_b is not None:
            ma, mb = outcome.attribution_a.attribution, outcome.attribution_b.attribution
            sign = self._explain_sign or default_sign(ma.method, ma.parameters)
            maps = shared_scale_maps(ma.map, mb.map, ma.input.layout, mb.input.layout, sign)
            displays = (ma.input.display, mb.input.display)
            target = f"class {ma.target_label or ma.target}"
        names = (self.window.session.path.name, self.session_b.path.name)
        self.last_explained = (comparison, maps, displays)
        self.view.explain.show_outcome(names, comparison, maps, displays, outcome.notes, target)
        self.explainFinished.emit(outcome)

    def _on_explain_failed(self, message: str) -> None:
        self._explain_job = None
        if self.view is not None:
            self.view.explain.set_busy(False, message)
        self.window.show_error(message)
        self.explainFinished.emit(None)

    # -- dropping a second file ----------------------------------------------------------------------
    def wants_drop(self, modifiers: Any) -> bool:
        """True when a file dropped with these keys held opens as B: Ctrl, Alt or Shift (MainWindow.dropEvent asks)."""
        return bool(modifiers & DROP_MODIFIERS)


def _file_filter() -> str:
    try:
        from analyzers.loaders import file_dialog_filter

        return file_dialog_filter()
    except LayerScopeError:  # pragma: no cover - the registry always builds a filter
        return ""


def install(window: Any) -> CompareController:
    """Give `window` compare mode: session B, File ▸ Compare with…, the modifier drop."""
    return CompareController(window)
