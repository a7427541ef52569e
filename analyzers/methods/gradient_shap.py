"""GradientShap (Lundberg & Lee 2017): expected gradients over random baselines and path points."""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzers.methods import register
from analyzers.methods.base import KerasCall, Method, Param, TorchCall
from analyzers.methods.integrated_gradients import BASELINES
from analyzers.tasks import Progress, Steps


@register
class GradientShapMethod(Method):
    """E over baselines b and α of ∂F/∂x at b + α(x − b), times (x − b)."""

    key = "gradshap"
    title = "GradientShap"
    order = 30
    summary = "expected gradients over random baselines and path points"
    captum = "GradientShap"
    uses_baselines = True
    baseline_distribution = True
    uses_seed = True
    samples = Param(20, "random (baseline, path point) draws", "Samples", minimum=1, maximum=100_000)
    stdevs = Param(0.0, "Gaussian noise added to the input for each draw", "Input noise", minimum=0.0, step=0.05)
    baseline = Param("zero", "where the path starts: zeros, a black image after preprocessing, or seeded noise",
                     "Baseline", choices=BASELINES)

    @classmethod
    def forwards(cls, request: Any, windows: int = 1) -> int:
        """Captum batches every draw into one pass."""
        return 3

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.GradientShap over the baseline distribution."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import common_kwargs

        p = call.params
        return ca.GradientShap(call.fwd), {**common_kwargs(call), "baselines": call.baselines,
                                           "n_samples": p["samples"], "stdevs": p["stdevs"]}, None

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """The call with torch's and numpy's random draws seeded."""
        from analyzers.runtime.captum_calls import CallPlan, plain, seeded

        obj, kwargs, _ = cls.captum_object(call)
        run = seeded(lambda: obj.attribute(call.x, **kwargs), call.request.seed, call.x.device)
        return CallPlan(run, cls.forwards(call.request), call.params, None, post=plain)

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """Expected gradients as Captum draws them: noisy input, random baseline, random point on the path."""
        from analyzers.methods.base import chunks

        p = call.params
        rng = np.random.default_rng(call.request.seed)
        n = p["samples"]
        noise = rng.normal(0.0, p["stdevs"], (n, *x.shape[1:])) if p["stdevs"] else np.zeros((n, *x.shape[1:]))
        noisy = x + noise
        baselines = call.base
        picks = baselines[rng.integers(0, baselines.shape[0], n)]
        alpha = rng.uniform(0.0, 1.0, n).reshape((-1,) + (1,) * (x.ndim - 1))
        points = (picks + alpha * (noisy - picks)).astype(np.float32)
        total = np.zeros(x.shape[1:], dtype=np.float64)
        for i, j in chunks(n, call.request.internal_batch_size):
            if call.token is not None:
                call.token.raise_if_cancelled()
            yield Progress(i, n, f"GradientShap: {i} of {n} samples")
            g, _ = call.live.gradients(points[i:j], int(call.request.target or 0))
            call.counter[0] += 1
            total += (g * (noisy[i:j] - picks[i:j])).sum(axis=0)
        return (total / n)[None].astype(np.float32), None
