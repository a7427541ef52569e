"""PyTorch `.pt/.pth/.bin/.ckpt`: state_dicts, training checkpoints that nest one, full pickled modules.

A torch.save file is a pickle, and a pickle can run code. The summary never unpickles with torch:
`torch_pickle.RestrictedUnpickler` reads the pickle without importing or calling anything it names,
tensors come back as stubs (shape, dtype, storage key; no data read) whose extent is checked
against the bytes their storage record holds, and a full pickled `nn.Module` comes back as a tree of
stand-ins whose class names, children, parameters and buffers are shown without its code running.
`load_checkpoint` (for running a model) checks the file the same way before torch.load.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from struct import unpack
from typing import Any

from analyzers.errors import CorruptFile, TrustRequired, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.arch import instantiate, match_names, parse_arch
from analyzers.loaders.safe_files import PICKLE_LIMIT, SafeZip, display_name, regular_file, zip_names
from analyzers.loaders.torch_pickle import PickleRefused, RestrictedUnpickler, check_name, run_unpickler
from analyzers.loaders.torch_stubs import GlobalRef, Opaque, StorageRef, StorageType, TensorStub, key_text
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.dtypes import canonical_dtype, dtype_bits
from analyzers.summary.nametree import build_name_tree, is_buffer_name
from analyzers.tasks import Progress, Steps

LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
# Keys under which training code nests the weights (Lightning, plain loops, DeepSpeed, EMA).
STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state",
              "ema_state_dict", "ema", "params", "weights")
MAX_NESTING = 32  # dict levels a checkpoint nests its weights in


def zip_kind(path: Path) -> str | None:
    """'state' for torch.save zips, 'script' for TorchScript, 'export' for torch.export, None otherwise."""
    names = zip_names(path)
    if names is None:
        return None
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "export"
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        return "script"
    if any(n.endswith("data.pkl") for n in names):
        return "state"
    return None


def sniff_torch(path: Path) -> bool:
    """A torch.save zip (data.pkl, no TorchScript code) or a legacy torch pickle."""
    with path.open("rb") as f:
        head = f.read(len(LEGACY_MAGIC))
    if head.startswith(b"PK\x03\x04"):
        return zip_kind(path) == "state"
    return head == LEGACY_MAGIC


# --- reading the file without running it ------------------------------------------------------------------

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


@dataclass
class TorchPickle:
    """A torch.save file's object read restrictedly, with the classes it named and the storages it declared."""

    obj: Any
    classes: Counter[GlobalRef]
    storages: dict[str, StorageRef]
    kind: str  # "zip" or "legacy"
    notes: list[str]
    offsets: dict[str, int] = field(default_factory=dict)  # legacy files: where each storage's bytes start


def storage_fields(pid: tuple) -> tuple[StorageType, str, str, int]:
    """(storage class, key, location, element count) of a torch `('storage', ...)` persistent id, checked."""
    if pid[0] != "storage" or len(pid) < 5:
        raise PickleRefused("its pickle refers to an external object that is not a tensor storage")
    _, stype, key, location, numel = pid[:5]
    if not isinstance(stype, StorageType):
        raise PickleRefused("its pickle names a storage class torch does not have")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise PickleRefused("its pickle declares a storage with a negative or non-integer size")
    key = str(key)
    if len(key) > 200:
        raise PickleRefused("its pickle names a storage record with a key longer than 200 characters")
    return stype, key, str(location)[:40], numel


def read_zip_pickle(path: Path, zf: Any, name: str, folder: str, limit: int, *,
                    allow_empty: bool = False) -> TorchPickle:
    """Unpickle archive member `name` of a SafeZip; its storages are records `folder<key>`, sizes checked.
    `allow_empty` accepts a 0-byte record whatever its storage declares (torch.jit.trace writes its
    traced inputs that way); any other record shorter than its storage is refused."""
    declared = zf.size(name)
    if declared > limit:
        raise CorruptFile(sentence(path, f"its pickle '{display_name(name)}' inflates to {declared:,} bytes, more than "
                                         f"the {limit:,} LayerScope reads for it"))
    storages: dict[str, StorageRef] = {}
    archive_size = path.stat().st_size

    def on_storage(pid: tuple) -> StorageRef:
        stype, key, location, numel = storage_fields(pid)
        if key in storages:
            return storages[key]
        info = zf.infos.get(folder + key)
        if info is None:
            raise PickleRefused(f"its pickle refers to storage record '{display_name(folder + key, 80)}', which the "
                                "archive does not hold")
        if info.compress_type == 0 and (info.compress_size != info.file_size
                                        or info.header_offset + info.compress_size > archive_size):
            raise PickleRefused(f"its storage record '{display_name(folder + key, 80)}' declares {info.file_size:,} "
                                "bytes that the archive does not hold; the file is truncated")
        ref = StorageRef(key, stype.dtype, stype.itemsize, numel, location)
        if ref.nbytes > info.file_size and not (allow_empty and info.file_size == 0):
            raise PickleRefused(f"its pickle declares {ref.nbytes:,} bytes for storage record "
                                f"'{display_name(folder + key, 80)}', which holds only {info.file_size:,}; the "
                                "file is truncated or corrupted")
        storages[key] = ref
        return ref

    with zf.open(name) as stream:
        obj, unpickler, _ = run_unpickler(path, stream, declared, on_storage)
    return TorchPickle(obj, unpickler.classes, storages, "zip", [])


def data_pickle_name(path: Path, names: list[str]) -> str:
    """The one `<folder>/data.pkl` of a torch.save zip (refused when there are none or several)."""
    found = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl") and n.count("/") == 1]
    if len(found) != 1:
        problem = ("it is a zip archive without the data.pkl a PyTorch checkpoint has" if not found else
                   f"it holds {len(found)} data.pkl pickles ({', '.join(display_name(n, 40) for n in found[:3])}); "
                   "which one torch reads is ambiguous, so it is refused")
        raise CorruptFile(sentence(path, problem))
    return found[0]


def read_torch_zip(path: Path, limit: int) -> TorchPickle:
    """A torch.save zip: the directory checked (duplicates, case clashes), data.pkl unpickled restrictedly."""
    with SafeZip(path) as zf:
        name = data_pickle_name(path, zf.names)
        folder = name[: -len("data.pkl")] + "data/"
        result = read_zip_pickle(path, zf, name, folder, limit)
        result.notes.extend(zf.findings)
    return result


def read_legacy(path: Path, limit: int) -> TorchPickle:
    """A pre-1.6 torch.save file: magic, protocol and system pickles, the object, then each storage's bytes."""
    size = regular_file(path).st_size
    storages: dict[str, StorageRef] = {}
    roots: dict[str, StorageRef] = {}
    offsets: dict[str, int] = {}

    def on_storage(pid: tuple) -> Any:
        if pid[0] == "module" and len(pid) >= 2:  # legacy module classes travel as persistent ids
            return pid[1]
        stype, key, location, numel = storage_fields(pid)
        root = roots.setdefault(key, StorageRef(key, stype.dtype, stype.itemsize, numel, location))
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
            raise PickleRefused("its pickle declares a storage view it cannot describe")
        view_key, offset, view_size = str(view[0])[:200], view[1], view[2]
        if offset < 0 or view_size < 0 or offset + view_size > root.numel:
            raise PickleRefused(f"a storage view reaches past the end of storage '{display_name(key, 40)}'")
        return storages.setdefault(view_key, StorageRef(view_key, root.dtype, root.itemsize, view_size, location))

    with open(path, "rb") as f:
        def load(step: Callable[[tuple], Any], what: str) -> tuple[Any, RestrictedUnpickler]:
            start = f.tell()
            obj, unpickler, used = run_unpickler(path, f, min(limit, size - start), step, what)
            f.seek(start + used)  # the stream read ahead; the next pickle starts where this one stopped
            return obj, unpickler

        def no_storage(pid: tuple) -> Any:
            raise PickleRefused("its header pickles refer to a storage")

        magic, _ = load(no_storage, "its header")
        protocol, _ = load(no_storage, "its header")
        if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
            raise CorruptFile(sentence(path, "its header is not the one torch.save writes"))
        load(no_storage, "its system-information header")
        obj, unpickler = load(on_storage, "its pickle")
        keys, _ = load(no_storage, "its list of storages")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CorruptFile(sentence(path, "its list of storages is malformed"))
        for key in keys:
            root = roots.get(key)
            head = f.read(8)
            if root is None or len(head) != 8:
                raise CorruptFile(sentence(path, f"its storage '{display_name(key, 40)}' is missing or truncated"))
            (count,) = unpack("<q", head)
            if count != root.numel or f.tell() + root.nbytes > size:
                raise CorruptFile(sentence(path, f"its storage '{display_name(key, 40)}' declares {root.nbytes:,} "
                                                 "bytes that the file does not hold; the file is truncated"))
            offsets[key] = f.tell()
            f.seek(root.nbytes, os.SEEK_CUR)
        missing = set(roots) - set(keys)
        if missing:
            raise CorruptFile(sentence(path, f"its storage '{display_name(sorted(missing)[0], 40)}' has no data in "
                                             "the file; the file is truncated"))
    return TorchPickle(obj, unpickler.classes, {**roots, **storages}, "legacy", [], offsets)


def read_checkpoint(path: Path, limit: int = PICKLE_LIMIT) -> TorchPickle:
    """The object a torch.save file holds, read without running anything: tensors are TensorStubs,
    objects of other classes Opaque stand-ins. Refused in one sentence when the file is malformed,
    ambiguous (duplicate members), truncated (a tensor past its storage's bytes) or a pickle bomb."""
    regular_file(path)
    with path.open("rb") as f:
        head = f.read(len(LEGACY_MAGIC))
    if head.startswith(b"PK\x03\x04") or zipfile.is_zipfile(path):
        return read_torch_zip(path, limit)
    if head == LEGACY_MAGIC:
        return read_legacy(path, limit)
    raise UnsupportedFile(sentence(path, "it is neither a torch.save zip archive nor a legacy torch.save file"))


def load_checkpoint(path: Path, trust: bool) -> Any:
    """torch.load for running a model: the file is first read restrictedly (so a malformed, ambiguous or
    truncated file is refused before torch sees it), then loaded weights-only; code runs only if trusted."""
    checked = read_checkpoint(path)
    import torch

    is_zip = checked.kind == "zip"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower() and "weights_only" not in str(exc).lower():
            raise CorruptFile(sentence(path, "its pickle stream is broken; the file is corrupted or truncated")) from None
        if not trust:
            raise TrustRequired(path, class_list(checked.classes.keys())) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CorruptFile(sentence(path, f"torch could not read it ({_first_line(exc)}); the file is corrupted, "
                                         "truncated or not a PyTorch checkpoint")) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except Exception as exc:  # trusted code ran and failed: a class it needs is not importable here
        raise CorruptFile(sentence(path, f"unpickling it failed ({type(exc).__name__}: {_first_line(exc)}); "
                                         "the classes it pickles must be importable")) from None


def class_list(classes: Any, limit: int = 4) -> str:
    """'objects of class A, B, C and 2 more': the file's own classes first, torch's and Python's after."""
    refs = sorted({c for c in classes if isinstance(c, GlobalRef)},
                  key=lambda c: (c.module.startswith(("torch", "collections", "builtins")), c.qualname))
    if not refs:
        return "objects of classes PyTorch does not allow without trust"
    short = list(dict.fromkeys(display_name(c.short, 60) for c in refs))
    listed = ", ".join(short[:limit]) + (f" and {len(short) - limit} more" if len(short) > limit else "")
    return f"objects of class {listed}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.split("(Could this error message be improved?")[0].strip()
    line = line.split(". ")[0]  # the first sentence of torch's message, never cut mid-word
    if len(line) > 160:
        line = line[:160].rsplit(" ", 1)[0] + " …"
    return display_name(line.rstrip(". "), 200)


# --- what the object is ---------------------------------------------------------------------------------------


def _is_tensor(value: Any) -> bool:
    if isinstance(value, TensorStub):
        return True
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def is_module_standin(value: Any) -> bool:
    """True for an Opaque whose pickled state is an nn.Module's (`_modules` and `_parameters`)."""
    state = value.state_dict() if isinstance(value, Opaque) else None
    return state is not None and "_modules" in state and "_parameters" in state


def state_mapping(value: Any) -> Mapping | None:
    """`value` as a mapping of names to tensors when it is one (a dict, or a pickled dict subclass), else None."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, Opaque) and value.dict_items is not None and not is_module_standin(value):
        return value.dict_items  # a dict subclass (defaultdict, a config dict) pickled with its items
    return None


def flatten_tensors(obj: Mapping, prefix: str = "", *, path: Path | None = None) -> dict[str, Any]:
    """Tensors of a (possibly nested) mapping, with dotted names (no recursion; names longer than
    MAX_NAME_CHARS or nesting deeper than MAX_NESTING are refused in one sentence)."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any, int]] = [(prefix, iter(obj.items()), 0)]
    while stack:
        base, items, depth = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            continue
        key, value = entry
        name = check_name(path or Path("checkpoint"), base + key_text(key))
        if _is_tensor(value):
            out[name] = value
            continue
        inner = state_mapping(value)
        if inner is not None:
            if depth + 1 > MAX_NESTING:
                raise CorruptFile(sentence(path or "checkpoint", f"its dictionaries nest more than {MAX_NESTING} "
                                                                 "levels deep, more than any checkpoint"))
            stack.append((name + ".", iter(inner.items()), depth + 1))
    return out


def _has_tensors(value: Any, path: Path | None) -> bool:
    inner = state_mapping(value)
    return inner is not None and bool(flatten_tensors(inner, path=path))


def split_checkpoint(obj: Any, path: Path | None = None) -> tuple[Any, str, dict[str, Any]]:
    """(weights, key they came from, other entries) for a raw state_dict, a training checkpoint or a module."""
    if not isinstance(obj, Mapping):
        return obj, "", {}
    if obj and all(_is_tensor(v) for v in obj.values()):
        return obj, "", {}
    for key in STATE_KEYS:
        value = obj.get(key)
        if value is None:
            continue
        if _has_tensors(value, path) or is_module_standin(value) or (
                hasattr(value, "state_dict") and not isinstance(value, Opaque)):
            return state_mapping(value) or value, key, {k: v for k, v in obj.items() if k != key}
    tensors = {k: v for k, v in obj.items() if _is_tensor(v) or _has_tensors(v, path)}
    if tensors:
        return tensors, "", {k: v for k, v in obj.items() if k not in tensors}
    return None, "", dict(obj)


def describe_value(value: Any, depth: int = 0) -> Any:
    """A short JSON-able description of a checkpoint entry that is not weights (epoch, optimizer ...)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return display_name(value, 200)
    if _is_tensor(value):
        return f"tensor{list(value.shape)} {canonical_dtype(value.dtype)}"
    if isinstance(value, Opaque):
        return f"{display_name(value.cls.short, 80)} object"
    if isinstance(value, GlobalRef):
        return f"class {display_name(value.short, 80)}"
    inner = state_mapping(value)
    if inner is not None:
        if depth >= 2:
            return f"dict with {len(inner)} entries"
        if "state" in inner and "param_groups" in inner:  # torch.optim state_dict
            groups = inner.get("param_groups") or []
            first = groups[0] if isinstance(groups, list) and groups and isinstance(groups[0], Mapping) else {}
            hyper = {display_name(key_text(k), 80): describe_value(v, 3) for k, v in first.items() if k != "params"}
            state = inner.get("state")
            return {"optimizer_state": f"state for {len(state) if isinstance(state, Mapping) else 0} parameters",
                    "param_groups": len(groups) if isinstance(groups, list) else 0, "hyper_parameters": hyper}
        out = {display_name(key_text(k), 80): describe_value(v, depth + 1) for k, v in list(inner.items())[:40]}
        if len(inner) > 40:
            out["…"] = f"{len(inner) - 40} more entries"
        return out
    if isinstance(value, list | tuple):
        if depth >= 2 or len(value) > 20:
            return f"{type(value).__name__} of {len(value)} items"
        return [describe_value(v, depth + 1) for v in value]
    return f"{type(value).__name__} object"


def tensor_kind(name: str, dtype: str, quantized: bool = False) -> str:
    """'buffer' for BatchNorm statistics and the like, and for every integer or bool tensor (an index table
    such as Swin's relative_position_index or a mask: autograd refuses it as a parameter); else 'param'."""
    if is_buffer_name(name):
        return "buffer"
    floating = dtype.startswith(("float", "bfloat", "complex"))
    if quantized or floating or dtype_bits(dtype) is None:
        return "param"
    return "buffer"


def infos_from_state(state: Mapping[str, Any], quantized: bool = False) -> dict[str, TensorInfo]:
    """TensorInfos for a flat state_dict (TensorStubs or torch tensors); tensors that view one storage are tied.
    `quantized` (a config declares quantised weights) keeps integer tensors as parameters."""
    seen: dict[tuple, str] = {}
    out: dict[str, TensorInfo] = {}
    for name, t in state.items():
        key = _alias_key(t)
        shared = seen.get(key) if key is not None else None
        if key is not None and shared is None:
            seen[key] = name
        dtype = canonical_dtype(t.dtype)
        kind = tensor_kind(name, dtype, quantized or bool(getattr(t, "quantized", False)))
        out[name] = TensorInfo(name=name, shape=tuple(int(d) for d in t.shape), dtype=dtype, kind=kind,
                               trainable=kind == "param", shared_with=shared)
    return out


def _alias_key(t: Any) -> tuple | None:
    if isinstance(t, TensorStub):
        return t.alias_key()
    try:
        storage = t.untyped_storage()
        return (storage.data_ptr(), storage.nbytes(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), str(t.dtype))
    except Exception:
        return None


def typed_tree_from_arch(path: Path, options: LoadOptions, stored: dict[str, TensorInfo]) -> tuple[LayerNode, list[str], dict]:
    """Instantiate --arch on the meta device and lay the checkpoint's tensors onto its module tree."""
    from analyzers.loaders.torch_modules import module_tree

    spec = parse_arch(options.arch or "", options.arch_kwargs, base=path.parent)
    model = instantiate(spec, "meta")
    module_shapes = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
    match = match_names(module_shapes, stored)
    on_module = {match.renamed[k]: TensorInfo(match.renamed[k], v.shape, v.dtype, v.kind, v.trainable, None, v.stored_bytes)
                 for k, v in stored.items() if k in match.renamed}
    root = module_tree(model, stored=on_module)
    meta = {"arch": {"spec": spec.text, "kwargs": dict(spec.kwargs), "missing": list(match.missing),
                     "unexpected": list(match.unexpected), "mismatched": list(match.mismatched),
                     "prefix_change": match.prefix_change}}
    return root, match.describe(), meta


@loader(
    "pytorch",
    patterns=("*.pt", "*.pth", "*.bin", "*.ckpt", "*.tar"),
    priority=10,
    sniff=sniff_torch,
    description="PyTorch checkpoint",
    runs="torch",
    graph="weights-header",
    formats=("pytorch-module",),
)
def open_pytorch(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """State dict, nested training checkpoint, or full pickled module, all read without running the file."""
    yield Progress(0, 3, f"Reading {path.name} without running it (no tensor data)")
    checked = read_checkpoint(path)
    weights, key, rest = split_checkpoint(checked.obj, path)
    metadata: dict[str, Any] = {display_name(key_text(k), 80): describe_value(v) for k, v in rest.items()}
    if key:
        metadata["weights_key"] = key
    notes = list(checked.notes)
    source = SourceInfo(str(path), "pytorch", "torch", (str(path),), path.stat().st_size)
    if is_module_standin(weights):
        from analyzers.loaders.torch_modules import standin_tree

        yield Progress(2, 3, "Walking the pickled module tree")
        root, classes, tree_notes = standin_tree(weights, lambda n: check_name(path, n))
        listed = ", ".join(classes[:6]) + (f" and {len(classes) - 6} more" if len(classes) > 6 else "")
        notes.insert(0, f"Full pickled module read without running it: classes {listed} are shown by name "
                        "(running it needs --trust).")
        notes.extend(tree_notes)
        yield Progress(3, 3, "Done")
        return ModelSummary(source=SourceInfo(source.path, "pytorch-module", "torch", source.files, source.size_bytes),
                            root=root, metadata=metadata, notes=tuple(notes))
    weights = state_mapping(weights)
    if weights is None and state_mapping(checked.obj) is None:
        kind = checked.obj.cls.short if isinstance(checked.obj, Opaque) else type(checked.obj).__name__
        raise UnsupportedFile(sentence(path, f"it holds a {display_name(kind, 60)} object, not a state_dict or a "
                                             "module"))
    state = flatten_tensors(weights, path=path) if weights is not None else {}
    if not state:
        raise UnsupportedFile(sentence(path, "it holds no tensors (a checkpoint without model weights)"))
    yield Progress(2, 3, f"Summarising {len(state):,} tensors")
    stored = infos_from_state(state)
    if options.arch:
        root, arch_notes, arch_meta = typed_tree_from_arch(path, options, stored)
        notes.extend(arch_notes)
        metadata.update(arch_meta)
    else:
        root = build_name_tree(stored.values(), sort=False)  # a state_dict keeps module order
        notes.append("A state_dict stores tensor names only: layer types are unknown (pass --arch module:Class "
                     "for a typed tree).")
    unsized = sorted({c.name for c in checked.classes if c.module == "torch._utils"})
    if unsized:
        notes.append(f"Tensors rebuilt by {', '.join(display_name(c, 60) for c in unsized[:3])} (sparse, nested or "
                     "device-specific kinds) are not counted.")
    others = sorted({c.short for c in checked.classes if not c.module.startswith(("torch", "collections"))})
    if others:
        notes.append(f"Objects of class {', '.join(display_name(c, 60) for c in others[:4])} in the file were "
                     "read without running their code and are listed by name only.")
    yield Progress(3, 3, "Done")
    return ModelSummary(source=source, root=root, metadata=metadata, notes=tuple(notes))
