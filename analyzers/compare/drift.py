"""Weight drift between two checkpoints: how far each tensor moved, and each layer with it.

Per tensor pair of the aligned structure: relative change ‖B − A‖ / ‖A‖, cosine similarity, max |B − A|,
the fraction of elements that changed, and the share of exact zeros on each side; rolled up per layer
(its own tensors and its subtree) and for the whole model. Values stream through
analyzers.weights.source one tensor at a time and, inside a tensor, one block of at most
CHUNK_ELEMENTS values at a time (memory-mapped files are read block by block), so two 7B checkpoints
compare in bounded memory. Keras kernels are read in PyTorch's layout (views, no copies) when a Keras
model is compared with its PyTorch port; Keras int8 kernels are divided by their `kernel_scale` and GGUF
blocks dequantised by the source; a tensor that cannot be read or dequantised is listed with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzers.compare.layouts import Layout
from analyzers.compare.structure import LayerPair, StructureDiff, TensorPair, align, local_name
from analyzers.errors import LayerScopeError, printable
from analyzers.summary import LayerNode, ModelSummary
from analyzers.tasks import CancelToken, Progress, Steps

CHUNK_ELEMENTS = 1 << 20  # values per block and side: 4 MiB of float32, so the passes over a block stay in cache
PROGRESS_ELEMENTS = 16 << 20  # a progress step at least every this many values
INTEGER_KINDS = "iub"
SCALES = {"kernel": "kernel_scale", "embeddings": "embeddings_scale"}  # Keras int8: value = int8 / scale


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


# --- reading one side ---------------------------------------------------------------------------------


class NotComparable(Exception):
    """This tensor pair has no measures; the message says why."""


@dataclass
class _Operand:
    values: np.ndarray  # in the compared layout (a view)
    scale: np.ndarray | None = None  # broadcast like `values`: value = stored / scale (Keras int8)
    note: str = ""


def _operand(source: Any, tensor: Any, node: LayerNode, layout: Layout | None, side: str) -> _Operand:
    from analyzers.weights.source import NotReadable

    try:
        raw = source.read(tensor.name)
    except (NotReadable, LayerScopeError) as exc:
        raise NotComparable(str(exc).rstrip(".")) from None
    except (OSError, ValueError) as exc:
        raise NotComparable(f"its values could not be read ({printable(exc, 200)})") from None
    scale = None
    note = ""
    if raw.dtype.kind in INTEGER_KINDS:
        local = local_name(tensor, node)
        scale_name = f"{node.path}.{SCALES[local]}" if local in SCALES and node.path else None
        if scale_name is not None and scale_name in source:
            s = np.asarray(source.read(scale_name), dtype=np.float32)
            if local == "kernel" and s.shape == raw.shape[-1:]:
                scale = np.broadcast_to(s, raw.shape)
            elif local == "embeddings" and raw.ndim == 2 and s.shape == raw.shape[:1]:
                scale = np.broadcast_to(s[:, None], raw.shape)
            if scale is not None:
                note = f"{tensor.dtype} {local} ÷ {SCALES[local]} (Keras)"
    values = raw
    if layout is not None:
        transform = layout.apply if layout.side == side else layout.match
        values = transform(raw)
        scale = transform(scale) if scale is not None else None
    return _Operand(values, scale, note)


def _blocks(shape: tuple[int, ...], limit: int) -> Iterator[tuple]:
    """Index tuples selecting consecutive blocks of at most `limit` elements, in C order."""
    if not shape:
        yield ()
        return
    inner = math.prod(shape[1:])
    if inner <= limit:
        rows = max(1, limit // max(inner, 1))
        for i in range(0, shape[0], rows):
            yield (slice(i, min(i + rows, shape[0])),)
        return
    for i in range(shape[0]):
        for sub in _blocks(shape[1:], limit):
            yield (i, *sub)


def _numbers(op: _Operand, index: tuple, dtype: type) -> np.ndarray:
    block = np.ascontiguousarray(op.values[index], dtype=dtype)
    if op.scale is not None:
        block = block / np.asarray(op.scale[index], dtype=dtype)
    return block.reshape(-1)


def _block_stats(ca: np.ndarray, cb: np.ndarray) -> DriftStats:
    d = cb - ca
    n = int(ca.size)
    stats = DriftStats(numel=n, sum_a2=float(np.dot(ca, ca)), sum_b2=float(np.dot(cb, cb)),
                       sum_d2=float(np.dot(d, d)), dot=float(np.dot(ca, cb)),
                       changed=int(np.count_nonzero(d)), zeros_a=n - int(np.count_nonzero(ca)),
                       zeros_b=n - int(np.count_nonzero(cb)))
    if n:
        stats.max_abs = max(float(d.max()), -float(d.min()))
    if not (math.isfinite(stats.sum_d2) and math.isfinite(stats.sum_a2) and math.isfinite(stats.sum_b2)):
        finite = np.isfinite(ca) & np.isfinite(cb)
        kept = _block_stats(ca[finite], cb[finite])
        kept.numel, kept.zeros_a, kept.zeros_b = n, stats.zeros_a, stats.zeros_b
        kept.changed += int(np.count_nonzero(~finite & ~((ca == cb) | (np.isnan(ca) & np.isnan(cb)))))
        kept.nonfinite = n - int(np.count_nonzero(finite))
        return kept
    return stats


def _compare(a: _Operand, b: _Operand, chunk: int, token: CancelToken | None, progress: list[int],
             total: int, text: str) -> Steps[DriftStats]:
    """The measures of one tensor pair, block by block."""
    va, vb = a.values, b.values
    dtype = np.float64 if np.float64 in (va.dtype, vb.dtype) else np.float32
    if a.scale is None and b.scale is None and va.flags.c_contiguous and vb.flags.c_contiguous:
        va, vb = va.reshape(-1), vb.reshape(-1)
        a, b = _Operand(va), _Operand(vb)
    stats = DriftStats()
    since = 0
    for index in _blocks(va.shape, chunk):
        if token is not None:
            token.raise_if_cancelled()
        block = _block_stats(_numbers(a, index, dtype), _numbers(b, index, dtype))
        stats.add(block)
        progress[0] += block.numel
        since += block.numel
        if since >= PROGRESS_ELEMENTS:
            since = 0
            yield Progress(progress[0], total, text)
    return stats


def _integer_without_scale(op: _Operand) -> bool:
    return op.values.dtype.kind in INTEGER_KINDS and op.scale is None


def _pair_drift(sa: Any, sb: Any, pair: LayerPair, tp: TensorPair, chunk: int, token: CancelToken | None,
                progress: list[int], total: int) -> Steps[TensorDrift]:
    shape = tp.shape_b or ()
    layout = tp.layout.label if tp.layout is not None else ""
    base = (tp.a.name, tp.b.name, pair.key, shape)
    try:
        if tp.shape_changed:
            raise NotComparable(f"the shapes differ: {tp.shape_a} in A, {tp.shape_b} in B")
        a = _operand(sa, tp.a, pair.a, tp.layout, "a")
        b = _operand(sb, tp.b, pair.b, tp.layout, "b")
        for op, info, other in ((a, tp.a, b), (b, tp.b, a)):
            if _integer_without_scale(op) and not _integer_without_scale(other):
                raise NotComparable(f"{printable(info.name, 120)} is stored as {info.dtype} and LayerScope knows no "
                                    "scale to dequantise it with")
        if a.values.shape != b.values.shape:
            raise NotComparable(f"the stored values have shapes {a.values.shape} and {b.values.shape}")
    except NotComparable as exc:
        return TensorDrift(*base, None, layout, "", str(exc))
    text = f"Comparing {printable(tp.b.name, 80)}"
    stats = yield from _compare(a, b, chunk, token, progress, total, text)
    dequantized = "; ".join(f"{side}: {op.note}" for side, op in (("A", a), ("B", b)) if op.note)
    return TensorDrift(*base, stats, layout, dequantized)


def drift_steps(a: ModelSummary, b: ModelSummary, token: CancelToken | None = None,
                chunk: int = CHUNK_ELEMENTS, diff: StructureDiff | None = None) -> Steps[DriftReport]:
    """Compare the weight values of two checkpoints tensor pair by tensor pair (see the module's docstring)."""
    from analyzers.weights.source import open_weights

    started = time.perf_counter()
    diff = diff or align(a, b)
    work = [(pair, tp) for pair in diff.rows for tp in pair.tensors]
    both = [(pair, tp) for pair, tp in work if tp.a is not None and tp.b is not None]
    total = sum(tp.b.numel for _, tp in both) or 1
    progress = [0]
    results: dict[tuple, list[TensorDrift]] = {}
    yield Progress(0, total, f"Opening the weights of {a.source.path} and {b.source.path}")
    bytes_read = 0
    with open_weights(a) as sa, open_weights(b) as sb:
        for pair, tp in both:
            if token is not None:
                token.raise_if_cancelled()
            drift = yield from _pair_drift(sa, sb, pair, tp, chunk, token, progress, total)
            if drift.stats is None:
                progress[0] += tp.b.numel
            else:
                bytes_read += tp.a.nbytes + tp.b.nbytes
            results.setdefault(pair.key, []).append(drift)
            yield Progress(progress[0], total, f"Compared {printable(tp.b.name, 80)}")
        notes = tuple(dict.fromkeys([*sa.notes, *sb.notes]))
    layers, model = _roll_up(diff, results)
    tensors = tuple(t for pair in diff.rows for t in results.get(pair.key, ()))
    only_a = tuple(tp.a.name for _, tp in work if tp.b is None)
    only_b = tuple(tp.b.name for _, tp in work if tp.a is None)
    return DriftReport(a.source.path, b.source.path, tensors, layers, model, only_a, only_b, bytes_read,
                       time.perf_counter() - started, notes)


def _roll_up(diff: StructureDiff, results: dict[tuple, list[TensorDrift]]) -> tuple[tuple[LayerDrift, ...],
                                                                                     DriftStats]:
    """Own and subtree sums for every pair, children before parents; rows for pairs with anything compared."""
    totals: dict[int, DriftStats] = {}
    own: dict[int, tuple[DriftStats, int, int]] = {}
    for pair in reversed(diff.rows):
        mine = DriftStats()
        compared = missing = 0
        for t in results.get(pair.key, ()):
            if t.stats is None:
                missing += 1
            else:
                compared += 1
                mine.add(t.stats)
        total = DriftStats()
        total.add(mine)
        for child in pair.children:
            total.add(totals[id(child)])
        totals[id(pair)] = total
        own[id(pair)] = (mine, compared, missing)
    rows = []
    for pair in diff.rows:
        mine, compared, missing = own[id(pair)]
        if totals[id(pair)].numel or missing:
            layer_type = (pair.b or pair.a).type if (pair.a or pair.b) is not None else ""
            rows.append(LayerDrift(pair.path_a, pair.path_b, layer_type, mine, totals[id(pair)], compared, missing))
    return tuple(rows), totals[id(diff.root)]
