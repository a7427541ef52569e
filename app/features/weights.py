"""The Weights tab: statistics of the open checkpoint's values, the quantisation and pruning previews, the zoo's
held-out accuracy after each, and the Memory tab's "after quantisation / pruning" rows from their figures.

Reading values opens h5py, onnx or gguf files and the accuracy needs the live model: every job goes to the
model-runner process (app/runner_process.py ops 'weights' and 'shrink'), with progress and Cancel.
Statistics start by themselves when the tab is first looked at and the weights are small; past that the
user asks (a 7B checkpoint takes minutes).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from analyzers.summary.memory import MemoryLine, human_bytes
from analyzers.tasks import CancelToken, Steps

if TYPE_CHECKING:
    from analyzers.weights.report import WeightsAnalysis, WeightsRequest
    from app.runner_process import RunnerProcess
    from app.session import ModelSession
    from widgets.weights_view import WeightsView

AUTO_STATS_BYTES = 512 << 20  # statistics start by themselves below this many stored bytes
LABELS = {"stats": "Weights: statistics", "quant": "Weights: quantisation preview", "prune": "Weights: pruning preview",
          "accuracy": "Weights: held-out accuracy"}


def readable_reason(summary: Any) -> str | None:
    """Why this model's values cannot be read (None when they can): formats that keep no values on disk."""
    from analyzers.loaders import spec_for_format

    spec = spec_for_format(summary.source.format)
    name = spec.name if spec is not None else summary.source.format
    if name in ("safetensors", "safetensors-index", "hf", "pytorch", "keras", "h5-weights", "onnx", "gguf"):
        return None
    return f"LayerScope does not read the values of {summary.source.format} files; statistics and previews need them."


def zoo_scored(path: Any) -> bool:
    """True for a bundled model whose held-out set the accuracy previews can score."""
    from analyzers.samples import find_sample_model
    from analyzers.weights.shrink import SCORED_METRICS

    entry = find_sample_model(path) if path is not None else None
    return entry is not None and entry.metric in SCORED_METRICS


class WeightsController(QObject):
    """Runs the Weights tab's jobs in the model runner and paints their results (and the Memory tab's rows)."""

    finished = Signal(str)  # the kind that finished: "stats" | "quant" | "prune" | "accuracy"
    failed = Signal(str)

    def __init__(self, window: Any, session: ModelSession | None = None, runner: RunnerProcess | None = None
                 ) -> None:
        super().__init__(window)
        self.window = window
        self.session: ModelSession = session if session is not None else window.session
        self._runner = runner
        self.page = QWidget()
        QVBoxLayout(self.page).setContentsMargins(0, 0, 0, 0)
        self._view: WeightsView | None = None
        self.tab_index = window.add_tab("Weights", self.page)
        self.results: dict[str, Any] = {}
        self._jobs: dict[str, int] = {}
        self._auto_started = False
        self.session.changed.connect(self.on_session_changed)
        window.layerSelected.connect(self.on_layer_selected)
        window.tabs.currentChanged.connect(self._on_tab_changed)
        if hasattr(window, "viewsBuilt"):
            window.viewsBuilt.connect(self._paint_memory)
        if self.session.is_open:
            self.on_session_changed()

    @property
    def runner(self) -> RunnerProcess:
        """The model-runner process (the shared one unless given)."""
        if self._runner is None:
            from app.runner_process import shared_runner

            self._runner = shared_runner()
        return self._runner

    @property
    def view(self) -> WeightsView:
        """The tab's widget, built on first use (pyqtgraph is not needed before)."""
        if self._view is None:
            from widgets.weights_view import WeightsView

            view = WeightsView()
            self.page.layout().addWidget(view)
            view.statsRequested.connect(self.run_stats)
            view.quantRequested.connect(self.run_quant)
            view.pruneRequested.connect(self.run_prune)
            view.accuracyRequested.connect(self.run_accuracy)
            view.cancelRequested.connect(self.cancel)
            view.layerPicked.connect(self._on_row_picked)
            self._view = view
            self._apply_session()
        return self._view

    @property
    def busy(self) -> bool:
        """True while a job of this tab runs."""
        return bool(self._jobs)

    # --- the session ----------------------------------------------------------------------------------

    def on_session_changed(self, _session: Any = None) -> None:
        """A new model: results dropped (their jobs cancelled), the Memory rows removed, the tab reset."""
        for job in list(self._jobs.values()):
            self.window.jobs.cancel(job)
        self._jobs.clear()
        self.results = {}
        self._auto_started = False
        self._paint_memory()
        if self._view is not None:
            self._apply_session()
        self._maybe_auto_stats()

    def _apply_session(self) -> None:
        summary, path = self.session.summary, self.session.path
        if summary is None or path is None:
            self.view.set_model("", None, False)
            return
        total = summary.totals.total_bytes
        self.view.set_model(f"{path.name}: {summary.totals.params:,} parameters, {human_bytes(total)}",
                            readable_reason(summary), zoo_scored(path))
        if readable_reason(summary) is None and total > AUTO_STATS_BYTES:
            self.view.set_status(f"{human_bytes(total)} of weights: press Compute statistics to read them all "
                                 "(streamed, bounded memory, Cancel stops it).")

    def _on_tab_changed(self, index: int) -> None:
        if index == self.tab_index:
            self.view  # noqa: B018 - built and brought up to date when first looked at
            self._maybe_auto_stats()

    def _maybe_auto_stats(self) -> None:
        summary = self.session.summary
        if summary is None or self._auto_started or self.window.tabs.currentIndex() != self.tab_index:
            return
        if readable_reason(summary) is None and summary.totals.total_bytes <= AUTO_STATS_BYTES:
            self._auto_started = True
            self.run_stats()

    # --- jobs -----------------------------------------------------------------------------------------

    def _submit(self, kind: str, make: Any, text: str) -> None:
        if self.session.summary is None:
            return
        self.view.set_busy(text)
        loaded = self.session.loaded
        self._jobs[kind] = self.window.jobs.submit(make, LABELS[kind], "model",
                                                   on_done=partial(self._on_done, kind, loaded),
                                                   on_error=partial(self._on_error, kind))

    def _weights_steps(self, request: WeightsRequest, token: CancelToken) -> Steps[WeightsAnalysis]:
        summary = self.session.summary
        return (yield from self.runner.request("weights", token, summary.source.path, summary=summary,
                                               request=request))

    def run_stats(self) -> None:
        """Statistics of every tensor (streamed in the runner)."""
        from analyzers.weights.report import WeightsRequest

        self._submit("stats", partial(self._weights_steps, WeightsRequest(True)), "Reading every weight…")

    def run_quant(self) -> None:
        """int8 and int4 round-trip errors and sizes."""
        from analyzers.weights.report import WeightsRequest

        self._submit("quant", partial(self._weights_steps, WeightsRequest(False, ("int8", "int4"))),
                     "Quantising every weight matrix to int8 and int4 and back…")

    def run_prune(self, sparsity: float) -> None:
        """Global magnitude pruning at `sparsity`."""
        from analyzers.weights.report import WeightsRequest

        self._submit("prune", partial(self._weights_steps, WeightsRequest(False, (), float(sparsity))),
                     f"Finding the {sparsity:.0%} smallest weights of the model…")

    def run_accuracy(self) -> None:
        """The zoo model's held-out score after each transform, in the runner on the live model."""
        from analyzers.weights.accuracy import DEFAULT_VARIANTS

        if self.session.path is None:
            return
        ref = self.session.model_ref()

        def steps(token: CancelToken) -> Steps[Any]:
            return (yield from self.runner.request("shrink", token, ref.path, ref=ref, variants=DEFAULT_VARIANTS))

        self._submit("accuracy", steps, "Scoring the held-out set with int8, int4 and pruned weights…")

    def cancel(self) -> None:
        """Stop every job of this tab."""
        for job in list(self._jobs.values()):
            self.window.jobs.cancel(job)
        self._jobs.clear()
        if self._view is not None:
            self._view.set_busy(None)
            self._view.set_status("Cancelled.")

    def _on_done(self, kind: str, loaded: Any, result: Any) -> None:
        self._jobs.pop(kind, None)
        if loaded is not self.session.loaded:
            return
        view = self.view
        if kind == "accuracy":
            self.results["accuracy"] = result
            view.set_accuracy(result)
            view.set_status(f"{result.title}: {result.metric} measured on {result.heldout_size} held-out examples.")
        else:
            for part in ("stats", "quant", "prune"):
                value = getattr(result, part)
                if value is not None:
                    self.results[part] = value
            if result.stats is not None:
                view.set_stats(result.stats)
                s = result.stats
                view.set_status(f"Statistics of {len(s.tensors):,} tensors ({human_bytes(s.bytes_read)}) in "
                                f"{s.seconds:.1f} s." + (f" {' '.join(s.notes)}" if s.notes else ""))
            if result.quant is not None:
                view.set_quant(result.quant)
                view.set_status("Quantisation preview done; the Memory tab shows the sizes after.")
            if result.prune is not None:
                view.set_prune(result.prune)
                view.set_status("Pruning preview done; the Memory tab shows the size after.")
            self._paint_memory()
        view.set_busy(None if not self._jobs else "…")
        path = self.window.tree.selected_path() if getattr(self.window, "tree", None) is not None else None
        if path is not None:
            self.on_layer_selected(path)
        self.finished.emit(kind)

    def _on_error(self, kind: str, message: str) -> None:
        self._jobs.pop(kind, None)
        if self._view is not None:
            self._view.set_busy(None if not self._jobs else "…")
            self._view.set_status(message)
        self.failed.emit(message)

    # --- the selection and the Memory tab ---------------------------------------------------------------

    def on_layer_selected(self, path: str) -> None:
        """Show the layer's histogram and numbers, and select its row."""
        stats = self.results.get("stats")
        if self._view is None or stats is None:
            return
        own = stats.layers.get(path)
        extra: dict[str, str] = {}
        quant = self.results.get("quant")
        if quant is not None and path in quant.layers:
            extra["Quantisation"] = ", ".join(f"{s} SNR {e.snr_db:.1f} dB (relative error {e.relative_error:.4f})"
                                              for s, e in quant.layers[path].items())
        prune = self.results.get("prune")
        if prune is not None and path in prune.layers:
            loss = prune.layers[path]
            extra["Pruning"] = (f"{loss.fraction:.1%} of {loss.weights:,} weights zeroed, relative error "
                                f"{loss.relative_error:.4f}, {human_bytes(loss.bytes_before)} → "
                                f"{human_bytes(loss.bytes_after)} ({loss.format})")
        title = f"{path or '(model)'} — " + ("its own weights" if own is not None else "every layer below it")
        self._view.show_layer(title, own if own is not None else stats.subtree(path), extra)
        self._view.select_path(path)

    def _on_row_picked(self, path: str) -> None:
        if hasattr(self.window, "select_layer"):
            self.window.select_layer(path)

    def memory_lines(self) -> list[MemoryLine]:
        """The Memory tab's rows measured by the previews: the whole model as stored after each."""
        lines: list[MemoryLine] = []
        quant = self.results.get("quant")
        if quant is not None:
            for s in quant.schemes:
                t = quant.totals(s)
                how = "one fp16 scale per output channel" if s == "int8" else "one fp16 scale per 128-weight group"
                lines.append(MemoryLine(f"After {s} (preview)", quant.model_bytes_after[s],
                                        f"measured: weight matrices {t.bytes_before:,} B -> {t.bytes_after:,} B as {s} "
                                        f"({how}), other tensors as stored; SNR {t.snr_db:.1f} dB"))
        prune = self.results.get("prune")
        if prune is not None:
            lines.append(MemoryLine(f"After pruning {prune.sparsity:.0%} (preview)", prune.model_bytes_after,
                                    f"measured: global magnitude pruning zeroes {prune.achieved:.2%} of the weight "
                                    "matrices, each stored as CSR or a bitmap (whichever is smaller), other tensors "
                                    "as stored"))
        return lines

    def _paint_memory(self) -> None:
        memory = getattr(self.window, "memory_view", None)
        if memory is not None and hasattr(memory, "set_previews"):
            memory.set_previews(self.memory_lines())


def install(window: Any) -> WeightsController:
    """Add the Weights tab to the window, bound to its session."""
    return WeightsController(window)
