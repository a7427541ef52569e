"""TensorFlow SavedModel folders (`saved_model.pb` + `variables/`): variables by name scope, signatures.

Nothing is executed: `saved_model.pb` is parsed with the protobuf classes TensorFlow ships and the
checkpoint index is listed (`tf.train.load_checkpoint`, which reads no tensor data).

Rules, in the order they apply:
- TF2 SavedModels: every variable node of the object graph is one tensor. Its name is its object
  path (`encoder/dense/kernel` -> `encoder.dense.kernel`), or its variable name scope when the path
  only runs through lists (`variables/0`) or private attributes. It is trainable when the root
  object lists it in `trainable_variables` (Keras `model.export()` writes that list and its
  `non_trainable_variables` twin, which know about frozen layers); otherwise the object graph's
  own flag (`SavedVariable.trainable`) decides.
- A variable reached a second time through a private attribute with the same name, shape and dtype
  (Keras `model.export()` tracks every weight in `variables` and again in `_all_variables`) is listed once.
- Random-generator state (Keras `seed_generator_state`), step counters and optimizer variables are
  buffers, not parameters.
- TF1 SavedModels (no object graph): variables from the checkpoint, trainable when listed in the
  meta graph's `trainable_variables` collection.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import first_line, safe_component, unique
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.nametree import build_name_tree
from analyzers.tasks import Progress, Steps

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
CKPT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
STEP_NAMES = frozenset({"global_step", "iterations", "iteration", "save_counter"})
OPTIMIZER_SCOPES = frozenset({"optimizer", "_optimizer"})
_NOT_OBJECTS = frozenset({"function", "bare_concrete_function", "constant", "captured_tensor", "asset"})


def sniff_savedmodel(path: Path) -> bool:
    """A folder holding saved_model.pb (or .pbtxt)."""
    return path.is_dir() and any((path / name).is_file() for name in SAVED_MODEL_FILES)


def sniff_saved_model_file(path: Path) -> bool:
    """The saved_model.pb file itself: open its folder."""
    return path.is_file() and path.name.lower() in SAVED_MODEL_FILES


@dataclass
class _Variable:
    """One variable as the SavedModel describes it, before it becomes a TensorInfo."""

    object_path: tuple[str, ...]
    var_name: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool


def _import_tf() -> Any:
    from analyzers.runtime.tf_import import tensorflow

    return tensorflow()


def read_saved_model(folder: Path) -> Any:
    """The parsed SavedModel protobuf; a broken file becomes one sentence."""
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb = folder / "saved_model.pb"
    try:
        if pb.is_file():
            proto.ParseFromString(pb.read_bytes())
        else:
            text_format.Parse((folder / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise CorruptFile(sentence(folder, f"saved_model.pb is not a valid SavedModel protobuf ({first_line(exc)}); "
                                           "it is truncated or corrupted")) from None
    if not proto.meta_graphs:
        raise CorruptFile(sentence(folder, "saved_model.pb holds no meta graph; it is truncated or not a SavedModel"))
    return proto


def read_checkpoint(folder: Path, tf: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """Checkpoint key -> (shape, dtype) from the variables index (no tensor data read)."""
    prefix = folder / "variables" / "variables"
    if not Path(f"{prefix}.index").is_file():
        return {}
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as exc:
        raise CorruptFile(sentence(folder, f"its variables checkpoint cannot be read ({first_line(exc)})")) from None
    return {k: (tuple(int(d) for d in shapes[k]), dtypes[k].name) for k in shapes if k != OBJECT_GRAPH_KEY}


def _pick_meta_graph(proto: Any) -> Any:
    for mg in proto.meta_graphs:
        if "serve" in mg.meta_info_def.tags:
            return mg
    return proto.meta_graphs[0]


def _escape(local_name: str) -> str:
    """How TensorFlow escapes an object name inside a checkpoint key."""
    return local_name.replace(".", ".S").replace("/", "./")


def _dtype_name(tf: Any, enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except (TypeError, ValueError):
        return "unknown"


def _shape(proto_shape: Any) -> tuple[int, ...] | None:
    if proto_shape.unknown_rank or any(d.size < 0 for d in proto_shape.dim):
        return None
    return tuple(int(d.size) for d in proto_shape.dim)


def object_graph_variables(mg: Any, ckpt: dict, tf: Any) -> tuple[list[_Variable], dict[tuple[str, ...], str], str]:
    """Variables of a TF2 object graph (breadth-first, as TensorFlow names them), node types, root type."""
    og = mg.object_graph_def
    paths: dict[int, tuple[str, ...]] = {0: ()}
    order = [0]
    queue = deque([0])
    while queue:
        nid = queue.popleft()
        node = og.nodes[nid]
        if node.WhichOneof("kind") in _NOT_OBJECTS:
            continue
        for child in node.children:
            if child.node_id not in paths and child.node_id < len(og.nodes):
                paths[child.node_id] = (*paths[nid], child.local_name)
                order.append(child.node_id)
                queue.append(child.node_id)
    listed = _root_lists(og)
    types: dict[tuple[str, ...], str] = {}
    variables: list[_Variable] = []
    for nid in order:
        node = og.nodes[nid]
        kind = node.WhichOneof("kind")
        if kind == "user_object":
            cls = _keras_class(node.user_object.metadata)
            if cls:
                types[paths[nid]] = cls
        elif kind == "variable":
            var = node.variable
            key = "/".join(_escape(p) for p in paths[nid]) + CKPT_SUFFIX
            shape = _shape(var.shape)
            if shape is None and key in ckpt:
                shape = ckpt[key][0]
            trainable = bool(var.trainable)
            if listed is not None and nid in listed[0] | listed[1]:
                trainable = nid in listed[0]
            variables.append(_Variable(paths[nid], var.name.split(":")[0], shape or (),
                                       _dtype_name(tf, var.dtype), trainable))
    return variables, types, types.get((), "")


def _root_lists(og: Any) -> tuple[set[int], set[int]] | None:
    """Node ids in the root's `trainable_variables` and `non_trainable_variables` lists, when it has both."""
    found: dict[str, set[int]] = {}
    for child in og.nodes[0].children:
        if child.local_name in ("trainable_variables", "non_trainable_variables") and child.node_id < len(og.nodes):
            found[child.local_name] = {c.node_id for c in og.nodes[child.node_id].children}
    if len(found) < 2:
        return None
    return found["trainable_variables"], found["non_trainable_variables"]


def _keras_class(metadata: str) -> str:
    """Class name a tf.keras (Keras 2) SavedModel records in a user object's metadata JSON."""
    if not metadata:
        return ""
    try:
        data = json.loads(metadata)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    cls = data.get("class_name") if isinstance(data, dict) else None
    return cls if isinstance(cls, str) else ""


def tf1_variables(mg: Any, ckpt: dict) -> list[_Variable]:
    """Variables of a TF1 SavedModel: checkpoint names, trainable when in the trainable_variables collection."""
    from tensorflow.core.framework import variable_pb2

    trainable: set[str] | None = None
    if "trainable_variables" in mg.collection_def:
        trainable = set()
        for raw in mg.collection_def["trainable_variables"].bytes_list.value:
            vd = variable_pb2.VariableDef()
            vd.ParseFromString(raw)
            trainable.add(vd.variable_name.split(":")[0])
    return [_Variable(tuple(key.split("/")), key, shape, dtype, trainable is None or key in trainable)
            for key, (shape, dtype) in ckpt.items()]


def _private(path: tuple[str, ...]) -> bool:
    return any(p.startswith("_") for p in path)


def _display(var: _Variable) -> tuple[str, ...]:
    if var.object_path and not any(p.isdigit() or p.startswith("_") for p in var.object_path):
        return var.object_path
    if var.var_name:
        return tuple(p for p in var.var_name.split("/") if p)
    return var.object_path


def _is_buffer(var: _Variable) -> bool:
    leaf = var.var_name.rsplit("/", 1)[-1] if var.var_name else (var.object_path[-1] if var.object_path else "")
    if leaf.endswith("seed_generator_state"):
        return True
    if leaf in STEP_NAMES and var.dtype.startswith(("int", "uint")):
        return True
    return any(p in OPTIMIZER_SCOPES for p in var.object_path)


def to_tensors(variables: list[_Variable]) -> tuple[list[TensorInfo], dict[str, tuple[str, ...]], int]:
    """TensorInfos with unique dotted names; (tensors, display path by name, duplicates dropped)."""
    public = [v for v in variables if not _private(v.object_path)]
    private = [v for v in variables if _private(v.object_path)]
    seen: set[tuple[str, tuple[int, ...], str]] = set()
    taken: set[str] = set()
    tensors: list[TensorInfo] = []
    display: dict[str, tuple[str, ...]] = {}
    dropped = 0
    for var in [*public, *private]:
        identity = (var.var_name, var.shape, var.dtype)
        if _private(var.object_path) and var.var_name and identity in seen:
            dropped += 1
            continue
        seen.add(identity)
        parts = _display(var)
        name = unique(".".join(safe_component(p) for p in parts) or "variable", taken)
        display[name] = parts
        buffer = _is_buffer(var)
        tensors.append(TensorInfo(name=name, shape=var.shape, dtype=var.dtype, kind="buffer" if buffer else "param",
                                  trainable=var.trainable and not buffer))
    return tensors, display, dropped


def _tensor_spec(info: Any, tf: Any) -> dict[str, object]:
    shape = None if info.tensor_shape.unknown_rank else [
        None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
    return {"tensor": info.name, "dtype": _dtype_name(tf, info.dtype), "shape": shape}


def signatures(mg: Any, tf: Any) -> dict[str, object]:
    """Signature name -> method, inputs and outputs (tensor name, dtype, shape with None for any size)."""
    out: dict[str, object] = {}
    for key in sorted(mg.signature_def):
        if key == "__saved_model_init_op":
            continue
        sig = mg.signature_def[key]
        out[key] = {
            "method": sig.method_name,
            "inputs": {k: _tensor_spec(v, tf) for k, v in sorted(sig.inputs.items())},
            "outputs": {k: _tensor_spec(v, tf) for k, v in sorted(sig.outputs.items())},
        }
    return out


@loader(
    "savedmodel",
    folder=True,
    priority=35,
    sniff=sniff_savedmodel,
    description="TensorFlow SavedModel folder",
    why_not_run="TensorFlow SavedModel folders can be inspected here but not run; save the model as .keras to run it",
    graph="savedmodel",
)
def open_savedmodel(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Variables as a tree by name scope, signatures and versions as metadata; no graph is run."""
    yield Progress(0, 4, "Importing TensorFlow")
    tf = _import_tf()
    yield Progress(1, 4, "Reading saved_model.pb")
    proto = read_saved_model(path)
    mg = _pick_meta_graph(proto)
    yield Progress(2, 4, "Listing the variables checkpoint")
    ckpt = read_checkpoint(path, tf)
    notes: list[str] = []
    types: dict[tuple[str, ...], str] = {}
    root_type = ""
    if len(mg.object_graph_def.nodes):
        variables, types, root_type = object_graph_variables(mg, ckpt, tf)
        notes.append("Trainable flags come from the SavedModel's object graph (its trainable_variables list "
                     "when the root has one, else each variable's own flag).")
        known = {"/".join(_escape(p) for p in v.object_path) + CKPT_SUFFIX for v in variables}
        extra = [k for k in ckpt if k not in known]
        if extra:
            notes.append(f"{len(extra)} checkpoint entries are not variables of the object graph and are not shown.")
    else:
        variables = tf1_variables(mg, ckpt)
        notes.append("TF1 SavedModel: trainable flags come from the trainable_variables collection.")
    if not variables and not mg.signature_def:
        raise UnsupportedFile(sentence(path, "the SavedModel has neither variables nor signatures"))
    yield Progress(3, 4, f"Building the tree of {len(variables):,} variables")
    tensors, display, dropped = to_tensors(variables)
    if dropped:
        notes.append(f"{dropped} variables tracked a second time (Keras export's _all_variables) are listed once.")
    if not tensors:
        notes.append("The SavedModel holds no variables (its weights are constants inside the graph).")
    node_types: dict[str, str] = {}
    for parts in display.values():
        for i in range(1, len(parts)):
            cls = types.get(parts[:i])
            if cls:
                node_types[".".join(safe_component(p) for p in parts[:i])] = cls
    metadata: dict[str, object] = {
        "tags": list(mg.meta_info_def.tags),
        "tensorflow_version": mg.meta_info_def.tensorflow_version,
        "saved_model_schema_version": int(proto.saved_model_schema_version),
        "meta_graphs": len(proto.meta_graphs),
        "signatures": signatures(mg, tf),
        "functions": len(mg.graph_def.library.function),
        "checkpoint_entries": len(ckpt),
    }
    files = [p for p in (path / "saved_model.pb", path / "saved_model.pbtxt") if p.is_file()]
    files += sorted(p for p in (path / "variables").glob("variables.*") if p.is_file())
    yield Progress(4, 4, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "savedmodel", "tensorflow", tuple(str(f) for f in files),
                          sum(f.stat().st_size for f in files)),
        root=build_name_tree(tensors, types=node_types, sort=False, root_type=root_type or "SavedModel"),
        metadata=metadata,
        notes=tuple(notes),
    )


@loader(
    "savedmodel-file",
    patterns=("saved_model.pb*",),
    priority=40,
    sniff=sniff_saved_model_file,
    description="TensorFlow SavedModel",
    why_not_run="a bare saved_model.pb can be inspected here but not run; save the model as .keras to run it",
)
def open_saved_model_file(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """saved_model.pb given directly: open the folder around it."""
    return (yield from open_savedmodel(path.parent, options))
