"""The same input through both models: their predictions side by side and their attribution maps on one scale.

Numpy only, so the window and `layerscope compare` show the same numbers and the shared scale is tested
without Qt. Predictions compare as distributions over the classes (softmax of logits, a model's own
probabilities, a sigmoid's two outcomes): top-1 agreement, top-k overlap, KL divergence both ways and
the Jensen–Shannon divergence. Two attribution maps get ONE normalisation constant, computed over the
values of both maps together (Captum's cumulative outlier threshold), so that "brighter" means the same
on both sides; their difference is B − A on that scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzers.explain.display import (
    DEFAULT_OUTLIER_PERCENT,
    normalize,
    signed_part,
    threshold_for,
    to_2d,
)

KL_EPSILON = 1e-12  # probabilities are clipped here before the logarithm (a zero in B would make KL infinite)


def distribution(values: np.ndarray | None, probabilities: str = "softmax") -> np.ndarray | None:
    """A model's output row as a probability distribution: as it is when the model gives probabilities,
    the two outcomes of one sigmoid score, else a softmax; None without an output."""
    if values is None:
        return None
    row = np.asarray(values, dtype=np.float64).reshape(-1)
    if row.size == 0 or not np.all(np.isfinite(row)):
        return None
    if row.size == 1:
        v = float(row[0])
        as_probability = probabilities == "model" or (probabilities != "sigmoid" and 0.0 <= v <= 1.0)
        p = v if as_probability else 1.0 / (1.0 + math.exp(-v))
        return np.array([1.0 - p, p])
    if np.all(row >= 0) and np.all(row <= 1) and abs(float(row.sum()) - 1.0) < 1e-3:
        return row / row.sum()
    z = np.exp(row - row.max())
    return z / z.sum()


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = KL_EPSILON) -> float:
    """KL(p ‖ q) = Σ p log(p / q) in nats, q clipped at `eps`."""
    p = np.asarray(p, dtype=np.float64)
    q = np.clip(np.asarray(q, dtype=np.float64), eps, None)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in nats (symmetric, at most ln 2)."""
    m = (np.asarray(p, dtype=np.float64) + np.asarray(q, dtype=np.float64)) / 2
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


@dataclass(frozen=True)
class OutputComparison:
    """Two predictions on one input, compared."""

    top_a: tuple[Any, ...]  # ClassScore
    top_b: tuple[Any, ...]
    agreement: bool | None  # the same top-1 class (None when either has no classes)
    top_k_overlap: float | None  # share of A's top-k classes also in B's top-k
    kl_ab: float | None  # KL(A ‖ B)
    kl_ba: float | None
    js: float | None
    max_probability_gap: float | None  # max over classes of |p_A − p_B|
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        def top(items: tuple[Any, ...]) -> list[dict[str, Any]]:
            return [{"index": c.index, "label": c.label, "probability": c.probability, "score": c.score}
                    for c in items]

        return {"top_a": top(self.top_a), "top_b": top(self.top_b), "agreement": self.agreement,
                "top_k_overlap": self.top_k_overlap, "kl_a_b": self.kl_ab, "kl_b_a": self.kl_ba,
                "js": self.js, "max_probability_gap": self.max_probability_gap, "note": self.note}


def compare_predictions(pred_a: Any, pred_b: Any, probs_a: np.ndarray | None,
                        probs_b: np.ndarray | None) -> OutputComparison:
    """Agreement, top-k overlap and divergences of two predictions (analyzers.runtime Prediction) whose full
    distributions are `probs_a` / `probs_b`."""
    classes = pred_a.kind == "classes" and pred_b.kind == "classes"
    agreement = overlap = None
    if classes and pred_a.top and pred_b.top:
        agreement = pred_a.top[0].index == pred_b.top[0].index
        k = min(len(pred_a.top), len(pred_b.top))
        overlap = len({c.index for c in pred_a.top[:k]} & {c.index for c in pred_b.top[:k]}) / k
    kl_ab = kl_ba = js = gap = None
    note = ""
    if probs_a is not None and probs_b is not None:
        if probs_a.shape == probs_b.shape:
            kl_ab, kl_ba = kl_divergence(probs_a, probs_b), kl_divergence(probs_b, probs_a)
            js = js_divergence(probs_a, probs_b)
            gap = float(np.max(np.abs(probs_a - probs_b)))
        else:
            note = (f"The outputs have {probs_a.size} and {probs_b.size} classes; their distributions are not "
                    "compared.")
    elif not classes:
        note = "At least one model does not output class scores; only the top outputs are listed."
    return OutputComparison(tuple(pred_a.top), tuple(pred_b.top), agreement, overlap, kl_ab, kl_ba, js, gap, note)


def pooled_threshold(maps: list[np.ndarray], sign: str = "all",
                     outlier_percent: float = DEFAULT_OUTLIER_PERCENT) -> float:
    """ONE normalisation constant for several 2-D maps: Captum's cumulative outlier threshold computed over
    the values of all of them together."""
    values = [np.abs(signed_part(np.asarray(m, dtype=np.float64), sign)).ravel() for m in maps]
    if not values:
        return 0.0
    return threshold_for(np.concatenate(values)[None, :], "absolute", outlier_percent)


@dataclass(frozen=True)
class SharedMaps:
    """Two attribution maps normalised by one constant, and their difference on that scale."""

    a: np.ndarray  # 2-D, normalised, [-1, 1] ("all") or [0, 1]
    b: np.ndarray
    difference: np.ndarray | None  # B − A on the shared scale, clipped to [-1, 1]; None when shapes differ
    scale: float  # the one constant both maps were divided by
    sign: str
    own_scales: tuple[float, float]  # what each map's own normalisation would have used
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """Numbers only (the maps go to .npy / PNG)."""
        out: dict[str, Any] = {"shared_scale": self.scale, "sign": self.sign,
                               "own_scale_a": self.own_scales[0], "own_scale_b": self.own_scales[1],
                               "shape_a": list(self.a.shape), "shape_b": list(self.b.shape), "note": self.note}
        if self.difference is not None:
            out["difference"] = {"mean_abs": float(np.mean(np.abs(self.difference))),
                                 "max_abs": float(np.max(np.abs(self.difference))),
                                 "correlation": _correlation(self.a, self.b)}
        return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    x, y = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return float(np.dot(x, y) / denom) if denom > 0 else None


def shared_scale_maps(map_a: np.ndarray, map_b: np.ndarray, layout_a: str = "", layout_b: str = "",
                      sign: str = "all", outlier_percent: float = DEFAULT_OUTLIER_PERCENT) -> SharedMaps:
    """Both maps as 2-D (channels summed, each in its own layout), divided by one pooled constant; B − A."""
    a2, b2 = to_2d(map_a, layout_a), to_2d(map_b, layout_b)
    scale = pooled_threshold([a2, b2], sign, outlier_percent)
    na = normalize(a2, sign, outlier_percent, threshold=scale)
    nb = normalize(b2, sign, outlier_percent, threshold=scale)
    own = (threshold_for(a2, sign, outlier_percent), threshold_for(b2, sign, outlier_percent))
    if na.shape == nb.shape:
        return SharedMaps(na, nb, np.clip(nb - na, -1.0, 1.0), scale, sign, own)
    return SharedMaps(na, nb, None, scale, sign, own,
                      f"The maps have shapes {na.shape} and {nb.shape}; no difference map.")
