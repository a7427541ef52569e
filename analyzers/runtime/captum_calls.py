"""The Captum call behind each attribution method, built once and run by the torch runtime in a thread.

Every method is exactly the Captum call a user would write by hand (tests compare against that call):
Saliency, IntegratedGradients, GradientShap, Occlusion, LayerGradCam and NoiseTunnel(smoothgrad); for
token inputs LayerIntegratedGradients / LayerGradientXActivation over the embedding, and Occlusion of
single tokens. Random draws (GradientShap, SmoothGrad) are seeded inside a forked RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analyzers.attribution import AttributionRequest, RawAttribution, occlusion_window
from analyzers.errors import LayerScopeError
from analyzers.inputs import ModelInput


@dataclass
class CallPlan:
    """A ready Captum call: what to run, what it costs, and how to read its result."""

    run: Callable[[], Any]
    expected_forwards: int
    parameters: dict[str, Any]
    layer_module: Any = None
    baseline_for_completeness: torch.Tensor | None = None
    post: Callable[[Any], tuple[torch.Tensor, torch.Tensor | None, float | None]] = field(default=None)  # type: ignore[assignment]

    def finish(self, result: Any, f_input: float | None, f_baseline: float | None, forwards: int) -> RawAttribution:
        """The Captum result as a RawAttribution (numpy, batch axis kept)."""
        attr, layer_map, delta = self.post(result)
        if delta is not None and not np.isfinite(delta) and f_input is not None and f_baseline is not None:
            # Captum evaluates F at the baseline *ids*; a model that masks on ids (all padding) can give NaN
            # there, while the path LayerIntegratedGradients integrates starts at the baseline embeddings.
            delta = float(attr.detach().double().sum()) - (f_input - f_baseline)
        return RawAttribution(_np(attr), self.parameters, _np(layer_map) if layer_map is not None else None, delta,
                              f_input, f_baseline, forwards)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _plain(result: Any) -> tuple[torch.Tensor, None, None]:
    return result, None, None


def _with_delta(result: Any) -> tuple[torch.Tensor, None, float]:
    attr, delta = result
    return attr, None, float(delta.reshape(-1)[0])


def seeded(call: Callable[[], Any], seed: int, device: torch.device) -> Callable[[], Any]:
    """`call` with torch's and numpy's global RNGs seeded (Captum draws from both), restored afterwards."""

    def run() -> Any:
        devices = [device.index or 0] if device.type == "cuda" else []
        state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                np.random.seed(seed)
                return call()
        finally:
            np.random.set_state(state)

    return run


def smooth_sigma(x: torch.Tensor, fraction: float) -> float:
    """SmoothGrad's noise: `fraction` of the input's range (Smilkov et al. use 10-20%)."""
    span = float(x.detach().max() - x.detach().min())
    return fraction * (span if span > 0 else 1.0)


def build_call(live: Any, fwd: Callable[..., torch.Tensor], x: torch.Tensor, extra: tuple | None, inp: ModelInput,
               req: AttributionRequest, text: bool) -> CallPlan:
    """The Captum call for `req` on `x` (target resolved)."""
    from analyzers.runtime.torch_runtime import expected_forwards

    if text:
        return _text_call(live, fwd, x, extra, inp, req)
    import captum.attr as ca

    params = req.parameters()
    baselines = torch.as_tensor(np.asarray(req.baselines)).to(x.device, x.dtype) if req.baselines is not None \
        else torch.zeros_like(x)
    if req.method == "smoothgrad":
        base_obj, base_kwargs, layer = _base(live, fwd, x, extra, inp, req.smooth_base, req, baselines, params)
        if req.smooth_base == "gradshap":  # NoiseTunnel brings the noise; GradientShap's own stdevs would clash
            base_kwargs.pop("stdevs", None)
            params.pop("stdevs", None)
        sigma = smooth_sigma(x, req.smooth_noise)
        params["stdevs"] = sigma
        nt = ca.NoiseTunnel(base_obj)
        from_distribution = req.smooth_base == "gradshap"  # GradientShap's baselines are a distribution
        call = seeded(lambda: nt.attribute(x, nt_type="smoothgrad", nt_samples=req.smooth_samples, stdevs=sigma,
                                           draw_baseline_from_distrib=from_distribution, **base_kwargs),
                      req.seed, x.device)
        post = _gradcam_post(x) if req.smooth_base == "gradcam" else _plain
        return CallPlan(call, expected_forwards(req, _windows(x, inp, req)), params, layer, post=post)
    obj, kwargs, layer = _base(live, fwd, x, extra, inp, req.method, req, baselines, params)
    if req.method == "ig":
        call = lambda: obj.attribute(x, return_convergence_delta=True, **kwargs)  # noqa: E731
        return CallPlan(call, expected_forwards(req), params, None, baselines, _with_delta)
    if req.method == "gradshap":
        call = seeded(lambda: obj.attribute(x, **kwargs), req.seed, x.device)
        return CallPlan(call, expected_forwards(req), params, None, post=_plain)
    post = _gradcam_post(x) if req.method == "gradcam" else _plain
    return CallPlan(lambda: obj.attribute(x, **kwargs), expected_forwards(req, _windows(x, inp, req)), params,
                    layer, post=post)


def _base(live: Any, fwd: Callable, x: torch.Tensor, extra: tuple | None, inp: ModelInput, method: str,
          req: AttributionRequest, baselines: torch.Tensor, params: dict[str, Any]) -> tuple[Any, dict, Any]:
    """(Captum object, attribute() keyword arguments, hooked layer) for one non-text method."""
    import captum.attr as ca

    common = {"target": req.target, "additional_forward_args": extra}
    if method == "saliency":
        return ca.Saliency(fwd), {**common, "abs": req.abs}, None
    if method == "ig":
        return ca.IntegratedGradients(fwd), {**common, "baselines": baselines, "n_steps": req.steps,
                                             "method": req.ig_method,
                                             "internal_batch_size": req.internal_batch_size}, None
    if method == "gradshap":
        return ca.GradientShap(fwd), {**common, "baselines": baselines, "n_samples": req.samples,
                                      "stdevs": req.stdevs}, None
    if method == "occlusion":
        win, stride = occlusion_window(tuple(x.shape[1:]), inp.layout, req, False)
        params["window_shape"], params["strides"] = list(win), list(stride)
        params["window"], params["stride"] = (win[1], stride[1]) if inp.layout == "NCHW" else (win[0], stride[0])
        params["internal_batch_size"] = req.internal_batch_size
        return ca.Occlusion(fwd), {**common, "sliding_window_shapes": win, "strides": stride,
                                   "baselines": baselines,
                                   "perturbations_per_eval": req.internal_batch_size or 1}, None
    if method == "gradcam":
        layer = live.submodule(req.layer)
        params["layer"] = req.layer
        return ca.LayerGradCam(fwd, layer), {**common, "relu_attributions": req.relu}, layer
    raise LayerScopeError(f"Unknown attribution method '{method}'.")


def _windows(x: torch.Tensor, inp: ModelInput, req: AttributionRequest) -> int:
    if "occlusion" not in (req.method, req.smooth_base):
        return 1
    shape = tuple(x.shape[1:])
    win, stride = occlusion_window(shape, inp.layout, req, False)
    count = 1
    for s, w, st in zip(shape, win, stride):
        count *= (s - w) // st + 1
    return count


def _gradcam_post(x: torch.Tensor) -> Callable[[Any], tuple[torch.Tensor, torch.Tensor, None]]:
    """Upsample a (B, 1, h, w) layer map to the input's spatial size (bilinear), keeping the raw map."""

    def post(layer_map: Any) -> tuple[torch.Tensor, torch.Tensor, None]:
        from captum.attr import LayerAttribution

        modes = {3: "linear", 4: "bilinear", 5: "trilinear"}
        if layer_map.ndim == x.ndim and x.ndim in modes:
            up = LayerAttribution.interpolate(layer_map, tuple(x.shape[2:]), interpolate_mode=modes[x.ndim])
        else:
            up = layer_map
        return up, layer_map, None

    return post


def _text_call(live: Any, fwd: Callable, x: torch.Tensor, extra: tuple | None, inp: ModelInput,
               req: AttributionRequest) -> CallPlan:
    """Token inputs: attributions over the embedding layer (one vector per token), or token occlusion."""
    import captum.attr as ca

    from analyzers.runtime.torch_runtime import expected_forwards

    layer = live.submodule(req.layer)
    base_ids = torch.as_tensor(np.asarray(inp.baseline_ids)).to(x.device, x.dtype) if inp.baseline_ids is not None \
        else torch.zeros_like(x)
    params = req.parameters()
    params["layer"] = req.layer
    params["baseline"] = "padding tokens (special tokens kept)"
    common = {"target": req.target, "additional_forward_args": extra}
    if req.method == "ig":
        lig = ca.LayerIntegratedGradients(fwd, layer)
        call = lambda: lig.attribute(x, baselines=base_ids, n_steps=req.steps, method=req.ig_method,  # noqa: E731
                                     internal_batch_size=req.internal_batch_size, return_convergence_delta=True,
                                     **common)
        return CallPlan(call, expected_forwards(req), params, layer, base_ids, _with_delta)
    if req.method == "saliency":
        params.pop("abs", None)
        params["variant"] = "gradient x embedding (LayerGradientXActivation)"
        lgx = ca.LayerGradientXActivation(fwd, layer)
        return CallPlan(lambda: lgx.attribute(x, **common), 1, params, layer, post=_plain)
    if req.method == "occlusion":
        params.update({"window_shape": [1], "strides": [1], "internal_batch_size": req.internal_batch_size})
        occ = ca.Occlusion(fwd)
        call = lambda: occ.attribute(x, sliding_window_shapes=(1,), strides=(1,), baselines=base_ids,  # noqa: E731
                                     perturbations_per_eval=req.internal_batch_size or 1, **common)
        return CallPlan(call, expected_forwards(req, int(x.shape[1])), params, None, post=_plain)
    raise LayerScopeError(f"{req.method} does not apply to text; use ig, saliency or occlusion.")
