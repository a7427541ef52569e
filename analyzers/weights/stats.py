"""Weight statistics of any size: per tensor and per layer min, max, mean, std, exact zeros, NaN and Inf
counts and a fixed-bin histogram, streamed one tensor (and one bounded chunk) at a time, with findings.

Every layer's tensors are read twice: first for the counts, extremes and sum, then for the spread
around the mean and the histogram, whose HIST_BINS equal bins span the layer's finite range (so a
layer's histogram is exactly the sum of its tensors'). Mean and std are over the finite values
(population std, numpy's default); NaN and Inf are counted apart. Memory stays bounded: a chunk of
at most CHUNK_ELEMENTS values is widened at a time and each tensor's map is released after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from analyzers.summary import ModelSummary, TensorInfo
from analyzers.tasks import CancelToken, Progress, Steps
from analyzers.weights.chunks import CHUNK_ELEMENTS, flat_chunks

HIST_BINS = 64
EXTREME_ABS = 1e4  # a weight this large is flagged (float16 tops out at 65,504; typical weights are below 10)
OUTLIER_RATIO = 100.0  # max |w| this many standard deviations out: a range per-tensor int8 would waste
EDGE_SLACK = 1e-4  # float32 bin positions this close to an edge are re-checked against the exact edges


class TensorReader(Protocol):
    """What statistics read: a WeightSource, or the live weights of a model held in memory."""

    def names(self) -> list[str]: ...  # noqa: D102 - a protocol
    def info(self, name: str) -> TensorInfo: ...  # noqa: D102
    def read(self, name: str) -> np.ndarray: ...  # noqa: D102


@dataclass(frozen=True)
class ValueStats:
    """Statistics of a set of values (one tensor, one layer or a subtree)."""

    count: int  # every value, NaN and Inf included
    finite: int
    min: float | None  # over the finite values; None when there are none
    max: float | None
    mean: float | None
    std: float | None  # population std of the finite values
    zeros: int  # values exactly 0.0
    nans: int
    infs: int
    hist: tuple[int, ...] | None = None  # HIST_BINS counts over [hist_lo, hist_hi]
    hist_lo: float | None = None
    hist_hi: float | None = None

    @property
    def zero_fraction(self) -> float:
        """Share of exact zeros: the sparsity the weights already have."""
        return self.zeros / self.count if self.count else 0.0

    @property
    def max_abs(self) -> float | None:
        """The largest finite magnitude."""
        if self.min is None or self.max is None:
            return None
        return max(abs(self.min), abs(self.max))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON numbers (the histogram with its edges)."""
        out: dict[str, Any] = {"count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                               "std": self.std, "zeros": self.zeros, "zero_fraction": self.zero_fraction,
                               "nan": self.nans, "inf": self.infs}
        if self.hist is not None:
            out["histogram"] = {"lo": self.hist_lo, "hi": self.hist_hi, "counts": list(self.hist)}
        return out


@dataclass(frozen=True)
class Finding:
    """Something in the weights worth a look: NaN/Inf, a dead layer, an extreme range."""

    severity: str  # "error" | "warning"
    path: str  # the layer
    tensor: str  # the tensor ("" for the whole layer)
    text: str  # one sentence

    def to_json(self) -> dict[str, str]:
        """As JSON."""
        return {"severity": self.severity, "layer": self.path, "tensor": self.tensor, "text": self.text}


@dataclass(frozen=True)
class WeightStats:
    """Statistics of every readable tensor and of every layer holding tensors, with findings."""

    tensors: Mapping[str, ValueStats]
    layers: Mapping[str, ValueStats]  # own tensors of each layer, histogram over the layer's range
    layer_types: Mapping[str, str]
    owners: Mapping[str, str]  # tensor -> layer
    findings: tuple[Finding, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)  # tensor -> why its values were not read
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    bytes_read: int = 0  # the stored bytes of the tensors read (each read twice)

    def subtree(self, path: str) -> ValueStats | None:
        """Statistics of every tensor at or below `path`, merged exactly (no histogram: ranges differ)."""
        prefix = path + "." if path else ""
        parts = [s for p, s in self.layers.items() if p == path or p.startswith(prefix) or not path]
        return merge(parts) if parts else None


@dataclass
class _Running:
    """Pass-one totals of one tensor."""

    count: int = 0
    finite: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    total: float = 0.0
    zeros: int = 0
    nans: int = 0
    infs: int = 0

    def add(self, chunk: np.ndarray) -> None:
        n = chunk.size
        self.count += n
        s = float(chunk.sum(dtype=np.float64))
        if math.isfinite(s):  # a NaN or Inf anywhere would make the sum non-finite
            finite = chunk
        else:
            ok = np.isfinite(chunk)
            nan = int(np.isnan(chunk).sum())
            self.nans += nan
            self.infs += n - int(ok.sum()) - nan
            finite = chunk[ok]
            s = float(finite.sum(dtype=np.float64))
        if finite.size:
            self.finite += finite.size
            self.lo = min(self.lo, float(finite.min()))
            self.hi = max(self.hi, float(finite.max()))
            self.total += s
        self.zeros += n - int(np.count_nonzero(chunk))  # NaN is non-zero, as numpy counts it


def histogram_edges(lo: float, hi: float, bins: int = HIST_BINS) -> tuple[float, float]:
    """np.histogram's range for (lo, hi): widened by 0.5 either side when lo == hi."""
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def bin_counts(values: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> np.ndarray:
    """Counts of finite `values` in `bins` equal bins over [lo, hi], exactly as np.histogram(values, bins,
    (lo, hi)) counts them (edges in the values' dtype, the last bin closed), at several times its speed: bins
    are found in float32, counted two at a time (a pair of uint8 bin numbers is one uint16), and only the
    values within float32 rounding of an edge are placed again against the edges themselves."""
    if bins > 256:
        raise ValueError("bin_counts counts at most 256 bins")
    edges = np.linspace(lo, hi, bins + 1, endpoint=True, dtype=np.result_type(lo, hi, values))
    scale = np.float32(bins / (hi - lo))
    pos = np.subtract(values, np.float32(lo), dtype=np.float32)
    pos *= scale
    off = np.rint(pos)
    off -= pos
    np.abs(off, out=off)
    slack = max(EDGE_SLACK, 8 * float(np.finfo(np.float32).eps) * (abs(lo) + abs(hi)) * float(scale))
    close = off < slack  # within rounding of an edge (or of either end)
    del off
    zero_pos = -float(lo) * float(scale)
    zeros = 0
    if 0 <= zero_pos <= bins and abs(zero_pos - round(zero_pos)) < slack:
        # 0.0 sits on an edge (a symmetric range): pruned and dead weights would all be re-placed one by one,
        # so the exact zeros are placed once, together
        is_zero = values == 0
        zeros = int(np.count_nonzero(is_zero))
        if zeros:
            close &= ~is_zero
        del is_zero
    near = np.flatnonzero(close)
    del close
    np.clip(pos, 0, bins - 1, out=pos)
    idx = pos.astype(np.uint8)
    del pos
    counts = _count_small(idx, bins)
    if zeros:
        fast = int(min(max(np.float32(np.float32(0 - np.float32(lo)) * scale), 0), bins - 1))
        exact_zero = min(int(np.searchsorted(edges, edges.dtype.type(0), side="right")) - 1, bins - 1)
        counts[fast] -= zeros
        counts[exact_zero] += zeros
    if near.size:
        exact = values[near]
        keep = (exact >= edges[0]) & (exact <= edges[-1])
        right = np.searchsorted(edges, exact[keep], side="right") - 1
        right[right == bins] = bins - 1  # the last bin includes its right edge
        counts -= np.bincount(idx[near], minlength=bins)[:bins]
        counts += np.bincount(right, minlength=bins)[:bins]
    return counts


def _count_small(idx: np.ndarray, bins: int) -> np.ndarray:
    """np.bincount of uint8 values below `bins`, half the work: two neighbours read as one uint16."""
    odd = idx.size % 2
    counts = np.zeros(bins, dtype=np.int64)
    if odd:
        counts[int(idx[-1])] += 1
        idx = idx[:-1]
    if idx.size:
        pairs = np.bincount(np.ascontiguousarray(idx).view(np.uint16), minlength=1 << 16).reshape(256, 256)
        counts += pairs.sum(axis=0)[:bins] + pairs.sum(axis=1)[:bins]  # low byte, then high byte
    return counts


def _pass_two(chunks: Iterable[np.ndarray], mean: float, edges: tuple[float, float] | None, clean: bool
              ) -> tuple[float, np.ndarray | None]:
    """Sum of squared deviations from `mean` and the histogram over the range `edges`, of the finite values
    (`clean`: pass one found no NaN or Inf, so no chunk needs filtering)."""
    m2 = 0.0
    counts = np.zeros(HIST_BINS, dtype=np.int64) if edges is not None else None
    for chunk in chunks:
        if not clean and not math.isfinite(float(chunk.sum(dtype=np.float64))):
            chunk = chunk[np.isfinite(chunk)]
        if not chunk.size:
            continue
        dev = chunk - chunk.dtype.type(mean)
        np.square(dev, out=dev)
        m2 += float(dev.sum(dtype=np.float64))
        del dev
        if counts is not None and edges is not None:
            counts += bin_counts(chunk, edges[0], edges[1])
    return m2, counts


def _finish(run: _Running, m2: float, counts: np.ndarray | None, edges: tuple[float, float] | None) -> ValueStats:
    mean = run.total / run.finite if run.finite else None
    std = math.sqrt(max(m2, 0.0) / run.finite) if run.finite else None
    lo = run.lo if run.finite else None
    hi = run.hi if run.finite else None
    return ValueStats(run.count, run.finite, lo, hi, mean, std, run.zeros, run.nans, run.infs,
                      tuple(int(c) for c in counts) if counts is not None else None,
                      edges[0] if edges is not None else None, edges[1] if edges is not None else None)


def merge(parts: Iterable[ValueStats]) -> ValueStats:
    """Exact statistics of the union of value sets (Chan's parallel variance); no histogram."""
    count = finite = zeros = nans = infs = 0
    lo, hi = math.inf, -math.inf
    mean, m2 = 0.0, 0.0
    for p in parts:
        count += p.count
        zeros += p.zeros
        nans += p.nans
        infs += p.infs
        if not p.finite or p.mean is None or p.std is None:
            continue
        lo, hi = min(lo, p.min), max(hi, p.max)  # type: ignore[type-var]
        n_a, n_b = finite, p.finite
        delta = p.mean - mean
        total = n_a + n_b
        mean += delta * n_b / total
        m2 += p.std ** 2 * n_b + delta * delta * n_a * n_b / total
        finite = total
    if not finite:
        return ValueStats(count, 0, None, None, None, None, zeros, nans, infs)
    return ValueStats(count, finite, lo, hi, mean, math.sqrt(max(m2, 0.0) / finite), zeros, nans, infs)


def owners_of(summary: ModelSummary) -> tuple[dict[str, str], dict[str, str]]:
    """(tensor name -> the layer holding it, layer path -> its type), tied duplicates at their first owner."""
    owners: dict[str, str] = {}
    types: dict[str, str] = {}
    for node, _ in summary.walk():
        for t in node.tensors:
            if t.counted and t.name not in owners:
                owners[t.name] = node.path
                types[node.path] = node.type
    return owners, types


def weight_stats(summary: ModelSummary, source: TensorReader, token: CancelToken | None = None,
                 chunk: int = CHUNK_ELEMENTS) -> Steps[WeightStats]:
    """Statistics of every readable tensor of `source`, layer by layer, with progress and Cancel."""
    started = time.perf_counter()
    owners, types = owners_of(summary)
    readable = set(source.names())
    by_layer: dict[str, list[str]] = {}
    for name in source.names():
        by_layer.setdefault(owners.get(name, ""), []).append(name)
    total_bytes = sum(source.info(n).nbytes for n in readable) or 1
    done_bytes = 0
    tensors: dict[str, ValueStats] = {}
    layers: dict[str, ValueStats] = {}
    skipped: dict[str, str] = {}
    for path, names in by_layer.items():
        runs: dict[str, _Running] = {}
        for name in names:
            if token is not None:
                token.raise_if_cancelled()
            info = source.info(name)
            yield Progress(done_bytes, total_bytes, f"Statistics: {name}")
            try:
                values = source.read(name)
                run = _Running()
                for piece in flat_chunks(values, chunk):
                    run.add(piece)
                    if token is not None:
                        token.raise_if_cancelled()
                del values
            except (ValueError, OSError, TypeError) as exc:  # a tensor the format keeps unreadable
                skipped[name] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                continue
            except Exception as exc:  # NotReadable (quantised types without a dequantiser) and the like
                skipped[name] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                continue
            runs[name] = run
            done_bytes += info.nbytes // 2
        finite = [r for r in runs.values() if r.finite]
        edges = histogram_edges(min(r.lo for r in finite), max(r.hi for r in finite)) if finite else None
        for name, run in runs.items():
            if token is not None:
                token.raise_if_cancelled()
            yield Progress(done_bytes, total_bytes, f"Histogram: {name}")
            mean = run.total / run.finite if run.finite else 0.0
            values = source.read(name)
            m2, counts = _pass_two(flat_chunks(values, chunk), mean, edges if run.finite else None,
                                   not (run.nans or run.infs))
            del values
            if counts is None and edges is not None:
                counts = np.zeros(HIST_BINS, dtype=np.int64)
            tensors[name] = _finish(run, m2, counts, edges)
            done_bytes += source.info(name).nbytes - source.info(name).nbytes // 2
        if runs:
            layer = merge(tensors[n] for n in runs)
            hist = None
            if edges is not None:
                hist = tuple(int(sum(tensors[n].hist[i] for n in runs if tensors[n].hist))  # type: ignore[index]
                             for i in range(HIST_BINS))
            layers[path] = ValueStats(layer.count, layer.finite, layer.min, layer.max, layer.mean, layer.std,
                                      layer.zeros, layer.nans, layer.infs, hist,
                                      edges[0] if edges is not None else None, edges[1] if edges is not None else None)
    yield Progress(total_bytes, total_bytes, "Statistics done")
    infos = {n: source.info(n) for n in tensors}
    findings = find_problems(tensors, layers, owners, infos)
    notes = list(getattr(source, "notes", []) or [])
    if skipped:
        notes.append(f"{len(skipped):,} tensor(s) could not be read (e.g. {next(iter(skipped))}: "
                     f"{next(iter(skipped.values()))}).")
    return WeightStats(tensors, layers, {p: types.get(p, "") for p in layers}, owners, tuple(findings), skipped,
                       tuple(notes), time.perf_counter() - started, sum(i.nbytes for i in infos.values()))


def find_problems(tensors: Mapping[str, ValueStats], layers: Mapping[str, ValueStats], owners: Mapping[str, str],
                  infos: Mapping[str, TensorInfo]) -> list[Finding]:
    """NaN or Inf anywhere; dead weights (a matrix, or a whole layer's parameters, all exactly zero);
    values past EXTREME_ABS; ranges OUTLIER_RATIO standard deviations wide."""
    out: list[Finding] = []
    for name, s in tensors.items():
        path = owners.get(name, "")
        if s.nans or s.infs:
            out.append(Finding("error", path, name, f"{name} holds {s.nans:,} NaN and {s.infs:,} Inf value(s): "
                                                    "the model's outputs will be NaN or Inf too."))
    by_layer: dict[str, list[str]] = {}
    for name in tensors:
        if infos[name].kind == "param":
            by_layer.setdefault(owners.get(name, ""), []).append(name)
    for path, names in by_layer.items():
        params = [n for n in names if tensors[n].count]
        dead_all = params and all(tensors[n].zeros == tensors[n].count for n in params)
        if dead_all:
            count = sum(tensors[n].count for n in params)
            out.append(Finding("warning", path, "", f"Layer {path or '(model)'} is dead: all {count:,} of its "
                                                    "parameters are exactly zero."))
            continue
        for n in params:
            s = tensors[n]
            if len(infos[n].shape) >= 2 and s.zeros == s.count:
                out.append(Finding("warning", path, n, f"{n} is all zeros ({s.count:,} values): the layer passes "
                                                       "nothing through it."))
    for name, s in tensors.items():
        if infos[name].kind != "param" or s.max_abs is None:
            continue
        path = owners.get(name, "")
        if s.max_abs >= EXTREME_ABS:
            out.append(Finding("warning", path, name, f"{name} reaches {s.max_abs:.4g}, an extreme magnitude for "
                                                      "a weight (float16 overflows past 65,504)."))
        elif s.std and s.count > 1000 and s.max_abs / s.std >= OUTLIER_RATIO:
            out.append(Finding("warning", path, name, f"{name} has outliers {s.max_abs / s.std:.0f} standard "
                                                      "deviations out: per-tensor int8 would spend its levels on "
                                                      "them (per-channel or group scales help)."))
    return out
