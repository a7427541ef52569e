"""Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop's detail masked by Grad-CAM's coarse map."""

from __future__ import annotations

from typing import Any

from analyzers.methods import register
from analyzers.methods.base import Method, TorchCall


@register
class GuidedGradCamMethod(Method):
    """Guided Backprop ⊙ Grad-CAM upsampled to the input: fine detail where the layer saw evidence."""

    key = "guidedgradcam"
    title = "Guided Grad-CAM"
    order = 52
    summary = "Guided Backprop multiplied by Grad-CAM at a layer: fine detail where the layer found evidence"
    captum = "GuidedGradCam"
    needs_layer = True
    keras_unavailable = ("Guided Grad-CAM needs Guided Backprop, which replaces the backward pass of a PyTorch "
                         "module's ReLU layers that a Keras model does not expose here; use Grad-CAM.")

    @classmethod
    def parameters(cls, request: Any) -> dict[str, Any]:
        """The layer whose Grad-CAM masks the guided gradients."""
        return {"layer": request.layer}

    @classmethod
    def forwards(cls, request: Any, windows: int = 1) -> int:
        """One pass for Grad-CAM, one for Guided Backprop."""
        return 2

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.GuidedGradCam at the chosen layer; its result already has the input's shape."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import as_module, common_kwargs

        layer = call.live.submodule(call.request.layer)
        call.params["layer"] = call.request.layer
        return ca.GuidedGradCam(as_module(call), layer), common_kwargs(call), None

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """The plain call: no upsampling to do, the product is input-shaped."""
        from analyzers.runtime.captum_calls import CallPlan, plain

        obj, kwargs, _ = cls.captum_object(call)
        layer = call.live.submodule(call.request.layer)
        return CallPlan(lambda: obj.attribute(call.x, **kwargs), cls.forwards(call.request), call.params, layer,
                        post=plain)
