"""Attribution methods for Keras models with tf.GradientTape, defined as Captum defines them.

Each method is a step generator: it checks the cancel token and yields progress between chunks of
path points / samples / occluded windows, so a long run stays responsive without threads.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from analyzers.attribution import AttributionRequest, RawAttribution, occlusion_window, path_points
from analyzers.errors import LayerScopeError
from analyzers.inputs import ModelInput
from analyzers.runtime.keras_runtime import KerasLiveModel, chunks, windows_count
from analyzers.tasks import CancelToken, Progress, Steps


def _check(token: CancelToken | None) -> None:
    if token is not None:
        token.raise_if_cancelled()


def run(live: KerasLiveModel, inp: ModelInput, req: AttributionRequest, token: CancelToken | None
        ) -> Steps[RawAttribution]:
    """Dispatch `req` (target resolved) to the method; returns the map with the batch axis kept."""
    params = req.parameters()
    if live.is_text(inp):
        return (yield from _text(live, inp, req, token, params))
    x = np.asarray(inp.array, dtype=np.float32)
    base = np.asarray(req.baselines if req.baselines is not None else np.zeros_like(x), dtype=np.float32)
    counter = [0]
    if req.method == "ig":
        attr, f_x, f_b = yield from _ig(live, x, base[:1], req, token, counter)
        delta = float(attr.sum() - (f_x - f_b))
        return RawAttribution(attr, params, None, delta, f_x, f_b, counter[0] + 2)
    if req.method == "smoothgrad":
        rng = np.random.default_rng(req.seed)
        span = float(x.max() - x.min())
        sigma = req.smooth_noise * (span if span > 0 else 1.0)
        params["stdevs"] = sigma
        total, layer_total = None, None
        for k in range(req.smooth_samples):
            _check(token)
            yield Progress(k, req.smooth_samples, f"SmoothGrad sample {k + 1} of {req.smooth_samples}")
            noisy = (x + rng.normal(0.0, sigma, x.shape)).astype(np.float32)
            attr, layer_map = yield from _method(live, inp, noisy, base, req.smooth_base, req, token, counter, params)
            total = attr if total is None else total + attr
            if layer_map is not None:
                layer_total = layer_map if layer_total is None else layer_total + layer_map
        n = req.smooth_samples
        return RawAttribution(total / n, params, None if layer_total is None else layer_total / n, None, None, None,
                              counter[0])
    attr, layer_map = yield from _method(live, inp, x, base, req.method, req, token, counter, params)
    return RawAttribution(attr, params, layer_map, None, None, None, counter[0])


def _method(live: KerasLiveModel, inp: ModelInput, x: np.ndarray, base: np.ndarray, method: str,
            req: AttributionRequest, token: CancelToken | None, counter: list[int], params: dict[str, Any]
            ) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
    """One non-text method on input `x`: (map like x, layer map for Grad-CAM)."""
    t = int(req.target or 0)
    if method == "saliency":
        g, _ = live.gradients(x, t)
        counter[0] += 1
        yield Progress(1, 1, "Saliency")
        return (np.abs(g) if req.abs else g), None
    if method == "ig":
        attr, _, _ = yield from _ig(live, x, base[:1], req, token, counter)
        return attr, None
    if method == "gradshap":
        return (yield from _gradshap(live, x, base, req, token, counter)), None
    if method == "occlusion":
        return (yield from _occlusion(live, inp, x, base[:1], req, token, counter, params)), None
    if method == "gradcam":
        return _gradcam(live, x, req, counter, params)
    raise LayerScopeError(f"Unknown attribution method '{method}'.")


def _ig(live: KerasLiveModel, x: np.ndarray, b: np.ndarray, req: AttributionRequest, token: CancelToken | None,
        counter: list[int]) -> Steps[tuple[np.ndarray, float, float]]:
    """Integrated Gradients along the straight path b -> x; returns (map, F(x), F(b))."""
    alphas, weights = path_points(req.ig_method, req.steps)
    diff = x - b
    total = np.zeros(x.shape[1:], dtype=np.float64)
    shape = (-1,) + (1,) * (x.ndim - 1)
    for i, j in chunks(len(alphas), req.internal_batch_size):
        _check(token)
        yield Progress(i, len(alphas), f"Integrated Gradients: {i} of {len(alphas)} path points")
        points = (b + alphas[i:j].reshape(shape) * diff).astype(np.float32)
        g, _ = live.gradients(points, int(req.target or 0))
        counter[0] += 1
        total += (g.astype(np.float64) * weights[i:j].reshape(shape)).sum(axis=0)
    attr = (total[None] * diff).astype(np.float32)
    t = int(req.target or 0)
    f_x = float(live.score_of(x, t)[0])
    f_b = float(live.score_of(b, t)[0])
    return attr, f_x, f_b


def _gradshap(live: KerasLiveModel, x: np.ndarray, baselines: np.ndarray, req: AttributionRequest,
              token: CancelToken | None, counter: list[int]) -> Steps[np.ndarray]:
    """Expected gradients as Captum's GradientShap: noisy input, random baseline, random point on the path."""
    rng = np.random.default_rng(req.seed)
    n = req.samples
    noisy = x + (rng.normal(0.0, req.stdevs, (n, *x.shape[1:])) if req.stdevs else np.zeros((n, *x.shape[1:])))
    picks = baselines[rng.integers(0, baselines.shape[0], n)]
    alpha = rng.uniform(0.0, 1.0, n).reshape((-1,) + (1,) * (x.ndim - 1))
    points = (picks + alpha * (noisy - picks)).astype(np.float32)
    total = np.zeros(x.shape[1:], dtype=np.float64)
    for i, j in chunks(n, req.internal_batch_size):
        _check(token)
        yield Progress(i, n, f"GradientShap: {i} of {n} samples")
        g, _ = live.gradients(points[i:j], int(req.target or 0))
        counter[0] += 1
        total += (g * (noisy[i:j] - picks[i:j])).sum(axis=0)
    return (total / n)[None].astype(np.float32)


def _occlusion(live: KerasLiveModel, inp: ModelInput, x: np.ndarray, b: np.ndarray, req: AttributionRequest,
               token: CancelToken | None, counter: list[int], params: dict[str, Any]) -> Steps[np.ndarray]:
    """F(x) - F(x with a window replaced by the baseline), averaged over the windows covering each feature."""
    shape = x.shape[1:]
    win, stride = occlusion_window(shape, inp.layout, req, False)
    params.update({"window_shape": list(win), "strides": list(stride), "internal_batch_size": req.internal_batch_size,
                   "window": win[1] if inp.layout == "NCHW" else win[0],
                   "stride": stride[1] if inp.layout == "NCHW" else stride[0]})
    t = int(req.target or 0)
    f_x = float(live.score_of(x, t)[0])
    starts = [range(0, s - w + 1, st) for s, w, st in zip(shape, win, stride)]
    positions = list(itertools.product(*starts))
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    n = windows_count(shape, win, stride)
    for i, j in chunks(n, req.internal_batch_size):
        _check(token)
        yield Progress(i, n, f"Occlusion: {i} of {n} windows")
        batch = np.repeat(x, j - i, axis=0)
        slices = [tuple(slice(p, p + w) for p, w in zip(pos, win)) for pos in positions[i:j]]
        for k, sl in enumerate(slices):
            batch[(k, *sl)] = b[(0, *sl)]
        drops = f_x - live.score_of(batch, t)
        counter[0] += 1
        for k, sl in enumerate(slices):
            total[sl] += drops[k]
            count[sl] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)[None].astype(np.float32)


def _gradcam(live: KerasLiveModel, x: np.ndarray, req: AttributionRequest, counter: list[int],
             params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM as Captum's LayerGradCam (channels last): mean gradients weight the activations."""
    import tensorflow as tf

    layer = live.layer(req.layer or "")
    params["layer"] = req.layer
    act, g = live.layer_gradients(x, layer, int(req.target or 0))
    counter[0] += 1
    spatial = tuple(range(1, act.ndim - 1))
    weights = g.mean(axis=spatial, keepdims=True)
    cam = (weights * act).sum(axis=-1, keepdims=True)
    if req.relu:
        cam = np.maximum(cam, 0.0)
    if cam.ndim == 4 and x.ndim == 4:
        up = tf.image.resize(cam, x.shape[1:3], method="bilinear").numpy()
    elif cam.ndim == 3 and x.ndim == 3:
        up = tf.image.resize(cam[:, :, None, :], (x.shape[1], 1), method="bilinear").numpy()[:, :, 0, :]
    else:
        up = cam
    return up.astype(np.float32), cam.astype(np.float32)


def _text(live: KerasLiveModel, inp: ModelInput, req: AttributionRequest, token: CancelToken | None,
          params: dict[str, Any]) -> Steps[RawAttribution]:
    """Token inputs: IG / gradient x embedding over the embedding layer, or single-token occlusion."""
    layer = live.layer(req.layer or "")
    ids = np.asarray(inp.array)
    base_ids = np.asarray(inp.baseline_ids if inp.baseline_ids is not None else np.zeros_like(ids), dtype=ids.dtype)
    params["layer"] = req.layer
    params["baseline"] = "padding tokens"
    t = int(req.target or 0)
    if req.method == "occlusion":
        params.update({"window_shape": [1], "strides": [1], "internal_batch_size": req.internal_batch_size})
        f_x = float(live.score_of(ids, t)[0])
        n = ids.shape[1]
        scores = np.zeros(n, dtype=np.float64)
        for i, j in chunks(n, req.internal_batch_size):
            _check(token)
            yield Progress(i, n, f"Occlusion: token {i} of {n}")
            batch = np.repeat(ids, j - i, axis=0)
            for k, pos in enumerate(range(i, j)):
                batch[k, pos] = base_ids[0, pos]
            scores[i:j] = f_x - live.score_of(batch, t)
        return RawAttribution(scores[None].astype(np.float32), params, None, None, None, None, n)
    emb = np.asarray(layer(ids), dtype=np.float32)
    if req.method == "saliency":
        params.pop("abs", None)
        params["variant"] = "gradient x embedding"
        g, _ = live.embedding_gradients(ids, emb, layer, t)
        yield Progress(1, 1, "Saliency")
        return RawAttribution((g * emb).astype(np.float32), params, None, None, None, None, 1)
    if req.method != "ig":
        raise LayerScopeError(f"{req.method} does not apply to text; use ig, saliency or occlusion.")
    base_emb = np.asarray(layer(base_ids), dtype=np.float32)
    alphas, weights = path_points(req.ig_method, req.steps)
    diff = emb - base_emb
    total = np.zeros(emb.shape[1:], dtype=np.float64)
    forwards = 0
    for i, j in chunks(len(alphas), req.internal_batch_size):
        _check(token)
        yield Progress(i, len(alphas), f"Integrated Gradients: {i} of {len(alphas)} path points")
        points = (base_emb + alphas[i:j].reshape(-1, 1, 1) * diff).astype(np.float32)
        g, _ = live.embedding_gradients(ids, points, layer, t)
        forwards += 1
        total += (g.astype(np.float64) * weights[i:j].reshape(-1, 1, 1)).sum(axis=0)
    attr = (total[None] * diff).astype(np.float32)
    f_x = float(live.score_of(ids, t)[0])
    _, start = live.embedding_gradients(ids, base_emb, layer, t)  # F where the path starts: baseline embeddings
    f_b = float(start[0])
    return RawAttribution(attr, params, None, float(attr.sum() - (f_x - f_b)), f_x, f_b, forwards + 2)
