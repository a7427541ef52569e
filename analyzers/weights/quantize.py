"""Quantisation and pruning previews: what int8, int4 or magnitude pruning would cost each layer, in error
and in bytes, computed from the real weights one bounded chunk at a time.

Which tensors: the parameters with two or more dimensions (matrices, convolution kernels, embeddings)
in a floating-point dtype; biases and normalisation scales keep their stored size. Channels are the
output channels: axis 0 of a PyTorch-style tensor (out, in, ...), the last axis of a Keras kernel
(..., out).

- int8: symmetric, one scale per output channel (max |w| / 127, round half to even, levels -127..127).
- int4: symmetric, one scale per group of INT4_GROUP consecutive weights along each channel's inputs
  (max |w| / 7, levels -7..7).
- Both: SNR = 10·log10(Σw² / Σ(w - ŵ)²) dB and relative error ‖w - ŵ‖ / ‖w‖; the size after stores one
  fp16 scale (2 B) per channel or group, as the Memory tab's int4 row does.
- Pruning: global magnitude pruning at sparsity s zeroes the round(s·N) weights of smallest |w| among all
  N eligible weights (values tied with the threshold go too); each layer reports what it loses (the share
  of its weights and of their energy Σw²), and the size of the pruned tensor in the smaller of CSR (values,
  int32 column indices, int32 row pointers over (first axis, rest)) and a bitmap (one bit per weight plus
  the kept values).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzers.summary import ModelSummary, TensorInfo
from analyzers.summary.dtypes import bytes_for
from analyzers.tasks import CancelToken, Progress, Steps
from analyzers.weights.chunks import CHUNK_ELEMENTS, as_float32, flat_chunks, row_chunks, squares
from analyzers.weights.stats import TensorReader, owners_of

INT4_GROUP = 128
SCALE_BYTES = 2  # one fp16 scale per channel (int8) or group (int4)
INDEX_BYTES = 4  # CSR column indices and row pointers as int32
SCHEMES = ("int8", "int4")
FLOAT_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16"})


def eligible(info: TensorInfo) -> bool:
    """A weight the previews touch: a floating-point parameter with two or more dimensions."""
    return info.kind == "param" and len(info.shape) >= 2 and info.dtype in FLOAT_DTYPES and info.numel > 0


def channel_axis(framework: str) -> int:
    """Where the output channels are: the last axis of a Keras kernel, the first elsewhere."""
    return -1 if framework == "keras" else 0


def _out_first(values: np.ndarray, axis: int) -> np.ndarray:
    """The tensor with its output channels first: (out, everything else) as a view where it can be."""
    return values if axis == 0 else np.moveaxis(values, -1, 0)


# --- round trips on whole arrays (the zoo's live weights, and the tests' reference) -----------------------


def int8_roundtrip(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """w quantised to int8 with one symmetric scale per output channel and back, as float32."""
    w = np.asarray(w, dtype=np.float32)
    m = _out_first(w, axis).reshape(w.shape[axis], -1)
    scale = np.abs(m).max(axis=1, keepdims=True) / np.float32(127)
    scale[scale == 0] = 1
    q = np.clip(np.rint(m / scale), -127, 127) * scale
    out = q.reshape(_out_first(w, axis).shape)
    return np.ascontiguousarray(out if axis == 0 else np.moveaxis(out, 0, -1))


def int4_roundtrip(w: np.ndarray, axis: int = 0, group: int = INT4_GROUP) -> np.ndarray:
    """w quantised to int4 with one symmetric scale per group of `group` inputs of each output channel."""
    w = np.asarray(w, dtype=np.float32)
    m = _out_first(w, axis).reshape(w.shape[axis], -1)
    q = _int4_rows(m, group)
    out = q.reshape(_out_first(w, axis).shape)
    return np.ascontiguousarray(out if axis == 0 else np.moveaxis(out, 0, -1))


def _int4_rows(m: np.ndarray, group: int) -> np.ndarray:
    rows, cols = m.shape
    groups = -(-cols // group)
    padded = np.zeros((rows, groups * group), dtype=np.float32)
    padded[:, :cols] = m
    g = padded.reshape(rows, groups, group)
    scale = np.abs(g).max(axis=2, keepdims=True) / np.float32(7)
    scale[scale == 0] = 1
    q = np.clip(np.rint(g / scale), -7, 7) * scale
    return q.reshape(rows, groups * group)[:, :cols]


def magnitude_threshold(arrays: Iterable[np.ndarray], sparsity: float) -> float | None:
    """The |w| at and below which global magnitude pruning at `sparsity` zeroes weights (None: prune nothing)."""
    mags = np.concatenate([np.abs(np.asarray(a, dtype=np.float32)).ravel() for a in arrays])
    k = int(round(sparsity * mags.size))
    if k <= 0:
        return None
    return float(np.partition(mags, k - 1)[k - 1])


def sizes_after(info: TensorInfo, axis: int) -> dict[str, int]:
    """Bytes of one eligible tensor as int8 (per-channel scales) and int4 (group scales)."""
    shape = info.shape
    channels = shape[axis]
    per_channel = info.numel // max(1, channels)
    groups = channels * -(-per_channel // INT4_GROUP)
    return {"int8": info.numel + SCALE_BYTES * channels,
            "int4": -(-info.numel // 2) + SCALE_BYTES * groups}


def sparse_bytes(info: TensorInfo, kept: int) -> tuple[str, int]:
    """(format, bytes) of a pruned tensor: the smallest of CSR over (first axis, rest), a bitmap, and dense
    (when too few weights go for either to pay)."""
    value_bytes = bytes_for(kept, info.dtype)
    rows = info.shape[0]
    options = [("CSR", value_bytes + INDEX_BYTES * kept + INDEX_BYTES * (rows + 1)),
               ("bitmap", value_bytes + -(-info.numel // 8)), ("dense", info.nbytes)]
    return min(options, key=lambda kv: kv[1])


# --- streamed previews over a checkpoint -----------------------------------------------------------------


@dataclass(frozen=True)
class QuantError:
    """One tensor's (or layer's) round-trip error under one scheme, and its size after."""

    signal: float  # Σw²
    noise: float  # Σ(w - ŵ)²
    bytes_before: int
    bytes_after: int

    @property
    def snr_db(self) -> float:
        """10·log10(Σw² / Σ(w - ŵ)²); inf when the round trip is exact."""
        if self.noise <= 0:
            return math.inf
        if self.signal <= 0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)

    @property
    def relative_error(self) -> float:
        """‖w - ŵ‖ / ‖w‖ (0 for an all-zero tensor)."""
        return math.sqrt(self.noise / self.signal) if self.signal > 0 else 0.0

    def __add__(self, other: QuantError) -> QuantError:
        return QuantError(self.signal + other.signal, self.noise + other.noise,
                          self.bytes_before + other.bytes_before, self.bytes_after + other.bytes_after)

    def to_json(self) -> dict[str, Any]:
        """As JSON (infinite SNR as null)."""
        snr = self.snr_db
        return {"snr_db": snr if math.isfinite(snr) else None, "relative_error": self.relative_error,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after}


@dataclass(frozen=True)
class QuantPreview:
    """Round-trip errors by scheme, per tensor and per layer, and the model's size after each."""

    schemes: tuple[str, ...]
    tensors: Mapping[str, Mapping[str, QuantError]]  # tensor -> scheme -> error
    layers: Mapping[str, Mapping[str, QuantError]]  # layer -> scheme -> error of its eligible tensors
    model_bytes: int  # every tensor as stored
    model_bytes_after: Mapping[str, int]  # scheme -> eligible tensors quantised, the rest as stored
    channel_axis: int
    seconds: float = 0.0

    def totals(self, scheme: str) -> QuantError:
        """The whole model's round trip under `scheme` (its eligible tensors together)."""
        out = QuantError(0.0, 0.0, 0, 0)
        for errors in self.tensors.values():
            out = out + errors[scheme]
        return out


def _tensor_errors(values: np.ndarray, axis: int, schemes: tuple[str, ...], chunk: int,
                   token: CancelToken | None) -> dict[str, tuple[float, float]]:
    """Σw² and Σ(w - ŵ)² of one tensor per scheme (NaN when it holds NaN or Inf), streamed by whole output
    channels (or input rows)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _tensor_errors_quiet(values, axis, schemes, chunk, token)


def _tensor_errors_quiet(values: np.ndarray, axis: int, schemes: tuple[str, ...], chunk: int,
                         token: CancelToken | None) -> dict[str, tuple[float, float]]:
    signal = 0.0
    noise = {s: 0.0 for s in schemes}
    if axis == 0:
        # (out, rest): chunks of whole channels, so every channel's scale and groups sit in one chunk
        for rows in row_chunks(values, chunk):
            if token is not None:
                token.raise_if_cancelled()
            signal += squares(rows)
            if "int8" in schemes:
                scale = np.abs(rows).max(axis=1, keepdims=True) / np.float32(127)
                scale[scale == 0] = 1
                err = rows - np.clip(np.rint(rows / scale), -127, 127) * scale
                noise["int8"] += squares(err)
            if "int4" in schemes:
                err = rows - _int4_rows(rows, INT4_GROUP)
                noise["int4"] += squares(err)
        return {s: (signal, noise[s]) for s in schemes}
    # Keras (..., out): rows of the flattened (rest, out) kernel; channel maxima first, then the errors
    out = values.shape[-1]
    flat = values.reshape(-1, out) if values.flags.c_contiguous else np.ascontiguousarray(values).reshape(-1, out)
    if "int8" in schemes:
        peak = np.zeros(out, dtype=np.float32)
        for rows in row_chunks(flat, chunk):
            np.maximum(peak, np.abs(rows).max(axis=0), out=peak)
        scale8 = peak / np.float32(127)
        scale8[scale8 == 0] = 1
    for rows in row_chunks(flat, chunk, INT4_GROUP):
        if token is not None:
            token.raise_if_cancelled()
        signal += squares(rows)
        if "int8" in schemes:
            err = rows - np.clip(np.rint(rows / scale8), -127, 127) * scale8
            noise["int8"] += squares(err)
        if "int4" in schemes:
            err = rows.T - _int4_rows(np.ascontiguousarray(rows.T), INT4_GROUP)
            noise["int4"] += squares(err)
    return {s: (signal, noise[s]) for s in schemes}


def quant_preview(summary: ModelSummary, source: TensorReader, schemes: tuple[str, ...] = SCHEMES,
                  token: CancelToken | None = None, chunk: int = CHUNK_ELEMENTS) -> Steps[QuantPreview]:
    """int8 / int4 round-trip error and size of every eligible tensor, rolled up per layer."""
    started = time.perf_counter()
    bad = [s for s in schemes if s not in SCHEMES]
    if bad:
        from analyzers.errors import LayerScopeError

        raise LayerScopeError(f"Unknown quantisation '{bad[0]}'; choose from {', '.join(SCHEMES)}.")
    axis = channel_axis(summary.source.framework)
    owners, _ = owners_of(summary)
    names = [n for n in source.names() if eligible(source.info(n))]
    total = sum(source.info(n).nbytes for n in names) or 1
    done = 0
    tensors: dict[str, dict[str, QuantError]] = {}
    for name in names:
        info = source.info(name)
        yield Progress(done, total, f"Quantisation preview: {name}")
        values = source.read(name)
        errors = _tensor_errors(values, axis, schemes, chunk, token)
        del values
        after = sizes_after(info, axis)
        tensors[name] = {s: QuantError(sig, noise, info.nbytes, after[s]) for s, (sig, noise) in errors.items()}
        done += info.nbytes
    layers: dict[str, dict[str, QuantError]] = {}
    for name, errors in tensors.items():
        layer = layers.setdefault(owners.get(name, ""), {})
        for s, e in errors.items():
            layer[s] = layer[s] + e if s in layer else e
    model_bytes = sum(t.nbytes for t in summary.tensors if t.counted)
    after_model = {s: model_bytes - sum(e[s].bytes_before - e[s].bytes_after for e in tensors.values())
                   for s in schemes}
    yield Progress(total, total, "Quantisation preview done")
    return QuantPreview(tuple(schemes), tensors, layers, model_bytes, after_model, axis,
                        time.perf_counter() - started)


@dataclass(frozen=True)
class PruneLoss:
    """What pruning takes from one tensor or layer."""

    weights: int
    pruned: int
    energy: float  # Σw²
    energy_pruned: float
    bytes_before: int
    bytes_after: int  # dense tensors of other layers as stored; pruned ones in `format`
    format: str  # "CSR" | "bitmap" | "dense" | "mixed"

    @property
    def fraction(self) -> float:
        """Share of the weights zeroed."""
        return self.pruned / self.weights if self.weights else 0.0

    @property
    def relative_error(self) -> float:
        """‖w - ŵ‖ / ‖w‖: the square root of the energy share lost."""
        return math.sqrt(self.energy_pruned / self.energy) if self.energy > 0 else 0.0

    def __add__(self, other: PruneLoss) -> PruneLoss:
        fmt = self.format if self.format == other.format else "mixed"
        return PruneLoss(self.weights + other.weights, self.pruned + other.pruned, self.energy + other.energy,
                         self.energy_pruned + other.energy_pruned, self.bytes_before + other.bytes_before,
                         self.bytes_after + other.bytes_after, fmt)

    def to_json(self) -> dict[str, Any]:
        """As JSON."""
        return {"weights": self.weights, "pruned": self.pruned, "fraction": self.fraction,
                "energy_lost": self.energy_pruned / self.energy if self.energy > 0 else 0.0,
                "relative_error": self.relative_error, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "sparse_format": self.format}


@dataclass(frozen=True)
class PrunePreview:
    """Global magnitude pruning at one sparsity: the threshold, what each layer loses, the sizes after."""

    sparsity: float
    threshold: float | None  # |w| at and below which weights go (None: nothing pruned)
    tensors: Mapping[str, PruneLoss]
    layers: Mapping[str, PruneLoss]
    model_bytes: int
    model_bytes_after: int
    seconds: float = 0.0

    @property
    def achieved(self) -> float:
        """The share of eligible weights actually zeroed (ties with the threshold can add a few)."""
        weights = sum(t.weights for t in self.tensors.values())
        return sum(t.pruned for t in self.tensors.values()) / weights if weights else 0.0


def _magnitude_bits(chunk: np.ndarray) -> np.ndarray:
    """|w| as monotone uint32 keys (float32 bits without the sign); NaN keys are above every number."""
    return np.asarray(chunk, dtype=np.float32).view(np.uint32) & np.uint32(0x7FFFFFFF)


def prune_preview(summary: ModelSummary, source: TensorReader, sparsity: float, token: CancelToken | None = None,
                  chunk: int = CHUNK_ELEMENTS) -> Steps[PrunePreview]:
    """Global magnitude pruning at `sparsity`, exactly, in bounded memory: a histogram of the magnitudes' top
    16 bits finds the threshold's bin, one of the low 16 bits inside that bin the threshold itself, and a
    last pass counts what each tensor loses."""
    from analyzers.errors import LayerScopeError

    if not 0.0 <= sparsity < 1.0:
        raise LayerScopeError(f"--prune {sparsity:g} is not a sparsity; give a fraction from 0 to below 1, e.g. 0.5.")
    started = time.perf_counter()
    owners, _ = owners_of(summary)
    names = [n for n in source.names() if eligible(source.info(n))]
    total_bytes = sum(source.info(n).nbytes for n in names) or 1
    passes = 3
    count = sum(source.info(n).numel for n in names)
    k = int(round(sparsity * count))
    key: int | None = None

    def sweep(label: str, step: int) -> Iterable[tuple[str, np.ndarray]]:
        done = 0
        for name in names:
            if token is not None:
                token.raise_if_cancelled()
            progress.append(Progress(step * total_bytes + done, passes * total_bytes, f"{label}: {name}"))
            values = source.read(name)
            for piece in flat_chunks(values, chunk):
                yield name, piece
            del values
            done += source.info(name).nbytes

    progress: list[Progress] = []
    if k > 0:
        high = np.zeros(1 << 16, dtype=np.int64)
        for _, piece in sweep("Pruning preview (magnitudes)", 0):
            high += np.bincount(_magnitude_bits(piece) >> 16, minlength=1 << 16)
            yield from _drain(progress)
        cumulative = np.cumsum(high)
        top = int(np.searchsorted(cumulative, k))  # the bin holding the k-th smallest magnitude
        below = int(cumulative[top - 1]) if top else 0
        low = np.zeros(1 << 16, dtype=np.int64)
        for _, piece in sweep("Pruning preview (threshold)", 1):
            bits = _magnitude_bits(piece)
            inside = bits[(bits >> 16) == top]
            if inside.size:
                low += np.bincount(inside & 0xFFFF, minlength=1 << 16)
            yield from _drain(progress)
        key = (top << 16) | int(np.searchsorted(np.cumsum(low), k - below))
    losses: dict[str, list[float]] = {n: [0, 0, 0.0, 0.0] for n in names}
    for name, piece in sweep("Pruning preview (losses)", 2):
        entry = losses[name]
        sq = piece.astype(np.float64) ** 2 if piece.dtype == np.float64 else np.square(piece, dtype=np.float32)
        entry[0] += piece.size
        entry[2] += float(sq.sum(dtype=np.float64))
        if key is not None:
            gone = _magnitude_bits(piece) <= np.uint32(key)
            entry[1] += int(np.count_nonzero(gone))
            entry[3] += float(sq[gone].sum(dtype=np.float64))
        yield from _drain(progress)
    tensors: dict[str, PruneLoss] = {}
    for name in names:
        info = source.info(name)
        weights, pruned, energy, lost = losses[name]
        fmt, size = sparse_bytes(info, int(weights - pruned))
        if not pruned:
            size, fmt = info.nbytes, "dense"
        tensors[name] = PruneLoss(int(weights), int(pruned), energy, lost, info.nbytes, size, fmt)
    layers: dict[str, PruneLoss] = {}
    for name, loss in tensors.items():
        path = owners.get(name, "")
        layers[path] = layers[path] + loss if path in layers else loss
    model_bytes = sum(t.nbytes for t in summary.tensors if t.counted)
    after = model_bytes - sum(t.bytes_before - t.bytes_after for t in tensors.values())
    threshold = None if key is None else float(np.array([key], dtype=np.uint32).view(np.float32)[0])
    yield Progress(passes * total_bytes, passes * total_bytes, "Pruning preview done")
    return PrunePreview(sparsity, threshold, tensors, layers, model_bytes, after, time.perf_counter() - started)


def _drain(queue: list[Progress]) -> Iterable[Progress]:
    while queue:
        yield queue.pop(0)


def as_float_arrays(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 copies of in-memory weights (what the zoo's live weights are turned into)."""
    return {k: np.array(as_float32(np.asarray(v)), dtype=np.float32) for k, v in values.items()}
