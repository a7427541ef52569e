"""Output shapes and FLOPs in the window: the tree's two columns, the inspector's two fields and the Overview's
FLOPs by layer type, all for one stated input that the user can change (and everything recomputes).

PyTorch and ONNX models go to the model-runner process (torch on the meta device, onnx.shape_inference):
the window imports neither. A Keras model's default input needs neither a framework nor a file (its
saved config gave the shapes, its hyper-parameters give the FLOPs), so it is computed in a worker here;
another input size for it is propagated through the config in the runner too.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from analyzers.errors import LayerScopeError
from analyzers.tasks import CancelToken, Steps

if TYPE_CHECKING:
    from analyzers.summary import ModelSummary
    from analyzers.summary.shapes import ShapeReport
    from app.runner_process import RunnerProcess
    from app.session import ModelSession

LABEL = "Shapes and FLOPs"
RUNS_SHAPES = ("torch", "keras", "onnx")  # frameworks whose layers a shape can be passed through


def _local(summary: ModelSummary, shape: tuple[int, ...] | None, _token: CancelToken) -> Steps[ShapeReport]:
    """Shapes and FLOPs that need no framework and no file: a Keras model at its saved input, or a format
    without a layer graph (the report then says why not)."""
    from analyzers.loaders.shape_inference import infer_shapes

    return (yield from infer_shapes(summary, shape))


class ShapesController(QObject):
    """Computes a session's shapes and FLOPs for one input and shows them in the tree, inspector and Overview."""

    reportReady = Signal(object)  # ShapeReport, once shown
    failed = Signal(str)

    def __init__(self, window: Any, session: ModelSession | None = None, runner: RunnerProcess | None = None
                 ) -> None:
        super().__init__(window)
        self.window = window
        self.session: ModelSession = session if session is not None else window.session
        self._runner = runner
        self.report: ShapeReport | None = None
        self._loaded: Any = None  # the Loaded the report belongs to
        self._job: int | None = None
        self._panel: Any = None
        self.session.changed.connect(self.on_session_changed)
        window.layerSelected.connect(self.on_layer_selected)
        if hasattr(window, "viewsBuilt"):
            window.viewsBuilt.connect(self._bind_overview)
        if getattr(window, "overview", None) is not None:
            self._bind_overview()
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
    def busy(self) -> bool:
        """True while shapes are being computed."""
        return self._job is not None

    def _bind_overview(self) -> None:
        panel = getattr(getattr(self.window, "overview", None), "flops_panel", None)
        if panel is None or panel is self._panel:
            return
        self._panel = panel
        panel.inputShapeRequested.connect(self.recompute)
        self._paint_panel()

    # --- computing ---------------------------------------------------------------------------------------

    def on_session_changed(self, _session: Any = None) -> None:
        """A new model (or none): forget the old figures and compute the new model's at its default input."""
        self.report = None
        self._loaded = self.session.loaded
        if self.session.summary is None:
            self._paint_panel()
            return
        self.compute(None)

    def recompute(self, text: str) -> None:
        """The user's input size ('2x3x224x224'): every shape and FLOPs figure is computed again for it."""
        from analyzers.summary.shapes import parse_shape_text

        try:
            shape = parse_shape_text(text, "The input size")
        except LayerScopeError as exc:
            self._say(str(exc))
            return
        self.compute(shape)

    def compute(self, shape: tuple[int, ...] | None) -> None:
        """Start the job for the session's model at `shape` (None: its default input)."""
        summary = self.session.summary
        if summary is None:
            return
        framework = summary.source.framework
        local = framework not in RUNS_SHAPES or (framework == "keras" and shape is None)
        if local:
            make = partial(_local, summary, shape)
            kind = "io"
        else:
            options = self.session.options
            make = partial(self._remote, summary, shape, bool(options and options.trust))
            kind = "model"
        if self._panel is not None:
            self._panel.set_waiting("Computing output shapes and FLOPs"
                                    + ("" if local else " (one pass on the meta device, no weights read)") + "…")
        loaded = self.session.loaded
        self._job = self.window.jobs.submit(make, LABEL, kind, on_done=partial(self._on_done, loaded),
                                            on_error=self._on_error)

    def _remote(self, summary: ModelSummary, shape: tuple[int, ...] | None, trust: bool, token: CancelToken
                ) -> Steps[ShapeReport]:
        return (yield from self.runner.request("shapes", token, summary.source.path, summary=summary, shape=shape,
                                               trust=trust))

    def _on_done(self, loaded: Any, report: ShapeReport) -> None:
        self._job = None
        if loaded is not self.session.loaded:
            return  # the model changed meanwhile
        self.report = report
        tree = getattr(self.window, "tree", None)
        if tree is not None:
            tree.set_shapes(dict(report.shapes), dict(report.flops), report.caption())
        path = tree.selected_path() if tree is not None else None
        if path is not None:
            self.on_layer_selected(path)
        self._paint_panel()
        self.reportReady.emit(report)

    def _on_error(self, message: str) -> None:
        self._job = None
        self._say(message)
        self.failed.emit(message)

    def _say(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 12000) if hasattr(self.window, "statusBar") else None
        if self._panel is not None:
            self._paint_panel(extra=message)

    # --- showing -----------------------------------------------------------------------------------------

    def layer_texts(self, path: str) -> tuple[str, str]:
        """(output shape, FLOPs) of a layer as the inspector words them, with the input they are for."""
        from analyzers.summary.shapes import human_flops, shape_text

        report, summary = self.report, self.session.summary
        if summary is None or path not in summary:
            return "", ""
        node = summary.node(path)
        if report is None:
            saved = shape_text(node.output_shape)
            return (saved + " (as saved)" if saved else "computing…"), "computing…"
        shape = report.shapes.get(path, node.output_shape)
        if shape is not None:
            shape_said = f"{shape_text(shape)} (input {report.input_text})"
        else:
            shape_said = "unknown" + (f": {report.shapes_reason}" if report.shapes_reason else
                                      " (this module did not run in the forward pass)")
        flops = report.flops.get(path)
        if flops is not None:
            flops_said = f"{flops:,} ({human_flops(flops)}), this layer and below, for input {report.input_text}"
        else:
            reason = report.flops_reason or report.shapes_reason
            flops_said = "unknown" + (f": {reason}" if reason else "")
        return shape_said, flops_said

    def on_layer_selected(self, path: str) -> None:
        """Show the layer's shape and FLOPs in the inspector."""
        inspector = getattr(self.window, "inspector", None)
        if inspector is None or not hasattr(inspector, "set_shape_info"):
            return
        shown = getattr(inspector, "node", None)
        if shown is None or shown.path != path:
            return  # the inspector shows another layer (or none)
        shape, flops = self.layer_texts(path)
        if shape or flops:
            inspector.set_shape_info(shape, flops)

    def _paint_panel(self, extra: str = "") -> None:
        panel = self._panel
        if panel is None:
            return
        summary, report = self.session.summary, self.report
        if summary is None:
            panel.set_waiting("No model open.")
            return
        if report is None:
            panel.set_waiting(extra or "Computing output shapes and FLOPs…")
            return
        from analyzers.summary.shapes import flops_by_type

        bars = flops_by_type(summary.root, report.flops)
        reason = " ".join(r for r in (report.flops_reason if report.flops else report.shapes_reason, extra) if r)
        shape = "x".join(str(d) for d in report.input.shape) if report.input is not None else ""
        panel.set_result(bars, report.total_flops, report.caption(), reason, shape,
                         summary.source.framework in RUNS_SHAPES)


def install(window: Any) -> ShapesController:
    """Bind shapes and FLOPs to the window's session, tree, inspector and Overview."""
    return ShapesController(window)
