"""PyTorch `.pt/.pth/.bin/.ckpt`: state_dicts, training checkpoints that nest one, trusted full modules.

Read with `torch.load(weights_only=True, mmap=True)`: only shapes and dtypes are looked at, so no
tensor data is read. A file that pickles code (a full `nn.Module`) is refused unless trusted.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analyzers.arch import instantiate, match_names, parse_arch
from analyzers.dtypes import canonical_dtype
from analyzers.errors import CorruptFile, TrustRequired, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.nametree import build_name_tree, is_buffer_name
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
# Keys under which training code nests the weights (Lightning, plain loops, DeepSpeed, EMA).
STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state",
              "ema_state_dict", "ema", "params", "weights")


def zip_kind(path: Path) -> str | None:
    """'state' for torch.save zips, 'script' for TorchScript, 'export' for torch.export, None otherwise."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
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


def load_checkpoint(path: Path, trust: bool) -> Any:
    """torch.load without running code (unless trusted) and without reading tensor data (mmap)."""
    import torch

    is_zip = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower() and "weights_only" not in str(exc).lower():
            raise CorruptFile(sentence(path, "its pickle stream is broken; the file is corrupted or truncated")) from None
        if not trust:
            raise TrustRequired(path, _unsafe_globals(path, is_zip)) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CorruptFile(sentence(path, f"torch could not read it ({_first_line(exc)}); the file is corrupted, "
                                         "truncated or not a PyTorch checkpoint")) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except Exception as exc:  # trusted code ran and failed: a class it needs is not importable here
        raise CorruptFile(sentence(path, f"unpickling it failed ({type(exc).__name__}: {_first_line(exc)}); "
                                         "the classes it pickles must be importable")) from None


def _unsafe_globals(path: Path, is_zip: bool) -> str:
    import torch

    names: list[str] = []
    if is_zip:
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:
            names = []
    if not names:
        return "objects of classes PyTorch does not allow without trust"
    # The user's own classes first: they are what the file really is (torch's own classes follow).
    names.sort(key=lambda n: (n.startswith(("torch.", "collections.", "builtins.")), n))
    short = [n.rsplit(".", 1)[-1] for n in names]
    listed = ", ".join(short[:4]) + (f" and {len(short) - 4} more" if len(short) > 4 else "")
    return f"objects of class {listed}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.split("(Could this error message be improved?")[0].strip()
    line = line.split(". ")[0]  # the first sentence of torch's message, never cut mid-word
    if len(line) > 160:
        line = line[:160].rsplit(" ", 1)[0] + " …"
    return line.rstrip(". ")


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def flatten_tensors(obj: Mapping, prefix: str = "") -> dict[str, Any]:
    """Tensors of a (possibly nested) mapping, with dotted names."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if _is_tensor(value):
            out[name] = value
        elif isinstance(value, Mapping):
            out.update(flatten_tensors(value, name + "."))
    return out


def split_checkpoint(obj: Any) -> tuple[Any, str, dict[str, Any]]:
    """(weights, key they came from, other entries) for a raw state_dict or a training checkpoint."""
    if not isinstance(obj, Mapping):
        return obj, "", {}
    if obj and all(_is_tensor(v) for v in obj.values()):
        return obj, "", {}
    for key in STATE_KEYS:
        value = obj.get(key)
        if value is None:
            continue
        if (isinstance(value, Mapping) and flatten_tensors(value)) or hasattr(value, "state_dict"):
            return value, key, {k: v for k, v in obj.items() if k != key}
    if flatten_tensors(obj):
        tensors = {k: v for k, v in obj.items() if _is_tensor(v) or (isinstance(v, Mapping) and flatten_tensors(v))}
        return tensors, "", {k: v for k, v in obj.items() if k not in tensors}
    return None, "", dict(obj)


def describe_value(value: Any, depth: int = 0) -> Any:
    """A short JSON-able description of a checkpoint entry that is not weights (epoch, optimizer ...)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value if not isinstance(value, str) or len(value) < 200 else value[:200] + "…"
    if _is_tensor(value):
        return f"tensor{list(value.shape)} {canonical_dtype(value.dtype)}"
    if isinstance(value, Mapping):
        if depth >= 2:
            return f"dict with {len(value)} entries"
        if "state" in value and "param_groups" in value:  # torch.optim state_dict
            groups = value.get("param_groups") or []
            hyper = {k: describe_value(v, 3) for k, v in (groups[0].items() if groups else ()) if k != "params"}
            return {"optimizer_state": f"state for {len(value.get('state') or {})} parameters",
                    "param_groups": len(groups), "hyper_parameters": hyper}
        items = list(value.items())[:40]
        out = {str(k): describe_value(v, depth + 1) for k, v in items}
        if len(value) > 40:
            out["…"] = f"{len(value) - 40} more entries"
        return out
    if isinstance(value, list | tuple):
        if depth >= 2 or len(value) > 20:
            return f"{type(value).__name__} of {len(value)} items"
        return [describe_value(v, depth + 1) for v in value]
    return f"{type(value).__name__} object"


def infos_from_state(state: Mapping[str, Any]) -> dict[str, TensorInfo]:
    """TensorInfos for a flat state_dict; tensors that view the same storage are tied."""
    seen: dict[tuple, str] = {}
    out: dict[str, TensorInfo] = {}
    for name, t in state.items():
        key = _alias_key(t)
        shared = seen.get(key) if key is not None else None
        if key is not None and shared is None:
            seen[key] = name
        buffer = is_buffer_name(name)
        out[name] = TensorInfo(
            name=name,
            shape=tuple(int(d) for d in t.shape),
            dtype=canonical_dtype(t.dtype),
            kind="buffer" if buffer else "param",
            trainable=not buffer,
            shared_with=shared,
        )
    return out


def _alias_key(t: Any) -> tuple | None:
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


def summary_from_module(path: Path, model: Any, fmt: str, metadata: dict, notes: list[str]) -> ModelSummary:
    """Typed summary of a live (trusted) module."""
    from analyzers.loaders.torch_modules import module_tree

    return ModelSummary(
        source=SourceInfo(str(path), fmt, "torch", (str(path),), path.stat().st_size),
        root=module_tree(model, persistent_only=False),
        metadata=metadata,
        notes=tuple(notes),
    )


@loader(
    "pytorch",
    patterns=("*.pt", "*.pth", "*.bin", "*.ckpt", "*.tar"),
    priority=10,
    sniff=sniff_torch,
    description="PyTorch checkpoint",
)
def open_pytorch(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """State dict, nested training checkpoint, or (trusted) full pickled module."""
    yield Progress(0, 3, "Importing torch")
    import torch

    yield Progress(1, 3, f"Reading {path.name} (memory-mapped, no tensor data)")
    obj = load_checkpoint(path, options.trust)
    weights, key, rest = split_checkpoint(obj)
    metadata: dict[str, Any] = {k: describe_value(v) for k, v in rest.items()}
    if key:
        metadata["weights_key"] = key
    notes: list[str] = []
    if isinstance(weights, torch.nn.Module):
        yield Progress(2, 3, "Walking the module tree")
        notes.append("Full pickled module, opened because you trusted it.")
        return summary_from_module(path, weights, "pytorch-module", metadata, notes)
    if hasattr(weights, "state_dict") and not isinstance(weights, Mapping):
        weights = weights.state_dict()
    if not isinstance(weights, Mapping):
        raise UnsupportedFile(sentence(path, f"it holds a {type(obj).__name__}, not a state_dict or module"))
    state = flatten_tensors(weights)
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
    yield Progress(3, 3, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "pytorch", "torch", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )
