"""What Keras's built-in layers store: variable names, trainability, and the classes of their sub-layers.

A Keras 3 weights file numbers each layer's variables (`vars/0`, `vars/1` ...) in the order the layer
created them, trainable ones first (`Layer.save_own_variables`). The names and the trainable flags
come from the layer's class and config, as Keras would rebuild them — read here from tables, so no
Keras is imported. A class not in the tables keeps numbered names (`var_0` ...) and counts as trainable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_KERNEL_BIAS = ("kernel", "bias")
_RECURRENT = ("kernel", "recurrent_kernel", "bias")

# Class -> variable names in creation order; a trailing "bias" is absent when use_bias is off.
BIASED: dict[str, tuple[str, ...]] = {
    **{cls: _KERNEL_BIAS for cls in (
        "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
        "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D")},
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    **{cls: _RECURRENT for cls in ("LSTMCell", "GRUCell", "SimpleRNNCell", "ConvLSTMCell")},
}
FIXED: dict[str, tuple[str, ...]] = {"Embedding": ("embeddings",), "PReLU": ("alpha",)}
SCALE_CENTER = ("LayerNormalization", "GroupNormalization")
BATCH_NORM = "BatchNormalization"
MOVING = ("moving_mean", "moving_variance")
RENORM = ("moving_stddev", "renorm_mean", "renorm_stddev")
NORMALIZATION_STATS = ("mean", "variance", "count")  # keras.layers.Normalization: adapted, never trained
# RNN wrappers own no weights of their own except the state of a stateful layer (non-trainable).
RNN_WRAPPERS = frozenset({"RNN", "LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"})
# Variable names that are statistics, never trained, whatever layer (legacy files name every weight).
NON_TRAINABLE_NAMES = frozenset(MOVING + RENORM)

_ATTENTION_CHILDREN = {
    "query_dense": "EinsumDense", "key_dense": "EinsumDense", "value_dense": "EinsumDense",
    "output_dense": "EinsumDense", "gate_dense": "EinsumDense", "dropout_layer": "Dropout", "softmax": "Softmax",
}
# Sub-layers a built-in layer keeps as attributes (not in its config): parent class -> attribute -> class.
CHILD_CLASSES: dict[str, dict[str, str]] = {
    "MultiHeadAttention": _ATTENTION_CHILDREN,
    "GroupedQueryAttention": _ATTENTION_CHILDREN,
    "LSTM": {"cell": "LSTMCell"},
    "GRU": {"cell": "GRUCell"},
    "SimpleRNN": {"cell": "SimpleRNNCell"},
    "ConvLSTM1D": {"cell": "ConvLSTMCell"},
    "ConvLSTM2D": {"cell": "ConvLSTMCell"},
    "ConvLSTM3D": {"cell": "ConvLSTMCell"},
}
# Attribute children built from a config entry under another key (Bidirectional copies `layer`).
CONFIG_ALIASES = {"forward_layer": "layer", "backward_layer": "layer"}

# Snake-case group names Keras derives from class names whose CamelCase is not a plain title-case.
SNAKE_CLASSES: dict[str, str] = {
    "conv1d": "Conv1D", "conv2d": "Conv2D", "conv3d": "Conv3D",
    "conv1d_transpose": "Conv1DTranspose", "conv2d_transpose": "Conv2DTranspose",
    "conv3d_transpose": "Conv3DTranspose", "depthwise_conv1d": "DepthwiseConv1D",
    "depthwise_conv2d": "DepthwiseConv2D", "separable_conv1d": "SeparableConv1D",
    "separable_conv2d": "SeparableConv2D", "lstm": "LSTM", "gru": "GRU", "lstm_cell": "LSTMCell",
    "gru_cell": "GRUCell", "simple_rnn": "SimpleRNN", "simple_rnn_cell": "SimpleRNNCell",
    "conv_lstm_cell": "ConvLSTMCell", "conv_lstm1d": "ConvLSTM1D", "conv_lstm2d": "ConvLSTM2D",
    "conv_lstm3d": "ConvLSTM3D", "re_lu": "ReLU", "p_re_lu": "PReLU", "elu": "ELU",
    "max_pooling1d": "MaxPooling1D", "max_pooling2d": "MaxPooling2D", "max_pooling3d": "MaxPooling3D",
    "average_pooling1d": "AveragePooling1D", "average_pooling2d": "AveragePooling2D",
    "global_average_pooling1d": "GlobalAveragePooling1D", "global_average_pooling2d": "GlobalAveragePooling2D",
    "global_max_pooling1d": "GlobalMaxPooling1D", "global_max_pooling2d": "GlobalMaxPooling2D",
    "up_sampling2d": "UpSampling2D", "zero_padding2d": "ZeroPadding2D",
}
_SUFFIX = re.compile(r"_\d+$")


def snake_case(name: str) -> str:
    """Keras's `to_snake_case`: the group name a weights file gives an object of class `name`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def class_from_snake(key: str) -> str:
    """`batch_normalization_2` -> `BatchNormalization`: the class a Keras 3 group name was derived from."""
    base = _SUFFIX.sub("", key)
    if base in SNAKE_CLASSES:
        return SNAKE_CLASSES[base]
    return "".join(part[:1].upper() + part[1:] for part in base.split("_") if part)


def is_known(cls: str) -> bool:
    """True for a class whose stored variables this module can name."""
    return (cls in BIASED or cls in FIXED or cls in SCALE_CENTER or cls in (BATCH_NORM, "Normalization")
            or cls in RNN_WRAPPERS)


def _flag(config: Mapping[str, object] | None, key: str) -> bool:
    return not (config is not None and config.get(key) is False)


def quantization_mode(config: Mapping[str, object] | None) -> str | None:
    """'int8' (or 'int4' ...) when a layer's dtype policy is Keras's QuantizedDTypePolicy, else None."""
    policy = config.get("dtype") if config is not None else None
    if isinstance(policy, Mapping) and "Quantized" in str(policy.get("class_name", "")):
        inner = policy.get("config")
        mode = inner.get("mode") if isinstance(inner, Mapping) else None
        return str(mode) if mode else None
    if isinstance(policy, str) and policy.startswith(("int8_from_", "int4_from_")):
        return policy.split("_", 1)[0]
    return None


def _quantized_names(cls: str, config: Mapping[str, object] | None, n: int) -> list[tuple[str, bool]] | None:
    """Keras's `variable_serialization_spec["int8"]`: the int8 kernel and its scale are frozen, the bias trains."""
    if cls in ("Dense", "EinsumDense"):
        names = [("kernel", False), ("bias", True), ("kernel_scale", False)]
        if n == 2:  # no bias (use_bias off, or an EinsumDense without bias_axes)
            names = [names[0], names[2]]
        return names if len(names) == n else None
    if cls == "Embedding":
        return [("embeddings", False), ("embeddings_scale", False)] if n == 2 else None
    return None


def variable_names(cls: str, config: Mapping[str, object] | None, n: int) -> list[tuple[str, bool]] | None:
    """(name, trainable) of the `n` variables a built-in layer stores, in Keras's order.

    None when the class is not known here or its stored count does not fit the class's layout
    (a class from another Keras version): the caller then numbers them. Layers quantised to int8 by
    `model.quantize("int8")` store their kernel, bias and kernel scale."""
    if quantization_mode(config) == "int8":
        return _quantized_names(cls, config, n)
    if cls in BIASED:
        names = BIASED[cls]
        if n == len(names) or (n == len(names) - 1 and names[-1] == "bias"):
            return [(name, True) for name in names[:n]]
        return None
    if cls in FIXED:
        return [(name, True) for name in FIXED[cls]] if n == len(FIXED[cls]) else None
    if cls in SCALE_CENTER:
        if config is None:
            return [("gamma", True), ("beta", True)] if n == 2 else None
        names = [v for v, key in (("gamma", "scale"), ("beta", "center")) if _flag(config, key)]
        return [(name, True) for name in names] if len(names) == n else None
    if cls == BATCH_NORM:
        return _batch_norm(config, n)
    if cls == "Normalization":
        return [(name, False) for name in NORMALIZATION_STATS] if n == 3 else None
    if cls in RNN_WRAPPERS:  # a stateful RNN keeps its states as non-trainable variables
        return [(f"state_{i}", False) for i in range(n)]
    return None


def _batch_norm(config: Mapping[str, object] | None, n: int) -> list[tuple[str, bool]] | None:
    stats = list(MOVING) + (list(RENORM) if config is not None and config.get("renorm") is True else [])
    if config is None:
        if n < 2:
            return None
        front = ["gamma", "beta"] if n == 4 else [f"var_{i}" for i in range(n - 2)]
        return [(name, True) for name in front] + [(name, False) for name in MOVING]
    trained = [v for v, key in (("gamma", "scale"), ("beta", "center")) if _flag(config, key)]
    if len(trained) + len(stats) != n:
        return None
    return [(name, True) for name in trained] + [(name, False) for name in stats]


def looks_like_batch_norm(shapes: Sequence[tuple[int, ...]]) -> bool:
    """Four 1-D variables of one length: the layout of a BatchNormalization (gamma, beta, mean, variance)."""
    return len(shapes) == 4 and all(len(s) == 1 for s in shapes) and len({s[0] for s in shapes}) == 1


def legacy_trainable(cls: str, name: str) -> bool:
    """Trainability of a weight a legacy file names (`moving_mean`, Normalization's `mean` ...)."""
    if name in NON_TRAINABLE_NAMES:
        return False
    return not (cls == "Normalization" and name in NORMALIZATION_STATS)


def config_mismatch(cls: str, config: Mapping[str, object] | None, shapes: Mapping[str, tuple[int, ...]]
                    ) -> str | None:
    """What the config says that the stored weights contradict (units, filters, vocabulary), or None."""
    if config is None:
        return None
    kernel = shapes.get("kernel")
    checks: list[tuple[str, object, int | None]] = []
    if cls == "Dense" and kernel:
        checks.append(("units", config.get("units"), kernel[-1]))
    elif cls in ("Conv1D", "Conv2D", "Conv3D") and kernel:
        checks.append(("filters", config.get("filters"), kernel[-1]))
    elif cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose") and kernel and len(kernel) >= 2:
        checks.append(("filters", config.get("filters"), kernel[-2]))
    elif cls == "Embedding" and len(shapes.get("embeddings", ())) == 2:
        rows, cols = shapes["embeddings"]
        checks += [("input_dim", config.get("input_dim"), rows), ("output_dim", config.get("output_dim"), cols)]
    for key, said, stored in checks:
        if isinstance(said, int) and not isinstance(said, bool) and stored is not None and said != stored:
            return f"config says {key}={said:,}, the stored weights hold {stored:,}"
    return None
