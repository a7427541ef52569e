"""The neutral summary every view renders: names, shapes, dtypes and numbers, never tensors."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from analyzers.summary.dtypes import bytes_for

QUANTIZED_DTYPES = frozenset({"int8", "uint8", "int4", "uint4"})


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor: where it sits, its shape and dtype, and whether it is a parameter."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str = "param"  # "param" | "buffer"
    trainable: bool = True
    shared_with: str | None = None  # tied weights: counted once, at the first owner
    stored_bytes: int | None = None  # exact bytes on disk for block-quantized types (GGUF)
    location: str | None = field(default=None, compare=False)  # where the values live, when the name does not
    # say it (an HDF5 dataset path); analyzers.weights reads a tensor's values from there

    @property
    def numel(self) -> int:
        """Element count (1 for a scalar)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes as stored."""
        if self.stored_bytes is not None:
            return self.stored_bytes
        return bytes_for(self.numel, self.dtype)

    @property
    def counted(self) -> bool:
        """False for the second and later owners of a tied tensor."""
        return self.shared_with is None


@dataclass(frozen=True)
class Counts:
    """Parameter and byte counts of a set of tensors; tied tensors counted once."""

    params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    buffers: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    tensors: int = 0
    bytes_by_dtype: Mapping[str, int] = field(default_factory=dict)
    params_by_dtype: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Parameter plus buffer bytes."""
        return self.param_bytes + self.buffer_bytes

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            params=self.params + other.params,
            trainable_params=self.trainable_params + other.trainable_params,
            non_trainable_params=self.non_trainable_params + other.non_trainable_params,
            buffers=self.buffers + other.buffers,
            param_bytes=self.param_bytes + other.param_bytes,
            buffer_bytes=self.buffer_bytes + other.buffer_bytes,
            tensors=self.tensors + other.tensors,
            bytes_by_dtype=_merge(self.bytes_by_dtype, other.bytes_by_dtype),
            params_by_dtype=_merge(self.params_by_dtype, other.params_by_dtype),
        )


def _merge(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def count_tensors(tensors: tuple[TensorInfo, ...] | list[TensorInfo]) -> Counts:
    """Counts of the given tensors, skipping tied duplicates."""
    params = trainable = buffers = param_bytes = buffer_bytes = n = 0
    by_dtype: dict[str, int] = {}
    params_by_dtype: dict[str, int] = {}
    for t in tensors:
        if not t.counted:
            continue
        n += 1
        numel, nbytes = t.numel, t.nbytes
        by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + nbytes
        if t.kind == "buffer":
            buffers += numel
            buffer_bytes += nbytes
        else:
            params += numel
            param_bytes += nbytes
            params_by_dtype[t.dtype] = params_by_dtype.get(t.dtype, 0) + numel
            if t.trainable:
                trainable += numel
    return Counts(
        params=params,
        trainable_params=trainable,
        non_trainable_params=params - trainable,
        buffers=buffers,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        tensors=n,
        bytes_by_dtype=by_dtype,
        params_by_dtype=params_by_dtype,
    )


@dataclass(frozen=True)
class LayerNode:
    """A layer (module, Keras layer, name scope) with its own tensors and its children."""

    path: str  # "" for the root, dotted below it
    type: str = ""  # "Linear", "Conv2D", "BertSelfAttention"; "" when unknown
    tensors: tuple[TensorInfo, ...] = ()
    children: tuple[LayerNode, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)
    output_shape: tuple[int, ...] | None = None
    flops: int | None = None

    @property
    def name(self) -> str:
        """Last component of the path; "" for the root."""
        return self.path.rsplit(".", 1)[-1] if self.path else ""

    @cached_property
    def own(self) -> Counts:
        """Counts of this layer's own tensors."""
        return count_tensors(self.tensors)

    @cached_property
    def total(self) -> Counts:
        """Counts of this layer and everything below it."""
        result = self.own
        for child in self.children:
            result = result + child.total
        return result

    @cached_property
    def dtypes(self) -> tuple[str, ...]:
        """Dtypes of the tensors in this subtree, most bytes first."""
        by = self.total.bytes_by_dtype
        return tuple(sorted(by, key=lambda d: (-by[d], d)))

    def walk(self, depth: int = 0) -> Iterator[tuple[LayerNode, int]]:
        """Pre-order traversal yielding (node, depth), the root at `depth`."""
        stack: list[tuple[LayerNode, int]] = [(self, depth)]
        while stack:
            node, d = stack.pop()
            yield node, d
            for child in reversed(node.children):
                stack.append((child, d + 1))


@dataclass(frozen=True)
class SourceInfo:
    """Where a summary came from."""

    path: str
    format: str  # "safetensors", "pytorch", "hf", ...
    framework: str  # "torch", "keras", "onnx", "gguf", "" when none
    files: tuple[str, ...] = ()
    size_bytes: int | None = None


@dataclass(frozen=True)
class ModelSummary:
    """Everything LayerScope knows about a model without holding its tensors."""

    source: SourceInfo
    root: LayerNode
    metadata: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)
    notes: tuple[str, ...] = ()
    config: Mapping[str, object] | None = field(default=None, compare=False, hash=False)

    @property
    def totals(self) -> Counts:
        """Counts of the whole model."""
        return self.root.total

    def walk(self) -> Iterator[tuple[LayerNode, int]]:
        """Every node, pre-order, with its depth (root 0)."""
        return self.root.walk()

    @cached_property
    def _index(self) -> dict[str, tuple[LayerNode, str | None]]:
        index: dict[str, tuple[LayerNode, str | None]] = {}
        stack: list[tuple[LayerNode, str | None]] = [(self.root, None)]
        while stack:
            node, parent = stack.pop()
            index[node.path] = (node, parent)
            stack.extend((child, node.path) for child in node.children)
        return index

    def node(self, path: str) -> LayerNode:
        """The node at `path` (KeyError when absent)."""
        return self._index[path][0]

    def parent(self, path: str) -> LayerNode | None:
        """The parent of the node at `path`, None for the root."""
        parent = self._index[path][1]
        return None if parent is None else self._index[parent][0]

    def __contains__(self, path: object) -> bool:
        return path in self._index

    @property
    def node_count(self) -> int:
        """Number of nodes, the root included."""
        return len(self._index)

    @property
    def tensors(self) -> Iterator[TensorInfo]:
        """Every tensor of the model, tied duplicates included."""
        for node, _ in self.walk():
            yield from node.tensors

    @property
    def is_prequantized(self) -> bool:
        """True when some parameter is stored quantised (GGUF Q4_K, int8 ONNX initialisers ...)."""
        return any(
            t.kind == "param" and (t.stored_bytes is not None or t.dtype in QUANTIZED_DTYPES) for t in self.tensors
        )
