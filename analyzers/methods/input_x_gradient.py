"""Input × Gradient (Shrikumar et al. 2016): the input times the target's gradient, feature by feature."""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzers.methods import register
from analyzers.methods.base import KerasCall, Method, TorchCall
from analyzers.tasks import Progress, Steps


@register
class InputXGradientMethod(Method):
    """x ⊙ ∂F/∂x: first-order Taylor contribution of each feature; for text, per token embedding."""

    key = "inputxgradient"
    title = "Input × Gradient"
    order = 15
    summary = "the input times the target's gradient (a first-order Taylor contribution per feature)"
    captum = "InputXGradient / LayerGradientXActivation"
    text = True

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.InputXGradient on the forward function."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import common_kwargs

        return ca.InputXGradient(call.fwd), common_kwargs(call), None

    @classmethod
    def torch_text_plan(cls, call: TorchCall) -> Any:
        """The token embeddings times their gradient (LayerGradientXActivation at the embedding layer)."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import CallPlan, common_kwargs, plain, text_layer

        layer, _ = text_layer(call)
        lgx = ca.LayerGradientXActivation(call.fwd, layer)
        return CallPlan(lambda: lgx.attribute(call.x, **common_kwargs(call)), 1, call.params, layer, post=plain)

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """x times the GradientTape gradient."""
        g, _ = call.live.gradients(x, int(call.request.target or 0))
        call.counter[0] += 1
        yield Progress(1, 1, "Input × Gradient")
        return (np.asarray(x, dtype=np.float32) * g).astype(np.float32), None

    @classmethod
    def keras_text_run(cls, call: KerasCall, layer: Any, ids: np.ndarray, base_ids: np.ndarray) -> Steps[Any]:
        """Embedding times its gradient, per token."""
        from analyzers.explain.attribution import RawAttribution

        emb = np.asarray(layer(ids), dtype=np.float32)
        g, _ = call.live.embedding_gradients(ids, emb, layer, int(call.request.target or 0))
        yield Progress(1, 1, "Input × Gradient")
        return RawAttribution((g * emb).astype(np.float32), call.params, None, None, None, None, 1)
