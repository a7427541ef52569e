"""Grad-CAM (Selvaraju et al. 2017): a convolution's activations weighted by their mean gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzers.methods import register
from analyzers.methods.base import KerasCall, Method, Param, TorchCall
from analyzers.tasks import Progress, Steps


@register
class GradCamMethod(Method):
    """ReLU(Σ_channels mean(∂F/∂A) · A) at a layer, upsampled to the input."""

    key = "gradcam"
    title = "Grad-CAM"
    order = 50
    summary = "a convolution's activations weighted by their mean gradients, upsampled to the input"
    captum = "LayerGradCam"
    needs_layer = True
    relu = Param(True, "positive evidence only (ReLU)", off_flag="--no-relu")

    @classmethod
    def default_sign(cls, parameters: Mapping[str, Any]) -> str:
        """After the ReLU only positive evidence is left."""
        return "positive" if parameters.get("relu", True) else "all"

    @classmethod
    def parameters(cls, request: Any) -> dict[str, Any]:
        """The layer it hooks and whether the ReLU applies."""
        return {"layer": request.layer, **cls.values(request)}

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.LayerGradCam at the chosen layer."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import common_kwargs

        layer = call.live.submodule(call.request.layer)
        call.params["layer"] = call.request.layer
        return ca.LayerGradCam(call.fwd, layer), {**common_kwargs(call), "relu_attributions": call.params["relu"]}, \
            layer

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """Grad-CAM as Captum's LayerGradCam (channels last), upsampled bilinearly."""
        import tensorflow as tf

        request, live = call.request, call.live
        layer = live.layer(request.layer or "")
        call.params["layer"] = request.layer
        act, g = live.layer_gradients(x, layer, int(request.target or 0))
        call.counter[0] += 1
        yield Progress(1, 1, "Grad-CAM")
        spatial = tuple(range(1, act.ndim - 1))
        weights = g.mean(axis=spatial, keepdims=True)
        cam = (weights * act).sum(axis=-1, keepdims=True)
        if call.params.get("relu", True):
            cam = np.maximum(cam, 0.0)
        if cam.ndim == 4 and x.ndim == 4:
            up = tf.image.resize(cam, x.shape[1:3], method="bilinear").numpy()
        elif cam.ndim == 3 and x.ndim == 3:
            up = tf.image.resize(cam[:, :, None, :], (x.shape[1], 1), method="bilinear").numpy()[:, :, 0, :]
        else:
            up = cam
        return up.astype(np.float32), cam.astype(np.float32)
