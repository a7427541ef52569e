"""What the zoo's held-out accuracy previews hand back, and how their variants are named (no framework here:
the job itself, which loads the live model, is analyzers.weights.shrink)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzers.errors import LayerScopeError

DEFAULT_VARIANTS = ("original", "int8", "int4", "prune0.3", "prune0.5", "prune0.7")


@dataclass(frozen=True)
class ShrinkRow:
    """One variant's score on the held-out set and the model's parameter bytes under it."""

    variant: str  # "original" | "int8" | "int4" | "prune0.5" ...
    label: str  # "int8 (per-channel)", "pruned 50 %"
    score: float
    delta: float  # score - the original's
    weight_bytes: int  # the parameters' bytes as this variant would store them

    def to_json(self) -> dict[str, Any]:
        """As JSON."""
        return {"variant": self.variant, "label": self.label, "score": self.score, "delta": self.delta,
                "weight_bytes": self.weight_bytes}


@dataclass(frozen=True)
class ShrinkReport:
    """A zoo model's held-out score before and after each transform."""

    model_id: str
    title: str
    metric: str
    heldout_size: int
    manifest_score: float | None  # what the zoo's build measured for the original
    rows: tuple[ShrinkRow, ...]
    weights: int  # eligible weights the transforms touched
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As JSON."""
        return {"model": self.model_id, "metric": self.metric, "heldout_size": self.heldout_size,
                "manifest_score": self.manifest_score, "weights_transformed": self.weights,
                "rows": [r.to_json() for r in self.rows], "notes": list(self.notes)}


def parse_variant(text: str) -> tuple[str, float | None]:
    """("int8", None), ("prune", 0.3) ... from 'int8', 'prune0.3', 'prune30' or 'prune:30%'."""
    t = text.strip().lower().replace("%", "").replace(":", "").replace("=", "")
    if t in ("original", "int8", "int4"):
        return t, None
    if t.startswith("prune"):
        try:
            value = float(t[5:])
        except ValueError:
            value = -1.0
        value = value / 100 if value > 1 else value
        if 0 <= value < 1:
            return "prune", value
    raise LayerScopeError(f"'{text}' is not a variant; use original, int8, int4 or prune0.5 (a sparsity below 1).")


def variant_label(text: str) -> str:
    """How a variant is shown."""
    kind, value = parse_variant(text)
    if kind == "prune":
        return f"pruned {value * 100:g} % (global magnitude)"
    return {"original": "original", "int8": "int8 (per-channel)", "int4": "int4 (group 128)"}[kind]
