"""A tensor's values as bounded float chunks: what statistics, quantisation and pruning previews stream over.

A memory-mapped contiguous tensor reshaped to 1-D is a view, so its chunks are views and nothing is
copied until a chunk is widened to float32; a strided view (a slice of a larger storage) is cut along
its first axis, then the next, until a piece fits. Either way at most about CHUNK_ELEMENTS values are
materialised at a time, whatever the tensor's size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK_ELEMENTS = 4 << 20  # 4 M values (16 MB as float32): large enough for numpy's speed, small for memory


def as_float32(values: np.ndarray) -> np.ndarray:
    """Values widened to float32 (float64 kept); bfloat16 by a bit shift, faster than ml_dtypes' cast."""
    if values.dtype == np.float32 or values.dtype == np.float64:
        return values
    if values.dtype.name == "bfloat16":
        return (values.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if values.dtype == np.bool_:
        return values.astype(np.float32)
    if values.dtype.kind in "iu" and values.dtype.itemsize >= 4:
        return values.astype(np.float64)  # int32/int64 values past 2^24 would round in float32
    return values.astype(np.float32)


def flat_chunks(values: np.ndarray, limit: int = CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """Consecutive pieces of the tensor's values in C order, each at most `limit` values, as float arrays."""
    if values.ndim == 0:
        yield as_float32(np.asarray(values).reshape(1))
        return
    if values.size == 0:
        return
    if values.flags.c_contiguous:
        flat = values.reshape(-1)  # a view: nothing is read until a piece is widened
        for start in range(0, flat.size, limit):
            yield as_float32(flat[start:start + limit])
        return
    row = values[0].size
    if row > limit and values.ndim > 1:
        for i in range(values.shape[0]):
            yield from flat_chunks(values[i], limit)
        return
    rows = max(1, limit // max(1, row))
    for start in range(0, values.shape[0], rows):
        yield as_float32(np.ascontiguousarray(values[start:start + rows]).reshape(-1))


def row_chunks(values: np.ndarray, limit: int = CHUNK_ELEMENTS, multiple: int = 1) -> Iterator[np.ndarray]:
    """Pieces of whole rows of a tensor seen as (first axis, everything else): 2-D float arrays of a row count
    that is a multiple of `multiple` (but the last); a strided tensor is copied one piece at a time."""
    rows = values.shape[0] if values.ndim else 1
    cols = values.size // max(1, rows)
    per = max(multiple, (limit // max(1, cols)) // multiple * multiple)
    for start in range(0, rows, per):
        piece = values[start:start + per] if values.ndim else values.reshape(1)
        piece = piece if piece.flags.c_contiguous else np.ascontiguousarray(piece)
        yield as_float32(piece.reshape(piece.shape[0] if piece.ndim else 1, cols))


def squares(values: np.ndarray) -> float:
    """Σ values², accumulated in float64 (a float32 dot product over millions of values drifts by ~1e-6)."""
    return float(np.square(values).sum(dtype=np.float64))
