"""Guided Backpropagation (Springenberg et al. 2015): gradients with negative signals stopped at every ReLU."""

from __future__ import annotations

from typing import Any

from analyzers.methods import register
from analyzers.methods.base import Method, TorchCall


@register
class GuidedBackpropMethod(Method):
    """The input gradient where each ReLU passes back only positive gradients of positive activations."""

    key = "guidedbackprop"
    title = "Guided Backprop"
    order = 55
    summary = "gradients where every ReLU passes back only positive signals (sharp, class-insensitive detail)"
    captum = "GuidedBackprop"
    keras_unavailable = ("Guided Backprop replaces the backward pass of a PyTorch module's ReLU layers, which a "
                         "Keras model does not expose here; use Saliency or Grad-CAM.")

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.GuidedBackprop on the live module (its nn.ReLU layers are overridden during the call)."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import as_module, common_kwargs

        return ca.GuidedBackprop(as_module(call)), common_kwargs(call), None
