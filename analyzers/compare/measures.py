"""What weight drift reports, as plain data: additive sums per block, tensor, layer and model, and the measures
derived from them (relative change, cosine, max |B − A|, changed and zero shares).

Apart from drift.py (which reads the files) so that views can show a report without importing a reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from analyzers.errors import LayerScopeError


@dataclass
class DriftStats:
    """Sums that add up over blocks, tensors and layers; the drift measures are derived from them."""

    numel: int = 0
    sum_a2: float = 0.0
    sum_b2: float = 0.0
    sum_d2: float = 0.0
    dot: float = 0.0
    max_abs: float = 0.0
    changed: int = 0
    zeros_a: int = 0
    zeros_b: int = 0
    nonfinite: int = 0  # elements where either side is NaN or infinite (left out of the sums)

    def add(self, other: DriftStats) -> None:
        """Fold `other` into this one."""
        self.numel += other.numel
        self.sum_a2 += other.sum_a2
        self.sum_b2 += other.sum_b2
        self.sum_d2 += other.sum_d2
        self.dot += other.dot
        self.max_abs = max(self.max_abs, other.max_abs)
        self.changed += other.changed
        self.zeros_a += other.zeros_a
        self.zeros_b += other.zeros_b
        self.nonfinite += other.nonfinite

    @property
    def relative_change(self) -> float | None:
        """‖B − A‖ / ‖A‖ (0 for two all-zero tensors, inf when A is all zero and B is not; None when empty)."""
        if not self.numel:
            return None
        if self.sum_a2 > 0:
            return math.sqrt(self.sum_d2) / math.sqrt(self.sum_a2)
        return 0.0 if self.sum_d2 == 0 else math.inf

    @property
    def cosine(self) -> float | None:
        """A·B / (‖A‖ ‖B‖); None when either side is all zero."""
        if self.sum_a2 <= 0 or self.sum_b2 <= 0:
            return None
        return max(-1.0, min(1.0, self.dot / math.sqrt(self.sum_a2 * self.sum_b2)))

    @property
    def changed_fraction(self) -> float | None:
        """Share of elements whose value differs."""
        return self.changed / self.numel if self.numel else None

    @property
    def sparsity_a(self) -> float | None:
        """Share of exact zeros in A."""
        return self.zeros_a / self.numel if self.numel else None

    @property
    def sparsity_b(self) -> float | None:
        """Share of exact zeros in B."""
        return self.zeros_b / self.numel if self.numel else None

    def measures(self) -> dict[str, Any]:
        """The derived measures as JSON-able numbers (inf as the string "inf")."""
        rel = self.relative_change
        return {"elements": self.numel, "relative_change": "inf" if rel == math.inf else rel,
                "cosine": self.cosine, "max_abs_diff": self.max_abs, "changed_fraction": self.changed_fraction,
                "sparsity_a": self.sparsity_a, "sparsity_b": self.sparsity_b, "nonfinite": self.nonfinite}


@dataclass(frozen=True)
class TensorDrift:
    """One tensor pair: its measures, or why it could not be compared."""

    name_a: str
    name_b: str
    layer: tuple[str | None, str | None]  # the LayerPair's key
    shape: tuple[int, ...]
    stats: DriftStats | None
    layout: str = ""  # the reconciliation applied (cross-framework pairs)
    dequantized: str = ""  # how a quantised side was turned into numbers
    reason: str = ""  # why there are no measures

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        out: dict[str, Any] = {"a": self.name_a, "b": self.name_b, "shape": list(self.shape)}
        if self.stats is not None:
            out.update(self.stats.measures())
        if self.layout:
            out["layout"] = self.layout
        if self.dequantized:
            out["dequantized"] = self.dequantized
        if self.reason:
            out["not_comparable"] = self.reason
        return out


@dataclass(frozen=True)
class LayerDrift:
    """A layer pair's drift: its own tensors and its whole subtree."""

    path_a: str | None
    path_b: str | None
    type: str
    own: DriftStats
    total: DriftStats
    tensors: int  # own tensors compared
    not_comparable: int  # own tensors that could not be

    @property
    def key(self) -> tuple[str | None, str | None]:
        """The LayerPair's key."""
        return (self.path_a, self.path_b)

    @property
    def label(self) -> str:
        """'dense' or 'dense ↔ fc1' when renamed; '(model)' for the root."""
        a, b = self.path_a, self.path_b
        if a == "" and b == "":
            return "(model)"
        return a if a == b or b is None else b if a is None else f"{a} ↔ {b}"

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"a": self.path_a, "b": self.path_b, "type": self.type, "tensors": self.tensors,
                "not_comparable": self.not_comparable, "own": self.own.measures(), "total": self.total.measures()}


SORT_KEYS = ("relative_change", "cosine", "max_abs_diff", "changed_fraction", "sparsity_a", "sparsity_b")


@dataclass(frozen=True)
class DriftReport:
    """Every tensor pair's drift, rolled up per layer and for the model."""

    path_a: str
    path_b: str
    tensors: tuple[TensorDrift, ...]
    layers: tuple[LayerDrift, ...]  # pre-order, layers with compared tensors in their subtree
    model: DriftStats
    only_a: tuple[str, ...] = ()  # tensors that exist in A only
    only_b: tuple[str, ...] = ()
    bytes_read: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def not_comparable(self) -> list[TensorDrift]:
        """Tensor pairs listed with a reason instead of measures."""
        return [t for t in self.tensors if t.stats is None]

    def layer(self, key: tuple[str | None, str | None]) -> LayerDrift | None:
        """The drift of the layer pair with `key`, None when nothing in it was compared."""
        return next((d for d in self.layers if d.key == key), None)

    def ranked(self, by: str = "relative_change", descending: bool = True) -> list[LayerDrift]:
        """Layers with own compared tensors sorted by a measure ("what did fine-tuning change?"); None last."""
        if by not in SORT_KEYS:
            raise LayerScopeError(f"Drift sorts by one of {', '.join(SORT_KEYS)}, not '{by}'.")
        rows = [d for d in self.layers if d.own.numel]

        def value(d: LayerDrift) -> float:
            v = d.own.max_abs if by == "max_abs_diff" else getattr(d.own, by)
            return -math.inf if v is None else v

        return sorted(rows, key=value, reverse=descending)

    def to_json(self) -> dict[str, Any]:
        """The `drift` object of layerscope.compare/1."""
        return {"model": self.model.measures(), "layers": [d.to_json() for d in self.ranked()],
                "tensors": [t.to_json() for t in self.tensors if t.stats is not None],
                "not_comparable": [t.to_json() for t in self.not_comparable()],
                "only_a": list(self.only_a), "only_b": list(self.only_b),
                "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3), "notes": list(self.notes)}
