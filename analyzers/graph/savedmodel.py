"""A SavedModel's serving function as the graph Netron opens on, written without TensorFlow.

Netron draws a SavedModel's *main* graph and opens it on the first signature in the file, which
TensorFlow writes sorted: `__saved_model_init_op`. A TF2 main graph is bookkeeping (a variable
handle, an is-initialised check and an assignment per variable, the saver's calls: 1,611 nodes
for an 89-layer Keras export), so Netron spent its time laying those out and never showed a
layer. The stand-in is a SavedModel whose one graph is the body of the serving signature's
function (`serving_default`, found through the wrapper functions TensorFlow adds around it):
its ops with their shapes, the variables as inputs Netron folds into each op as weights.
TF1 SavedModels keep their main graph, cut to what the serving signature needs.

Only TensorFlow's generated protobuf modules are loaded (importing `tensorflow` itself takes
10-20 s); this runs in the stand-in child process (`python -m analyzers.graph.standin`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SERVING_KEY = "serving_default"
INIT_OP_KEY = "__saved_model_init_op"
CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})
PASS_OPS = frozenset({"Identity", "NoOp"})
KEEP_CONST_BYTES = 1024  # constants this small keep their values (shapes, axes); larger ones are cleared


def saved_model_protos() -> Any:
    """TensorFlow's `saved_model_pb2`, importing only the generated protobuf modules it needs.

    `tensorflow` is registered as a bare package whose path is the installed one, so that
    `tensorflow.core.protobuf.saved_model_pb2` loads without running `tensorflow/__init__.py`.
    Only for a process that never imports TensorFlow itself (the stand-in child)."""
    if "tensorflow" not in sys.modules:
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("TensorFlow is not installed")
        package = types.ModuleType("tensorflow")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflow"] = package
    from tensorflow.core.protobuf import saved_model_pb2

    return saved_model_pb2


def read_proto(folder: Path) -> Any:
    """The SavedModel protobuf of a folder (saved_model.pb, or its text form)."""
    pb2 = saved_model_protos()
    proto = pb2.SavedModel()
    binary = folder / "saved_model.pb"
    if binary.is_file():
        proto.ParseFromString(binary.read_bytes())
    else:
        from google.protobuf import text_format

        text_format.Parse((folder / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
    if not proto.meta_graphs:
        raise ValueError("saved_model.pb holds no meta graph")
    return proto


def serving_key(meta_graph: Any) -> str | None:
    """The signature a user means: serving_default, else the first that is not the init op."""
    keys = sorted(k for k in meta_graph.signature_def if k != INIT_OP_KEY)
    if SERVING_KEY in keys:
        return SERVING_KEY
    return keys[0] if keys else None


def _node_and_index(tensor: str) -> tuple[str, int]:
    """'name:3' -> ('name', 3); 'name' -> ('name', 0) (graph tensor names)."""
    name, _, index = tensor.lstrip("^").rpartition(":")
    if name and index.isdigit():
        return name, int(index)
    return tensor.lstrip("^"), 0


class _OutputArgs:
    """Flat output positions of function-body tensor names ('node:arg:i' -> k), from Netron's op schemas."""

    def __init__(self, library: dict[str, Any]) -> None:
        self._library = library
        self._schemas: dict[str, list[dict]] | None = None

    def _schema(self, op: str) -> list[dict]:
        if self._schemas is None:
            try:
                import netron

                path = Path(netron.__file__).resolve().parent / "tf-metadata.json"
                self._schemas = {o["name"]: o.get("outputs", []) for o in json.loads(path.read_text("utf-8"))}
            except (ImportError, OSError, ValueError, KeyError, TypeError):
                self._schemas = {}
        return self._schemas.get(op, [])

    def flat_index(self, node: Any, arg: str, index: int) -> int:
        """Position of output `arg`[`index`] of `node` among all its outputs."""
        if node.op in self._library:  # a call of a library function: one tensor per output arg
            names = [a.name for a in self._library[node.op].signature.output_arg]
            return names.index(arg) + index if arg in names else index
        offset = 0
        for spec in self._schema(node.op):
            if spec.get("name") == arg:
                return offset + index
            offset += self._length(node, spec)
        return index

    @staticmethod
    def _length(node: Any, spec: dict) -> int:
        if "numberAttr" in spec and spec["numberAttr"] in node.attr:
            return int(node.attr[spec["numberAttr"]].i)
        if "typeListAttr" in spec and spec["typeListAttr"] in node.attr:
            return len(node.attr[spec["typeListAttr"]].list.type)
        return 1


def _call_target(node: Any) -> str | None:
    """The library function a call node runs."""
    return node.attr["f"].func.name if node.op in CALL_OPS and "f" in node.attr else None


def _serving_function(meta_graph: Any, key: str, library: dict[str, Any], args: _OutputArgs
                      ) -> tuple[Any, dict[str, str], dict[str, str]] | None:
    """The innermost function signature `key` runs: (function, signature input -> argument name,
    signature output -> output argument name). None for a TF1 graph (no function call)."""
    sig = meta_graph.signature_def[key]
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    calls = set()
    positions: dict[str, int] = {}
    for k, info in sig.outputs.items():
        node, index = nodes.get(_node_and_index(info.name)[0]), _node_and_index(info.name)[1]
        while node is not None and node.op == "Identity" and node.input:
            node, index = nodes.get(_node_and_index(node.input[0])[0]), _node_and_index(node.input[0])[1]
        if node is None or _call_target(node) not in library:
            return None
        calls.add(node.name)
        positions[k] = index
    if len(calls) != 1:
        return None
    call = nodes[calls.pop()]
    func = library[_call_target(call)]
    call_inputs = [_node_and_index(i)[0] for i in call.input]
    inputs: dict[str, str] = {}
    for k, info in sig.inputs.items():
        name = _node_and_index(info.name)[0]
        if name not in call_inputs or call_inputs.index(name) >= len(func.signature.input_arg):
            return None
        inputs[k] = func.signature.input_arg[call_inputs.index(name)].name
    out_args = [a.name for a in func.signature.output_arg]
    if any(i >= len(out_args) for i in positions.values()):
        return None
    results = {k: out_args[i] for k, i in positions.items()}
    # Descend through wrappers: a body that is one call (plus Identity / NoOp) runs its callee.
    for _ in range(8):
        body = [n for n in func.node_def if n.op not in PASS_OPS]
        if len(body) != 1 or _call_target(body[0]) not in library:
            break
        inner, callee = body[0], library[_call_target(body[0])]
        returned = {k: _resolve_ret(func, arg, args) for k, arg in results.items()}
        if any(r is None or r[0] != inner.name or r[1] >= len(callee.signature.output_arg) for r in returned.values()):
            break
        if any(a not in inner.input or list(inner.input).index(a) >= len(callee.signature.input_arg)
               for a in inputs.values()):
            break
        inputs = {k: callee.signature.input_arg[list(inner.input).index(a)].name for k, a in inputs.items()}
        results = {k: callee.signature.output_arg[r[1]].name for k, r in returned.items()}  # type: ignore[index]
        func = callee
    return func, inputs, results


def _resolve_ret(func: Any, out_arg: str, args: _OutputArgs) -> tuple[str, int] | None:
    """The (node, flat output index) a function's output arg returns, through Identity nodes."""
    tensor = func.ret.get(out_arg)
    nodes = {n.name: n for n in func.node_def}
    for _ in range(16):
        if tensor is None:
            return None
        parts = tensor.split(":")
        node = nodes.get(parts[0])
        if node is None:
            return None
        if node.op == "Identity" and node.input:
            tensor = node.input[0]
            continue
        if len(parts) == 3 and parts[2].isdigit():
            return node.name, args.flat_index(node, parts[1], int(parts[2]))
        return node.name, 0
    return None


def _graph_name(tensor: str, nodes: dict[str, Any], args: _OutputArgs) -> str:
    """A function-body input ('node:arg:i', 'arg', '^node') as a graph input ('node:k', 'arg', '^node')."""
    if tensor.startswith("^"):
        return tensor
    parts = tensor.split(":")
    if len(parts) != 3 or parts[0] not in nodes or not parts[2].isdigit():
        return tensor
    k = args.flat_index(nodes[parts[0]], parts[1], int(parts[2]))
    return parts[0] if k == 0 else f"{parts[0]}:{k}"


def _clear_large_constants(nodes: Iterable[Any]) -> None:
    for node in nodes:
        if node.op == "Const" and "value" in node.attr:
            tensor = node.attr["value"].tensor
            if tensor.ByteSize() > KEEP_CONST_BYTES:
                for name in ("tensor_content", "float_val", "double_val", "int_val", "int64_val", "string_val",
                             "half_val", "bool_val"):
                    tensor.ClearField(name)


def _reachable_functions(nodes: Iterable[Any], library: dict[str, Any]) -> list[str]:
    """Library functions the nodes call, directly or through other functions (for Netron's 'Functions' list)."""
    seen: list[str] = []
    todo = list(nodes)
    while todo:
        node = todo.pop()
        names = [node.op] if node.op in library else []
        for attr in node.attr.values():
            if attr.HasField("func"):
                names.append(attr.func.name)
            names.extend(f.name for f in attr.list.func)
        for name in names:
            if name in library and name not in seen:
                seen.append(name)
                todo.extend(library[name].node_def)
    return seen


def function_graph(proto: Any, meta_graph: Any, func: Any, inputs: dict[str, str], results: dict[str, str],
                   key: str, library: dict[str, Any], args: _OutputArgs) -> Any:
    """A SavedModel whose one graph is `func`'s body, with one signature `key` over it."""
    pb2 = saved_model_protos()
    from tensorflow.core.framework import node_def_pb2, types_pb2

    out = pb2.SavedModel()
    out.saved_model_schema_version = proto.saved_model_schema_version
    mg = out.meta_graphs.add()
    mg.meta_info_def.CopyFrom(meta_graph.meta_info_def)
    mg.meta_info_def.ClearField("stripped_op_list")
    mg.graph_def.versions.CopyFrom(meta_graph.graph_def.versions)
    graph = mg.graph_def
    for i, arg in enumerate(func.signature.input_arg):
        node = graph.node.add(name=arg.name, op="Placeholder")
        node.attr["dtype"].type = arg.type
        shapes = func.arg_attr[i].attr.get("_output_shapes") if i in func.arg_attr else None
        if shapes is not None and arg.type != types_pb2.DT_RESOURCE:  # Netron lists these as the graph's inputs
            node.attr["_output_shapes"].CopyFrom(shapes)
    body = {n.name: n for n in func.node_def}
    for source in func.node_def:
        if source.op == "NoOp":
            continue
        node = node_def_pb2.NodeDef()
        node.CopyFrom(source)
        del node.input[:]
        # Control edges only order the variable reads (a NoOp waits for all of them); Netron would draw
        # each read as a node of its own instead of folding it into its op as a weight.
        node.input.extend(_graph_name(t, body, args) for t in source.input if not t.startswith("^"))
        graph.node.append(node)
    _clear_large_constants(graph.node)
    for name in _reachable_functions(graph.node, library):
        graph.library.function.add().CopyFrom(library[name])
    sig, original = mg.signature_def[key], meta_graph.signature_def[key]
    sig.method_name = original.method_name
    for k, arg_name in inputs.items():
        sig.inputs[k].CopyFrom(original.inputs[k])
        sig.inputs[k].name = f"{arg_name}:0"
    for k, out_arg in results.items():
        sig.outputs[k].CopyFrom(original.outputs[k])
        returned = _graph_name(func.ret.get(out_arg, out_arg), body, args)
        sig.outputs[k].name = returned if ":" in returned else f"{returned}:0"
    return out


def pruned_main_graph(proto: Any, meta_graph: Any, key: str) -> Any:
    """A TF1 SavedModel cut to the nodes the serving signature needs, with that signature only."""
    pb2 = saved_model_protos()
    out = pb2.SavedModel()
    out.CopyFrom(proto)
    del out.meta_graphs[:]
    mg = out.meta_graphs.add()
    mg.CopyFrom(meta_graph)
    mg.ClearField("object_graph_def")
    for other in [k for k in mg.signature_def if k != key]:
        del mg.signature_def[other]
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    keep: set[str] = set()
    todo = [_node_and_index(t.name)[0] for t in meta_graph.signature_def[key].outputs.values()]
    while todo:
        name = todo.pop()
        if name in keep or name not in nodes:
            continue
        keep.add(name)
        todo.extend(_node_and_index(i)[0] for i in nodes[name].input)
    del mg.graph_def.node[:]
    mg.graph_def.node.extend(n for n in meta_graph.graph_def.node if n.name in keep)
    _clear_large_constants(mg.graph_def.node)
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    mg.graph_def.ClearField("library")
    for name in _reachable_functions(mg.graph_def.node, library):
        mg.graph_def.library.function.add().CopyFrom(library[name])
    return out


def write_savedmodel_standin(source: Path, target: Path) -> None:
    """Write the serving function of the SavedModel folder `source` as a SavedModel file `target`."""
    proto = read_proto(source)
    meta_graph = next((m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags), proto.meta_graphs[0])
    key = serving_key(meta_graph)
    if key is None:
        raise ValueError("the SavedModel has no serving signature to draw")
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    args = _OutputArgs(library)
    found = _serving_function(meta_graph, key, library, args)
    if found is None:
        out = pruned_main_graph(proto, meta_graph, key)
    else:
        out = function_graph(proto, meta_graph, *found, key, library, args)
    target.write_bytes(out.SerializeToString())
