"""DeepLIFT (Shrikumar et al. 2017, rescale rule): differences from a reference propagated through the net."""

from __future__ import annotations

from typing import Any

from analyzers.methods import register
from analyzers.methods.base import Method, Param, TorchCall
from analyzers.methods.integrated_gradients import BASELINES


@register
class DeepLiftMethod(Method):
    """Contributions of (x − baseline) by the rescale rule; they sum to F(x) − F(baseline)."""

    key = "deeplift"
    title = "DeepLIFT"
    order = 25
    summary = ("differences from a baseline propagated back by the rescale rule; sums to F(x) - F(baseline) "
               "(summation-to-delta)")
    captum = "DeepLift"
    uses_baselines = True
    completeness = True
    keras_unavailable = ("DeepLIFT rewrites the gradients of a PyTorch module's non-linearities, which a Keras "
                         "model does not expose here; use Integrated Gradients, which it approximates.")
    baseline = Param("zero", "the reference input: zeros, a black image after preprocessing, or seeded noise",
                     "Baseline", choices=BASELINES)

    @classmethod
    def forwards(cls, request: Any, windows: int = 1) -> int:
        """The input and the baseline go through in one batch; the path ends add two."""
        return 3

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.DeepLift on the live module (wrapped so its output is the target's score)."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import as_module, common_kwargs

        return ca.DeepLift(as_module(call)), {**common_kwargs(call), "baselines": call.baselines}, None

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """The call with its convergence delta; F at the input and the baseline gives the completeness check."""
        from analyzers.runtime.captum_calls import CallPlan, with_delta

        obj, kwargs, _ = cls.captum_object(call)
        return CallPlan(lambda: obj.attribute(call.x, return_convergence_delta=True, **kwargs),
                        cls.forwards(call.request), call.params, None, call.baselines, with_delta)
