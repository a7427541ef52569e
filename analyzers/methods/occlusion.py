"""Occlusion (Zeiler & Fergus 2014): how much the target drops when a window is replaced by the baseline."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from analyzers.methods import register
from analyzers.methods.base import KerasCall, Method, Param, TorchCall, call_windows
from analyzers.methods.integrated_gradients import BASELINES
from analyzers.tasks import Progress, Steps


def _check(call: KerasCall) -> None:
    if call.token is not None:
        call.token.raise_if_cancelled()


@register
class OcclusionMethod(Method):
    """F(x) − F(x with a window occluded), averaged over the windows covering each feature."""

    key = "occlusion"
    title = "Occlusion"
    order = 40
    summary = "drop in the target when a sliding window (a token for text) is replaced by the baseline"
    captum = "Occlusion"
    text = True
    uses_baselines = True
    window = Param(None, "window side in pixels / steps (auto: about 1/7 of the image side)", "Window",
                   minimum=1, maximum=4096, auto=True)
    stride = Param(None, "stride of the window (auto: half the window)", "Stride", minimum=1, maximum=4096, auto=True)
    baseline = Param("zero", "what an occluded window shows: zeros, black, or seeded noise", "Baseline",
                     choices=BASELINES)

    @classmethod
    def parameters(cls, request: Any) -> dict[str, Any]:
        """Window, stride and baseline, and how many windows go through one forward pass."""
        return {**cls.values(request), "internal_batch_size": request.internal_batch_size}

    @classmethod
    def forwards(cls, request: Any, windows: int = 1) -> int:
        """One pass per batch of windows, plus the unoccluded input."""
        return math.ceil(windows / max(1, request.internal_batch_size or 1)) + 1

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """captum.attr.Occlusion with square windows over images, steps over sequences."""
        import captum.attr as ca

        from analyzers.explain.attribution import occlusion_window
        from analyzers.runtime.captum_calls import common_kwargs

        win, stride = occlusion_window(tuple(call.x.shape[1:]), call.inp.layout, call.request, False)
        p = call.params
        p["window_shape"], p["strides"] = list(win), list(stride)
        p["window"], p["stride"] = (win[1], stride[1]) if call.inp.layout == "NCHW" else (win[0], stride[0])
        ibs = call.request.internal_batch_size
        return ca.Occlusion(call.fwd), {**common_kwargs(call), "sliding_window_shapes": win, "strides": stride,
                                        "baselines": call.baselines, "perturbations_per_eval": ibs or 1}, None

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """The plain Occlusion call."""
        from analyzers.runtime.captum_calls import CallPlan, plain

        obj, kwargs, _ = cls.captum_object(call)
        return CallPlan(lambda: obj.attribute(call.x, **kwargs), cls.forwards(call.request, call_windows(call)),
                        call.params, None, post=plain)

    @classmethod
    def torch_text_plan(cls, call: TorchCall) -> Any:
        """One token at a time replaced by the padding token."""
        import captum.attr as ca

        from analyzers.runtime.captum_calls import CallPlan, common_kwargs, plain, text_layer

        _, base_ids = text_layer(call)
        ibs = call.request.internal_batch_size
        call.params.update({"window_shape": [1], "strides": [1], "internal_batch_size": ibs})
        occ = ca.Occlusion(call.fwd)
        run = lambda: occ.attribute(call.x, sliding_window_shapes=(1,), strides=(1,), baselines=base_ids,  # noqa: E731
                                    perturbations_per_eval=ibs or 1, **common_kwargs(call))
        return CallPlan(run, cls.forwards(call.request, int(call.x.shape[1])), call.params, None, post=plain)

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """The same windows as Captum's, scored in batches by the Keras model."""
        from analyzers.explain.attribution import occlusion_window
        from analyzers.methods.base import chunks, windows_count

        b = call.base[:1]
        shape = x.shape[1:]
        layout = call.inp.layout
        win, stride = occlusion_window(shape, layout, call.request, False)
        call.params.update({"window_shape": list(win), "strides": list(stride),
                            "internal_batch_size": call.request.internal_batch_size,
                            "window": win[1] if layout == "NCHW" else win[0],
                            "stride": stride[1] if layout == "NCHW" else stride[0]})
        t = int(call.request.target or 0)
        f_x = float(call.live.score_of(x, t)[0])
        starts = [range(0, s - w + 1, st) for s, w, st in zip(shape, win, stride)]
        positions = list(itertools.product(*starts))
        total = np.zeros(shape, dtype=np.float64)
        count = np.zeros(shape, dtype=np.float64)
        n = windows_count(shape, win, stride)
        for i, j in chunks(n, call.request.internal_batch_size):
            _check(call)
            yield Progress(i, n, f"Occlusion: {i} of {n} windows")
            batch = np.repeat(x, j - i, axis=0)
            slices = [tuple(slice(p, p + w) for p, w in zip(pos, win)) for pos in positions[i:j]]
            for k, sl in enumerate(slices):
                batch[(k, *sl)] = b[(0, *sl)]
            drops = f_x - call.live.score_of(batch, t)
            call.counter[0] += 1
            for k, sl in enumerate(slices):
                total[sl] += drops[k]
                count[sl] += 1
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)[None].astype(np.float32), None

    @classmethod
    def keras_text_run(cls, call: KerasCall, layer: Any, ids: np.ndarray, base_ids: np.ndarray) -> Steps[Any]:
        """Each token replaced by its padding token in turn."""
        from analyzers.explain.attribution import RawAttribution
        from analyzers.methods.base import chunks

        call.params.update({"window_shape": [1], "strides": [1],
                            "internal_batch_size": call.request.internal_batch_size})
        t = int(call.request.target or 0)
        f_x = float(call.live.score_of(ids, t)[0])
        n = ids.shape[1]
        scores = np.zeros(n, dtype=np.float64)
        for i, j in chunks(n, call.request.internal_batch_size):
            _check(call)
            yield Progress(i, n, f"Occlusion: token {i} of {n}")
            batch = np.repeat(ids, j - i, axis=0)
            for k, pos in enumerate(range(i, j)):
                batch[k, pos] = base_ids[0, pos]
            scores[i:j] = f_x - call.live.score_of(batch, t)
        return RawAttribution(scores[None].astype(np.float32), call.params, None, None, None, None, n)
