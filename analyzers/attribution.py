"""Attribution maps for both frameworks behind one call: which input parts drove the model's answer.

`attribute(live, input, request)` validates the request, predicts, resolves the target (the predicted
class unless one is given), asks the live model's runtime for the map (Captum for PyTorch,
tf.GradientTape for Keras) and returns an `Attribution`: the raw map shaped like the input without
the batch axis (one score per token for text), the parameters actually used, and for Integrated
Gradients the completeness check (sum of attributions vs F(x) - F(baseline)).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.attribution_display import output_position
from analyzers.errors import LayerScopeError
from analyzers.inputs import ModelInput, check_input_fits
from analyzers.tasks import CancelToken, Progress, Steps

# `live` arguments are analyzers.runtime.LiveModel and `prediction` values analyzers.runtime.Prediction; this
# module does not import analyzers.runtime (which loads frameworks), so that widgets can use its plain data.
LiveModel = Any
Prediction = Any

# Gauss-Legendre with 64 points keeps IG's completeness error under 1% on the bundled CNNs (tested).
DEFAULT_IG_STEPS = 64
COMPLETENESS_TOLERANCE = 0.01
MAX_GAUSS_LEGENDRE_STEPS = 512  # numpy's leggauss is cubic in the step count (2048 points take ~30 s)
TEXT_METHODS = ("ig", "saliency", "occlusion")
BASELINES = ("zero", "black", "uniform")


@dataclass(frozen=True)
class MethodInfo:
    """What a method is called, what it computes, and what it needs."""

    key: str
    title: str
    summary: str
    captum: str  # the Captum class the PyTorch runtime calls
    text: bool  # applies to token inputs (through the embedding layer)
    needs_layer: bool = False


METHODS: dict[str, MethodInfo] = {m.key: m for m in (
    MethodInfo("saliency", "Saliency", "gradient of the target with respect to the input (absolute by default); "
               "for text, gradient x embedding per token", "Saliency / LayerGradientXActivation", True),
    MethodInfo("ig", "Integrated Gradients", "gradients integrated along the straight path from a baseline to the "
               "input; sums to F(x) - F(baseline)", "IntegratedGradients / LayerIntegratedGradients", True),
    MethodInfo("gradshap", "GradientShap", "expected gradients over random baselines and path points",
               "GradientShap", False),
    MethodInfo("occlusion", "Occlusion", "drop in the target when a sliding window (a token for text) is "
               "replaced by the baseline", "Occlusion", True),
    MethodInfo("gradcam", "Grad-CAM", "a convolution's activations weighted by their mean gradients, upsampled "
               "to the input", "LayerGradCam", False, needs_layer=True),
    MethodInfo("smoothgrad", "SmoothGrad", "a base method averaged over noisy copies of the input (NoiseTunnel)",
               "NoiseTunnel", False),
)}


@dataclass(frozen=True)
class AttributionRequest:
    """One attribution to compute and its parameters; unset ones take documented defaults."""

    method: str
    target: int | None = None  # class index (flattened output index for raw outputs); None = predicted
    steps: int = DEFAULT_IG_STEPS  # IG path points
    ig_method: str = "gausslegendre"  # Captum's IG approximation
    baseline: str = "zero"  # "zero" | "black" (a black image after preprocessing) | "uniform" (seeded noise)
    internal_batch_size: int | None = 16  # path points per forward pass (memory bound, and cancel granularity)
    abs: bool = True  # saliency: absolute gradients, as Captum's default
    samples: int = 20  # GradientShap samples
    stdevs: float = 0.0  # GradientShap noise on the samples
    window: int | None = None  # occlusion window (pixels / steps); None = about 1/7 of the image side
    stride: int | None = None  # occlusion stride; None = half the window
    layer: str | None = None  # Grad-CAM layer (default: the last convolution); text: the embedding layer
    relu: bool = True  # Grad-CAM: keep positive evidence only, as in the paper
    smooth_base: str = "saliency"  # the method SmoothGrad averages
    smooth_samples: int = 10
    smooth_noise: float = 0.15  # noise sigma as a fraction of the input's range (max - min), as in the paper
    qa_output: str = "start"  # QA models: attribute the answer's "start" or "end" logit
    seed: int = 0  # seeds every random draw (baselines, noise)
    baselines: np.ndarray | None = field(default=None, compare=False)  # explicit baselines, batch axis first

    def parameters(self) -> dict[str, Any]:
        """The parameters that matter for this method (JSON-able), as reports show them."""
        keys = {
            "saliency": ("abs",),
            "ig": ("steps", "ig_method", "baseline", "internal_batch_size"),
            "gradshap": ("samples", "stdevs", "baseline", "seed"),
            "occlusion": ("window", "stride", "baseline"),
            "gradcam": ("layer", "relu"),
            "smoothgrad": ("smooth_base", "smooth_samples", "smooth_noise", "seed"),
        }[self.method]
        out = {k: getattr(self, k) for k in keys}
        if self.method == "smoothgrad":
            out.update({k: v for k, v in replace(self, method=self.smooth_base).parameters().items() if k not in out})
        return out


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
            "method": self.method, "method_title": METHODS[self.method].title, "parameters": self.parameters,
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


def method_info(method: str) -> MethodInfo:
    """The MethodInfo of `method`, or one sentence listing the known ones."""
    info = METHODS.get(method)
    if info is None:
        raise LayerScopeError(f"Unknown attribution method '{method}'; use one of {', '.join(METHODS)}.")
    return info


def check_request(live: LiveModel, inp: ModelInput, request: AttributionRequest) -> AttributionRequest:
    """The request with its layer resolved, or one sentence saying why it cannot run on this model/input."""
    method_info(request.method)
    text = live.is_text(inp)
    if request.method == "smoothgrad":
        if request.smooth_base == "smoothgrad":
            raise LayerScopeError("SmoothGrad cannot average itself; pick another base method.")
        method_info(request.smooth_base)
    if text and request.method not in TEXT_METHODS:
        raise LayerScopeError(f"{METHODS[request.method].title} needs continuous inputs; for text use "
                              "ig, saliency or occlusion (over the token embeddings).")
    if request.steps < 1 or request.samples < 1 or request.smooth_samples < 1:
        raise LayerScopeError("Steps and sample counts must be at least 1.")
    if request.ig_method == "gausslegendre" and request.steps > MAX_GAUSS_LEGENDRE_STEPS:
        raise LayerScopeError(f"Gauss-Legendre IG takes at most {MAX_GAUSS_LEGENDRE_STEPS} steps; for more, use a "
                              "Riemann rule (ig_method riemann_trapezoid).")
    if request.baseline not in BASELINES:
        raise LayerScopeError(f"Unknown baseline '{request.baseline}'; use one of {', '.join(BASELINES)}.")
    names = {layer.path: layer for layer in live.layers()}
    layer = request.layer
    uses_layer = request.method == "gradcam" or (request.method == "smoothgrad" and request.smooth_base == "gradcam")
    if text:
        layer = layer or live.embedding_layer()
        if layer is None:
            raise LayerScopeError("This text model has no embedding layer LayerScope can find; pass --layer.")
    elif uses_layer:
        layer = layer or live.default_layer()
        if layer is None:
            raise LayerScopeError("Grad-CAM needs a convolution layer and this model has none; pass --layer PATH.")
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
    if request.baselines is None and not live.is_text(inp):
        uses_shap = request.method == "gradshap" or (request.method == "smoothgrad" and request.smooth_base == "gradshap")
        request = replace(request, baselines=gradshap_baselines(inp, request) if uses_shap
                          else baseline_for(inp, request.baseline, request.seed))
    started = time.perf_counter()
    raw = yield from live.attribute(inp, request, token)
    seconds = time.perf_counter() - started
    attr = np.asarray(raw.attribution)[0]
    uses_layer = "gradcam" in (request.method, request.smooth_base if request.method == "smoothgrad" else "")
    if uses_layer and not live.is_text(inp) and attr.ndim != np.asarray(inp.array).ndim - 1:
        layer_shape = tuple(np.asarray(raw.layer_map).shape[1:]) if raw.layer_map is not None else attr.shape
        raise LayerScopeError(f"Grad-CAM needs a layer whose output keeps the input's spatial axes (a convolution "
                              f"or pooling layer); '{request.layer}' gives a map of shape {layer_shape}, so pick a "
                              "convolution with --layer (or in the tree).")
    notes = _map_notes(request, attr)
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


def _map_notes(request: AttributionRequest, attr: np.ndarray) -> tuple[str, ...]:
    """Notes that keep a user from misreading the map."""
    if attr.size and not np.any(attr):
        base = request.smooth_base if request.method == "smoothgrad" else ""
        if "gradcam" in (request.method, base) and request.relu:
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
