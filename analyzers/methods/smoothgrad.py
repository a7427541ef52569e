"""SmoothGrad (Smilkov et al. 2017): a base method averaged over noisy copies of the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError
from analyzers.methods import method_class, register
from analyzers.methods.base import KerasCall, Method, Param, TorchCall
from analyzers.tasks import Progress, Steps


@register
class SmoothGradMethod(Method):
    """Mean over n copies x + N(0, σ²) of the base method's map; σ a fraction of the input's range."""

    key = "smoothgrad"
    title = "SmoothGrad"
    order = 60
    summary = "a base method averaged over noisy copies of the input (NoiseTunnel)"
    captum = "NoiseTunnel"
    uses_seed = True
    smooth_base = Param("saliency", "the method averaged over the noisy copies", "Base method", kind="method")
    smooth_samples = Param(10, "noisy copies", "Noisy copies", minimum=1, maximum=10_000)
    smooth_noise = Param(0.15, "noise sigma as a fraction of the input's range (max - min)", "Noise (× range)",
                         minimum=0.0, maximum=5.0, step=0.05, flag="--noise")

    @classmethod
    def base(cls, request: Any) -> type[Method]:
        """The method SmoothGrad averages."""
        return method_class(cls.values(request)["smooth_base"])

    @classmethod
    def validate(cls, request: Any, text: bool) -> Any:
        """The base must be another method that runs on continuous inputs."""
        request = super().validate(request, text)
        base = cls.base(request)
        if base is cls:
            raise LayerScopeError("SmoothGrad cannot average itself; pick another base method.")
        return base.validate(request, text)

    @classmethod
    def parameters(cls, request: Any) -> dict[str, Any]:
        """Its own parameters, then the base method's."""
        out = super().parameters(request)
        out.update({k: v for k, v in cls.base(request).parameters(request).items() if k not in out})
        return out

    @classmethod
    def default_sign(cls, parameters: Mapping[str, Any]) -> str:
        """As its base method's map."""
        return method_class(str(parameters.get("smooth_base", "saliency"))).default_sign(parameters)

    @classmethod
    def uses_layer(cls, request: Any) -> bool:
        """When its base hooks a layer."""
        return cls.base(request).uses_layer(request)

    @classmethod
    def baselines_needed(cls, request: Any) -> str:
        """As its base method."""
        return cls.base(request).baselines_needed(request)

    @classmethod
    def forwards(cls, request: Any, windows: int = 1) -> int:
        """The base's passes, once per noisy copy."""
        return cls.values(request)["smooth_samples"] * cls.base(request).forwards(request, windows) + 2

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """captum.attr.NoiseTunnel(smoothgrad) over the base method's Captum object, seeded."""
        import captum.attr as ca

        from analyzers.methods.base import call_windows
        from analyzers.runtime.captum_calls import CallPlan, gradcam_post, plain, seeded, smooth_sigma

        base = cls.base(call.request)
        obj, kwargs, layer = base.captum_object(call)
        if base.baseline_distribution:  # NoiseTunnel brings the noise; GradientShap's own stdevs would clash
            kwargs.pop("stdevs", None)
            call.params.pop("stdevs", None)
        p = call.params
        sigma = smooth_sigma(call.x, p["smooth_noise"])
        p["stdevs"] = sigma
        nt = ca.NoiseTunnel(obj)
        run = seeded(lambda: nt.attribute(call.x, nt_type="smoothgrad", nt_samples=p["smooth_samples"], stdevs=sigma,
                                          draw_baseline_from_distrib=base.baseline_distribution, **kwargs),
                     call.request.seed, call.x.device)
        post = gradcam_post(call.x) if layer is not None else plain
        return CallPlan(run, cls.forwards(call.request, call_windows(call)), p, layer, post=post)

    @classmethod
    def keras_run(cls, call: KerasCall) -> Steps[Any]:
        """The base method's GradientTape map on each noisy copy, averaged."""
        from analyzers.explain.attribution import RawAttribution

        base = cls.base(call.request)
        p, x = call.params, call.x
        rng = np.random.default_rng(call.request.seed)
        span = float(x.max() - x.min())
        sigma = p["smooth_noise"] * (span if span > 0 else 1.0)
        p["stdevs"] = sigma
        n = p["smooth_samples"]
        total, layer_total = None, None
        for k in range(n):
            if call.token is not None:
                call.token.raise_if_cancelled()
            yield Progress(k, n, f"SmoothGrad sample {k + 1} of {n}")
            noisy = (x + rng.normal(0.0, sigma, x.shape)).astype(np.float32)
            attr, layer_map = yield from base.keras_map(call, noisy)
            total = attr if total is None else total + attr
            if layer_map is not None:
                layer_total = layer_map if layer_total is None else layer_total + layer_map
        return RawAttribution(total / n, p, None if layer_total is None else layer_total / n, None, None, None,
                              call.counter[0])
