"""Attribution methods: one file per method in this folder, found by looking, listed in their `order`.

Adding a method is adding a file here that defines a `Method` subclass decorated with `@register`
(and its test): the Explain tab's controls, the CLI's flags and --help, the runtimes' dispatch and
the display defaults all come from the class.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.methods.base import KerasCall, Method, Param, TorchCall

__all__ = ["KerasCall", "Method", "Param", "TorchCall", "all_params", "method_class", "methods", "register",
           "text_method_keys"]

_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register(cls: type[Method]) -> type[Method]:
    """Add a Method subclass to the registry under its `key` (class decorator)."""
    if not cls.key or not cls.title:
        raise TypeError(f"{cls.__name__} needs a key and a title")
    _REGISTRY[cls.key] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def methods() -> dict[str, type[Method]]:
    """Every registered method by key, in display order."""
    _load()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (getattr(kv[1], "order", 100), kv[0])))


def method_class(key: str) -> type[Method]:
    """The Method class called `key`, or one sentence listing the known ones."""
    found = methods().get(key)
    if found is None:
        raise LayerScopeError(f"Unknown attribution method '{key}'; use one of {', '.join(methods())}.")
    return found


def text_method_keys() -> list[str]:
    """Keys of the methods that apply to token inputs."""
    return [k for k, m in methods().items() if m.text]


def all_params() -> dict[str, Param]:
    """Every method parameter by name (one control / one CLI flag each); a name two methods share must
    mean the same thing to both (same kind and default), or this says which two disagree."""
    merged: dict[str, Param] = {}
    owner: dict[str, str] = {}
    for key, cls in methods().items():
        for name, param in cls.params.items():
            if name in merged and (merged[name].kind, merged[name].default) != (param.kind, param.default):
                raise TypeError(f"parameter '{name}' of {key} differs from {owner[name]}'s")
            merged.setdefault(name, param)
            owner.setdefault(name, key)
    return merged


def param_default(name: str, method: str | None = None) -> Any:
    """The default of parameter `name`: the method's own when it has one, else the first method's that does."""
    if method is not None:
        cls = methods().get(method)
        if cls is not None and name in cls.params:
            return cls.params[name].default
    params = all_params()
    if name not in params:
        raise AttributeError(name)
    return params[name].default
