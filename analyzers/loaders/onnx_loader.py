"""ONNX `.onnx`: initializers as parameters, a tree from the exporter's node scopes, ops as leaf nodes.

Read with `onnx.load(load_external_data=False)`: tensors stored in external files are sized from
their metadata and never read (the data files need not even exist). Node scopes come from the
`/encoder/layer.0/attention/MatMul` names torch.onnx (TorchScript exporter) writes, or from the
`pkg.torch.onnx.name_scopes` / `class_hierarchy` metadata the dynamo exporter attaches. An
initializer belongs to the scope shared by the nodes that consume it.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

from analyzers.dtypes import dtype_bits
from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import decorate_tree, first_line, safe_component, unique
from analyzers.nametree import TreeBuilder, owner_of
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

# ModelProto fields (number -> wire type): producer_name .. functions.
_MODEL_FIELDS = {2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
# TensorProto.DataType -> canonical dtype.
ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
    16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
    21: "uint4", 22: "int4", 23: "float4_e2m1", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
}
SUB_BYTE_BITS = {"float4_e2m1": 4, "uint2": 2, "int2": 2}
# Node attributes worth showing next to an op.
OP_ATTRIBUTES = ("kernel_shape", "strides", "pads", "dilations", "group", "axis", "axes", "perm", "epsilon",
                 "transA", "transB", "alpha", "beta", "momentum", "num_heads", "block_size", "mode", "to")
NAME_SCOPES = "pkg.torch.onnx.name_scopes"
CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def looks_like_model_proto(head: bytes, strict: bool) -> bool:
    """First bytes of a serialised ModelProto: `ir_version` (tag 0x08), then another ModelProto field.

    `strict` (no .onnx extension) also wants a plausible IR version (3-15), which tells ONNX apart
    from other protobufs that start with a small integer field (a SavedModel starts 0x08 0x01).
    """
    pos = 0
    if head[:1] == b"\x08":
        got = _varint(head, 1)
        if got is None:
            return False
        ir_version, pos = got
        if not 1 <= ir_version <= 64 or (strict and not 3 <= ir_version <= 15):
            return False
    elif strict:
        return False
    tag = _varint(head, pos)
    if tag is None:
        return pos > 0 and pos == len(head)
    field, wire = tag[0] >> 3, tag[0] & 7
    return _MODEL_FIELDS.get(field) == wire


def sniff_onnx(path: Path) -> bool:
    """A protobuf that starts like an ONNX ModelProto (no framework import)."""
    with path.open("rb") as f:
        head = f.read(16)
    return len(head) >= 2 and looks_like_model_proto(head, strict=path.suffix.lower() != ".onnx")


def _dtype(code: int) -> str:
    return ONNX_DTYPES.get(int(code), f"onnx_type_{int(code)}")


def initializer_info(init: Any, name: str | None = None) -> tuple[TensorInfo, dict[str, str] | None]:
    """TensorInfo of a TensorProto from its dims and type only; external-data entries when stored outside."""
    dtype = _dtype(init.data_type)
    shape = tuple(int(d) for d in init.dims)
    info = TensorInfo(name=name or init.name, shape=shape, dtype=dtype)
    if dtype_bits(dtype) is None:  # sub-byte or unknown types: exact bytes from the element size
        bits = SUB_BYTE_BITS.get(dtype, 8)
        info = TensorInfo(name=info.name, shape=shape, dtype=dtype, stored_bytes=(info.numel * bits + 7) // 8)
    external = None
    if init.data_location == 1:  # TensorProto.EXTERNAL
        external = {e.key: e.value for e in init.external_data}
    return info, external


def node_scope(node: Any) -> tuple[str, dict[str, str], str]:
    """(module path, {path: class} met on the way, leaf name) of an ONNX node."""
    props = {p.key: p.value for p in node.metadata_props}
    if NAME_SCOPES in props:
        try:
            scopes = ast.literal_eval(props[NAME_SCOPES])
            classes = ast.literal_eval(props.get(CLASS_HIERARCHY, "[]"))
        except (ValueError, SyntaxError):
            scopes, classes = [], []
        if isinstance(scopes, list) and scopes:
            types: dict[str, str] = {}
            path = ""
            for i, scope in enumerate(scopes[:-1]):
                path = str(scope)
                if i < len(classes) and isinstance(classes[i], str):
                    types[path] = classes[i].rsplit(".", 1)[-1]
            return path, types, str(scopes[-1])
    name = node.name
    if name.startswith("/"):
        parts = [p for p in name.split("/")[1:] if p]
        if len(parts) >= 2:
            return ".".join(parts[:-1]), {}, parts[-1]
        return "", {}, parts[0] if parts else ""
    return "", {}, name


def _common_scope(scopes: list[str]) -> str:
    split = [s.split(".") if s else [] for s in scopes]
    common: list[str] = []
    for parts in zip(*split):
        if all(p == parts[0] for p in parts):
            common.append(parts[0])
        else:
            break
    return ".".join(common)


def _attribute_value(attr: Any) -> Any:
    if attr.type == 1:  # FLOAT
        return round(float(attr.f), 8)
    if attr.type == 2:  # INT
        return int(attr.i)
    if attr.type == 3:  # STRING
        return attr.s.decode("utf-8", "replace")[:80]
    if attr.type == 6 and len(attr.floats) <= 8:  # FLOATS
        return tuple(round(float(v), 8) for v in attr.floats)
    if attr.type == 7 and len(attr.ints) <= 8:  # INTS
        return tuple(int(v) for v in attr.ints)
    return None


def _subgraph_inputs(node: Any) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the outer scope."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        for attr in current.attribute:
            graphs = [attr.g] if attr.type == 5 else list(attr.graphs) if attr.type == 10 else []
            for g in graphs:
                for inner in g.node:
                    names.update(inner.input)
                    stack.append(inner)
    return names


def _value_shapes(graph: Any) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for vi in [*graph.value_info, *graph.output, *graph.input]:
        tt = vi.type.tensor_type
        if vi.type.WhichOneof("value") == "tensor_type" and tt.HasField("shape"):
            out[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim)
    return out


def _io(values: Any, skip: set[str]) -> list[dict[str, object]]:
    out = []
    for vi in values:
        if vi.name in skip:
            continue
        entry: dict[str, object] = {"name": vi.name}
        if vi.type.WhichOneof("value") == "tensor_type":
            tt = vi.type.tensor_type
            entry["dtype"] = _dtype(tt.elem_type)
            entry["shape"] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                              for d in tt.shape.dim] if tt.HasField("shape") else None
        else:
            entry["type"] = vi.type.WhichOneof("value") or "unknown"
        out.append(entry)
    return out


def build_tree(graph: Any, folder: Path) -> tuple[TreeBuilder, dict[str, object], list[str]]:
    """The layer tree of a GraphProto: scopes, one node per op, initializers on their owning scope."""
    builder = TreeBuilder("Graph")
    notes: list[str] = []
    init_names = {init.name for init in graph.initializer}
    consumers: dict[str, list[tuple[str, str]]] = {}
    shapes = _value_shapes(graph)
    taken: set[str] = {""}
    op_paths: list[str] = []
    for i, node in enumerate(graph.node):
        scope, types, leaf = node_scope(node)
        for path, cls in types.items():
            builder.add_node(path, cls)
            taken.add(path)
        leaf = safe_component(leaf or f"{node.op_type}_{i}")
        op_path = unique(f"{scope}.{leaf}" if scope else leaf, taken)
        attrs: dict[str, object] = {}
        for attr in node.attribute:
            if attr.name in OP_ATTRIBUTES:
                value = _attribute_value(attr)
                if value is not None:
                    attrs[attr.name] = value
        if node.domain:
            attrs["domain"] = node.domain
        builder.add_node(op_path, node.op_type, attrs)
        parts = op_path.split(".")
        taken.update(".".join(parts[:k]) for k in range(1, len(parts)))
        op_paths.append(op_path)
        used = {n for n in node.input if n in init_names} | (_subgraph_inputs(node) & init_names)
        for name in used:
            consumers.setdefault(name, []).append((scope, op_path))
    output_shapes = {op_paths[i]: shapes[n.output[0]] for i, n in enumerate(graph.node)
                     if n.output and n.output[0] in shapes}
    external_files: dict[str, bool] = {}
    for init in graph.initializer:
        info, external = initializer_info(init)
        if external is not None:
            location = external.get("location", "")
            external_files.setdefault(location, (folder / location).is_file())
        users = consumers.get(init.name, [])
        if users:
            scoped = [s for s, _ in users if s]  # unscoped ops (exporter-added Identity ...) say nothing
            scope = _common_scope(scoped) if scoped else ""
            owner = users[0][1] if not scope and len(users) == 1 else scope
        else:
            guess = owner_of(init.name)
            owner = guess if guess in builder else ""
        builder.add_tensor(owner, info)
    constants = 0
    for i, node in enumerate(graph.node):
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.type == 4:  # TENSOR
                info, _ = initializer_info(attr.t, name=f"{op_paths[i]}.value")
                builder.add_tensor(op_paths[i], TensorInfo(info.name, info.shape, info.dtype, "buffer", False,
                                                           None, info.stored_bytes))
                constants += 1
    if constants:
        notes.append(f"{constants} tensors held by Constant nodes are shown as buffers, not parameters.")
    if len(graph.sparse_initializer):
        notes.append(f"{len(graph.sparse_initializer)} sparse initializers are not counted.")
    missing = [loc for loc, present in external_files.items() if not present]
    if external_files:
        notes.append("Some initializers live in external data files; their sizes come from the model's metadata "
                     "(the data is not read).")
    if missing:
        notes.append(f"External data file(s) not found next to the model: {', '.join(missing[:5])}.")
    extra = {"external_data": {"files": sorted(external_files), "missing": missing}} if external_files else {}
    extra["output_shapes"] = output_shapes
    return builder, extra, notes


@loader(
    "onnx",
    patterns=("*.onnx",),
    priority=15,
    sniff=sniff_onnx,
    description="ONNX model",
)
def open_onnx(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Graph structure, initializers and metadata; external tensor data is never read."""
    yield Progress(0, 3, "Importing onnx")
    import onnx
    from google.protobuf.message import DecodeError

    yield Progress(1, 3, f"Reading {path.name} (external data not loaded)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise CorruptFile(sentence(path, f"it is not a valid ONNX protobuf ({first_line(exc)}); the file is "
                                         "truncated or corrupted")) from None
    graph = model.graph
    if not len(graph.node) and not len(graph.initializer):
        raise CorruptFile(sentence(path, "it parses as protobuf but holds no ONNX graph; the file is corrupted "
                                         "or not an ONNX model"))
    yield Progress(2, 3, f"Mapping {len(graph.initializer):,} initializers onto {len(graph.node):,} nodes")
    builder, extra, notes = build_tree(graph, path.parent)
    output_shapes = extra.pop("output_shapes")
    root = decorate_tree(builder.build(), output_shapes=output_shapes)
    init_names = {i.name for i in graph.initializer}
    metadata: dict[str, object] = {
        "ir_version": int(model.ir_version),
        "opset_import": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer_name": model.producer_name,
        "producer_version": model.producer_version,
        "domain": model.domain,
        "model_version": int(model.model_version),
        "graph_name": graph.name,
        "inputs": _io(graph.input, init_names),
        "outputs": _io(graph.output, set()),
        "op_types": dict(Counter(n.op_type for n in graph.node).most_common()),
        "nodes": len(graph.node),
        "initializers": len(graph.initializer),
        **extra,
    }
    if model.doc_string:
        metadata["doc_string"] = model.doc_string[:500]
    if len(model.metadata_props):
        metadata["metadata_props"] = {p.key: p.value[:500] for p in model.metadata_props}
    if len(model.functions):
        metadata["functions"] = [f"{f.domain}::{f.name}" if f.domain else f.name for f in model.functions][:50]
    notes.insert(0, "ONNX stores no trainability: every initializer counts as a trainable parameter.")
    yield Progress(3, 3, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "onnx", "onnx", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )
