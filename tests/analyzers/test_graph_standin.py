"""Weights-free stand-ins for Netron: same names, shapes, dtypes and nodes as the original, no data."""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from analyzers.graph.standin import (
    SMALL_FILE_BYTES,
    gguf_data_offset,
    graph_format,
    make_standin,
    zero_storage_sizes,
)
from analyzers.loaders import LoadOptions, open_model
from analyzers.loaders.safetensors_loader import read_header
from analyzers.summary import LayerNode, ModelSummary, SourceInfo
from analyzers.tasks import drive
from tests.torch_fixtures import TinyCNN


def open_summary(path: Path, **options) -> ModelSummary:
    return drive(open_model(path, LoadOptions(**options)))


def bare_summary(path: Path, fmt: str, files: tuple[Path, ...] = ()) -> ModelSummary:
    """A summary that only says where the model is (the stand-in reads the file, not the tree)."""
    return ModelSummary(SourceInfo(str(path), fmt, "", tuple(str(f) for f in files)), LayerNode(""))


def safetensors_entries(paths: list[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, dtype) as the safetensors library itself reports them."""
    out = {}
    for path in paths:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                out[name] = (tuple(piece.get_shape()), piece.get_dtype())
    return out


def header_entries(path: Path) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict]:
    header, start = read_header(path)
    assert start == path.stat().st_size, "a stand-in holds no data bytes after its header"
    entries = {k: (tuple(v["shape"]), v["dtype"]) for k, v in header.items() if k != "__metadata__"}
    assert all(v["data_offsets"] == [0, 0] for k, v in header.items() if k != "__metadata__")
    return entries, header.get("__metadata__") or {}


def test_single_safetensors_standin_has_same_header_and_no_data(tmp_path: Path) -> None:
    model = TinyCNN()
    path = tmp_path / "cnn.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": "pt"})
    standin = make_standin(open_summary(path), tmp_path / "out", max_original_bytes=0)
    assert standin.kind == "standin" and standin.path is not None
    assert standin.path.suffix == ".safetensors"
    entries, metadata = header_entries(standin.path)
    assert entries == safetensors_entries([path])
    assert set(entries) == set(model.state_dict())
    assert metadata == {"format": "pt"}
    assert "zero bytes" in standin.reason


def test_sharded_index_is_merged_into_one_header(tmp_path: Path) -> None:
    state = TinyCNN().state_dict()
    names = list(state)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(tmp_path / shard))
        weight_map.update({k: shard for k in keys})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    summary = open_summary(index)
    standin = make_standin(summary, tmp_path / "out")
    assert standin.path == tmp_path / "out" / "model.safetensors"
    entries, _ = header_entries(standin.path)
    assert entries == safetensors_entries([tmp_path / s for s in shards])
    assert "2 shards merged" in standin.reason


def test_hf_folder_of_safetensors_shards(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-hf"
    folder.mkdir()
    state = TinyCNN().state_dict()
    names = list(state)
    save_file({k: state[k] for k in names[:2]}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in names[2:]}, str(folder / "model-00002-of-00002.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        **{k: "model-00001-of-00002.safetensors" for k in names[:2]},
        **{k: "model-00002-of-00002.safetensors" for k in names[2:]}}}))
    summary = open_summary(folder, names_only=True)
    assert graph_format(summary) == "weights-header"  # the hf format draws its weights as a header
    standin = make_standin(summary, tmp_path / "out")
    entries, _ = header_entries(standin.path)
    assert entries == safetensors_entries(sorted(folder.glob("*.safetensors")))


def test_hf_folder_of_bin_weights_uses_the_summary(tmp_path: Path) -> None:
    folder = tmp_path / "bin-hf"
    folder.mkdir()
    state = TinyCNN().state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"model_type": "unknown-to-transformers"}))
    summary = open_summary(folder, names_only=True)
    assert graph_format(summary) == "weights-header"
    standin = make_standin(summary, tmp_path / "out")
    assert standin.kind == "standin" and standin.show_names and standin.path.name == "bin-hf.safetensors"
    entries, _ = header_entries(standin.path)
    codes = {torch.float32: "F32", torch.int64: "I64"}
    assert entries == {k: (tuple(v.shape), codes[v.dtype]) for k, v in state.items()}


def test_small_file_is_handed_over_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "cnn.safetensors"
    save_file(TinyCNN().state_dict(), str(path))
    standin = make_standin(open_summary(path), tmp_path / "out")
    assert path.stat().st_size < SMALL_FILE_BYTES
    assert standin.kind == "original" and standin.path == path
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_state_dict_becomes_a_safetensors_header_from_the_summary(tmp_path: Path) -> None:
    model = TinyCNN()
    model.half()
    path = tmp_path / "cnn.pt"
    torch.save(model.state_dict(), path)
    standin = make_standin(open_summary(path), tmp_path / "out", max_original_bytes=0)
    entries, _ = header_entries(standin.path)
    codes = {torch.float16: "F16", torch.int64: "I64"}
    assert entries == {k: (tuple(v.shape), codes[v.dtype]) for k, v in model.state_dict().items()}


def _onnx_model(tmp_path: Path, external: bool) -> tuple[Path, object]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "conv.weight")
    b1 = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "conv.bias")
    w2 = numpy_helper.from_array(rng.standard_normal((10, 8 * 28 * 28)).astype(np.float32), "fc.weight")
    b2 = numpy_helper.from_array(np.zeros(10, np.float32), "fc.bias")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape")
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("Reshape", ["r", "flat_shape"], ["f"], name="/Reshape"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              initializer=[w1, b1, w2, b2, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "tiny.onnx"
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location="tiny.onnx.data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path, model


@pytest.mark.parametrize("external", [False, True])
def test_onnx_standin_keeps_nodes_and_drops_initializer_data(tmp_path: Path, external: bool) -> None:
    import onnx

    path, original = _onnx_model(tmp_path, external)
    standin = make_standin(bare_summary(path, "onnx"), tmp_path / "out", max_original_bytes=0)
    assert standin.kind == "standin", standin.reason
    copy = onnx.load(str(standin.path), load_external_data=False)
    assert [(n.op_type, n.name, list(n.input), list(n.output)) for n in copy.graph.node] == \
        [(n.op_type, n.name, list(n.input), list(n.output)) for n in original.graph.node]
    assert {t.name: (list(t.dims), t.data_type) for t in copy.graph.initializer} == \
        {t.name: (list(t.dims), t.data_type) for t in original.graph.initializer}
    assert all(len(t.raw_data) == 0 and len(t.float_data) == 0 and len(t.int64_data) == 0 and
               len(t.external_data) == 0 and t.data_location == onnx.TensorProto.DEFAULT for t in copy.graph.initializer)
    assert standin.path.stat().st_size < 4096 < (tmp_path / "tiny.onnx.data" if external else path).stat().st_size


def test_gguf_standin_is_the_header_only(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_token_list([f"tok{i}" for i in range(300)])
    writer.add_token_scores([0.5] * 300)
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((300, 32)).astype(np.float32))
    writer.add_tensor("blk.0.attn_q.weight", rng.standard_normal((32, 32)).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    assert gguf_data_offset(path) == reader.data_offset
    standin = make_standin(bare_summary(path, "gguf"), tmp_path / "out", max_original_bytes=0)
    assert standin.path.read_bytes() == path.read_bytes()[: reader.data_offset]


def _storage_sizes(pickle_bytes: bytes) -> list[int]:
    ops = list(pickletools.genops(pickle_bytes))
    return [ops[i - 2][1] for i, (op, _, _) in enumerate(ops) if op.name == "BINPERSID"]


def test_torchscript_standin_declares_every_storage_empty(tmp_path: Path) -> None:
    model = TinyCNN().eval()
    path = tmp_path / "cnn_ts.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 1, 28, 28)), str(path))
    standin = make_standin(bare_summary(path, "torchscript"), tmp_path / "out", max_original_bytes=0)
    with zipfile.ZipFile(path) as zo, zipfile.ZipFile(standin.path) as zs:
        original = {i.filename: i.file_size for i in zo.infolist()}
        copy = {i.filename: i.file_size for i in zs.infolist()}
        assert set(copy) == set(original)
        data_pkl = next(n for n in copy if n.endswith("/data.pkl"))
        sizes = _storage_sizes(zs.read(data_pkl))
        assert sizes and all(s == 0 for s in sizes)
        assert sorted(_storage_sizes(zo.read(data_pkl))) == sorted(t.numel() for t in model.state_dict().values())
        code = [n for n in original if "/code/" in n]
        assert code and all(zs.read(n) == zo.read(n) for n in code)
    records = [n for n in copy if n.rsplit("/", 2)[-2] == "data" and n.rsplit("/", 1)[-1].isdigit()]
    assert records and all(copy[n] == 0 for n in records)
    assert sum(original[n] for n in records) >= sum(t.numel() * 4 for t in model.parameters())


def test_zero_storage_sizes_refuses_an_unknown_pickle() -> None:
    import io
    import pickle

    class NamedIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "a-name" if obj == "external" else None

    buffer = io.BytesIO()
    NamedIds(buffer, protocol=2).dump(["external"])
    with pytest.raises(ValueError, match="does not store tensors"):
        zero_storage_sizes(buffer.getvalue())
    data, count = zero_storage_sizes(pickle.dumps({"a": 1}, protocol=2))
    assert count == 0 and pickle.loads(data) == {"a": 1}


def test_torch_export_standin_empties_the_weights(tmp_path: Path) -> None:
    model = TinyCNN().eval()
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 1, 28, 28),)), str(path))
    standin = make_standin(bare_summary(path, "torch-export"), tmp_path / "out", max_original_bytes=0)
    with zipfile.ZipFile(path) as zo, zipfile.ZipFile(standin.path) as zs:
        weights = [i for i in zs.infolist() if "/data/weights/" in i.filename and not i.filename.endswith(".json")]
        assert weights and sum(i.file_size for i in weights) <= 1024 * len(weights)
        big = [i for i in weights if zo.getinfo(i.filename).file_size > 1024]
        assert big and all(i.file_size == 0 for i in big)
        models = [n for n in zo.namelist() if "/models/" in n]
        assert models and all(zs.read(n) == zo.read(n) for n in models)
    assert standin.path.stat().st_size < path.stat().st_size


@pytest.mark.slow
def test_keras_standins_keep_shapes_without_data(tmp_path: Path) -> None:
    import h5py
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    keras_path, h5_path = tmp_path / "cnn.keras", tmp_path / "cnn.h5"
    model.save(keras_path)
    model.save(h5_path)
    shapes = sorted(tuple(w.shape) for w in model.weights)

    def datasets(f) -> list:
        found = []
        f.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
        return found

    h5 = make_standin(bare_summary(h5_path, "keras-h5"), tmp_path / "out-h5", max_original_bytes=0)
    with h5py.File(h5.path) as f:
        assert f.attrs["model_config"] == h5py.File(h5_path).attrs["model_config"]
        found = [d for d in datasets(f) if "model_weights" in d.name]
        assert sorted(tuple(d.shape) for d in found) == shapes
        assert all(d.id.get_storage_size() == 0 for d in found if d.nbytes > 1024)
    ks = make_standin(bare_summary(keras_path, "keras"), tmp_path / "out-keras", max_original_bytes=0)
    with zipfile.ZipFile(ks.path) as zs, zipfile.ZipFile(keras_path) as zo:
        assert zs.read("config.json") == zo.read("config.json")
        zs.extract("model.weights.h5", tmp_path / "x")
    with h5py.File(tmp_path / "x" / "model.weights.h5") as f:
        found = datasets(f)
        assert sorted(tuple(d.shape) for d in found if d.ndim) == sorted(s for s in shapes if s)
        assert all(d.id.get_storage_size() == 0 for d in found if d.nbytes > 1024)
    assert ks.path.stat().st_size < keras_path.stat().st_size


def test_format_without_standin_says_why(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(4096))
    standin = make_standin(bare_summary(path, "tflite"), tmp_path / "out", max_original_bytes=0)
    assert standin.path is None and standin.kind == "none"
    assert standin.reason.startswith("model.tflite: ") and "no weights-free stand-in" in standin.reason
    assert standin.reason.count(". ") == 0 and standin.reason.endswith(".")
    gone = make_standin(bare_summary(tmp_path / "gone.onnx", "onnx"), tmp_path / "out")
    assert gone.path is None and "no longer there" in gone.reason


def test_corrupted_source_gives_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07" + b"\xff" * 2048)
    standin = make_standin(bare_summary(path, "onnx"), tmp_path / "out", max_original_bytes=0)
    assert standin.path is None
    assert standin.reason.startswith("broken.onnx: no graph") and "\n" not in standin.reason


def test_safetensors_dtype_codes_round_trip(tmp_path: Path) -> None:
    tensors = {"a.weight": torch.zeros(3, 2, dtype=torch.bfloat16), "a.bias": torch.zeros(2, dtype=torch.float64),
               "b.mask": torch.zeros(4, dtype=torch.bool), "b.idx": torch.zeros(5, dtype=torch.int32)}
    path = tmp_path / "mixed.pt"
    torch.save(tensors, path)
    standin = make_standin(open_summary(path), tmp_path / "out", max_original_bytes=0)
    entries, _ = header_entries(standin.path)
    reference = tmp_path / "reference.safetensors"
    save_file(tensors, str(reference))
    assert entries == safetensors_entries([reference])
    with standin.path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    assert n % 8 == 0


# --- SavedModel: the serving function, not the main graph's bookkeeping ----------------------------

BOOKKEEPING_OPS = {"VarHandleOp", "VarIsInitializedOp", "AssignVariableOp", "SaveV2", "RestoreV2", "MergeV2Checkpoints"}


def _saved_model(path: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(path.read_bytes())
    return proto


def _shape(attr) -> tuple[int, ...]:
    return tuple(int(d.size) for d in attr.list.shape[0].dim)


@pytest.mark.slow
def test_a_keras_export_is_drawn_from_its_serving_function(tmp_path: Path) -> None:
    """Netron opened a SavedModel on __saved_model_init_op and laid out the variables' bookkeeping for 15-30 s."""
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                              keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(6),
                              keras.layers.Dense(5)])
    folder = tmp_path / "exported"
    model.export(str(folder), verbose=False)
    original = _saved_model(folder / "saved_model.pb").meta_graphs[0]
    assert "__saved_model_init_op" in original.signature_def  # what Netron opened on
    standin = make_standin(bare_summary(folder, "savedmodel"), tmp_path / "out")
    assert standin.kind == "standin" and standin.display_name == "exported"
    assert not standin.extra_files  # the variables (index or data) are never served
    proto = _saved_model(standin.path)
    assert len(proto.meta_graphs) == 1
    mg = proto.meta_graphs[0]
    assert list(mg.signature_def) == ["serving_default"]
    ops = [n.op for n in mg.graph_def.node]
    assert not BOOKKEEPING_OPS & set(ops), set(ops) & BOOKKEEPING_OPS
    assert BOOKKEEPING_OPS & {n.op for n in original.graph_def.node}  # the original's main graph has them
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert ops.count("MatMul") == len(dense) and ops.count("Conv2D") == 1
    # every weight the model serves with reaches Netron as a read with the variable's shape (Keras's own shapes)
    reads = sorted(_shape(n.attr["_output_shapes"]) for n in mg.graph_def.node if n.op == "ReadVariableOp")
    assert reads == sorted(tuple(w.shape) for w in model.weights)
    # the graph's input and output are the signature's, named inside the drawn graph
    sig = mg.signature_def["serving_default"]
    (inp,) = sig.inputs.values()
    (out,) = sig.outputs.values()
    names = {n.name: n for n in mg.graph_def.node}
    placeholder = names[inp.name.split(":")[0]]
    assert placeholder.op == "Placeholder" and _shape(placeholder.attr["_output_shapes"]) == (-1, *model.input_shape[1:])
    assert out.name.split(":")[0] in names and [d.size for d in out.tensor_shape.dim] == [-1, 5]
    for node in mg.graph_def.node:  # every data input names a node of the graph (no function-body names left)
        for tensor in node.input:
            assert tensor.split(":")[0] in names and tensor.count(":") <= 1, (node.name, tensor)
    assert standin.path.stat().st_size < (folder / "saved_model.pb").stat().st_size


@pytest.mark.slow
def test_a_saved_module_keeps_multi_output_ops_wired(tmp_path: Path) -> None:
    """Function bodies name outputs by argument ('TopKV2:indices:0'); the graph needs the flat position."""
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    class Module(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.ones((3, 4)), name="w")

        @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
        def __call__(self, x):
            y = tf.matmul(x, self.w)
            left, right = tf.split(y, 2, axis=1)
            return {"sum": left + right, "top": tf.math.top_k(y, k=1).indices}

    module = Module()
    folder = tmp_path / "module"
    tf.saved_model.save(module, str(folder), signatures=module.__call__)
    standin = make_standin(bare_summary(folder, "savedmodel"), tmp_path / "out")
    mg = _saved_model(standin.path).meta_graphs[0]
    nodes = {n.name: n for n in mg.graph_def.node}
    add = next(n for n in mg.graph_def.node if n.op == "AddV2")
    split = next(n for n in mg.graph_def.node if n.op == "Split")
    assert list(add.input) == [split.name, f"{split.name}:1"]  # the two halves, in order
    topk_args = [a.name for a in op_def_registry.get("TopKV2").output_arg]  # TensorFlow's own op definition
    out = mg.signature_def["serving_default"].outputs["top"].name
    producer = nodes[out.split(":")[0]]
    while producer.op == "Identity":
        out = producer.input[0]
        producer = nodes[out.split(":")[0]]
    assert producer.op == "TopKV2" and out == f"{producer.name}:{topk_args.index('indices')}"


@pytest.mark.slow
def test_a_tf1_saved_model_keeps_only_what_serving_needs(tmp_path: Path) -> None:
    import tensorflow as tf

    folder = tmp_path / "tf1"
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, (None, 3), name="x")
        w = tf.compat.v1.get_variable("w", (3, 2))
        y = tf.identity(tf.matmul(x, w), name="y")
        unused = tf.identity(tf.reduce_sum(w) * 2.0, name="unused")  # in the graph, not in the signature
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(folder))
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        other = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"unused": unused})
        builder.add_meta_graph_and_variables(session, ["serve"], {"serving_default": sig, "aaa_other": other})
        builder.save()
    standin = make_standin(bare_summary(folder, "savedmodel"), tmp_path / "out")
    mg = _saved_model(standin.path).meta_graphs[0]
    assert list(mg.signature_def) == ["serving_default"]
    names = {n.name for n in mg.graph_def.node}
    assert {"x", "y", "MatMul"} <= names and "unused" not in names


def test_a_savedmodel_whose_graph_cannot_be_read_is_handed_to_netron_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\x0f" + b"\x00" * 64)  # a truncated protobuf
    standin = make_standin(bare_summary(folder, "savedmodel"), tmp_path / "out")
    assert standin.kind == "original" and standin.path == folder / "saved_model.pb"
    assert "\n" not in standin.reason and "could not be isolated" in standin.reason
