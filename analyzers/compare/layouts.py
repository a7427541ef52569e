"""Across frameworks: which layer types are one thing, which tensor names correspond, and how a Keras
tensor is laid out like its PyTorch counterpart so the two can be compared value by value.

Keras stores a Dense kernel as (in, out) where PyTorch's Linear keeps (out, in); a Conv2D kernel as
HWIO where Conv2d keeps OIHW; and a Dense after a Flatten of a channels-last feature map reads its
inputs in (H, W, C) order where the PyTorch port, flattening NCHW, reads (C, H, W). A `Layout` says
which of these applies to one tensor pair and turns the Keras array into the PyTorch layout as a
numpy *view* (reshape and transpose only), so drift streams through it without copying a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Lower-cased layer type -> the kind both frameworks share (types not listed compare lower-cased).
CANONICAL_TYPES: dict[str, str] = {
    "dense": "linear", "linear": "linear",
    "conv1d": "conv1d", "conv2d": "conv2d", "conv3d": "conv3d",
    "conv1dtranspose": "convtranspose1d", "convtranspose1d": "convtranspose1d",
    "conv2dtranspose": "convtranspose2d", "convtranspose2d": "convtranspose2d",
    "conv3dtranspose": "convtranspose3d", "convtranspose3d": "convtranspose3d",
    "batchnormalization": "batchnorm", "batchnorm1d": "batchnorm", "batchnorm2d": "batchnorm",
    "batchnorm3d": "batchnorm", "layernormalization": "layernorm", "layernorm": "layernorm",
    "embedding": "embedding",
    "maxpooling1d": "maxpool1d", "maxpool1d": "maxpool1d", "maxpooling2d": "maxpool2d", "maxpool2d": "maxpool2d",
    "maxpooling3d": "maxpool3d", "maxpool3d": "maxpool3d",
    "averagepooling1d": "avgpool1d", "avgpool1d": "avgpool1d", "averagepooling2d": "avgpool2d",
    "avgpool2d": "avgpool2d", "flatten": "flatten", "dropout": "dropout", "relu": "relu", "softmax": "softmax",
}
# Keras variable name -> the PyTorch parameter or buffer holding the same values.
KERAS_TO_TORCH_NAMES: dict[str, str] = {
    "kernel": "weight", "embeddings": "weight", "gamma": "weight", "beta": "bias",
    "moving_mean": "running_mean", "moving_variance": "running_var",
}
KERNEL_KINDS = {"linear": "dense", "conv1d": "conv", "conv2d": "conv", "conv3d": "conv",
                "convtranspose1d": "conv_transpose", "convtranspose2d": "conv_transpose",
                "convtranspose3d": "conv_transpose"}


def canonical_type(layer_type: str) -> str:
    """The kind a layer type shares across frameworks ('Dense' and 'Linear' are both 'linear')."""
    low = layer_type.lower()
    return CANONICAL_TYPES.get(low, low)


def canonical_tensor_name(local: str, framework: str) -> str:
    """A tensor's own name as PyTorch would call it (`kernel` -> `weight` for Keras)."""
    return KERAS_TO_TORCH_NAMES.get(local, local) if framework == "keras" else local


@dataclass(frozen=True)
class Layout:
    """How one side's tensor is re-laid to match the other's: `kind` "dense" ((in, out) -> (out, in)),
    "conv" ((*k, in, out) -> (out, in, *k)), "conv_transpose" ((*k, out, in) -> (in, out, *k)) or
    "dense_flatten" (a Dense after Flatten of an (H, W, C) map: rows HWC -> CHW, then transposed);
    `side` is the side whose array is transformed ("a" or "b")."""

    kind: str
    side: str
    flatten: tuple[int, ...] = ()  # (H, W, C) of the Flatten's input, for "dense_flatten"

    @property
    def label(self) -> str:
        """The reconciliation in words, as the tables show it."""
        if self.kind == "dense":
            return "Dense kernel (in, out) vs Linear weight (out, in): transposed"
        if self.kind == "conv":
            return "Conv kernel (*k, in, out) vs (out, in, *k): HWIO -> OIHW"
        if self.kind == "conv_transpose":
            return "ConvTranspose kernel (*k, out, in) vs (in, out, *k)"
        h, w, c = self.flatten
        return f"Dense after Flatten of ({h}, {w}, {c}): rows HWC -> CHW, then transposed"

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The transformed side's shape as the other side stores it."""
        if self.kind in ("dense", "dense_flatten") and len(shape) == 2:
            return (shape[1], shape[0])
        if self.kind == "conv" and len(shape) >= 3:
            return (shape[-1], shape[-2], *shape[:-2])
        if self.kind == "conv_transpose" and len(shape) >= 3:
            return (shape[-1], shape[-2], *shape[:-2])
        return tuple(shape)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The transformed side as a view in the other side's layout (4-D (out, C, H, W) for dense_flatten)."""
        if self.kind == "dense":
            return values.T
        if self.kind in ("conv", "conv_transpose"):
            n = values.ndim
            return values.transpose(n - 1, n - 2, *range(n - 2))
        if self.kind == "dense_flatten":
            h, w, c = self.flatten
            return values.reshape(h, w, c, values.shape[1]).transpose(3, 2, 0, 1)
        return values

    def match(self, values: np.ndarray) -> np.ndarray:
        """The untransformed side in the same coordinates (a Linear weight split into (out, C, H, W))."""
        if self.kind == "dense_flatten":
            h, w, c = self.flatten
            return values.reshape(values.shape[0], c, h, w)
        return values


def flatten_input(parent_children: tuple, index: int) -> tuple[int, ...] | None:
    """(H, W, C) when the Keras layer at `index` among its siblings follows a channels-last Flatten of a 3-D map."""
    if index < 2:
        return None
    flat, before = parent_children[index - 1], parent_children[index - 2]
    if canonical_type(flat.type) != "flatten":
        return None
    if str(flat.attributes.get("data_format", "channels_last")) != "channels_last":
        return None
    shape = before.output_shape
    if shape is None or len(shape) != 4 or any(not isinstance(d, int) or d <= 0 for d in shape[1:]):
        return None
    return tuple(int(d) for d in shape[1:])


def kernel_layout(layer_type: str, local: str, keras_side: str, shape: tuple[int, ...],
                  flatten: tuple[int, ...] | None = None) -> Layout | None:
    """The Layout that brings a Keras kernel into PyTorch's layout, or None when it needs none."""
    if local != "kernel":
        return None
    kind = KERNEL_KINDS.get(canonical_type(layer_type))
    if kind == "dense" and len(shape) == 2:
        if flatten is not None and math.prod(flatten) == shape[0] and flatten[2] > 1:
            return Layout("dense_flatten", keras_side, flatten)
        return Layout("dense", keras_side)
    if kind in ("conv", "conv_transpose") and len(shape) >= 3:
        return Layout(kind, keras_side)
    return None
