"""A Keras model config (`config.json`, a legacy `.h5` file's `model_config`) read as plain JSON.

The layer tree, class names and hyper-parameters come from the config alone; no Keras is imported
and nothing in it is run or decoded: a Lambda layer's marshalled bytecode stays a string. Every walk
is iterative, so a config nested thousands of levels deep is refused by the JSON parser in one
sentence (RecursionError) rather than crashing a walk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, printable, sentence
from analyzers.loaders.format_util import safe_component, unique

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
NAME_LIMIT = 200  # a layer name longer than this is cut (names are shown, never trusted)


@dataclass(eq=False)
class ConfigLayer:
    """One layer entry of a Keras config: its name, class, own config and the layers it nests."""

    name: str
    cls: str
    config: dict[str, Any]
    entry: dict[str, Any]
    trainable: bool = True
    containers: dict[str, list[ConfigLayer]] = field(default_factory=dict)  # "layers": Sequential/Functional
    subs: dict[str, ConfigLayer] = field(default_factory=dict)  # "layer", "cell", "backward_layer"

    def walk(self) -> list[ConfigLayer]:
        """This layer and every layer below it (containers and sub-layers), depth first, no recursion."""
        out: list[ConfigLayer] = []
        stack: list[ConfigLayer] = [self]
        while stack:
            layer = stack.pop()
            out.append(layer)
            nested = [c for kids in layer.containers.values() for c in kids] + list(layer.subs.values())
            stack.extend(reversed(nested))
        return out


def parse_json_object(path: Path, data: bytes | str, what: str) -> dict[str, Any]:
    """Parse `data` as a JSON object; anything else (bad JSON, too deep, not an object) is one sentence."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise CorruptFile(sentence(path, f"{what} nests deeper than the Python JSON parser can follow; "
                                         "no Keras model is built like that")) from None
    except (UnicodeDecodeError, ValueError):
        raise CorruptFile(sentence(path, f"{what} is not valid JSON")) from None
    if not isinstance(value, dict):
        raise CorruptFile(sentence(path, f"{what} is not a JSON object"))
    return value


def _layer_entry(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("class_name"), str):
        return False
    cfg = value.get("config")
    return isinstance(cfg, dict) and "name" in cfg and "trainable" in cfg


def _make(entry: dict[str, Any]) -> ConfigLayer:
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    name = cfg.get("name") if isinstance(cfg.get("name"), str) else entry.get("name")
    return ConfigLayer(
        name=printable(name, NAME_LIMIT) if isinstance(name, str) else "",
        cls=printable(entry.get("class_name"), NAME_LIMIT) if isinstance(entry.get("class_name"), str) else "",
        config=cfg,
        entry=entry,
        trainable=cfg.get("trainable") is not False,
    )


def parse_layers(config: Mapping[str, Any]) -> ConfigLayer:
    """The config's layer tree: `layers` lists (Sequential, Functional, nested models) become containers,
    layer-shaped config values (Bidirectional's `layer`, an RNN's `cell`) sub-layers."""
    root = _make(dict(config))
    stack = [root]
    while stack:
        layer = stack.pop()
        for key, value in layer.config.items():
            if isinstance(value, list):
                kids = [_make(item) for item in value if _layer_entry(item) or (key == "layers" and isinstance(
                    item, dict) and isinstance(item.get("class_name"), str))]
                if kids:
                    layer.containers[key] = kids
                    stack.extend(kids)
            elif _layer_entry(value):
                sub = _make(value)
                layer.subs[key] = sub
                stack.append(sub)
    return root


def _simple(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value, 200)
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, list | tuple) and len(value) <= 8 and all(v is None or isinstance(v, _SIMPLE) for v in value):
        return tuple(printable(v, 200) if isinstance(v, str) else v for v in value)
    if isinstance(value, dict):
        cfg = value.get("config")
        if isinstance(cfg, str):
            return printable(cfg, 200)
        name = value.get("class_name")
        return printable(name, 200) if isinstance(name, str) else None
    return None


def layer_attributes(config: Mapping[str, Any]) -> dict[str, object]:
    """Hyper-parameters from a layer's config (units, filters, kernel_size, activation ...)."""
    out: dict[str, object] = {}
    for key in ATTRIBUTE_KEYS:
        if key in config:
            value = _simple(config[key])
            if value is not None:
                out[key] = value
    if config.get("trainable") is False:
        out["trainable"] = False
    return out


def _owner_name(item: dict[str, Any], owner: str) -> str:
    cfg = item.get("config")
    if isinstance(item.get("class_name"), str) and isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
        return cfg["name"]
    return owner


def _is_bytecode(item: dict[str, Any]) -> bool:
    if item.get("class_name") == "__lambda__":
        return True
    cfg = item.get("config")
    if item.get("class_name") == "Lambda" and isinstance(cfg, dict):
        fn = cfg.get("function")
        return cfg.get("function_type") == "lambda" or isinstance(fn, list) or (
            isinstance(fn, dict) and fn.get("class_name") == "__lambda__")
    return False


def python_code_layers(config: Any) -> list[str]:
    """Names of the layers whose config carries marshalled Python bytecode (Lambda layers, lambda
    activations): what Keras's safe mode refuses to load. The bytecode is never decoded here."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(config, "")]
    while stack:
        item, owner = stack.pop()
        if isinstance(item, dict):
            owner = _owner_name(item, owner)
            if _is_bytecode(item) and printable(owner, NAME_LIMIT) not in found:
                found.append(printable(owner, NAME_LIMIT))
            stack.extend((v, owner) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, owner) for v in item)
    return found


def has_python_lambda(config: Any) -> bool:
    """True when the config carries Python bytecode (a Lambda layer or a lambda activation)."""
    return bool(python_code_layers(config))


class PathNamer:
    """Unique dotted paths for layers and tensors: siblings never share a component, dots never nest."""

    def __init__(self) -> None:
        self._taken: dict[str, set[str]] = {}

    def child(self, parent: str, name: str) -> str:
        """A new path below `parent` for something called `name`."""
        comp = unique(safe_component(printable(name, NAME_LIMIT)), self._taken.setdefault(parent, set()))
        return f"{parent}.{comp}" if parent else comp


def config_paths(root: ConfigLayer, namer: PathNamer) -> dict[int, str]:
    """Tree path of every layer listed in a container (by layer name), keyed by `id(layer)`; sub-layers of
    a layer's config (Bidirectional's `layer`) get theirs from the weights file, whose names differ."""
    paths = {id(root): ""}
    stack = [root]
    while stack:
        layer = stack.pop()
        base = paths[id(layer)]
        for kids in layer.containers.values():
            for kid in kids:
                paths[id(kid)] = namer.child(base, kid.name or kid.cls or "layer")
        stack.extend(reversed([k for kids in layer.containers.values() for k in kids]))
    return paths


def _shape(value: Any) -> list[int | None] | None:
    if isinstance(value, list) and len(value) <= 32 and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in value):
        return list(value)
    return None


def model_io(root: ConfigLayer, shapes: Mapping[int, tuple]) -> dict[str, object]:
    """Class, name and input/output specs of the model, as its config records them."""
    meta: dict[str, object] = {"model_class": root.cls, "model_name": root.name}
    layers = root.containers.get("layers", [])
    by_name = {layer.name: layer for layer in layers}
    inputs = [layer for layer in layers if layer.cls == "InputLayer"]
    if inputs:
        meta["inputs"] = [{"name": layer.name,
                           "shape": _shape(layer.config.get("batch_shape") or layer.config.get("batch_input_shape")),
                           "dtype": printable(layer.config.get("dtype"), 40) if isinstance(
                               layer.config.get("dtype"), str) else None} for layer in inputs]
    names = root.config.get("output_layers")
    if isinstance(names, list) and names and isinstance(names[0], str):
        names = [names]  # one output: ["dense", 0, 0]
    outs = [by_name[n[0]] for n in names or [] if isinstance(n, list) and n and n[0] in by_name]
    if not outs and root.cls == "Sequential" and layers:
        outs = [layers[-1]]
    if outs:
        meta["outputs"] = [{"name": layer.name, "shape": list(shapes[id(layer)]) if id(layer) in shapes else None}
                           for layer in outs]
    return meta
