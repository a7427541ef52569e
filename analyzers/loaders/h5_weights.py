"""Weights-only HDF5 (`.weights.h5`, legacy Keras `save_weights` files, other HDF5 weights) read with h5py.

No TensorFlow is imported: the tree comes from the HDF5 groups. Keras 3 files store each layer's
variables as numbered datasets under `<object>/vars` (the layer's name in the group's `name`
attribute); legacy Keras files list `layer_names` and per-layer `weight_names`. Trainability is
not stored in either: BatchNormalization moving statistics are marked non-trainable (by their
name in legacy files, by their position in Keras 3 files), every other weight trainable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from analyzers.dtypes import canonical_dtype
from analyzers.errors import CorruptFile, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import first_line, safe_component, unique
from analyzers.nametree import TreeBuilder
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MODEL_CONFIG_HINT = b"model_config"
HINT_WINDOW = 1 << 20  # legacy Keras writes model_config before the weights, near the start

# Variable names of common Keras layers, in the order Keras creates them (Keras 3 files store indices).
KNOWN_VARIABLES: dict[str, tuple[str, ...]] = {
    "Dense": ("kernel", "bias"),
    "EinsumDense": ("kernel", "bias"),
    "Conv1D": ("kernel", "bias"),
    "Conv2D": ("kernel", "bias"),
    "Conv3D": ("kernel", "bias"),
    "Conv1DTranspose": ("kernel", "bias"),
    "Conv2DTranspose": ("kernel", "bias"),
    "Conv3DTranspose": ("kernel", "bias"),
    "DepthwiseConv2D": ("kernel", "bias"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "Embedding": ("embeddings",),
    "LayerNormalization": ("gamma", "beta"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "LSTMCell": ("kernel", "recurrent_kernel", "bias"),
    "GRUCell": ("kernel", "recurrent_kernel", "bias"),
    "SimpleRNNCell": ("kernel", "recurrent_kernel", "bias"),
}
# Snake-case group names Keras derives from class names whose CamelCase is not a plain title-case.
SNAKE_CLASSES: dict[str, str] = {
    "conv1d": "Conv1D", "conv2d": "Conv2D", "conv3d": "Conv3D",
    "conv1d_transpose": "Conv1DTranspose", "conv2d_transpose": "Conv2DTranspose",
    "conv3d_transpose": "Conv3DTranspose", "depthwise_conv2d": "DepthwiseConv2D",
    "separable_conv2d": "SeparableConv2D", "lstm": "LSTM", "gru": "GRU", "lstm_cell": "LSTMCell",
    "gru_cell": "GRUCell", "simple_rnn": "SimpleRNN", "simple_rnn_cell": "SimpleRNNCell",
    "re_lu": "ReLU", "p_re_lu": "PReLU", "max_pooling2d": "MaxPooling2D", "average_pooling2d": "AveragePooling2D",
    "global_average_pooling2d": "GlobalAveragePooling2D", "up_sampling2d": "UpSampling2D",
    "zero_padding2d": "ZeroPadding2D",
}
# Top-level Keras 3 groups that hold training state, not model weights.
STATE_GROUPS = ("optimizer", "compile_metrics", "metrics", "loss")
_SUFFIX = re.compile(r"_\d+$")


def hdf5_offset(path: Path) -> int | None:
    """Where the HDF5 superblock starts (0, or after a 512·2^n-byte user block), None when not HDF5."""
    size = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        while offset + len(HDF5_MAGIC) <= size and offset <= 64 * 1024 * 1024:
            f.seek(offset)
            if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                return offset
            offset = 512 if offset == 0 else offset * 2
    return None


def sniff_hdf5(path: Path) -> bool:
    """HDF5 signature at offset 0 or after a user block."""
    return hdf5_offset(path) is not None


def has_model_config_hint(path: Path) -> bool:
    """HDF5 whose first MiB names a `model_config` attribute: a legacy full-model Keras file."""
    offset = hdf5_offset(path)
    if offset is None:
        return False
    with path.open("rb") as f:
        f.seek(offset)
        return MODEL_CONFIG_HINT in f.read(HINT_WINDOW)


def open_hdf5(path: Path, source: Any = None) -> Any:
    """h5py.File for reading; a broken file becomes one sentence."""
    import h5py

    try:
        return h5py.File(source if source is not None else path, "r")
    except (OSError, ValueError) as exc:
        raise CorruptFile(sentence(path, f"HDF5 could not open it ({first_line(exc)}); the file is truncated "
                                         "or corrupted")) from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _names(attr: Any) -> list[str]:
    return [_text(v) for v in list(attr)]


def class_from_snake(key: str) -> str:
    """`batch_normalization_2` -> `BatchNormalization`: the class a Keras 3 group name was derived from."""
    base = _SUFFIX.sub("", key)
    if base in SNAKE_CLASSES:
        return SNAKE_CLASSES[base]
    return "".join(part[:1].upper() + part[1:] for part in base.split("_") if part)


def _is_dataset(obj: Any) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset)


def _is_group(obj: Any) -> bool:
    import h5py

    return isinstance(obj, h5py.Group)


def _tensor(name: str, ds: Any, *, trainable: bool = True, kind: str = "param") -> TensorInfo | None:
    if ds.dtype.kind not in "biufc":  # strings and opaque blobs are not weights
        return None
    return TensorInfo(name=name, shape=tuple(int(d) for d in ds.shape), dtype=canonical_dtype(ds.dtype.name),
                      kind=kind, trainable=trainable and kind == "param")


def layout(f: Any) -> str:
    """'keras3', 'legacy' or 'generic': how the weights in an open HDF5 file are organised."""
    if "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs):
        return "legacy"
    vars_group = f.get("vars")
    if (vars_group is not None and _is_group(vars_group)) or ("layers" in f and _is_group(f["layers"])):
        return "keras3"
    return "generic"


def keras3_tree(f: Any, types: dict[str, str] | None = None) -> tuple[TreeBuilder, list[str]]:
    """Tree of a Keras 3 weights file: one node per saved object, its numbered variables named when known."""
    builder = TreeBuilder()
    notes: list[str] = []
    root_vars = f.get("vars")
    root_name = _text(root_vars.attrs.get("name", "")) if root_vars is not None else ""
    builder.add_node("", (types or {}).get(root_name, ""))
    if root_vars is not None:
        _add_vars(builder, "", root_vars, (types or {}).get(root_name, ""), state=False)
    state_seen = False
    stack: list[tuple[str, Any, bool, bool]] = []
    for key in reversed(list(f.keys())):
        if key == "vars":
            continue
        state = key in STATE_GROUPS
        state_seen |= state
        stack.append(("", f[key], key == "layers", state))
    taken: dict[str, set[str]] = {}
    while stack:
        parent, group, in_list, state = stack.pop()
        if not _is_group(group):
            continue
        if "vars" not in group:  # a container (`layers` list, dict of objects): transparent
            kids = [(parent, group[k], group.name.rsplit("/", 1)[-1] == "layers" or in_list, state)
                    for k in group.keys()]
            stack.extend(reversed(kids))
            continue
        key = group.name.rsplit("/", 1)[-1]
        name = _text(group["vars"].attrs.get("name", "")) or key
        cls = (types or {}).get(name) or (class_from_snake(key) if in_list else "")
        if not cls and class_from_snake(name) in KNOWN_VARIABLES:  # Keras names layers after their class
            cls = class_from_snake(name)
        comp = unique(safe_component(name if not state else key), taken.setdefault(parent, set()))
        path = f"{parent}.{comp}" if parent else comp
        builder.add_node(path, cls)
        _add_vars(builder, path, group["vars"], cls, state)
        children = [(path, group[k], k == "layers", state) for k in group.keys() if k != "vars"]
        stack.extend(reversed(children))
    if state_seen:
        notes.append("Optimizer and metric state in the file is shown as buffers, not parameters.")
    return builder, notes


def _add_vars(builder: TreeBuilder, path: str, group: Any, cls: str, state: bool) -> None:
    keys = sorted((k for k in group.keys() if _is_dataset(group[k])), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    known = KNOWN_VARIABLES.get(cls, ())
    use_names = len(known) == len(keys) and all(k.isdigit() for k in keys)
    for i, key in enumerate(keys):
        label = known[i] if use_names else safe_component(key)
        trainable = not (cls == "BatchNormalization" and i >= len(keys) - 2 and len(keys) >= 2)
        t = _tensor(f"{path}.{label}" if path else label, group[key], trainable=trainable,
                    kind="buffer" if state else "param")
        if t is not None:
            builder.add_tensor(path, t)


def legacy_tree(f: Any, types: dict[str, str] | None = None) -> TreeBuilder:
    """Tree of a legacy Keras weights group: `layer_names`, then each layer's `weight_names`."""
    group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
    builder = TreeBuilder()
    taken_layers: set[str] = set()
    for layer_name in _names(group.attrs["layer_names"]):
        if layer_name not in group:
            raise CorruptFile(sentence(Path(f.filename), f"layer '{layer_name}' listed in layer_names is missing"))
        layer = group[layer_name]
        path = unique(safe_component(layer_name), taken_layers)
        builder.add_node(path, (types or {}).get(layer_name, ""))
        weight_names = _names(layer.attrs.get("weight_names", []))
        if not weight_names:  # some writers omit the attribute: take every dataset below the layer
            weight_names = [n for n, _ in _datasets(layer)]
        taken: set[str] = set()
        for wname in weight_names:
            if wname not in layer:
                raise CorruptFile(sentence(Path(f.filename), f"weight '{wname}' of layer '{layer_name}' is missing"))
            parts = [p.split(":")[0] for p in wname.split("/") if p]
            if len(parts) > 1 and parts[0] == layer_name:
                parts = parts[1:]
            leaf = unique(".".join([path, *map(safe_component, parts)]), taken)
            owner = leaf.rsplit(".", 1)[0]
            t = _tensor(leaf, layer[wname], trainable=parts[-1] not in ("moving_mean", "moving_variance"))
            if t is not None:
                builder.add_tensor(owner, t)
            for i, part in enumerate(parts[:-1]):
                sub = ".".join([path, *map(safe_component, parts[: i + 1])])
                builder.add_node(sub, (types or {}).get(part, ""))
    return builder


def _datasets(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    stack = [(prefix, group)]
    while stack:
        base, g = stack.pop()
        for key in reversed(list(g.keys())):
            obj = g[key]
            name = f"{base}/{key}" if base else key
            if _is_dataset(obj):
                yield name, obj
            elif _is_group(obj):
                stack.append((name, obj))


def generic_tree(f: Any) -> TreeBuilder:
    """Every numeric dataset of an HDF5 file as a tensor, grouped by its HDF5 path."""
    builder = TreeBuilder()
    for name, ds in sorted(_datasets(f)):
        parts = [safe_component(p.split(":")[0]) for p in name.split("/") if p]
        full = ".".join(parts)
        t = _tensor(full, ds)
        if t is not None:
            builder.add_tensor(full.rsplit(".", 1)[0] if "." in full else "", t)
    return builder


def config_types(config: Any) -> dict[str, str]:
    """Layer name -> class name for every layer named in a Keras model config (any nesting)."""
    out: dict[str, str] = {}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            cls, cfg = item.get("class_name"), item.get("config")
            if isinstance(cls, str) and isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
                out.setdefault(cfg["name"], cls)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def weights_summary(path: Path, f: Any, fmt: str, notes: list[str], types: dict[str, str] | None = None,
                    metadata: dict | None = None) -> ModelSummary:
    """Summary of the weights in an open HDF5 file, whatever its layout."""
    kind = layout(f)
    metadata = dict(metadata or {})
    metadata["hdf5_layout"] = kind
    for key in ("keras_version", "backend"):
        if key in f.attrs:
            metadata[key] = _text(f.attrs[key])
    notes = list(notes)
    if kind == "keras3":
        builder, more = keras3_tree(f, types)
        notes.extend(more)
        notes.append("Keras 3 weights files number each layer's variables; names and trainability of common "
                     "layers are inferred (BatchNormalization moving statistics count as non-trainable).")
    elif kind == "legacy":
        builder = legacy_tree(f, types)
        notes.append("Legacy Keras weights file: trainability is not stored; BatchNormalization moving "
                     "statistics count as non-trainable, every other weight as trainable.")
    else:
        builder = generic_tree(f)
        notes.append("Not a Keras weights layout: every numeric dataset is shown as a tensor.")
    root = builder.build()
    if root.total.tensors == 0 and kind == "generic":
        raise UnsupportedFile(sentence(path, "this HDF5 file holds no numeric datasets, so no weights"))
    if not types:
        notes.append("A weights-only file stores no layer classes: types are guessed from group names where "
                     "Keras derived them from the class.")
    return ModelSummary(
        source=SourceInfo(str(path), fmt, "keras" if kind != "generic" else "", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )


@loader(
    "h5-weights",
    patterns=("*.weights.h5", "*.h5", "*.hdf5", "*.hdf", "*.he5"),
    priority=14,
    sniff=sniff_hdf5,
    description="HDF5 weights",
)
def open_h5_weights(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """A weights-only HDF5 file as a tensor tree, without TensorFlow; full Keras models go to the Keras loader."""
    yield Progress(0, 2, f"Reading HDF5 groups of {path.name}")
    f = open_hdf5(path)
    try:
        if "model_config" in f.attrs:
            f.close()
            from analyzers.loaders.keras_loader import open_keras

            return (yield from open_keras(path, options))
        summary = weights_summary(path, f, "keras-weights", [])
    finally:
        f.close()
    yield Progress(2, 2, "Done")
    return summary


def model_config_of(f: Any) -> dict | None:
    """The parsed `model_config` attribute of a legacy full-model file (None when absent or unreadable)."""
    raw = f.attrs.get("model_config")
    if raw is None:
        return None
    try:
        data = json.loads(_text(raw))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
