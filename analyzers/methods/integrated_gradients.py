"""Integrated Gradients (Sundararajan et al. 2017): gradients integrated along the path baseline -> input."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError
from analyzers.methods import register
from analyzers.methods.base import KerasCall, Method, Param, TorchCall
from analyzers.tasks import Progress, Steps

# Gauss-Legendre with 64 points keeps IG's completeness error under 1% on the bundled CNNs (tested).
DEFAULT_IG_STEPS = 64
MAX_GAUSS_LEGENDRE_STEPS = 512  # numpy's leggauss is cubic in the step count (2048 points take ~30 s)
RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES = ("zero", "black", "uniform")


@register
class IntegratedGradientsMethod(Method):
    """Σ over path points of ∂F/∂x × (x − baseline); it sums to F(x) − F(baseline)."""

    key = "ig"
    title = "Integrated Gradients"
    order = 20
    summary = "gradients integrated along the straight path from a baseline to the input; sums to F(x) - F(baseline)"
    captum = "IntegratedGradients / LayerIntegratedGradients"
    text = True
    uses_baselines = True
    completeness = True
    steps = Param(DEFAULT_IG_STEPS, "path points (Gauss-Legendre by default)", "IG steps", minimum=1, maximum=100_000)
    ig_method = Param("gausslegendre", "how the path integral is approximated", "Path rule", choices=RULES,
                      flag="--ig-method")
    baseline = Param("zero", "where the path starts: zeros, a black image after preprocessing, or seeded noise",
                     "Baseline", choices=BASELINES)

    @classmethod
    def validate(cls, request: Any, text: bool) -> Any:
        """Gauss-Legendre's nodes cost cubic time past MAX_GAUSS_LEGENDRE_STEPS."""
        request = super().validate(request, text)
        values = cls.values(request)
        if values["ig_method"] == "gausslegendre" and values["steps"] > MAX_GAUSS_LEGENDRE_STEPS:
            raise LayerScopeError(f"Gauss-Legendre IG takes at most {MAX_GAUSS_LEGENDRE_STEPS} steps; for more, use a "
                                  "Riemann rule (ig_method riemann_trapezoid).")
        if values["ig_method"] != "gausslegendre" and values["steps"] < 2:
            raise LayerScopeError("Riemann approximations need at least 2 steps.")
        return request

    @classmethod
    def parameters(cls, request: Any) -> dict[str, Any]:
        """Steps, rule and baseline, and how many path points go through one forward pass."""
        return {**cls.values(request), "internal_batch_size": request.internal_batch_size}

    @classmethod
    def forwards(cls, request: Any, windows: int = 1) -> int:
        """One pass per chunk of path points, plus the path's ends."""
        steps = cls.values(request)["steps"]
        return math.ceil(steps / max(1, request.internal_batch_size or steps)) + 4

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.IntegratedGradients with our baseline and rule."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import common_kwargs

        p = call.params
        return ca.IntegratedGradients(call.fwd), {**common_kwargs(call), "baselines": call.baselines,
                                                  "n_steps": p["steps"], "method": p["ig_method"],
                                                  "internal_batch_size": call.request.internal_batch_size}, None

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """The call with its convergence delta; F at both path ends gives the completeness check."""
        from analyzers.runtime.captum_calls import CallPlan, with_delta

        obj, kwargs, _ = cls.captum_object(call)
        return CallPlan(lambda: obj.attribute(call.x, return_convergence_delta=True, **kwargs),
                        cls.forwards(call.request), call.params, None, call.baselines, with_delta)

    @classmethod
    def torch_text_plan(cls, call: TorchCall) -> Any:
        """LayerIntegratedGradients over the embedding, from the padding tokens' embeddings."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import CallPlan, common_kwargs, text_layer, with_delta

        layer, base_ids = text_layer(call)
        p = call.params
        lig = ca.LayerIntegratedGradients(call.fwd, layer)
        run = lambda: lig.attribute(call.x, baselines=base_ids, n_steps=p["steps"], method=p["ig_method"],  # noqa: E731
                                    internal_batch_size=call.request.internal_batch_size,
                                    return_convergence_delta=True, **common_kwargs(call))
        return CallPlan(run, cls.forwards(call.request), call.params, layer, base_ids, with_delta)

    @classmethod
    def keras_path(cls, call: KerasCall, x: np.ndarray, b: np.ndarray) -> Steps[tuple[np.ndarray, float, float]]:
        """IG along b -> x with tf.GradientTape; (map, F(x), F(b))."""
        from analyzers.explain.attribution import path_points
        from analyzers.methods.base import chunks

        p, live, t = call.params, call.live, int(call.request.target or 0)
        alphas, weights = path_points(p["ig_method"], p["steps"])
        diff = x - b
        total = np.zeros(x.shape[1:], dtype=np.float64)
        shape = (-1,) + (1,) * (x.ndim - 1)
        for i, j in chunks(len(alphas), call.request.internal_batch_size):
            if call.token is not None:
                call.token.raise_if_cancelled()
            yield Progress(i, len(alphas), f"Integrated Gradients: {i} of {len(alphas)} path points")
            points = (b + alphas[i:j].reshape(shape) * diff).astype(np.float32)
            g, _ = live.gradients(points, t)
            call.counter[0] += 1
            total += (g.astype(np.float64) * weights[i:j].reshape(shape)).sum(axis=0)
        attr = (total[None] * diff).astype(np.float32)
        return attr, float(live.score_of(x, t)[0]), float(live.score_of(b, t)[0])

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """The IG map alone (SmoothGrad's base)."""
        attr, _, _ = yield from cls.keras_path(call, x, call.base[:1])
        return attr, None

    @classmethod
    def keras_run(cls, call: KerasCall) -> Steps[Any]:
        """IG with its convergence delta and the two path ends."""
        from analyzers.explain.attribution import RawAttribution

        attr, f_x, f_b = yield from cls.keras_path(call, call.x, call.base[:1])
        return RawAttribution(attr, call.params, None, float(attr.sum() - (f_x - f_b)), f_x, f_b, call.counter[0] + 2)

    @classmethod
    def keras_text_run(cls, call: KerasCall, layer: Any, ids: np.ndarray, base_ids: np.ndarray) -> Steps[Any]:
        """IG in embedding space, from the padding tokens' embeddings to the input's."""
        from analyzers.explain.attribution import RawAttribution, path_points
        from analyzers.methods.base import chunks

        p, live, t = call.params, call.live, int(call.request.target or 0)
        emb = np.asarray(layer(ids), dtype=np.float32)
        base_emb = np.asarray(layer(base_ids), dtype=np.float32)
        alphas, weights = path_points(p["ig_method"], p["steps"])
        diff = emb - base_emb
        total = np.zeros(emb.shape[1:], dtype=np.float64)
        forwards = 0
        for i, j in chunks(len(alphas), call.request.internal_batch_size):
            if call.token is not None:
                call.token.raise_if_cancelled()
            yield Progress(i, len(alphas), f"Integrated Gradients: {i} of {len(alphas)} path points")
            points = (base_emb + alphas[i:j].reshape(-1, 1, 1) * diff).astype(np.float32)
            g, _ = live.embedding_gradients(ids, points, layer, t)
            forwards += 1
            total += (g.astype(np.float64) * weights[i:j].reshape(-1, 1, 1)).sum(axis=0)
        attr = (total[None] * diff).astype(np.float32)
        f_x = float(live.score_of(ids, t)[0])
        _, start = live.embedding_gradients(ids, base_emb, layer, t)  # F where the path starts
        f_b = float(start[0])
        return RawAttribution(attr, call.params, None, float(attr.sum() - (f_x - f_b)), f_x, f_b, forwards + 2)
