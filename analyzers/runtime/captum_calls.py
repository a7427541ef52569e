"""What every method's Captum call shares: the ready-call plan, seeding, result reading, the text layer.

Each method builds exactly the Captum call a user would write by hand (analyzers/methods/, one file
per method; tests compare against that call). This module turns a request into the method's plan
(`build_call`) and holds the pieces the methods share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analyzers.errors import LayerScopeError
from analyzers.explain.attribution import AttributionRequest, RawAttribution
from analyzers.explain.inputs import ModelInput
from analyzers.methods import TorchCall, method_class


@dataclass
class CallPlan:
    """A ready Captum call: what to run, what it costs, and how to read its result."""

    run: Callable[[], Any]
    expected_forwards: int
    parameters: dict[str, Any]
    layer_module: Any = None
    baseline_for_completeness: torch.Tensor | None = None
    post: Callable[[Any], tuple[torch.Tensor, torch.Tensor | None, float | None]] = field(default=None)  # type: ignore[assignment]
    notes: list[str] = field(default_factory=list)  # the method's notes about this map

    def finish(self, result: Any, f_input: float | None, f_baseline: float | None, forwards: int) -> RawAttribution:
        """The Captum result as a RawAttribution (numpy, batch axis kept)."""
        attr, layer_map, delta = self.post(result)
        if delta is not None and not np.isfinite(delta) and f_input is not None and f_baseline is not None:
            # Captum evaluates F at the baseline *ids*; a model that masks on ids (all padding) can give NaN
            # there, while the path LayerIntegratedGradients integrates starts at the baseline embeddings.
            delta = float(attr.detach().double().sum()) - (f_input - f_baseline)
        return RawAttribution(_np(attr), self.parameters, _np(layer_map) if layer_map is not None else None, delta,
                              f_input, f_baseline, forwards, tuple(self.notes))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def plain(result: Any) -> tuple[torch.Tensor, None, None]:
    """Read a result that is the map itself."""
    return result, None, None


def with_delta(result: Any) -> tuple[torch.Tensor, None, float]:
    """Read an (attributions, convergence delta) result."""
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


def common_kwargs(call: TorchCall) -> dict[str, Any]:
    """The attribute() arguments every method passes: the target and the further forward arguments."""
    return {"target": call.request.target, "additional_forward_args": call.extra}


def gradcam_post(x: torch.Tensor) -> Callable[[Any], tuple[torch.Tensor, torch.Tensor, None]]:
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


class _ScoreModule(torch.nn.Module):
    """The live module as Captum's DeepLift / GuidedBackprop want it: an nn.Module whose output is the
    target's scores, with the real module registered inside so their hooks reach its layers."""

    def __init__(self, inner: torch.nn.Module, fwd: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self._fwd = fwd

    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return self._fwd(x, *extra)


NONLINEAR_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "Softplus",
                     "Hardtanh", "Mish")


def as_module(call: TorchCall) -> torch.nn.Module:
    """The forward function as an nn.Module around the live module (methods that hook its non-linearities).

    Those methods can only change non-linearities that are modules: a model that calls torch.relu in its
    forward gets a note saying the map is then closer to a plain gradient."""
    module = call.live.module
    title = method_class(call.request.method).title
    if isinstance(module, torch.jit.ScriptModule):
        raise LayerScopeError(f"{title} hooks the model's layers, and TorchScript modules do not support hooks; open "
                              "the model as a full module or a state_dict with --arch.")
    if not any(type(m).__name__ in NONLINEAR_MODULES for m in module.modules()):
        call.notes.append(f"This model applies its activations as functions (e.g. torch.relu in forward), not as "
                          f"modules; {title} can only rewrite activation modules, so here its map follows the plain "
                          "gradient more than the method intends.")
    return _ScoreModule(module, call.fwd)


def text_layer(call: TorchCall) -> tuple[Any, torch.Tensor]:
    """The embedding layer a text attribution integrates over, and the baseline token ids (padding)."""
    inp = call.inp
    layer = call.live.submodule(call.request.layer)
    base_ids = torch.as_tensor(np.asarray(inp.baseline_ids)).to(call.x.device, call.x.dtype) \
        if inp.baseline_ids is not None else torch.zeros_like(call.x)
    return layer, base_ids


def build_call(live: Any, fwd: Callable[..., torch.Tensor], x: torch.Tensor, extra: tuple | None, inp: ModelInput,
               req: AttributionRequest, text: bool) -> CallPlan:
    """The Captum call of `req`'s method on `x` (target resolved)."""
    cls = method_class(req.method)
    if cls.torch_unavailable:
        raise LayerScopeError(cls.torch_unavailable)
    params = cls.parameters(req)
    if text:
        params["layer"] = req.layer
        params["baseline"] = "padding tokens (special tokens kept)"
        call = TorchCall(live, fwd, x, extra, inp, req, None, params)
        return _with_notes(cls.torch_text_plan(call), call)
    baselines = torch.as_tensor(np.asarray(req.baselines)).to(x.device, x.dtype) if req.baselines is not None \
        else torch.zeros_like(x)
    call = TorchCall(live, fwd, x, extra, inp, req, baselines, params)
    return _with_notes(cls.torch_plan(call) or plain_plan(cls, call), call)


def _with_notes(plan: CallPlan, call: TorchCall) -> CallPlan:
    plan.notes.extend(n for n in call.notes if n not in plan.notes)
    return plan


def plain_plan(cls: Any, call: TorchCall) -> CallPlan:
    """The Captum object of a method run as it is (upsampled to the input when it hooks a layer)."""
    from analyzers.methods.base import call_windows

    obj, kwargs, layer = cls.captum_object(call)
    post = gradcam_post(call.x) if layer is not None else plain
    return CallPlan(lambda: obj.attribute(call.x, **kwargs), cls.forwards(call.request, call_windows(call)),
                    call.params, layer, post=post)
