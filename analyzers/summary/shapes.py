"""Output shapes and FLOPs per layer, for a stated input, laid onto a summary (issue 14).

What is computed where: PyTorch modules run on the `meta` device (no weight is read) and ONNX graphs go
through `onnx.shape_inference`, both in a child process (analyzers.loaders.shape_inference); Keras
models get their shapes from the saved config and their FLOPs from the layers' hyper-parameters
(analyzers.summary.flops). Every one of them hands back a `ShapeReport`: plain paths, shapes and
numbers, applied to a summary here. FLOPs are 2 × multiply–adds, and always for the input they name.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from analyzers.errors import LayerScopeError
from analyzers.summary import LayerNode, ModelSummary

Shape = tuple[int | None, ...]
MAX_DIM = 1 << 31  # a dimension past this is a typo, not an input
MAX_ELEMENTS = 1 << 40
FLOPS_MEANING = "FLOPs = 2 × multiply–adds of matrix products, convolutions, attention and normalisation"


@dataclass(frozen=True)
class ShapeInput:
    """The input shapes and FLOPs are computed for: its full shape (batch first), dtype, kind and origin."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str = "tensor"  # "tokens" | "image" | "tensor"
    layout: str = ""  # "NCHW" | "NHWC" for images
    source: str = ""  # where the shape came from: "the sample manifest", "config.json", "your input shape" ...

    @property
    def batch(self) -> int:
        """The leading (batch) dimension."""
        return self.shape[0] if self.shape else 1

    def describe(self) -> str:
        """The input as a person reads it: 'batch 1 × 128 tokens', 'batch 2 × 3 × 224 × 224 image'."""
        rest = self.shape[1:]
        if self.kind == "tokens" and len(rest) == 1:
            return f"batch {self.batch} × {rest[0]:,} tokens"
        dims = " × ".join(str(d) for d in rest) if rest else "scalar"
        what = " image" if self.kind == "image" else ""
        return f"batch {self.batch} × {dims}{what}"

    def with_shape(self, shape: tuple[int, ...], source: str = "your input shape") -> ShapeInput:
        """The same kind of input at another size (the rank may change; the kind is kept when it still fits)."""
        kind = self.kind if len(shape) == len(self.shape) else "tensor"
        dtype = self.dtype if kind != "tensor" or len(shape) == len(self.shape) else "float32"
        return dataclasses.replace(self, shape=tuple(shape), kind=kind, dtype=dtype, source=source)


def parse_shape_text(text: str, what: str = "--input-shape") -> tuple[int, ...]:
    """'1x3x224x224', '1,128' or '1 × 128' as a tuple of positive ints; one sentence when it is not one."""
    parts = [p for p in re.split(r"\s*[x×,*]\s*|\s+", str(text).strip().lower()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 or d > MAX_DIM for d in shape):
        raise LayerScopeError(f"{what} '{str(text)[:80]}' is not a shape; write positive sizes joined by x, "
                              "batch first, e.g. 1x128 (tokens) or 1x3x224x224 (an image).")
    if math.prod(shape) > MAX_ELEMENTS:
        raise LayerScopeError(f"{what} {text} has {math.prod(shape):,} elements, more than LayerScope computes "
                              "shapes for.")
    return shape


def input_from_text(text: str, default: ShapeInput | None) -> ShapeInput:
    """The user's input shape, keeping the default's kind and dtype when the rank is the same."""
    shape = parse_shape_text(text)
    if default is None:
        return ShapeInput(shape, source="your input shape")
    return default.with_shape(shape)


@dataclass(frozen=True)
class ShapeReport:
    """Output shapes and FLOPs by layer path for one input; empty mappings with a reason when unknown.

    `flops` are inclusive: a layer's own operations plus everything below it (the root holds the total)."""

    input: ShapeInput | None
    shapes: Mapping[str, Shape] = field(default_factory=dict)
    flops: Mapping[str, int] = field(default_factory=dict)
    method: str = ""  # "meta-device forward pass", "onnx.shape_inference", "Keras config"
    shapes_reason: str = ""  # one sentence: why there are no shapes ("" when there are)
    flops_reason: str = ""  # one sentence: why there are no FLOPs, or which layers are not counted
    notes: tuple[str, ...] = ()

    @property
    def total_flops(self) -> int | None:
        """FLOPs of the whole model for this input, None when unknown."""
        return self.flops.get("")

    @property
    def input_text(self) -> str:
        """The input in words ('no input' when none could be chosen)."""
        return self.input.describe() if self.input is not None else "no input"

    def caption(self) -> str:
        """How every FLOPs figure must be labelled: what is counted and for which input."""
        if self.input is None:
            return "FLOPs: unknown (no input size)"
        return f"FLOPs (2 × multiply–adds) for input {self.input_text}"

    def to_json(self) -> dict[str, object]:
        """The report's header as JSON (the per-layer numbers go into each layer's entry)."""
        return {
            "input": None if self.input is None else {
                "shape": list(self.input.shape), "dtype": self.input.dtype, "kind": self.input.kind,
                "text": self.input_text, "source": self.input.source},
            "method": self.method,
            "flops_definition": FLOPS_MEANING,
            "total_flops": self.total_flops,
            "shapes_unknown": self.shapes_reason or None,
            "flops_unknown": self.flops_reason or None,
            "notes": list(self.notes),
        }


def unknown(input_: ShapeInput | None, reason: str, method: str = "") -> ShapeReport:
    """A report that says plainly why neither shapes nor FLOPs are known."""
    return ShapeReport(input_, {}, {}, method, reason, reason)


def apply_report(summary: ModelSummary, report: ShapeReport) -> ModelSummary:
    """A copy of the summary whose layers carry the report's output shapes and FLOPs (others keep theirs)."""
    from analyzers.loaders.format_util import decorate_tree

    if not report.shapes and not report.flops:
        return summary
    root = decorate_tree(summary.root, output_shapes=dict(report.shapes), flops=dict(report.flops))
    return dataclasses.replace(summary, root=root)


def own_flops(root: LayerNode, inclusive: Mapping[str, int]) -> dict[str, int]:
    """Each layer's own FLOPs: its inclusive count less its children's (operations its forward runs itself)."""
    out: dict[str, int] = {}
    for node, _ in root.walk():
        total = inclusive.get(node.path)
        if total is None:
            continue
        below = sum(inclusive.get(c.path, 0) for c in node.children)
        out[node.path] = max(0, total - below)
    return out


def flops_by_type(root: LayerNode, inclusive: Mapping[str, int], top: int = 12) -> list[tuple[str, int]]:
    """Own FLOPs summed by layer type, largest first; the tail folded into 'other' (the Overview's chart)."""
    own = own_flops(root, inclusive)
    by: dict[str, int] = {}
    index = {node.path: node for node, _ in root.walk()}
    for path, n in own.items():
        if n:
            key = index[path].type or "(untyped)"
            by[key] = by.get(key, 0) + n
    items = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > top:
        rest = sum(v for _, v in items[top - 1:])
        items = [*items[: top - 1], ("other", rest)]
    return items


def human_flops(n: float | None) -> str:
    """3.2e12 -> '3.20 TFLOPs'; None -> 'unknown'."""
    if n is None:
        return "unknown"
    value = float(n)
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.2f} {prefix}FLOPs"
    return f"{int(value)} FLOPs"


def shape_text(shape: Shape | None) -> str:
    """(1, 128, 4096) -> '1 × 128 × 4096'; None -> ''."""
    if shape is None:
        return ""
    return " × ".join("?" if d is None else str(d) for d in shape) if shape else "scalar"
