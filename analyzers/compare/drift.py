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
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzers.compare.layouts import Layout
from analyzers.compare.measures import DriftReport, DriftStats, LayerDrift, TensorDrift
from analyzers.compare.structure import LayerPair, StructureDiff, TensorPair, align, local_name
from analyzers.errors import LayerScopeError, printable
from analyzers.summary import LayerNode, ModelSummary
from analyzers.tasks import CancelToken, Progress, Steps

CHUNK_ELEMENTS = 1 << 18  # values per block and side: 1 MiB of float32, so the passes over a block stay in cache
DRIFT_THREADS = 4
PROGRESS_ELEMENTS = 16 << 20  # a progress step at least every this many values
INTEGER_KINDS = "iub"
SCALES = {"kernel": "kernel_scale", "embeddings": "embeddings_scale"}  # Keras int8: value = int8 / scale


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


_scratch = threading.local()


def _buffers(n: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """This thread's reusable B − A and mask buffers: fresh 1 MiB arrays per block were fresh pages (page faults)."""
    have = getattr(_scratch, "buffers", None)
    if have is None or have[0].size < n or have[0].dtype != dtype:
        have = (np.empty(n, dtype=dtype), np.empty(n, dtype=bool))
        _scratch.buffers = have
    return have[0][:n], have[1][:n]


def _block_stats(ca: np.ndarray, cb: np.ndarray) -> DriftStats:
    """The sums of one block (1-D, same dtype). A · B comes from the three norms, (‖A‖² + ‖B‖² − ‖B − A‖²) / 2:
    one dot product less per block, exact enough (float64 sums) for a cosine near 1."""
    n = int(ca.size)
    d, mask = _buffers(n, ca.dtype)
    np.subtract(cb, ca, out=d)
    a2, b2, d2 = float(np.dot(ca, ca)), float(np.dot(cb, cb)), float(np.dot(d, d))
    stats = DriftStats(numel=n, sum_a2=a2, sum_b2=b2, sum_d2=d2, dot=(a2 + b2 - d2) / 2,
                       changed=n - int(np.count_nonzero(np.equal(d, 0, out=mask))),
                       zeros_a=int(np.count_nonzero(np.equal(ca, 0, out=mask))),
                       zeros_b=int(np.count_nonzero(np.equal(cb, 0, out=mask))))
    if n:
        stats.max_abs = max(float(d.max()), -float(d.min()))
    if not (math.isfinite(d2) and math.isfinite(a2) and math.isfinite(b2)):
        finite = np.isfinite(ca) & np.isfinite(cb)
        kept = _block_stats(ca[finite], cb[finite])  # (the buffers are reused: d and mask are spent here)
        kept.numel, kept.zeros_a, kept.zeros_b = n, stats.zeros_a, stats.zeros_b
        kept.changed += int(np.count_nonzero(~finite & ~((ca == cb) | (np.isnan(ca) & np.isnan(cb)))))
        kept.nonfinite = n - int(np.count_nonzero(finite))
        return kept
    return stats


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    """The threads blocks are measured on (numpy and BLAS release the GIL): one per core, at most DRIFT_THREADS."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, min(DRIFT_THREADS, os.cpu_count() or 1)),
                                       thread_name_prefix="layerscope-drift")
        return _pool


def _compare(a: _Operand, b: _Operand, chunk: int, token: CancelToken | None, progress: list[int],
             total: int, text: str) -> Steps[DriftStats]:
    """The measures of one tensor pair, block by block: the blocks are measured on a few threads, at most two
    per thread in flight (memory stays bounded), and summed in order (the same sums on every run)."""
    va, vb = a.values, b.values
    dtype = np.float64 if np.float64 in (va.dtype, vb.dtype) else np.float32
    if a.scale is None and b.scale is None and va.flags.c_contiguous and vb.flags.c_contiguous:
        va, vb = va.reshape(-1), vb.reshape(-1)
        a, b = _Operand(va), _Operand(vb)

    def measure(index: tuple) -> DriftStats:
        return _block_stats(_numbers(a, index, dtype), _numbers(b, index, dtype))

    stats = DriftStats()
    since = 0
    pool = _workers()
    depth = 2 * pool._max_workers
    pending: deque[Future] = deque()
    blocks = _blocks(va.shape, chunk)
    try:
        while True:
            while len(pending) < depth and (index := next(blocks, None)) is not None:
                pending.append(pool.submit(measure, index))
            if not pending:
                break
            block = pending.popleft().result()
            if token is not None:
                token.raise_if_cancelled()
            stats.add(block)
            progress[0] += block.numel
            since += block.numel
            if since >= PROGRESS_ELEMENTS:
                since = 0
                yield Progress(progress[0], total, text)
    finally:
        for future in pending:
            future.cancel()
        wait(pending)
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
