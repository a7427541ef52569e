"""Keras 3 `.keras` archives and legacy full-model `.h5` files, rebuilt with Keras in safe mode.

TensorFlow and Keras are imported only when such a file is opened. The tree follows nested models
and layers; every weight keeps Keras's own trainable flag, so totals equal `model.count_params()`
(BatchNormalization moving statistics are non-trainable parameters, as Keras counts them). A file
with a Python lambda is refused before Keras runs, unless trusted. When Keras cannot rebuild the
model (a custom class that is not importable here), the stored weights are shown instead.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analyzers.dtypes import canonical_dtype
from analyzers.errors import CorruptFile, TrustRequired, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import decorate_tree, first_line, safe_component, unique
from analyzers.loaders.h5_weights import (
    config_types,
    has_model_config_hint,
    model_config_of,
    open_h5_weights,
    open_hdf5,
    weights_summary,
)
from analyzers.nametree import TreeBuilder
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

ZIP_CONFIG = "config.json"
ZIP_WEIGHTS = "model.weights.h5"

# Config entries worth showing next to a layer (hyper-parameters, not initialisers or regularisers).
ATTRIBUTE_KEYS = (
    "units", "filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "activation",
    "recurrent_activation", "use_bias", "rate", "pool_size", "axis", "momentum", "epsilon", "center", "scale",
    "num_heads", "key_dim", "value_dim", "dropout", "recurrent_dropout", "input_dim", "output_dim", "mask_zero",
    "return_sequences", "return_state", "data_format", "depth_multiplier", "target_shape", "size",
    "interpolation", "batch_shape", "equation", "output_shape", "cropping", "max_value", "negative_slope",
    "dims", "n",
)
_SIMPLE = (bool, int, float, str)
_MISSING_CLASS = re.compile(r"Could not locate (class|function) '([^']+)'")


def sniff_keras(path: Path) -> bool:
    """A zip with config.json and model.weights.h5, or HDF5 carrying a `model_config` attribute."""
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        return ZIP_CONFIG in names and ZIP_WEIGHTS in names
    return has_model_config_hint(path)


def has_python_lambda(config: Any) -> bool:
    """True when a Lambda layer in the config carries Python bytecode (what safe mode refuses)."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            cfg = item.get("config")
            if item.get("class_name") == "Lambda" and isinstance(cfg, dict):
                fn = cfg.get("function")
                if (cfg.get("function_type") == "lambda" or isinstance(fn, list)
                        or (isinstance(fn, dict) and fn.get("class_name") == "__lambda__")):
                    return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _read_zip(path: Path) -> tuple[dict, dict]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if ZIP_CONFIG not in names:
                raise CorruptFile(sentence(path, "the .keras archive has no config.json"))
            config_text = zf.read(ZIP_CONFIG)
            meta_text = zf.read("metadata.json") if "metadata.json" in names else b"{}"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptFile(sentence(path, f"the .keras archive is broken ({first_line(exc)})")) from None
    try:
        config = json.loads(config_text)
        meta = json.loads(meta_text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptFile(sentence(path, "config.json in the .keras archive is not valid JSON")) from None
    if not isinstance(config, dict):
        raise CorruptFile(sentence(path, "config.json in the .keras archive is not a JSON object"))
    return config, meta if isinstance(meta, dict) else {}


def _import_keras() -> Any:
    from analyzers.tf_import import keras

    return keras()


def _simple(value: Any) -> Any:
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, list | tuple) and len(value) <= 8 and all(v is None or isinstance(v, _SIMPLE) for v in value):
        return tuple(value)
    if isinstance(value, dict):
        cfg = value.get("config")
        if isinstance(cfg, str):
            return cfg
        name = value.get("class_name")
        return name if isinstance(name, str) else None
    return None


def layer_attributes(layer: Any) -> dict[str, object]:
    """Hyper-parameters from a layer's config (units, filters, kernel_size, activation ...)."""
    try:
        cfg = layer.get_config()
    except Exception:  # custom layers may not implement get_config
        return {}
    if not isinstance(cfg, Mapping):
        return {}
    out: dict[str, object] = {}
    for key in ATTRIBUTE_KEYS:
        if key in cfg:
            value = _simple(cfg[key])
            if value is not None:
                out[key] = value
    if cfg.get("trainable") is False:
        out["trainable"] = False
    return out


def output_shape(layer: Any) -> tuple | None:
    """The layer's output shape as Keras knows it (None for the batch axis), or None when unknown."""
    try:
        out = layer.output
    except Exception:  # subclassed layers, layers called more than once
        return None
    shape = getattr(out, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def sublayers(layer: Any) -> list[Any]:
    """Direct sub-layers (nested models, layers tracked as attributes) in the order Keras keeps them."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        try:
            return list(flatten(include_self=False, recursive=False))
        except TypeError:
            pass
    return list(getattr(layer, "layers", []) or [])


def keras_tree(model: Any) -> tuple[LayerNode, list[str]]:
    """Typed tree of a live Keras model; tensors are named `<layer path>.<weight name>`."""
    trainable_ids = {id(v) for v in model.trainable_weights}
    root_type = type(model).__name__
    builder = TreeBuilder(root_type)
    builder.add_node("", root_type, layer_attributes(model))
    first_owner: dict[int, str] = {}
    shapes: dict[str, tuple] = {}
    stack: list[tuple[str, Any]] = [("", model)]
    while stack:
        path, layer = stack.pop()
        shape = output_shape(layer)
        if shape is not None:
            shapes[path] = shape
        subs = sublayers(layer)
        nested = {id(w) for sub in subs for w in sub.weights}
        taken: set[str] = set()
        for w in layer.weights:
            if id(w) in nested:
                continue
            leaf = unique(safe_component(w.name), taken)
            _add_weight(builder, path, f"{path}.{leaf}" if path else leaf, w, trainable_ids, first_owner)
        child_names: set[str] = set(taken)
        children = []
        for sub in subs:
            comp = unique(safe_component(sub.name), child_names)
            child = f"{path}.{comp}" if path else comp
            builder.add_node(child, type(sub).__name__, layer_attributes(sub))
            children.append((child, sub))
        stack.extend(reversed(children))
    notes: list[str] = []
    stray = [w for w in model.weights if id(w) not in first_owner]
    taken_root: set[str] = set()
    for w in stray:
        name = unique(safe_component(getattr(w, "path", w.name)).replace("/", "_"), taken_root)
        _add_weight(builder, "", name, w, trainable_ids, first_owner)
    if stray:
        notes.append(f"{len(stray)} weight(s) belong to no layer Keras lists; they are shown on the model itself.")
    return decorate_tree(builder.build(), output_shapes=shapes), notes


def _add_weight(builder: TreeBuilder, owner: str, name: str, w: Any, trainable_ids: set[int],
                first_owner: dict[int, str]) -> None:
    shared = first_owner.get(id(w))
    if shared is None:
        first_owner[id(w)] = name
    builder.add_tensor(owner, TensorInfo(
        name=name,
        shape=tuple(int(d) for d in w.shape),
        dtype=canonical_dtype(w.dtype),
        kind="param",
        trainable=id(w) in trainable_ids,
        shared_with=shared,
    ))


def _io_specs(tensors: Any) -> list[dict[str, object]]:
    out = []
    for t in list(tensors or []):
        shape = getattr(t, "shape", None)
        out.append({"name": str(getattr(t, "name", "")),
                    "shape": [None if d is None else int(d) for d in shape] if shape is not None else None,
                    "dtype": canonical_dtype(getattr(t, "dtype", ""))})
    return out


def model_metadata(model: Any) -> dict[str, object]:
    """Class, name and input/output specs of a live Keras model."""
    meta: dict[str, object] = {"model_class": type(model).__name__, "model_name": str(getattr(model, "name", ""))}
    for key in ("inputs", "outputs"):
        try:
            specs = _io_specs(getattr(model, key))
        except Exception:  # subclassed models have no symbolic inputs
            continue
        if specs:
            meta[key] = specs
    return meta


def _fallback(path: Path, fmt: str, config: dict, metadata: dict, reason: str) -> ModelSummary:
    """The stored weights, read with h5py, when Keras cannot rebuild the model."""
    types = config_types(config)
    notes = [f"Keras could not rebuild the model ({reason}); showing the stored weights, with layer classes "
             "taken from the saved config."]
    if fmt == "keras-h5":
        f = open_hdf5(path)
        try:
            summary = weights_summary(path, f, fmt, notes, types, metadata)
        finally:
            f.close()
        return summary
    tmp = tempfile.mkdtemp(prefix="layerscope-keras-")
    try:
        try:
            with zipfile.ZipFile(path) as zf:
                weights = Path(zf.extract(ZIP_WEIGHTS, tmp))
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise CorruptFile(sentence(path, f"its weights could not be read ({first_line(exc)})")) from None
        f = open_hdf5(path, weights)
        try:
            inner = weights_summary(weights, f, fmt, notes, types, metadata)
        finally:
            f.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ModelSummary(
        source=SourceInfo(str(path), fmt, "keras", (str(path),), path.stat().st_size),
        root=inner.root, metadata=inner.metadata, notes=inner.notes,
    )


def _rebuild_failure(exc: BaseException) -> str:
    """Why Keras could not rebuild the model, in a few words."""
    match = _MISSING_CLASS.search(str(exc))
    if match:
        return f"the custom {match.group(1)} '{match.group(2)}' is not registered in this Python environment"
    return f"{type(exc).__name__}: {first_line(exc)}"


def _read_h5_config(path: Path) -> tuple[dict | None, dict]:
    f = open_hdf5(path)
    try:
        if "model_config" not in f.attrs:
            return None, {}
        config = model_config_of(f)
        if config is None:
            raise CorruptFile(sentence(path, "its model_config attribute is not a JSON object"))
        meta = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()
                if k in ("keras_version", "backend")}
        return config, meta
    finally:
        f.close()


@loader(
    "keras",
    patterns=("*.keras", "*.h5", "*.hdf5"),
    priority=16,
    sniff=sniff_keras,
    description="Keras model",
)
def open_keras(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Rebuild the model with keras.saving.load_model(compile=False, safe_mode=True) and walk its layers."""
    yield Progress(0, 4, f"Reading the config of {path.name}")
    if zipfile.is_zipfile(path):
        fmt = "keras"
        config, metadata = _read_zip(path)
    else:
        fmt = "keras-h5"
        h5_config, metadata = _read_h5_config(path)
        if h5_config is None:  # weights only, despite the name
            return (yield from open_h5_weights(path, options))
        config = h5_config
    if has_python_lambda(config) and not options.trust:
        raise TrustRequired(path, "a Lambda layer's Python bytecode")
    yield Progress(1, 4, "Importing TensorFlow and Keras")
    try:
        keras = _import_keras()
    except ImportError as exc:
        return _fallback(path, fmt, config, metadata, f"Keras is not installed: {first_line(exc)}")
    metadata["keras_runtime_version"] = str(getattr(keras, "__version__", ""))
    yield Progress(2, 4, "Rebuilding the model (safe mode)" if not options.trust else "Rebuilding the model")
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=not options.trust)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            raise TrustRequired(path, "objects Keras deserializes only outside safe mode") from None
        return _fallback(path, fmt, config, metadata, _rebuild_failure(exc))
    except Exception as exc:  # any failure to rebuild (unknown custom class ...) falls back to the weights
        return _fallback(path, fmt, config, metadata, _rebuild_failure(exc))
    yield Progress(3, 4, "Walking layers")
    root, notes = keras_tree(model)
    metadata.update(model_metadata(model))
    if options.trust:
        notes.append("Opened outside Keras safe mode because you trusted it.")
    yield Progress(4, 4, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), fmt, "keras", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )
