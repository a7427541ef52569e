"""Sanity checks shown beside a map: IG completeness, and the weight-randomisation test of Adebayo et al.

"Sanity Checks for Saliency Maps" (Adebayo et al., NeurIPS 2018): a map that barely changes when the
model's top layers are re-initialised explains the input more than the model. We recompute the same
method, target and parameters on a copy with its last layers re-initialised and report the Spearman
rank correlation between the two maps (of absolute values, as in the paper, and signed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzers.tasks import CancelToken, Progress, Steps

if TYPE_CHECKING:
    from analyzers.explain.attribution import Attribution


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata does)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    ranks = np.empty(v.size, dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_v)) + 1]
    ends = np.r_[starts[1:], v.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally sized maps (nan when either is constant)."""
    ra, rb = rank(a), rank(b)
    if ra.size != rb.size:
        raise ValueError("Spearman correlation needs two maps of the same size.")
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class RandomizationCheck:
    """The map's rank correlation with the same map on a model whose top layers were re-initialised."""

    layers: tuple[str, ...]  # the re-initialised layers
    spearman_abs: float
    spearman_signed: float
    method: str
    seed: int

    @property
    def verdict(self) -> str:
        """One sentence for the panel beside the map."""
        r = self.spearman_abs
        if np.isnan(r):
            return "Could not compare: one of the maps is constant."
        if r < 0.3:
            return "Passes: the map changes when the top layers are re-initialised, so it depends on what was learned."
        if r < 0.7:
            return "Partly: the map changes somewhat when the top layers are re-initialised."
        return ("Warning: the map barely changes when the top layers are re-initialised; it may show the input's "
                "structure more than the model's reasoning.")

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"reinitialised_layers": list(self.layers), "spearman_abs": self.spearman_abs,
                "spearman_signed": self.spearman_signed, "method": self.method, "seed": self.seed,
                "verdict": self.verdict}


def randomization_check(live: Any, original: Attribution, top_layers: int = 1, seed: int = 0,
                        token: CancelToken | None = None) -> Steps[RandomizationCheck]:
    """Recompute `original` (same method, target, parameters) on a copy with the top layers re-initialised."""
    from analyzers.explain.attribution import AttributionRequest, attribute

    request = original.request or AttributionRequest(original.method)
    yield Progress(0, None, f"Re-initialising the top {top_layers} layer(s) of a copy")
    twin = live.randomized(top_layers, seed)
    again = yield from attribute(twin, original.input, replace(request, target=original.target), token)
    a, b = np.asarray(original.map), np.asarray(again.map)
    return RandomizationCheck(tuple(getattr(twin, "reinitialised", ())), spearman(np.abs(a), np.abs(b)),
                              spearman(a, b), original.method, seed)


def completeness_sentence(attribution: Attribution) -> str:
    """IG's completeness in words: Σ attributions against F(x) - F(baseline), and whether it holds within 1%."""
    c = attribution.completeness
    if c is None:
        return "Completeness applies to Integrated Gradients only."
    gap = c.f_input - c.f_baseline
    state = "holds" if c.ok else "is off"
    return (f"Σ attributions = {c.total:.4g}, F(x) − F(baseline) = {gap:.4g}; δ = {c.delta:.3g} "
            f"({100 * c.relative:.2f}% of the gap): completeness {state} within 1%.")
