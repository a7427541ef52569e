"""torch.export programs (`.pt2` from `torch.export.save`): module hierarchy and signature, no code run.

The module hierarchy comes from the `nn_module_stack` every graph node records; parameters and
buffers from the program's `graph_signature`. `torch.export.load` unpickles a few payloads
(sample inputs, tensors the writer could not store raw) and falls back to full pickle when the
safe loader refuses them; those payloads are checked with `weights_only=True` first, and a file
whose payloads need full pickle is opened only when trusted.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from analyzers.dtypes import canonical_dtype
from analyzers.errors import CorruptFile, TrustRequired, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import first_line
from analyzers.loaders.pytorch_loader import zip_kind
from analyzers.nametree import TreeBuilder, owner_of
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

OPAQUE_PREFIX = "opaque_obj_"


def sniff_torch_export(path: Path) -> bool:
    """A zip with an `archive_format` entry (the PT2 archive)."""
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return False
    return zip_kind(path) == "export"


def pickled_payloads(path: Path) -> list[str]:
    """Archive entries torch.export.load would unpickle with full pickle (code could run)."""
    import torch

    risky: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for name in names:
            if not name.endswith(("_weights_config.json", "_constants_config.json")):
                continue
            folder = name.rsplit("/", 1)[0]
            try:
                config = json.loads(zf.read(name)).get("config", {})
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                raise CorruptFile(sentence(path, f"its archive entry {name} is not valid JSON")) from None
            for fqn, meta in config.items():
                entry = f"{folder}/{meta.get('path_name', '')}"
                if str(meta.get("path_name", "")).startswith(OPAQUE_PREFIX):
                    risky.append(fqn)
                elif meta.get("use_pickle") and entry in names and not _safe_pickle(torch, zf.read(entry)):
                    risky.append(fqn)
        for name in names:
            folder = name.rsplit("/", 2)
            is_payload = name.endswith(".pt") and len(folder) == 3 and folder[1] in ("sample_inputs", "weights",
                                                                                      "constants")
            if is_payload and not _safe_pickle(torch, zf.read(name)):
                risky.append(name.rsplit("/", 1)[-1])
    return risky


def _safe_pickle(torch: Any, blob: bytes) -> bool:
    if not blob:
        return True
    try:
        torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception:  # anything the safe unpickler refuses or cannot parse
        return False
    return True


def _class_name(cls: Any) -> str:
    text = cls.__name__ if isinstance(cls, type) else str(cls)
    return text.rsplit(".", 1)[-1].strip("'>")


def _info(name: str, tensor: Any, kind: str) -> TensorInfo:
    trainable = kind == "param" and bool(getattr(tensor, "requires_grad", True))
    return TensorInfo(name=name, shape=tuple(int(d) for d in tensor.shape), dtype=canonical_dtype(tensor.dtype),
                      kind=kind, trainable=trainable)


def _spec_shape(node: Any) -> list[object] | None:
    val = node.meta.get("val")
    shape = getattr(val, "shape", None)
    if shape is None:
        return None
    return [int(d) if str(d).lstrip("-").isdigit() else str(d) for d in shape]


def program_tree(ep: Any) -> tuple[TreeBuilder, dict[str, object], list[str]]:
    """Module tree of an ExportedProgram, its tensors, and metadata about inputs, outputs and ops."""
    sig = ep.graph_signature
    builder = TreeBuilder()
    notes: list[str] = []
    for entry in getattr(ep, "module_call_graph", None) or []:
        if entry.fqn and "(" not in entry.fqn:
            builder.add_node(entry.fqn)
    ops: Counter[str] = Counter()
    placeholders: dict[str, Any] = {}
    outputs: list[list[object] | None] = []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            placeholders[node.name] = node
        elif node.op == "output":
            args = node.args[0] if node.args else ()
            outputs = [_spec_shape(a) if hasattr(a, "meta") else None for a in (args if isinstance(args, list | tuple)
                                                                             else [args])]
        elif node.op == "call_function":
            ops[str(getattr(node.target, "__name__", node.target))] += 1
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            if isinstance(path, str) and "(" not in path:
                builder.add_node(path, _class_name(cls))
    state = ep.state_dict
    constants = getattr(ep, "constants", {}) or {}
    for fqn in sig.parameters:
        builder.add_tensor(owner_of(fqn), _info(fqn, state[fqn], "param"))
    for fqn in sig.buffers:
        tensor = state[fqn] if fqn in state else constants[fqn]
        builder.add_tensor(owner_of(fqn), _info(fqn, tensor, "buffer"))
    lifted = list(getattr(sig, "lifted_tensor_constants", []) or [])
    for fqn in lifted:
        if fqn in constants and hasattr(constants[fqn], "shape"):
            builder.add_tensor(owner_of(fqn), _info(fqn, constants[fqn], "buffer"))
    if lifted:
        notes.append(f"{len(lifted)} tensor constants captured by the graph are shown as buffers.")
    user_inputs = list(getattr(sig, "user_inputs", []) or [])
    metadata: dict[str, object] = {
        "inputs": [{"name": n, "shape": _spec_shape(placeholders[n]) if n in placeholders else None}
                   for n in user_inputs],
        "outputs": [{"shape": s} for s in outputs],
        "op_counts": dict(ops.most_common(40)),
        "non_persistent_buffers": list(getattr(sig, "non_persistent_buffers", []) or []),
    }
    return builder, metadata, notes


@loader(
    "torch-export",
    patterns=("*.pt2", "*.ep"),
    priority=12,
    sniff=sniff_torch_export,
    description="torch.export program",
)
def open_torch_export(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """torch.export.load, then the module tree from nn_module_stack and tensors from the graph signature."""
    yield Progress(0, 3, "Importing torch")
    import torch

    yield Progress(1, 3, f"Loading the exported program from {path.name}")
    try:
        risky = pickled_payloads(path)
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise CorruptFile(sentence(path, f"the PT2 archive is broken ({first_line(exc)})")) from None
    if risky and not options.trust:
        listed = ", ".join(risky[:3]) + (f" and {len(risky) - 3} more" if len(risky) > 3 else "")
        raise TrustRequired(path, f"payloads that need full unpickling: {listed}")
    try:
        ep = torch.export.load(str(path))
    except (RuntimeError, ValueError, KeyError, AssertionError, zipfile.BadZipFile, OSError, TypeError) as exc:
        raise CorruptFile(sentence(path, f"torch.export could not load it ({type(exc).__name__}: {first_line(exc)}); "
                                         "the archive is corrupted, an AOTInductor package, or from an "
                                         "incompatible PyTorch")) from None
    yield Progress(2, 3, "Walking the graph's module stacks")
    builder, metadata, notes = program_tree(ep)
    root = builder.build()
    notes.append("Module classes come from the graph's nn_module_stack; containers without a forward "
                 "(ModuleList, ModuleDict) have no type.")
    yield Progress(3, 3, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "torch-export", "torch", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )
