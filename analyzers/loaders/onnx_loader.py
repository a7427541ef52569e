"""ONNX `.onnx`: initializers and constants as tensors, a tree from the exporter's node scopes, ops as leaves.

Read with `onnx.load(load_external_data=False)`: tensors stored in external files are sized from
their metadata and never read (the data files need not even exist). Node scopes come from the
`/encoder/layer.0/attention/MatMul` names torch.onnx (TorchScript exporter) writes, or from the
`pkg.torch.onnx.name_scopes` / `class_hierarchy` metadata the dynamo exporter attaches. An
initializer belongs to the scope shared by the nodes that consume it. Subgraphs (If branches, Loop
and Scan bodies) hang under the node that owns them, walked without recursion.

What counts: floating-point initializers and Constant tensors are parameters (weights exported as
Constants, a voice-activity model's inside If branches, are weights); integer tensors are parameters
only when a quantisation op reads them (int8 weights feeding DequantizeLinear); every other integer or
bool tensor (int64 shapes, gather indices, masks) is a buffer. A tensor's dims are checked against the
data it holds: negative dims, or more elements than its raw_data, typed values or external data, are
refused.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import first_line, safe_component
from analyzers.loaders.safe_files import MAX_NAME_CHARS, display_name
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.dtypes import dtype_bits, is_floating
from analyzers.summary.nametree import TreeBuilder, clamp_depth, owner_of
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
# Integer tensors that are weights when a quantisation op consumes them; every other integer or bool
# tensor (int64 shapes, gather indices, masks) is a buffer. Floating-point tensors are parameters.
QUANT_STORAGE = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int4", "uint4", "int2", "uint2"})
QUANT_OPS = frozenset({"DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
                       "MatMulNBits", "GatherBlockQuantized", "DynamicQuantizeMatMul", "QGemm", "QAttention",
                       "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "DequantizeBFP", "MatMulBnb4",
                       "QOrderedMatMul", "QuantizedLinear"})
MAX_ELEMENTS = 1 << 50  # a tensor whose bytes cannot be checked (external file missing) may still not exceed this
MAX_LEAF_CHARS = 200  # node names are display text: longer ones are cut
MAX_SCOPE_TEXT = 1 << 16  # a node's scope metadata longer than this is ignored (literal_eval is not for megabytes)
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


def _bits(dtype: str) -> int:
    bits = dtype_bits(dtype)
    return bits if bits is not None else SUB_BYTE_BITS.get(dtype, 8)


def _typed_values_expected(dtype: str, numel: int) -> int:
    """How many entries of TensorProto's typed fields (float_data, int32_data ...) hold `numel` elements."""
    if dtype.startswith("complex"):
        return 2 * numel
    bits = _bits(dtype)
    if 0 < bits < 8:  # 4- and 2-bit types pack several elements into each int32_data entry
        per = 8 // bits
        return (numel + per - 1) // per
    return numel


def initializer_info(init: Any, name: str | None = None, *, model: Path | None = None,
                     folder: Path | None = None) -> tuple[TensorInfo, dict[str, str] | None]:
    """TensorInfo of a TensorProto from its dims and type, checked against the data it holds.

    Negative dims, a shape larger than its raw_data, typed values or external `length`, and an
    external file too short for it are refused (`model` names the file in the sentence)."""
    where = model or Path("model.onnx")
    label = display_name(name or init.name, 80)
    dtype = _dtype(init.data_type)
    dims = [int(d) for d in init.dims]
    if any(d < 0 for d in dims):
        raise CorruptFile(sentence(where, f"tensor '{label}' has a negative dimension ({min(dims)}); ONNX dims "
                                          "are sizes"))
    if init.data_type == 0:
        raise CorruptFile(sentence(where, f"tensor '{label}' has no data type"))
    shape = tuple(dims)
    numel = math.prod(shape)
    nbytes = (numel * _bits(dtype) + 7) // 8
    count = f"{numel:,}" if numel < 10**15 else f"{numel:.3g}"
    external = None
    if init.data_location == 1:  # TensorProto.EXTERNAL
        external = {e.key: e.value for e in init.external_data}
        _check_external(where, label, external, nbytes, numel, count, folder)
    elif init.HasField("raw_data"):
        held = len(init.raw_data)
        if dtype != "string" and held != nbytes:
            raise CorruptFile(sentence(where, f"tensor '{label}' declares {count} {dtype} elements (shape "
                                              f"{display_name(list(shape), 80)}, {nbytes:,} bytes) but holds "
                                              f"{held:,} bytes of data"))
    else:
        held = (len(init.float_data) + len(init.int32_data) + len(init.int64_data) + len(init.double_data)
                + len(init.uint64_data) + len(init.string_data))
        expected = _typed_values_expected(dtype, numel)
        if held != expected:
            raise CorruptFile(sentence(where, f"tensor '{label}' declares {count} {dtype} elements (shape "
                                              f"{display_name(list(shape), 80)}) but holds {held:,} values"))
    stored = None if dtype_bits(dtype) is not None else nbytes  # sub-byte or unknown types: exact bytes
    return TensorInfo(name=name or init.name, shape=shape, dtype=dtype, stored_bytes=stored), external


def _check_external(where: Path, label: str, external: dict[str, str], nbytes: int, numel: int, count: str,
                    folder: Path | None) -> None:
    """An external tensor's declared length and offset against its shape and the data file's size."""
    try:
        offset = int(external.get("offset", "0") or 0)
        length = int(external["length"]) if external.get("length") else None
    except ValueError:
        raise CorruptFile(sentence(where, f"tensor '{label}' has external-data offset or length that are not "
                                          "numbers")) from None
    if offset < 0 or (length is not None and length < 0):
        raise CorruptFile(sentence(where, f"tensor '{label}' has a negative external-data offset or length"))
    if length is not None and length != nbytes:
        raise CorruptFile(sentence(where, f"tensor '{label}' declares {count} elements ({nbytes:,} bytes) but its "
                                          f"external data is {length:,} bytes long"))
    size = _external_size(folder, external.get("location", "")) if folder is not None else None
    if size is not None and offset + nbytes > size:
        raise CorruptFile(sentence(where, f"tensor '{label}' needs bytes {offset:,} to {offset + nbytes:,} of "
                                          f"{display_name(external.get('location', ''))}, which has {size:,}"))
    if size is None and numel > MAX_ELEMENTS:
        raise CorruptFile(sentence(where, f"tensor '{label}' declares {count} elements, more than any model holds"))


def _external_size(folder: Path, location: str) -> int | None:
    """Size of an external data file inside the model's folder (None when absent, outside or not a file)."""
    if not location or Path(location).is_absolute() or ".." in Path(location).parts:
        return None
    try:
        st = os.stat(folder / location)
    except (OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def node_scope(node: Any) -> tuple[str, dict[str, str], str]:
    """(module path, {path: class} met on the way, leaf name) of an ONNX node."""
    props = {p.key: p.value for p in node.metadata_props} if len(node.metadata_props) else {}
    if NAME_SCOPES in props and len(props[NAME_SCOPES]) + len(props.get(CLASS_HIERARCHY, "")) <= MAX_SCOPE_TEXT:
        try:
            scopes = ast.literal_eval(props[NAME_SCOPES])
            classes = ast.literal_eval(props.get(CLASS_HIERARCHY, "[]"))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            scopes, classes = [], []
        if not isinstance(classes, list):
            classes = []
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


def _graphs_of(node: Any) -> list[tuple[str, Any]]:
    """(attribute name, GraphProto) of a node's subgraphs: If branches, Loop and Scan bodies."""
    out: list[tuple[str, Any]] = []
    for attr in node.attribute:
        if attr.type == 5:  # GRAPH
            out.append((attr.name, attr.g))
        elif attr.type == 10:  # GRAPHS
            out.extend((f"{attr.name}_{i}", g) for i, g in enumerate(attr.graphs))
    return out


def _subgraph_inputs(node: Any) -> dict[str, list[str]]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read, each with the op types that read it."""
    names: dict[str, list[str]] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        for _, g in _graphs_of(current):
            for inner in g.node:
                for name in inner.input:
                    names.setdefault(name, []).append(inner.op_type)
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


class _Names:
    """Unique dotted paths in linear time (a counter per base name: 200,000 nodes all named 'Add' made
    the old `unique` scan quadratic)."""

    def __init__(self) -> None:
        self.taken: set[str] = {""}
        self._next: dict[str, int] = {}

    def claim(self, name: str) -> str:
        """`name`, or `name_1`, `name_2` ... whichever is free; its ancestors are marked taken too."""
        candidate, n = name, self._next.get(name, 0)
        if candidate in self.taken:
            n = max(n, 1)
            while f"{name}_{n}" in self.taken:
                n += 1
            candidate = f"{name}_{n}"
            self._next[name] = n + 1
        self.taken.add(candidate)
        if "." in candidate:
            parts = candidate.split(".")
            self.taken.update(".".join(parts[:k]) for k in range(1, len(parts)))
        return candidate


class _GraphTree:
    """Walks a GraphProto and its subgraphs (If / Loop / Scan bodies, iteratively) into one layer tree."""

    def __init__(self, model_path: Path) -> None:
        self.path = model_path
        self.builder = TreeBuilder("Graph")
        self.names = _Names()
        self.output_shapes: dict[str, tuple] = {}
        self.op_paths: list[tuple[Any, str]] = []  # (NodeProto, its path) of every op, for FLOPs by node
        self.external_files: dict[str, bool] = {}
        self.constants = [0, 0]  # constant tensors counted as parameters, as buffers
        self.sparse = 0
        self.subgraphs = 0
        self.nodes = 0

    def walk(self, graph: Any) -> None:
        """Add `graph` and every subgraph below it."""
        queue: list[tuple[Any, str]] = [(graph, "")]
        while queue:
            g, prefix = queue.pop()
            queue.extend(self._add_graph(g, prefix))

    def _kind(self, dtype: str, consumers: list[str]) -> str:
        if is_floating(dtype) or (dtype in QUANT_STORAGE and any(op in QUANT_OPS for op in consumers)):
            return "param"
        return "buffer"

    def _add_graph(self, graph: Any, prefix: str) -> list[tuple[Any, str]]:
        builder, names = self.builder, self.names
        init_names = {init.name for init in graph.initializer}
        consumer_ops: dict[str, list[str]] = {}
        for node in graph.node:
            for name in node.input:
                consumer_ops.setdefault(name, []).append(node.op_type)
        consumers: dict[str, list[tuple[str, str]]] = {}
        shapes = _value_shapes(graph)
        subgraphs: list[tuple[Any, str]] = []
        for i, node in enumerate(graph.node):
            self.nodes += 1
            scope, types, leaf = node_scope(node)
            scope = _join(prefix, clamp_depth(scope[:MAX_NAME_CHARS]))
            for path, cls in types.items():
                path = _join(prefix, clamp_depth(path[:MAX_NAME_CHARS]))
                builder.add_node(path, cls)
                names.taken.add(path)
            leaf = safe_component(display_name(leaf, MAX_LEAF_CHARS) if leaf else f"{node.op_type}_{i}")
            op_path = names.claim(_join(scope, leaf))
            attrs: dict[str, object] = {}
            for attr in node.attribute:
                if attr.name in OP_ATTRIBUTES:
                    value = _attribute_value(attr)
                    if value is not None:
                        attrs[attr.name] = value
            if node.domain:
                attrs["domain"] = display_name(node.domain, 80)
            op_type = node.op_type
            builder.add_node(op_path, op_type if op_type.isidentifier() else display_name(op_type, 80), attrs)
            self.op_paths.append((node, op_path))
            if node.output and node.output[0] in shapes:
                self.output_shapes[op_path] = shapes[node.output[0]]
            graphs = _graphs_of(node)
            used = {n for n in node.input if n in init_names}
            if graphs:
                inner = _subgraph_inputs(node)
                used |= inner.keys() & init_names
                for name in inner.keys() & init_names:
                    consumer_ops.setdefault(name, []).extend(inner[name])
            for name in used:
                consumers.setdefault(name, []).append((scope, op_path))
            for attr_name, sub in graphs:
                sub_path = names.claim(f"{op_path}.{safe_component(attr_name)}")
                builder.add_node(sub_path, "Graph")
                self.subgraphs += 1
                subgraphs.append((sub, sub_path))
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self._add_constant(node, op_path, consumer_ops)
        for init in graph.initializer:
            info, external = initializer_info(init, model=self.path, folder=self.path.parent)
            if external is not None:
                location = external.get("location", "")
                self.external_files.setdefault(location, _external_size(self.path.parent, location) is not None)
            kind = self._kind(info.dtype, consumer_ops.get(init.name, []))
            if kind == "buffer":
                info = dataclasses.replace(info, kind="buffer", trainable=False)
            builder.add_tensor(self._owner(init.name, consumers.get(init.name, []), prefix), info)
        self.sparse += len(graph.sparse_initializer)
        return subgraphs

    def _owner(self, name: str, users: list[tuple[str, str]], prefix: str) -> str:
        """The scope shared by the nodes that consume an initializer (its name's scope when unused)."""
        if users:
            scoped = [s for s, _ in users if s != prefix]  # unscoped ops (exporter-added Identity ...) say nothing
            scope = _common_scope(scoped) if scoped else prefix
            return users[0][1] if scope == prefix and len(users) == 1 else scope
        guess = _join(prefix, clamp_depth(owner_of(name)))
        return guess if guess in self.builder else prefix

    def _add_constant(self, node: Any, op_path: str, consumer_ops: dict[str, list[str]]) -> None:
        users = [op for out in node.output for op in consumer_ops.get(out, [])]
        for attr in node.attribute:
            info = None
            if attr.name == "value" and attr.type == 4:  # TENSOR
                info, _ = initializer_info(attr.t, name=f"{op_path}.value", model=self.path, folder=self.path.parent)
            elif attr.name == "value_float":
                info = TensorInfo(f"{op_path}.value", (), "float32")
            elif attr.name == "value_floats":
                info = TensorInfo(f"{op_path}.value", (len(attr.floats),), "float32")
            elif attr.name == "value_int":
                info = TensorInfo(f"{op_path}.value", (), "int64")
            elif attr.name == "value_ints":
                info = TensorInfo(f"{op_path}.value", (len(attr.ints),), "int64")
            elif attr.name == "sparse_value":
                self.sparse += 1
            if info is None:
                continue
            kind = self._kind(info.dtype, users)
            self.constants[kind == "buffer"] += 1
            info = dataclasses.replace(info, location=f"constant:{node.output[0]}" if node.output else None)
            if kind == "buffer":
                info = dataclasses.replace(info, kind="buffer", trainable=False)
            self.builder.add_tensor(op_path, info)

    def notes(self) -> list[str]:
        """What the user should know about how the graph was counted."""
        notes: list[str] = []
        if self.subgraphs:
            notes.append(f"{self.subgraphs} subgraph(s) (If / Loop / Scan bodies) are shown under their nodes, and "
                         "their tensors are counted.")
        as_params, as_buffers = self.constants
        if as_params or as_buffers:
            notes.append(f"Constant nodes hold {as_params + as_buffers} tensor(s): {as_params} floating-point (or "
                         f"quantised weights), counted as parameters, and {as_buffers} integer or bool (shapes, "
                         "indices), counted as buffers.")
        if self.sparse:
            notes.append(f"{self.sparse} sparse initializers or constants are not counted.")
        missing = [loc for loc, present in self.external_files.items() if not present]
        if self.external_files:
            notes.append("Some initializers live in external data files; their sizes come from the model's metadata "
                         "(the data is not read).")
        if missing:
            notes.append("External data file(s) not found next to the model: "
                         f"{', '.join(display_name(m) for m in missing[:5])}.")
        return notes


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else prefix or path


def build_tree(graph: Any, model_path: Path) -> tuple[TreeBuilder, dict[str, object], list[str]]:
    """The layer tree of a GraphProto: scopes, one node per op, initializers on their owning scope, and
    every subgraph under the node that owns it."""
    tree = _GraphTree(model_path)
    tree.walk(graph)
    missing = [loc for loc, present in tree.external_files.items() if not present]
    extra: dict[str, object] = {}
    if tree.external_files:
        extra["external_data"] = {"files": sorted(tree.external_files), "missing": missing}
    extra["output_shapes"] = tree.output_shapes
    extra["nodes_total"] = tree.nodes
    return tree.builder, extra, tree.notes()


@loader(
    "onnx",
    patterns=("*.onnx",),
    priority=15,
    sniff=sniff_onnx,
    description="ONNX model",
    why_not_run="ONNX models can be inspected here but not run (LayerScope runs PyTorch and Keras models)",
    graph="onnx",
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
    builder, extra, notes = build_tree(graph, path)
    output_shapes = extra.pop("output_shapes")
    if extra["nodes_total"] == len(graph.node):
        extra.pop("nodes_total")
    root = builder.build(output_shapes=output_shapes)
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
    notes.insert(0, "ONNX stores no trainability: floating-point initializers and constants, and integer weights "
                    "that feed quantisation ops, count as trainable parameters; other integer and bool tensors "
                    "(shapes, indices) count as buffers.")
    yield Progress(3, 3, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "onnx", "onnx", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )
