"""Turn a live (usually meta-device) torch module into a typed LayerNode tree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from analyzers.summary import LayerNode, TensorInfo
from analyzers.summary.dtypes import canonical_dtype
from analyzers.summary.nametree import TreeBuilder

_SIMPLE = (bool, int, float, str)


def module_attributes(module: Any) -> dict[str, object]:
    """Hyper-parameters a module keeps as plain attributes (kernel_size, heads, in_features ...)."""
    out: dict[str, object] = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key in ("training", "dump_patches", "call_super_init"):
            continue
        if isinstance(value, _SIMPLE) or (
            isinstance(value, tuple) and len(value) <= 8 and all(isinstance(v, _SIMPLE) for v in value)
        ):
            out[key] = value
    return out


def default_type_name(module: Any) -> str:
    """Class name of a module; TorchScript modules report the scripted class's original name."""
    original = getattr(module, "original_name", None)
    if isinstance(original, str) and original:
        return original
    return type(module).__name__


def module_tree(
    model: Any,
    *,
    stored: Mapping[str, TensorInfo] | None = None,
    persistent_only: bool = True,
    extra: Mapping[str, TensorInfo] | None = None,
    type_name: Callable[[Any], str] = default_type_name,
    trainable_from_module: bool = True,
) -> LayerNode:
    """Typed tree of `model`: one node per submodule, its own parameters and buffers.

    `stored` maps state-dict names to what a checkpoint holds; their shape and dtype win over the
    module's (the module is usually on the meta device). A parameter object reached a second time
    (tied weights) is marked `shared_with` its first owner. `extra` tensors (in the file but not in
    the module) hang under their name's owner.
    """
    stored = stored or {}
    builder = TreeBuilder(type_name(model))
    builder.add_node("", type_name(model), module_attributes(model))
    first_owner: dict[int, str] = {}
    stack: list[tuple[str, Any]] = [("", model)]
    visiting: set[int] = set()
    while stack:
        path, module = stack.pop()
        if path:
            builder.add_node(path, type_name(module), module_attributes(module))
        prefix = f"{path}." if path else ""
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            full = prefix + name
            builder.add_tensor(path, _info(full, param, "param", stored, first_owner, trainable_from_module))
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        for name, buf in list(module._buffers.items()):
            if buf is None or (persistent_only and name in non_persistent):
                continue
            full = prefix + name
            builder.add_tensor(path, _info(full, buf, "buffer", stored, first_owner, False))
        key = id(module)
        if key in visiting:  # a module reused in two places: its tensors are already marked shared
            continue
        visiting.add(key)
        children = [(prefix + n, m) for n, m in module._modules.items() if m is not None]
        stack.extend(reversed(children))
    for name, tensor in (extra or {}).items():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        builder.add_tensor(owner, tensor)
    return builder.build(sort=False)


def _info(
    full: str,
    tensor: Any,
    kind: str,
    stored: Mapping[str, TensorInfo],
    first_owner: dict[int, str],
    trainable: bool,
) -> TensorInfo:
    shared = first_owner.get(id(tensor))
    if shared is None:
        first_owner[id(tensor)] = full
    on_disk = stored.get(full)
    shape = on_disk.shape if on_disk else tuple(int(d) for d in tensor.shape)
    dtype = on_disk.dtype if on_disk else canonical_dtype(tensor.dtype)
    is_trainable = kind == "param" and (bool(getattr(tensor, "requires_grad", True)) if trainable else True)
    return TensorInfo(
        name=full,
        shape=shape,
        dtype=dtype,
        kind=kind,
        trainable=is_trainable,
        shared_with=shared,
        stored_bytes=on_disk.stored_bytes if on_disk else None,
    )


def plain_attributes(state: Mapping[str, Any]) -> dict[str, object]:
    """Hyper-parameters among a pickled module's `__dict__` entries (strings capped, nothing else kept)."""
    out: dict[str, object] = {}
    for key, value in state.items():
        if not isinstance(key, str) or key.startswith("_") or key in ("training", "dump_patches", "call_super_init"):
            continue
        if isinstance(value, str):
            value = value if len(value) <= 200 else value[:199] + "…"
        if isinstance(value, _SIMPLE) or (
            isinstance(value, tuple) and len(value) <= 8 and all(isinstance(v, _SIMPLE) for v in value)
        ):
            out[key[:200]] = value
    return out


def standin_tree(model: Any, check_name: Callable[[str], str]) -> tuple[LayerNode, list[str], list[str]]:
    """Typed tree of a module the restricted unpickler read (torch_pickle.Opaque stand-ins), with nothing run.

    Class names come from the pickle, children from `_modules`, parameters from `_parameters`,
    buffers from `_buffers`, hyper-parameters from plain `__dict__` entries. Returns the tree, the
    module classes it met (the file's own first) and notes. `check_name` refuses absurd names."""
    from analyzers.loaders.torch_stubs import Opaque, TensorStub, key_text

    def type_of(module: Opaque) -> str:
        return check_name(module.cls.short)[:200]

    builder = TreeBuilder(type_of(model))
    first_owner: dict[int, str] = {}
    descended: set[int] = set()
    classes: dict[tuple[str, str], str] = {}
    opaque_tensors: list[str] = []
    stack: list[tuple[str, Any]] = [("", model)]
    while stack:
        path, module = stack.pop()
        state = module.state_dict() or {}
        classes.setdefault((module.cls.module, module.cls.name), type_of(module))
        builder.add_node(path, type_of(module), plain_attributes(state))
        prefix = f"{path}." if path else ""
        groups = (("param", state.get("_parameters")), ("buffer", state.get("_buffers")))
        for kind, tensors in groups:
            for name, tensor in (tensors.items() if isinstance(tensors, Mapping) else ()):
                full = check_name(prefix + key_text(name))
                if tensor is None:
                    continue
                if not isinstance(tensor, TensorStub):
                    opaque_tensors.append(full)
                    continue
                shared = first_owner.setdefault(id(tensor), full)
                builder.add_tensor(path, TensorInfo(
                    name=full, shape=tensor.shape, dtype=tensor.dtype, kind=kind,
                    trainable=kind == "param" and tensor.requires_grad, shared_with=None if shared == full else shared))
        if id(module) in descended:  # a module reused in two places: its children are walked once
            continue
        descended.add(id(module))
        children = state.get("_modules")
        if isinstance(children, Mapping):
            found = [(check_name(prefix + key_text(n)), m) for n, m in children.items() if isinstance(m, Opaque)]
            stack.extend(reversed(found))
    ordered = sorted(classes.items(), key=lambda kv: kv[0][0].startswith("torch."))  # stable: walk order
    notes: list[str] = []
    if opaque_tensors:
        notes.append(f"{len(opaque_tensors)} tensor(s) of classes LayerScope does not read (e.g. "
                     f"{opaque_tensors[0][:80]}) are not counted.")
    return builder.build(sort=False), list(dict.fromkeys(name for _, name in ordered)), notes
