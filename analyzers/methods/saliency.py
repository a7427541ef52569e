"""Saliency (Simonyan et al. 2014): the gradient of the target with respect to the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzers.methods import register
from analyzers.methods.base import KerasCall, Method, Param, TorchCall
from analyzers.tasks import Progress, Steps


@register
class SaliencyMethod(Method):
    """|∂F/∂x| (or the signed gradient); for text, gradient × embedding per token."""

    key = "saliency"
    title = "Saliency"
    order = 10
    summary = ("gradient of the target with respect to the input (absolute by default); for text, gradient x "
               "embedding per token")
    captum = "Saliency / LayerGradientXActivation"
    text = True
    abs = Param(True, "absolute gradients", off_flag="--signed-saliency")

    @classmethod
    def default_sign(cls, parameters: Mapping[str, Any]) -> str:
        """Absolute gradients read best as magnitudes."""
        return "absolute" if parameters.get("abs", False) else "all"

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.Saliency on the forward function."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import common_kwargs

        return ca.Saliency(call.fwd), {**common_kwargs(call), "abs": call.params["abs"]}, None

    @classmethod
    def torch_text_plan(cls, call: TorchCall) -> Any:
        """Gradient × embedding at the embedding layer (LayerGradientXActivation)."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import CallPlan, common_kwargs, plain, text_layer

        layer, _ = text_layer(call)
        call.params.pop("abs", None)
        call.params["variant"] = "gradient x embedding (LayerGradientXActivation)"
        lgx = ca.LayerGradientXActivation(call.fwd, layer)
        return CallPlan(lambda: lgx.attribute(call.x, **common_kwargs(call)), 1, call.params, layer, post=plain)

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """The gradient from a GradientTape, absolute unless asked otherwise."""
        g, _ = call.live.gradients(x, int(call.request.target or 0))
        call.counter[0] += 1
        yield Progress(1, 1, "Saliency")
        return (np.abs(g) if call.params.get("abs", True) else g), None

    @classmethod
    def keras_text_run(cls, call: KerasCall, layer: Any, ids: np.ndarray, base_ids: np.ndarray) -> Steps[Any]:
        """Gradient × embedding per token."""
        from analyzers.explain.attribution import RawAttribution

        emb = np.asarray(layer(ids), dtype=np.float32)
        call.params.pop("abs", None)
        call.params["variant"] = "gradient x embedding"
        g, _ = call.live.embedding_gradients(ids, emb, layer, int(call.request.target or 0))
        yield Progress(1, 1, "Saliency")
        return RawAttribution((g * emb).astype(np.float32), call.params, None, None, None, None, 1)
