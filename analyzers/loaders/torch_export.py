"""torch.export programs (`.pt2` from `torch.export.save`): module hierarchy and signature, read as JSON.

`torch.export.load` unpickles some archive members with the full unpickler (sample inputs, tensor
subclasses, opaque objects), so it is never called here. The archive's members are read directly:
the serialized program (`models/<name>.json`: graph, signature, tensor metadata, every node's
`nn_module_stack`) and the weights and constants configs (`data/*/<name>_*_config.json`: where each
tensor's bytes live, its dtype, sizes, strides and offset) are JSON. No pickled member is opened;
each raw tensor record is checked to hold the bytes its tensor reaches.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.pytorch_loader import zip_kind
from analyzers.loaders.safe_files import METADATA_LIMIT, SafeZip, display_name
from analyzers.loaders.torch_pickle import check_name
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.nametree import TreeBuilder, owner_of
from analyzers.tasks import Progress, Steps

OPAQUE_PREFIXES = ("opaque_obj_", "custom_obj_")
# torch._export.serde.schema.ScalarType -> (canonical dtype, bytes per element)
SCALAR_TYPES: dict[int, tuple[str, int]] = {
    1: ("uint8", 1), 2: ("int8", 1), 3: ("int16", 2), 4: ("int32", 4), 5: ("int64", 8), 6: ("float16", 2),
    7: ("float32", 4), 8: ("float64", 8), 9: ("complex32", 4), 10: ("complex64", 8), 11: ("complex128", 16),
    12: ("bool", 1), 13: ("bfloat16", 2), 28: ("uint16", 2), 29: ("float8_e4m3fn", 1), 30: ("float8_e5m2", 1),
    31: ("float8_e4m3fnuz", 1), 32: ("float8_e5m2fnuz", 1), 33: ("float8_e8m0fnu", 1), 34: ("uint32", 4),
    35: ("uint64", 8),
}


def sniff_torch_export(path: Path) -> bool:
    """A zip with an `archive_format` entry (the PT2 archive)."""
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return False
    return zip_kind(path) == "export"


class _Archive:
    """The members of one PT2 archive, looked up by exact name under its root folder."""

    def __init__(self, path: Path, zf: SafeZip) -> None:
        self.path, self.zf = path, zf
        marks = [n for n in zf.names if n == "archive_format" or n.endswith("/archive_format") and n.count("/") == 1]
        if len(marks) != 1:
            raise CorruptFile(sentence(path, "it does not have exactly one archive_format entry, so it is not a "
                                             "PT2 archive torch.export.save wrote"))
        self.root = marks[0][: -len("archive_format")]
        if zf.read(marks[0], 64).strip() != b"pt2":
            raise CorruptFile(sentence(path, "its archive_format entry does not say pt2"))

    def has(self, name: str) -> bool:
        """True when the archive holds `root/name` exactly."""
        return self.root + name in self.zf.infos

    def json(self, name: str) -> Any:
        """A JSON member, size-capped before it is inflated; one sentence when it is not JSON."""
        try:
            return json.loads(self.zf.read(self.root + name, METADATA_LIMIT))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CorruptFile(sentence(self.path, f"its archive entry '{display_name(name)}' is not valid JSON")) \
                from None

    def record(self, folder: str, file_name: object) -> Any:
        """The ZipInfo of a payload named by a config; refused when the name is not exactly a member."""
        name = str(file_name)
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise CorruptFile(sentence(self.path, f"its {folder} config names a payload '{display_name(name)}' "
                                                  "that is not a plain file name"))
        full = self.root + folder + name
        info = self.zf.infos.get(full)
        if info is None:
            near = [n for n in self.zf.names if n.lower() == full.lower()]
            hint = (f"; the archive holds '{display_name(near[0])}', whose name differs in case, and a reader "
                    "that matched it would unpickle it") if near else ""
            raise CorruptFile(sentence(self.path, f"its {folder} config names '{display_name(folder + name)}', "
                                                  f"which the archive does not hold{hint}"))
        return info


def _dims(path: Path, values: Any, what: str) -> list[object]:
    if not isinstance(values, list) or len(values) > 64:
        raise CorruptFile(sentence(path, f"the {what} of a tensor in its program are malformed"))
    out: list[object] = []
    for v in values:
        if isinstance(v, dict) and isinstance(v.get("as_int"), int) and not isinstance(v["as_int"], bool):
            out.append(v["as_int"])
        elif isinstance(v, dict) and isinstance(v.get("as_expr"), dict):
            out.append(display_name(v["as_expr"].get("expr_str", "?"), 40))
        else:
            raise CorruptFile(sentence(path, f"the {what} of a tensor in its program are malformed"))
    return out


def _tensor(path: Path, name: str, meta: Any, kind: str) -> tuple[TensorInfo, int, int]:
    """TensorInfo from a tensor_meta record, the bytes of its storage it reaches, and its element size."""
    if not isinstance(meta, dict) or meta.get("dtype") not in SCALAR_TYPES:
        raise CorruptFile(sentence(path, f"tensor '{display_name(name, 80)}' has no dtype LayerScope knows"))
    dtype, itemsize = SCALAR_TYPES[meta["dtype"]]
    sizes = _dims(path, meta.get("sizes"), "sizes")
    strides = _dims(path, meta.get("strides", [{"as_int": 1}] * len(sizes)), "strides")
    offset = (meta.get("storage_offset") or {"as_int": 0}).get("as_int", 0)
    if not all(isinstance(d, int) and d >= 0 for d in [*sizes, *strides, offset]) or len(strides) != len(sizes):
        raise CorruptFile(sentence(path, f"tensor '{display_name(name, 80)}' has a symbolic or negative size"))
    reach = 0 if 0 in sizes else (offset + sum((s - 1) * st for s, st in zip(sizes, strides, strict=True)) + 1)
    trainable = kind == "param" and bool(meta.get("requires_grad", True))
    info = TensorInfo(name=name, shape=tuple(sizes), dtype=dtype, kind=kind, trainable=trainable)  # type: ignore[arg-type]
    return info, reach * itemsize, itemsize


def _shape(values: dict, arg: Any) -> list[object] | None:
    name = (arg or {}).get("as_tensor", {}).get("name") if isinstance(arg, dict) else None
    meta = values.get(name) if isinstance(name, str) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("sizes"), list):
        return None
    out: list[object] = []
    for v in meta["sizes"][:64]:
        if isinstance(v, dict) and "as_int" in v:
            out.append(v["as_int"])
        else:
            out.append(display_name((v.get("as_expr") or {}).get("expr_str", "?") if isinstance(v, dict) else "?", 40))
    return out


def _split_stack(text: str) -> list[tuple[str, str]]:
    """(path, type) pairs of a serialized nn_module_stack: 'key,path,type;key,path,type' (commas inside
    brackets belong to the field)."""
    out: list[tuple[str, str]] = []
    for item in text.split(";"):
        fields, start, depth = [], 0, 0
        for i, c in enumerate(item):
            if c in "[(":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif c == "," and depth == 0:
                fields.append(item[start:i])
                start = i + 1
        fields.append(item[start:])
        if len(fields) == 3:
            out.append((fields[1], fields[2]))
    return out


def _class_name(text: str) -> str:
    return display_name(text.rsplit(".", 1)[-1].strip("'>"), 120)


def _op_name(target: object) -> str:
    text = str(target)
    if text.startswith("torch.ops."):
        return ".".join(text.split(".")[3:]) or text  # torch.ops.aten.linear.default -> linear.default
    return text.rsplit(".", 1)[-1]


class _Payloads:
    """Weights and constants configs: each tensor's metadata and the record that holds its bytes."""

    def __init__(self, archive: _Archive, model: str) -> None:
        self.archive = archive
        self.meta: dict[str, tuple[str, dict]] = {}  # fqn -> (folder, payload meta)
        self.pickled: list[str] = []
        self.opaque: list[str] = []
        self.empty: list[str] = []
        self.legacy = False
        for folder, config in (("data/weights/", f"{model}_weights_config.json"),
                               ("data/constants/", f"{model}_constants_config.json")):
            if archive.has(folder + f"{model}.pt"):
                self.legacy = True  # an older archive: one pickled file, never opened; shapes from the graph
            if not archive.has(folder + config):
                continue
            entries = archive.json(folder + config)
            entries = entries.get("config") if isinstance(entries, dict) else None
            if not isinstance(entries, dict):
                raise CorruptFile(sentence(archive.path, f"its {folder}{config} has no config table"))
            for fqn, meta in entries.items():
                if not isinstance(meta, dict):
                    raise CorruptFile(sentence(archive.path, f"its {folder}{config} entry for "
                                                             f"'{display_name(fqn, 80)}' is malformed"))
                archive.record(folder, meta.get("path_name", ""))
                self.meta[check_name(archive.path, fqn)] = (folder, meta)

    def tensor(self, fqn: str, kind: str, values: dict, arg_name: str | None) -> TensorInfo:
        """The TensorInfo of `fqn`, its record's size checked against what the tensor reaches."""
        path = self.archive.path
        folder, meta = self.meta.get(fqn, ("", {}))
        name = str(meta.get("path_name", ""))
        if meta and name.startswith(OPAQUE_PREFIXES):
            self.opaque.append(fqn)
        tensor_meta = meta.get("tensor_meta") if meta else values.get(arg_name or "")
        if tensor_meta is None:
            raise CorruptFile(sentence(path, f"its program has no metadata for tensor '{display_name(fqn, 80)}'"))
        info, reach, itemsize = _tensor(path, fqn, tensor_meta, kind)
        if meta and meta.get("use_pickle"):
            self.pickled.append(fqn)  # a tensor subclass torch pickles: shown from its JSON, never unpickled
        elif meta:
            record = self.archive.record(folder, name)
            if record.file_size == 0 and reach:
                self.empty.append(fqn)
            elif record.file_size < reach or record.file_size % itemsize:
                raise CorruptFile(sentence(path, f"tensor '{display_name(fqn, 80)}' reaches {reach:,} bytes but its "
                                                 f"record '{display_name(name)}' holds {record.file_size:,}; the "
                                                 "file is truncated or corrupted"))
        return info


def read_program(path: Path) -> tuple[TreeBuilder, dict[str, object], list[str]]:
    """Module tree, metadata and notes of a PT2 archive, from its JSON members alone."""
    with SafeZip(path) as zf:
        archive = _Archive(path, zf)
        models = sorted(n[len(archive.root) + len("models/"): -len(".json")] for n in zf.names
                        if n.startswith(archive.root + "models/") and n.endswith(".json") and n.count("/") == 2)
        if not models:
            raise UnsupportedFile(sentence(path, "it holds no exported program (models/*.json); an AOTInductor "
                                                 "package is compiled code LayerScope does not read"))
        model = "model" if "model" in models else models[0]
        program = archive.json(f"models/{model}.json")
        payloads = _Payloads(archive, model)
        notes = list(zf.findings)
    module = program.get("graph_module") if isinstance(program, dict) else None
    graph = module.get("graph") if isinstance(module, dict) else None
    signature = module.get("signature") if isinstance(module, dict) else None
    if not isinstance(graph, dict) or not isinstance(signature, dict):
        raise CorruptFile(sentence(path, f"its program models/{model}.json has no graph or signature"))
    values = graph.get("tensor_values") if isinstance(graph.get("tensor_values"), dict) else {}
    builder = TreeBuilder()
    for entry in module.get("module_call_graph") or []:
        fqn = entry.get("fqn") if isinstance(entry, dict) else None
        if isinstance(fqn, str) and fqn and "(" not in fqn:
            builder.add_node(check_name(path, fqn, "module path"))
    ops: Counter[str] = Counter()
    for node in graph.get("nodes") or []:
        if not isinstance(node, dict):
            continue
        ops[_op_name(node.get("target", "?"))] += 1
        stack = (node.get("metadata") or {}).get("nn_module_stack")
        for module_path, type_text in _split_stack(stack) if isinstance(stack, str) else ():
            if "(" not in module_path:
                builder.add_node(check_name(path, module_path, "module path"), _class_name(type_text))
    user_inputs: list[dict] = []
    lifted = 0
    non_persistent: list[str] = []
    for spec in signature.get("input_specs") or []:
        if not isinstance(spec, dict):
            continue
        arg_name = None
        for kind, body in spec.items():
            body = body if isinstance(body, dict) else {}
            arg = body.get("arg") or {}
            arg_name = arg.get("name") if isinstance(arg, dict) else None
            if kind == "parameter":
                fqn = check_name(path, body.get("parameter_name", ""))
                builder.add_tensor(owner_of(fqn), payloads.tensor(fqn, "param", values, arg_name))
            elif kind in ("buffer", "tensor_constant"):
                fqn = check_name(path, body.get("buffer_name") or body.get("tensor_constant_name") or "")
                builder.add_tensor(owner_of(fqn), payloads.tensor(fqn, "buffer", values, arg_name))
                lifted += kind == "tensor_constant"
                if kind == "buffer" and body.get("persistent") is False:
                    non_persistent.append(fqn)
            elif kind == "user_input":
                user_inputs.append({"name": display_name((arg.get("as_tensor") or {}).get("name", "?"), 80)
                                    if isinstance(arg, dict) else "?", "shape": _shape(values, arg)})
    if lifted:
        notes.append(f"{lifted} tensor constants captured by the graph are shown as buffers.")
    if payloads.pickled or payloads.opaque or payloads.legacy:
        notes.append("Pickled members of the archive (tensor subclasses, opaque objects, sample inputs, legacy "
                     "weight files) were not opened: shapes come from the archive's JSON.")
    if payloads.empty:
        notes.append(f"{len(payloads.empty)} tensor record(s) are empty (e.g. {display_name(payloads.empty[0], 80)}): "
                     "torch.export.load would fill them with zeros.")
    metadata: dict[str, object] = {
        "inputs": user_inputs,
        "outputs": [{"shape": _shape(values, a)} for a in (graph.get("outputs") or [])[:64]],
        "op_counts": dict(ops.most_common(40)),
        "non_persistent_buffers": non_persistent,
        "torch_version": display_name(program.get("torch_version", ""), 40),
    }
    if len(models) > 1:
        notes.append(f"The archive holds {len(models)} programs; '{display_name(model)}' is shown.")
    return builder, metadata, notes


@loader(
    "torch-export",
    patterns=("*.pt2", "*.ep"),
    priority=12,
    sniff=sniff_torch_export,
    description="torch.export program",
    why_not_run="torch.export programs can be inspected here but not run",
    graph="torch-export",
)
def open_torch_export(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """The module tree from nn_module_stack and tensors from the graph signature, read as JSON (no torch)."""
    yield Progress(0, 2, f"Reading the exported program in {path.name} (JSON only, no pickles)")
    builder, metadata, notes = read_program(path)
    yield Progress(1, 2, "Building the module tree")
    root = builder.build()
    notes.append("Module classes come from the graph's nn_module_stack; containers without a forward "
                 "(ModuleList, ModuleDict) have no type.")
    yield Progress(2, 2, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "torch-export", "torch", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )
