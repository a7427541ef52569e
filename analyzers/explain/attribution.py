"""Attribution maps for both frameworks behind one call: which input parts drove the model's answer.

`attribute(live, input, request)` validates the request, predicts, resolves the target (the predicted
class unless one is given), asks the live model's runtime for the map (Captum for PyTorch,
tf.GradientTape for Keras) and returns an `Attribution`: the raw map shaped like the input without
the batch axis (one score per token for text), the parameters actually used, and for Integrated
Gradients the completeness check (sum of attributions vs F(x) - F(baseline)).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError
from analyzers.explain.display import output_position
from analyzers.explain.inputs import ModelInput, check_input_fits
from analyzers.tasks import CancelToken, Progress, Steps

# `live` arguments are analyzers.runtime.LiveModel and `prediction` values analyzers.runtime.Prediction; this
# module does not import analyzers.runtime (which loads frameworks), so that widgets can use its plain data.
LiveModel = Any
Prediction = Any

BASELINES = ("zero", "black", "uniform")
COMPLETENESS_TOLERANCE = 0.01
COMMON_FIELDS = ("method", "target", "layer", "qa_output", "seed", "internal_batch_size", "baselines", "params")


@dataclass(frozen=True, init=False)
class AttributionRequest:
    """One attribution to compute: the method, what every method shares (target, layer, seed, batching) and
    the method's own parameters (`params`, checked by the method's class in analyzers/methods/).

    `AttributionRequest("ig", target=3, steps=32)` puts `steps` into `params`; reading `request.steps`
    gives the value asked for, else the method's default."""

    method: str
    target: int | None = None  # class index (flattened output index for raw outputs); None = predicted
    layer: str | None = None  # Grad-CAM's layer (default: the last convolution); text: the embedding layer
    qa_output: str = "start"  # QA models: attribute the answer's "start" or "end" logit
    seed: int = 0  # seeds every random draw (baselines, noise)
    internal_batch_size: int | None = 16  # path points / windows per forward pass (memory, cancel granularity)
    baselines: np.ndarray | None = field(default=None, compare=False)  # explicit baselines, batch axis first
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __init__(self, method: str, target: int | None = None, *, layer: str | None = None, qa_output: str = "start",
                 seed: int = 0, internal_batch_size: int | None = 16, baselines: np.ndarray | None = None,
                 params: Mapping[str, Any] | None = None, **values: Any) -> None:
        for name, value in (("method", method), ("target", target), ("layer", layer), ("qa_output", qa_output),
                            ("seed", seed), ("internal_batch_size", internal_batch_size), ("baselines", baselines),
                            ("params", {**(params or {}), **values})):
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in COMMON_FIELDS:
            raise AttributeError(name)
        params = self.__dict__.get("params") or {}
        if name in params:
            return params[name]
        from analyzers.methods import param_default

        return param_default(name, self.__dict__.get("method"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttributionRequest):
            return NotImplemented
        mine = (self.method, self.target, self.layer, self.qa_output, self.seed, self.internal_batch_size)
        theirs = (other.method, other.target, other.layer, other.qa_output, other.seed, other.internal_batch_size)
        return mine == theirs and self._resolved() == other._resolved()

    def _resolved(self) -> dict[str, Any]:
        """The method's parameter values with defaults filled in (equal requests ask for the same thing)."""
        from analyzers.methods import method_class

        try:
            return method_class(self.method).values(self)
        except LayerScopeError:
            return dict(self.params)

    __hash__ = None  # type: ignore[assignment]

    def parameters(self) -> dict[str, Any]:
        """The parameters that matter for this method (JSON-able), as reports show them."""
        from analyzers.methods import method_class

        return method_class(self.method).parameters(self)


@dataclass(frozen=True, eq=False)
class RawAttribution:
    """What a runtime returns: the framework's map as numpy (batch axis kept) and what it measured."""

    attribution: np.ndarray  # like the input; (B, L, D) embedding-level for text; upsampled map for Grad-CAM
    parameters: dict[str, Any]  # every parameter as used (defaults resolved)
    layer_map: np.ndarray | None = None  # Grad-CAM at the layer's resolution
    delta: float | None = None  # the framework's convergence delta (IG, GradientShap)
    f_input: float | None = None  # target score at the input (IG)
    f_baseline: float | None = None  # target score at the baseline (IG)
    forwards: int = 0  # forward passes the method made
    notes: tuple[str, ...] = ()  # what the method wants the user to know about this map


@dataclass(frozen=True)
class Completeness:
    """IG's axiom checked: sum of attributions against F(x) - F(baseline)."""

    total: float
    f_input: float
    f_baseline: float
    delta: float  # total - (f_input - f_baseline)

    @property
    def relative(self) -> float:
        """|delta| / |F(x) - F(baseline)| (inf when the two scores are equal)."""
        gap = abs(self.f_input - self.f_baseline)
        return abs(self.delta) / gap if gap > 0 else float("inf")

    @property
    def ok(self) -> bool:
        """True within COMPLETENESS_TOLERANCE."""
        return self.relative <= COMPLETENESS_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"sum_attributions": self.total, "f_input": self.f_input, "f_baseline": self.f_baseline,
                "delta": self.delta, "relative": self.relative, "within_1_percent": self.ok}


def _title(method: str) -> str:
    from analyzers.methods import method_class

    return method_class(method).title


@dataclass(frozen=True, eq=False)
class Attribution:
    """An attribution map and everything a view or report says beside it."""

    method: str
    parameters: dict[str, Any]
    target: int
    target_label: str
    map: np.ndarray  # shaped like the input without the batch axis; one score per token for text
    input: ModelInput
    prediction: Prediction
    device: str
    framework: str
    seconds: float
    layer_map: np.ndarray | None = None
    delta: float | None = None
    completeness: Completeness | None = None
    forwards: int = 0
    request: AttributionRequest | None = None  # as run: target resolved, baselines filled in
    notes: tuple[str, ...] = ()  # what the user should know to read the map (e.g. it is zero everywhere)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The tokens the map scores (text inputs)."""
        return self.input.tokens[: self.map.shape[0]] if self.input.tokens and self.map.ndim == 1 else ()

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (without the map itself, which goes to .npy)."""
        out: dict[str, Any] = {
            "method": self.method, "method_title": _title(self.method), "parameters": self.parameters,
            "target": {"index": self.target, "label": self.target_label}, "device": self.device,
            "framework": self.framework, "seconds": self.seconds, "forward_passes": self.forwards,
            "map": {"shape": list(self.map.shape), "dtype": str(self.map.dtype), "sum": float(self.map.sum()),
                    "min": float(self.map.min()), "max": float(self.map.max())},
            "convergence_delta": self.delta,
            "notes": list(self.notes),
        }
        if self.completeness is not None:
            out["completeness"] = self.completeness.to_json()
        if self.tokens:
            out["tokens"] = [{"token": t, "score": float(s)} for t, s in zip(self.tokens, self.map)]
        return out

    def save_npy(self, path: Path | str) -> Path:
        """Write the raw map (input-shaped, no batch axis) to a .npy file."""
        path = Path(path)
        np.save(path, self.map)
        return path


def check_request(live: LiveModel, inp: ModelInput, request: AttributionRequest) -> AttributionRequest:
    """The request with its layer resolved, or one sentence saying why it cannot run on this model/input."""
    from analyzers.methods import method_class

    cls = method_class(request.method)
    text = live.is_text(inp)
    request = cls.validate(request, text)
    if request.baselines is None and request.params.get("baseline", "zero") not in BASELINES:
        raise LayerScopeError(f"Unknown baseline '{request.params['baseline']}'; use one of {', '.join(BASELINES)}.")
    names = {layer.path: layer for layer in live.layers()}
    layer = request.layer
    uses_layer = cls.uses_layer(request)
    if text:
        layer = layer or live.embedding_layer()
        if layer is None:
            raise LayerScopeError("This text model has no embedding layer LayerScope can find; pass --layer.")
    elif uses_layer:
        layer = layer or live.default_layer()
        if layer is None:
            raise LayerScopeError(f"{cls.title} needs a convolution layer and this model has none; pass --layer PATH.")
    if layer is not None and layer not in names:
        raise LayerScopeError(f"The model has no layer '{layer}'.")
    return replace(request, layer=layer if (text or uses_layer) else None)


def output_count(prediction: Prediction) -> int:
    """How many targets the attributed output has (classes, token positions, or output elements)."""
    if prediction.kind == "qa":
        return int(prediction.output.shape[-1])
    return max(1, int(np.prod(prediction.output.shape))) if prediction.output.shape else 1


def baseline_for(inp: ModelInput, kind: str, seed: int = 0) -> np.ndarray:
    """A batched baseline like `inp.array`: zeros, a black image after preprocessing, or seeded uniform noise."""
    x = np.asarray(inp.array)
    if kind == "black" and inp.preprocess is not None:
        pre = inp.preprocess
        pixel = 255.0 if pre.invert else 0.0
        mean = np.asarray(pre.mean, dtype=np.float32)
        std = np.asarray(pre.std, dtype=np.float32)
        value = (pixel * pre.scale - mean) / std  # per channel
        channels = pre.channels
        per_channel = np.broadcast_to(value, (channels,)).astype(np.float32)
        shape = (1, channels, 1, 1) if pre.layout == "NCHW" else (1, 1, 1, channels)
        return np.broadcast_to(per_channel.reshape(shape), x.shape).astype(x.dtype).copy()
    if kind == "uniform":
        rng = np.random.default_rng(seed)
        lo, hi = float(x.min()), float(x.max())
        return rng.uniform(lo, hi if hi > lo else lo + 1.0, size=x.shape).astype(x.dtype)
    return np.zeros_like(x)


def gradshap_baselines(inp: ModelInput, request: AttributionRequest, count: int = 10) -> np.ndarray:
    """GradientShap's baseline distribution: the chosen baseline plus `count - 1` seeded uniform-noise images."""
    first = baseline_for(inp, request.baseline, request.seed)
    noise = [baseline_for(inp, "uniform", request.seed + 1 + i) for i in range(count - 1)]
    return np.concatenate([first, *noise], axis=0)


def path_points(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) along the IG path, the same rules as Captum (Gauss-Legendre or Riemann sums)."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1 + nodes), 0.5 * weights
    if method not in ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        raise LayerScopeError(f"Unknown IG approximation '{method}'; use gausslegendre or riemann_left/right/"
                              "middle/trapezoid.")
    if n < 2:
        raise LayerScopeError("Riemann approximations need at least 2 steps.")
    weights = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0, 1, n), weights
    if method == "riemann_left":
        return np.linspace(0, 1 - 1 / n, n), weights
    if method == "riemann_middle":
        return np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n), weights
    return np.linspace(1 / n, 1, n), weights


def occlusion_window(shape: tuple[int, ...], layout: str, request: AttributionRequest, text: bool
                     ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Occlusion's (window, strides) per input dimension (no batch axis): squares over images, steps elsewhere."""
    if text:
        return (1,) * len(shape), (1,) * len(shape)
    if len(shape) == 3 and layout in ("NCHW", "NHWC"):
        h, w = (shape[1], shape[2]) if layout == "NCHW" else (shape[0], shape[1])
        win = request.window or max(2, min(h, w) // 7)
        stride = request.stride or max(1, win // 2)
        win = min(win, h, w)
        if layout == "NCHW":
            return (shape[0], win, win), (shape[0], stride, stride)
        return (win, win, shape[2]), (stride, stride, shape[2])
    win = min(request.window or 1, shape[0])
    stride = request.stride or max(1, win // 2) if request.window else 1
    return (win, *shape[1:]), (stride, *shape[1:])


def attribute(live: LiveModel, inp: ModelInput, request: AttributionRequest, token: CancelToken | None = None,
              top_k: int = 5) -> Steps[Attribution]:
    """Steps that compute one attribution map; cancellable through `token`."""
    check_input_fits(live.hint, inp, live.vocab_size())
    request = check_request(live, inp, request)
    yield Progress(0, None, "Predicting")
    prediction = live.predict(inp, top_k)
    target = prediction.target if request.target is None else int(request.target)
    count = output_count(prediction)
    if not 0 <= target < count:
        raise LayerScopeError(f"--target {target} is out of range: the model has {count} outputs (0 to {count - 1}).")
    request = replace(request, target=target)
    from analyzers.methods import method_class

    cls = method_class(request.method)
    needed = cls.baselines_needed(request)
    if request.baselines is None and not live.is_text(inp) and needed != "none":
        request = replace(request, baselines=gradshap_baselines(inp, request) if needed == "distribution"
                          else baseline_for(inp, request.baseline, request.seed))
    started = time.perf_counter()
    raw = yield from live.attribute(inp, request, token)
    seconds = time.perf_counter() - started
    attr = np.asarray(raw.attribution)[0]
    uses_layer = cls.uses_layer(request)
    if uses_layer and not live.is_text(inp) and attr.ndim != np.asarray(inp.array).ndim - 1:
        layer_shape = tuple(np.asarray(raw.layer_map).shape[1:]) if raw.layer_map is not None else attr.shape
        raise LayerScopeError(f"{cls.title} needs a layer whose output keeps the input's spatial axes (a convolution "
                              f"or pooling layer); '{request.layer}' gives a map of shape {layer_shape}, so pick a "
                              "convolution with --layer (or in the tree).")
    notes = (*raw.notes, *_map_notes(request, attr, uses_layer))
    if live.is_text(inp):
        if attr.ndim == 2:  # (L, D) embedding attributions -> one score per token
            attr = attr.sum(axis=-1)
        if inp.tokens:
            attr = attr[: len(inp.tokens)]
    completeness = None
    if raw.f_input is not None and raw.f_baseline is not None:
        completeness = Completeness(float(np.asarray(raw.attribution, dtype=np.float64).sum()), raw.f_input,
                                    raw.f_baseline, 0.0)
        completeness = replace(completeness, delta=completeness.total - (raw.f_input - raw.f_baseline))
    label = target_label(live, prediction, inp, target)
    return Attribution(request.method, raw.parameters, target, label, attr.astype(np.float32, copy=False), inp,
                       prediction, live.device, live.framework, seconds, raw.layer_map, raw.delta, completeness,
                       raw.forwards, request, notes)


def _map_notes(request: AttributionRequest, attr: np.ndarray, uses_layer: bool) -> tuple[str, ...]:
    """Notes that keep a user from misreading the map."""
    if attr.size and not np.any(attr):
        if uses_layer and request.params.get("relu", True):
            return (f"The map is zero everywhere: no location of '{request.layer}' raises the target's score. "
                    "Without the ReLU (--no-relu, or untick 'positive evidence only') the negative evidence shows.",)
        return ("The map is zero everywhere: the target's score does not change with this input "
                "(its gradient is zero, e.g. a saturated output).",)
    return ()


def target_label(live: LiveModel, prediction: Prediction, inp: ModelInput, target: int) -> str:
    """A readable name for the target: the class label, the token at a QA position, or where in the output it is."""
    if prediction.kind == "qa":
        return inp.tokens[target] if target < len(inp.tokens) else str(target)
    if prediction.kind == "classes" and len(prediction.top) == 1 and prediction.output.shape in ((), (1,)):
        return prediction.top[0].label  # a single sigmoid output: its score is the positive class's
    if prediction.kind == "classes" and target < len(live.labels):
        return live.labels[target]
    if prediction.kind == "raw":  # a flat index into an unlabeled output: say where it points
        return output_position(target, tuple(prediction.output.shape))
    return str(target)


def compute(live: LiveModel, inp: ModelInput, request: AttributionRequest) -> Attribution:
    """attribute() run to completion, without progress (scripts and tests)."""
    from analyzers.tasks import drive

    return drive(attribute(live, inp, request))


def token_mass(scores: np.ndarray, tokens: tuple[str, ...], words: set[str]) -> float:
    """Share of the absolute attribution that falls on `words` (how much the cue words carry)."""
    a = np.abs(np.asarray(scores, dtype=np.float64))
    total = float(a.sum())
    if total == 0:
        return 0.0
    hit = sum(float(a[i]) for i, t in enumerate(tokens) if t.lower().lstrip("#") in words)
    return hit / total
