"""Output shapes of the simple Keras layers, computed from a saved config without Keras.

A Functional config records the shape of every tensor one layer hands to another (`inbound_nodes`);
a Sequential one records the input of the first layer. From those, the output of common layers
(Dense, convolutions, pooling, Flatten, Reshape, Embedding, recurrent layers, shape-keeping layers)
follows from their hyper-parameters; anything else, or any value that does not add up, is None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from analyzers.loaders.keras_config import ConfigLayer

Shape = tuple[int | None, ...]
MAX_NESTING = 32  # models nested deeper than this get no shapes (the walk recurses once per model)

SAME_SHAPE = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "Normalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Rescaling", "Masking",
    "ActivityRegularization", "Identity",
})


def _shape(value: Any) -> Shape | None:
    if not isinstance(value, list | tuple) or len(value) > 32:
        return None
    out: list[int | None] = []
    for v in value:
        if v is None:
            out.append(None)
        elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            out.append(v)
        else:
            return None
    return tuple(out)


def _ints(value: Any, n: int, minimum: int = 1) -> tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * n
    if not isinstance(value, list | tuple) or len(value) != n:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        return None
    return tuple(value)


def _channels_last(cfg: Mapping[str, Any]) -> bool | None:
    fmt = cfg.get("data_format", "channels_last")
    return True if fmt in (None, "channels_last") else False if fmt == "channels_first" else None


def _conv_length(n: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    if n is None:
        return None
    if padding in ("same", "causal"):
        return (n - 1) // s + 1
    if padding == "valid":
        span = d * (k - 1) + 1
        return (n - span) // s + 1 if n >= span else None
    return None


def _deconv_length(n: int | None, k: int, s: int, d: int, padding: str, extra: int | None) -> int | None:
    if n is None:
        return None
    k = k + (k - 1) * (d - 1)
    if extra is None:
        return {"valid": n * s + max(k - s, 0), "same": n * s, "full": n * s - (s + k - 2)}.get(padding)
    pad = {"same": k // 2, "valid": 0, "full": k - 1}.get(padding)
    return None if pad is None else (n - 1) * s + k - 2 * pad + extra


def _spatial(cfg: Mapping[str, Any], shape: Shape, rank: int, channels: int | None,
             length: Callable[[int | None, int], int | None]) -> Shape | None:
    last = _channels_last(cfg)
    if last is None or len(shape) != rank + 2:
        return None
    dims = shape[1:-1] if last else shape[2:]
    out = [length(n, i) for i, n in enumerate(dims)]
    if any(o is not None and o < 0 for o in out):
        return None
    chan = channels if channels is not None else (shape[-1] if last else shape[1])
    return (shape[0], *out, chan) if last else (shape[0], chan, *out)


def _conv(cfg: Mapping[str, Any], shape: Shape, rank: int, transpose: bool, channels: int | None) -> Shape | None:
    k = _ints(cfg.get("kernel_size"), rank)
    s = _ints(cfg.get("strides", 1), rank)
    d = _ints(cfg.get("dilation_rate", 1), rank)
    padding = cfg.get("padding", "valid")
    if k is None or s is None or d is None or not isinstance(padding, str):
        return None
    if transpose:
        extra = None if cfg.get("output_padding") is None else _ints(cfg.get("output_padding"), rank, 0)
        if cfg.get("output_padding") is not None and extra is None:
            return None
        return _spatial(cfg, shape, rank, channels, lambda n, i: _deconv_length(
            n, k[i], s[i], d[i], padding, None if extra is None else extra[i]))
    return _spatial(cfg, shape, rank, channels, lambda n, i: _conv_length(n, k[i], s[i], d[i], padding))


def _pool(cfg: Mapping[str, Any], shape: Shape, rank: int) -> Shape | None:
    pool = _ints(cfg.get("pool_size"), rank)
    strides = _ints(cfg.get("strides") if cfg.get("strides") is not None else cfg.get("pool_size"), rank)
    padding = cfg.get("padding", "valid")
    if pool is None or strides is None or not isinstance(padding, str):
        return None
    return _spatial(cfg, shape, rank, None, lambda n, i: _conv_length(n, pool[i], strides[i], 1, padding))


def _units(cfg: Mapping[str, Any], key: str = "units") -> int | None:
    value = cfg.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _rule(cls: str, cfg: Mapping[str, Any], ins: list[Shape]) -> Shape | None:
    shape = ins[0]
    if cls in SAME_SHAPE:
        return shape
    if cls == "Dense":
        units = _units(cfg)
        return None if units is None or len(shape) < 2 else (*shape[:-1], units)
    if cls == "Flatten":
        rest = shape[1:]
        return (shape[0], math.prod(rest)) if all(d is not None for d in rest) else (shape[0], None)
    if cls == "Reshape":
        target = cfg.get("target_shape")
        if not isinstance(target, list | tuple) or len(target) > 32 or not all(
                isinstance(v, int) and not isinstance(v, bool) and (v > 0 or v == -1) for v in target):
            return None
        if list(target).count(-1) == 1 and all(d is not None for d in shape[1:]):
            known = math.prod(v for v in target if v != -1)
            total = math.prod(shape[1:])  # type: ignore[arg-type]
            return (shape[0], *(total // known if v == -1 else v for v in target)) if total % known == 0 else None
        return (shape[0], *(None if v == -1 else v for v in target))
    if cls == "Embedding":
        dim = _units(cfg, "output_dim")
        return None if dim is None else (*shape, dim)
    for rank in (1, 2, 3):
        if cls in (f"Conv{rank}D", f"SeparableConv{rank}D"):
            return _conv(cfg, shape, rank, False, _units(cfg, "filters"))
        if cls == f"Conv{rank}DTranspose":
            return _conv(cfg, shape, rank, True, _units(cfg, "filters"))
        if cls == f"DepthwiseConv{rank}D":
            mult = _units(cfg, "depth_multiplier") or 1
            chan = shape[-1] if _channels_last(cfg) else shape[1] if len(shape) > 1 else None
            return _conv(cfg, shape, rank, False, None if chan is None else chan * mult)
        if cls in (f"MaxPooling{rank}D", f"AveragePooling{rank}D"):
            return _pool(cfg, shape, rank)
        if cls in (f"GlobalAveragePooling{rank}D", f"GlobalMaxPooling{rank}D"):
            if cfg.get("keepdims") is True or len(shape) != rank + 2 or _channels_last(cfg) is None:
                return None
            return (shape[0], shape[-1] if _channels_last(cfg) else shape[1])
    if cls in ("LSTM", "GRU", "SimpleRNN"):
        units = _units(cfg)
        if units is None or cfg.get("return_state") is True or len(shape) != 3:
            return None
        return (shape[0], shape[1], units) if cfg.get("return_sequences") is True else (shape[0], units)
    if cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
        return shape if all(s == shape for s in ins) else None
    if cls == "Concatenate":
        axis = cfg.get("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool) or any(len(s) != len(shape) for s in ins):
            return None
        axis = axis % len(shape) if shape and -len(shape) <= axis < len(shape) else None
        if axis is None or axis == 0:
            return None
        sizes = [s[axis] for s in ins]
        total = None if any(v is None for v in sizes) else sum(sizes)  # type: ignore[misc]
        return (*shape[:axis], total, *shape[axis + 1:])
    return None


def _keras_tensors(value: Any) -> list[dict[str, Any]]:
    """Every `__keras_tensor__` record in a node's args, in order (flat; args nest lists)."""
    out: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__" and isinstance(item.get("config"), dict):
                out.append(item["config"])
            else:
                stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


def _node_inputs(node: Any, produced: Mapping[str, Shape | None], recorded: bool = True) -> list[Shape | None]:
    """Input shapes of one call: Keras 3 records them in the node (`recorded`; else they are taken from the
    producing layer, as for Keras 2, whose nodes name it)."""
    if isinstance(node, dict):
        tensors = _keras_tensors(node.get("args", []))
        if recorded:
            return [_shape(t.get("shape")) for t in tensors]
        return [produced.get(hist[0]) if isinstance(hist := t.get("keras_history"), list) and hist
                and isinstance(hist[0], str) else None for t in tensors]
    if isinstance(node, list):  # Keras 2: [[layer_name, node_index, tensor_index, kwargs], ...]
        return [produced.get(item[0]) if isinstance(item, list) and item and isinstance(item[0], str) else None
                for item in node]
    return []


def _history_shapes(layers: list[ConfigLayer]) -> dict[str, Shape | None]:
    """Output shape of each layer as its consumers recorded it (first call, first output)."""
    out: dict[str, Shape | None] = {}
    for layer in layers:
        nodes = layer.entry.get("inbound_nodes")
        for node in nodes if isinstance(nodes, list) else []:
            if not isinstance(node, dict):
                continue
            for t in _keras_tensors(node.get("args", [])):
                hist = t.get("keras_history")
                if isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str) and hist[1:] == [0, 0]:
                    out.setdefault(hist[0], _shape(t.get("shape")))
    return out


def _layer_output(layer: ConfigLayer, ins: list[Shape | None], out: dict[int, Shape], depth: int,
                  override: Shape | None = None) -> Shape | None:
    if "layers" in layer.containers:
        return _model_output(layer, ins[0] if len(ins) == 1 else None, out, depth + 1)
    if layer.cls == "InputLayer":
        if override is not None:
            return override
        return _shape(layer.config.get("batch_shape") or layer.config.get("batch_input_shape"))
    if not ins or any(s is None for s in ins):
        return None
    try:
        return _rule(layer.cls, layer.config, ins)  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, OverflowError):
        return None


def _model_output(model: ConfigLayer, given: Shape | None, out: dict[int, Shape], depth: int,
                  override: Shape | None = None) -> Shape | None:
    layers = model.containers.get("layers", [])
    if depth > MAX_NESTING or not layers:
        return None
    functional = any(isinstance(layer.entry.get("inbound_nodes"), list) and layer.entry["inbound_nodes"]
                     for layer in layers)
    if not functional:
        build = model.config.get("build_input_shape")
        current = override or given or _shape(build)
        for layer in layers:
            build = layer.entry.get("build_config")
            declared = build.get("input_shape") if isinstance(build, dict) else None
            # Keras 2 puts the model's input on its first layer; build_config may hold a concrete batch size
            current = current or _shape(layer.config.get("batch_input_shape")) or _shape(declared)
            if override is not None and layer.cls == "InputLayer":
                shape: Shape | None = override
            else:
                shape = _layer_output(layer, [current] if current is not None else [], out, depth)
            if shape is not None:
                out[id(layer)] = shape
            current = shape
        return current
    recorded = _history_shapes(layers)
    produced: dict[str, Shape | None] = {}
    for layer in layers:
        nodes = layer.entry.get("inbound_nodes")
        calls = len(nodes) if isinstance(nodes, list) else 0
        ins = _node_inputs(nodes[0], produced, override is None) if calls else []
        computed = _layer_output(layer, ins, out, depth, override)
        # the saved shapes are those of the saved input; another input size keeps only what follows from it
        shape = None if calls > 1 else computed if override is not None else recorded.get(layer.name) or computed
        produced[layer.name] = shape
        if shape is not None:
            out[id(layer)] = shape
    names = model.config.get("output_layers")
    if isinstance(names, list) and len(names) == 3 and isinstance(names[0], str):
        return produced.get(names[0])
    if isinstance(names, list) and len(names) == 1 and isinstance(names[0], list) and names[0]:
        return produced.get(names[0][0]) if isinstance(names[0][0], str) else None
    return None


def output_shapes(root: ConfigLayer, input_shape: Shape | None = None) -> dict[int, Shape]:
    """Output shape of each layer (keyed by `id(layer)`) that the config lets one compute; the root's too.

    With `input_shape` (batch first) the model's input is that instead of the saved one, and every shape is
    computed from it (the shapes the config recorded belong to the saved input)."""
    out: dict[int, Shape] = {}
    shape = _model_output(root, None, out, 0, input_shape)
    if shape is not None:
        out[id(root)] = shape
    return out
