"""FLOPs of one layer from its hyper-parameters, weight shapes and output shape (no framework needed).

FLOPs are 2 × multiply–adds, the convention of torch.utils.flop_counter: a matrix product
(M×K)·(K×N) is 2·M·N·K, a convolution 2 × output elements × (kernel elements × input channels per
group), attention 2·B·H·Tq·Tk·(d_k + d_v) for its two products; bias additions, activations and
pooling are not counted. Normalisation is counted with the constants below, the same for PyTorch
(custom formulas given to FlopCounterMode) and Keras. Keras layers get their FLOPs from the summary
(config attributes, kernel shapes, output shapes); ONNX nodes from the shapes shape inference found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from analyzers.summary import LayerNode
from analyzers.summary.shapes import Shape

BATCHNORM_FLOPS = 2  # per element, inference: statistics are frozen, so scale and shift fold into x·a + b
NORM_STAT_FLOPS = 4  # per element, layer/group/instance norm: mean, variance and the normalisation itself
AFFINE_FLOPS = 2  # per element, the learned scale and shift of a normalisation

# Keras layers whose arithmetic is not counted (shape changes, element-wise maps, pooling, lookups), as
# FlopCounterMode does not count their PyTorch counterparts: they get 0, not "unknown".
KERAS_ZERO = frozenset({
    "InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Activation",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Masking", "ActivityRegularization", "Identity", "Embedding",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Rescaling", "Cropping1D",
    "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "UpSampling1D", "UpSampling2D",
    "UpSampling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "Normalization",
})


def numel(shape: Sequence[int | None] | None) -> int | None:
    """Elements of a fully known shape, None when a dimension is unknown."""
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)  # type: ignore[arg-type]


def matmul_flops(m: int, n: int, k: int) -> int:
    """(M×K)·(K×N): 2·M·N·K."""
    return 2 * m * n * k


def attention_flops(batch: int, heads: int, q_len: int, k_len: int, d_k: int, d_v: int) -> int:
    """Scores Q·Kᵀ (2·B·H·Tq·Tk·d_k) plus the weighted sum of values (2·B·H·Tq·Tk·d_v)."""
    return 2 * batch * heads * q_len * k_len * (d_k + d_v)


def norm_flops(elements: int, kind: str, affine: bool) -> int:
    """Normalisation FLOPs: batch norm (inference) 2 per element; layer/group/instance norm 4, +2 when affine."""
    if kind == "batch":
        return BATCHNORM_FLOPS * elements
    return (NORM_STAT_FLOPS + (AFFINE_FLOPS if affine else 0)) * elements


# --- Keras -----------------------------------------------------------------------------------------------


def _kernel(node: LayerNode, suffix: str = "kernel") -> tuple[int, ...] | None:
    for t in node.tensors:
        if t.name.rsplit(".", 1)[-1] == suffix or t.name.endswith("/" + suffix):
            return tuple(t.shape)
    return None


def _ints(value: object, n: int) -> tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if isinstance(value, list | tuple) and len(value) == n and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _transpose_input_length(out: int, k: int, s: int, padding: str) -> int | None:
    """The input length of a transposed convolution from its output (no output_padding)."""
    if padding == "same":
        return out // s if out % s == 0 else None
    if padding == "valid":
        rest = out - max(k - s, 0)
        return rest // s if rest >= 0 and rest % s == 0 else None
    return None


def keras_layer_flops(node: LayerNode, out: Shape | None) -> int | None:
    """FLOPs of one Keras layer for its output shape (batch filled in); None when not computed."""
    cls, cfg = node.type, node.attributes
    if cls in KERAS_ZERO:
        return 0
    elements = numel(out)
    if out is None or elements is None:
        return None
    channels_last = cfg.get("data_format", "channels_last") in (None, "channels_last")
    if cls == "Dense":
        kernel = _kernel(node)
        return None if kernel is None or len(kernel) != 2 else 2 * elements * kernel[0]
    for rank in (1, 2, 3):
        if cls == f"Conv{rank}D":
            kernel = _kernel(node)  # (k..., in/groups, filters)
            return None if kernel is None or len(kernel) != rank + 2 else 2 * elements * math.prod(kernel[:-1])
        if cls == f"DepthwiseConv{rank}D":
            kernel = _kernel(node)  # (k..., in, multiplier)
            return None if kernel is None or len(kernel) != rank + 2 else 2 * elements * math.prod(kernel[:rank])
        if cls == f"SeparableConv{rank}D":
            depth = _kernel(node, "depthwise_kernel")  # (k..., in, multiplier)
            point = _kernel(node, "pointwise_kernel")  # (1..., in·multiplier, filters)
            if depth is None or point is None or len(out) != rank + 2:
                return None
            spatial = math.prod(out[1:-1] if channels_last else out[2:])  # type: ignore[arg-type]
            mid = out[0] * spatial * depth[-2] * depth[-1]  # type: ignore[operator]
            return 2 * mid * math.prod(depth[:rank]) + 2 * elements * depth[-2] * depth[-1]
        if cls == f"Conv{rank}DTranspose":
            kernel = _kernel(node)  # (k..., filters, in)
            k = _ints(cfg.get("kernel_size"), rank)
            s = _ints(cfg.get("strides", 1), rank)
            padding = cfg.get("padding", "valid")
            if kernel is None or k is None or s is None or cfg.get("output_padding") is not None \
                    or _ints(cfg.get("dilation_rate", 1), rank) != (1,) * rank or len(out) != rank + 2:
                return None
            spatial_out = out[1:-1] if channels_last else out[2:]
            spatial_in = [_transpose_input_length(o, ki, si, str(padding))  # type: ignore[arg-type]
                          for o, ki, si in zip(spatial_out, k, s)]
            if any(v is None for v in spatial_in):
                return None
            return 2 * out[0] * math.prod(spatial_in) * math.prod(kernel)  # type: ignore[operator, arg-type]
    if cls == "BatchNormalization":
        return norm_flops(elements, "batch", True)
    if cls in ("LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization"):
        affine = bool(cfg.get("scale", True) or cfg.get("center", True)) and cls != "UnitNormalization"
        return norm_flops(elements, "layer", affine)
    if cls == "MultiHeadAttention":
        return _keras_mha(node, out)
    return None


def _keras_mha(node: LayerNode, out: Shape) -> int | None:
    """Self-attention FLOPs from the four projection kernels (query, key, value, output)."""
    def kern(part: str) -> tuple[int, ...] | None:
        for t in node.tensors:
            parts = t.name.replace("/", ".").split(".")
            if part in parts and parts[-1] == "kernel":
                return tuple(t.shape)
        return None

    q, k, v, o = kern("query"), kern("key"), kern("value"), kern("attention_output")
    if None in (q, k, v, o) or len(out) != 3 or out[0] is None or out[1] is None:
        return None
    batch, length = out[0], out[1]
    heads, d_k, d_v = q[1], q[2], v[2]  # type: ignore[index]
    proj = (matmul_flops(batch * length, heads * d_k, q[0]) + matmul_flops(batch * length, heads * d_k, k[0])  # type: ignore[index]
            + matmul_flops(batch * length, heads * d_v, v[0]) + matmul_flops(batch * length, o[-1], heads * d_v))  # type: ignore[index]
    return proj + attention_flops(batch, heads, length, length, d_k, d_v)


def fill_batch(shape: Shape | None, batch: int) -> Shape | None:
    """A Keras shape with its unknown batch (None) set to `batch`."""
    if shape is None or not shape:
        return shape
    return (batch if shape[0] is None else shape[0], *shape[1:])


def keras_flops(root: LayerNode, shapes: Mapping[str, Shape]) -> tuple[dict[str, int], list[str]]:
    """Inclusive FLOPs of every layer of a Keras tree (containers sum their layers), and the types of the
    layers whose FLOPs are not counted (the containers above them are left unknown too)."""
    own: dict[str, int | None] = {}
    unknown_types: dict[str, None] = {}
    order = [n for n, _ in root.walk()]
    for node in order:
        if node.children:
            continue
        value = keras_layer_flops(node, shapes.get(node.path))
        own[node.path] = value
        if value is None:
            unknown_types[node.type or "(untyped)"] = None
    inclusive: dict[str, int] = {}
    complete: dict[str, bool] = {}
    for node in reversed(order):
        if not node.children:
            value = own.get(node.path)
            complete[node.path] = value is not None
            if value is not None:
                inclusive[node.path] = value
            continue
        if all(complete.get(c.path, False) for c in node.children):
            inclusive[node.path] = sum(inclusive[c.path] for c in node.children)
            complete[node.path] = True
        else:
            complete[node.path] = False
    return inclusive, list(unknown_types)


# --- ONNX ------------------------------------------------------------------------------------------------


# ONNX ops with products inside that are not counted here: their FLOPs are "unknown", not 0
ONNX_UNCOUNTED = frozenset({"Einsum", "Attention", "MultiHeadAttention", "MatMulInteger", "QLinearMatMul",
                            "QLinearConv", "ConvInteger", "LSTM", "GRU", "RNN", "Scan", "Loop", "If",
                            "DeformConv", "MatMulNBits", "GroupQueryAttention"})


def onnx_node_flops(op_type: str, inputs: Sequence[Shape | None], output: Shape | None,
                    attrs: Mapping[str, object]) -> int | None:
    """FLOPs of one ONNX node whose shapes are known: MatMul, Gemm, Conv and ConvTranspose; 0 for element-wise
    and shape ops; None when a needed shape is unknown or the op does products not counted here."""
    if op_type in ONNX_UNCOUNTED:
        return None
    out = numel(output)
    if op_type == "MatMul":
        if out is None or not inputs or inputs[0] is None or not inputs[0] or inputs[0][-1] is None:
            return None
        return 2 * out * int(inputs[0][-1])  # type: ignore[arg-type]
    if op_type == "Gemm":
        a = inputs[0] if inputs else None
        if out is None or a is None or len(a) != 2 or None in a:
            return None
        k = a[0] if attrs.get("transA") else a[1]
        return 2 * out * int(k)  # type: ignore[arg-type]
    if op_type == "Conv":
        w = inputs[1] if len(inputs) > 1 else None
        if out is None or w is None or numel(w) is None:
            return None
        return 2 * out * math.prod(w[1:])  # type: ignore[arg-type]
    if op_type == "ConvTranspose":
        x = inputs[0] if inputs else None
        w = inputs[1] if len(inputs) > 1 else None
        if numel(x) is None or w is None or numel(w) is None:
            return None
        return 2 * numel(x) * math.prod(w[1:])  # type: ignore[operator, arg-type]  # W: (C_in, C_out/group, k...)
    return 0
