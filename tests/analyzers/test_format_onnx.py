"""ONNX: totals equal the sum over the ModelProto's initializers; scopes, ops and metadata as exported."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from analyzers.errors import CorruptFile
from analyzers.loaders import LoadOptions, find_loader, open_model
from analyzers.loaders.onnx_loader import looks_like_model_proto
from analyzers.tasks import drive
from tests.analyzers.test_contract import check_contract
from tests.cli_helpers import run_cli

ELEMENT_BYTES = {TensorProto.FLOAT: 4, TensorProto.INT8: 1, TensorProto.INT64: 8, TensorProto.FLOAT16: 2}


def initializer_totals(model: onnx.ModelProto) -> tuple[int, int]:
    """(elements, bytes) of the initializers that are weights, from their dims and types only: floating-point
    ones and integer ones a DequantizeLinear reads; an int64 shape tensor is a buffer."""
    dequantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    elements = nbytes = 0
    for init in model.graph.initializer:
        is_float = helper.tensor_dtype_to_np_dtype(init.data_type).kind == "f"
        if not is_float and init.name not in dequantized:
            continue
        n = math.prod(init.dims)
        elements += n
        nbytes += n * ELEMENT_BYTES[init.data_type]
    return elements, nbytes


def open_summary(path: Path):
    """Open through the registry, as the CLI does."""
    return drive(open_model(path, LoadOptions()))


def scoped_model() -> onnx.ModelProto:
    """A graph named the way torch.onnx names nodes, with an int8 weight and a shared bias."""
    rng = np.random.default_rng(0)
    w_q = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "encoder.layer.0.query.weight")
    w_k = numpy_helper.from_array(rng.integers(-127, 127, (8, 16)).astype(np.int8), "encoder.layer.0.key.weight_q")
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "encoder.layer.0.key.scale")
    shared = numpy_helper.from_array(rng.standard_normal((16,)).astype(np.float32), "shared_bias")
    head = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float16), "onnx::MatMul_42")
    shape = numpy_helper.from_array(np.array([-1, 16], np.int64), "reshape_shape")
    nodes = [
        helper.make_node("MatMul", ["x", "encoder.layer.0.query.weight"], ["q"], name="/encoder/layer.0/query/MatMul"),
        helper.make_node("Add", ["q", "shared_bias"], ["q2"], name="/encoder/layer.0/query/Add"),
        helper.make_node("DequantizeLinear", ["encoder.layer.0.key.weight_q", "encoder.layer.0.key.scale"], ["wk"],
                         name="/encoder/layer.0/key/DequantizeLinear"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="/encoder/layer.0/key/MatMul"),
        helper.make_node("Add", ["k", "shared_bias"], ["k2"], name="/encoder/layer.0/key/Add"),
        helper.make_node("Add", ["q2", "k2"], ["s"], name="/encoder/layer.0/Add"),
        helper.make_node("Reshape", ["s", "reshape_shape"], ["r"], name="/Reshape"),
        helper.make_node("Cast", ["r"], ["rh"], name="/head/Cast", to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["rh", "onnx::MatMul_42"], ["y"], name="/head/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4])],
        initializer=[w_q, w_k, scale, shared, head, shape],
    )
    model = helper.make_model(graph, producer_name="layerscope-tests", producer_version="1.0",
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_initializer_totals_and_scopes(tmp_path: Path) -> None:
    model = scoped_model()
    path = tmp_path / "scoped.onnx"
    onnx.save(model, path)
    assert find_loader(path).name == "onnx"
    summary = open_summary(path)
    check_contract(summary)
    elements, nbytes = initializer_totals(model)
    assert summary.totals.params == elements
    assert summary.totals.param_bytes == nbytes
    assert summary.totals.bytes_by_dtype["int8"] == 8 * 16
    assert summary.totals.buffers == 2  # reshape_shape, int64: not a weight
    assert summary.is_prequantized
    # Initializers sit on the scope of the nodes that consume them.
    assert {t.name for t in summary.node("encoder.layer.0.query").tensors} == {"encoder.layer.0.query.weight"}
    assert {t.name for t in summary.node("encoder.layer.0.key").tensors} == {
        "encoder.layer.0.key.weight_q", "encoder.layer.0.key.scale"}
    assert {t.name for t in summary.node("encoder.layer.0").tensors} == {"shared_bias"}
    assert {t.name for t in summary.node("head").tensors} == {"onnx::MatMul_42"}
    assert {t.name for t in summary.node("Reshape").tensors} == {"reshape_shape"}
    # Ops are leaf nodes typed by their op type, with their attributes.
    assert summary.node("encoder.layer.0.query.MatMul").type == "MatMul"
    assert summary.node("head.Cast").attributes["to"] == TensorProto.FLOAT16
    assert summary.node("head.MatMul").output_shape == (None, 4)
    meta = summary.metadata
    assert meta["opset_import"] == {"ai.onnx": 17}
    assert meta["producer_name"] == "layerscope-tests"
    assert meta["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 8]}]
    assert meta["outputs"] == [{"name": "y", "dtype": "float16", "shape": ["batch", 4]}]
    assert meta["op_types"]["MatMul"] == 3


def test_external_data_opens_without_the_data_file(tmp_path: Path) -> None:
    model = scoped_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    (tmp_path / "ext.weights").unlink()
    assert path.stat().st_size < 2000  # the weights really are outside
    summary = open_summary(path)
    check_contract(summary)
    elements, nbytes = initializer_totals(model)
    assert summary.totals.params == elements
    assert summary.totals.param_bytes == nbytes
    assert summary.metadata["external_data"] == {"files": ["ext.weights"], "missing": ["ext.weights"]}
    assert any("ext.weights" in note for note in summary.notes)


def test_torch_export_names_become_modules(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tests.torch_fixtures import TinyCNN

    model = TinyCNN().eval()
    path = tmp_path / "cnn.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 1, 28, 28),), str(path), dynamo=False,
                              input_names=["image"], output_names=["logits"])
    except (ImportError, RuntimeError) as exc:  # the TorchScript exporter may be gone in a future torch
        pytest.skip(f"torch.onnx.export (TorchScript exporter) unavailable: {exc}")
    proto = onnx.load(str(path), load_external_data=False)
    summary = open_summary(path)
    check_contract(summary)
    elements, _ = initializer_totals(proto)
    assert summary.totals.params == elements
    assert summary.metadata["producer_name"] == "pytorch"
    assert summary.node("head").total.params == sum(p.numel() for p in model.head.parameters())
    assert any(child.type == "Gemm" for child in summary.node("head").children)


def test_dynamo_exporter_metadata_gives_modules_and_classes(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "blocks.0.lin.weight")
    node = helper.make_node("MatMul", ["x", "blocks.0.lin.weight"], ["y"], name="node_linear")
    props = {
        "pkg.torch.onnx.name_scopes": repr(["", "blocks.0", "blocks.0.lin", "linear"]),
        "pkg.torch.onnx.class_hierarchy": repr(["__main__.Net", "__main__.Blk",
                                                "torch.nn.modules.linear.Linear", "aten.linear.default"]),
    }
    for key, value in props.items():
        entry = node.metadata_props.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([node], "main_graph", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], initializer=[weight])
    path = tmp_path / "dynamo.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    summary = open_summary(path)
    check_contract(summary)
    assert summary.root.type == "Net"
    assert summary.node("blocks.0").type == "Blk"
    assert summary.node("blocks.0.lin").type == "Linear"
    assert summary.node("blocks.0.lin.linear").type == "MatMul"
    assert [t.name for t in summary.node("blocks.0.lin").tensors] == ["blocks.0.lin.weight"]
    assert summary.totals.params == 16


def test_sniff_tells_onnx_from_other_protobufs(tmp_path: Path) -> None:
    model = scoped_model().SerializeToString()
    assert looks_like_model_proto(model[:16], strict=True)
    assert not looks_like_model_proto(b"\x08\x01\x12\x05hello", strict=True)  # a SavedModel starts like this
    assert not looks_like_model_proto(b"\x0a\x03abc", strict=True)
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(model)
    assert find_loader(renamed).name == "onnx"


def test_protobuf_that_parses_to_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"\x08\x07\x12\x03abc")
    with pytest.raises(CorruptFile, match=r"^empty\.onnx: .*no ONNX graph.*\.$"):
        open_summary(path)


def test_cli_json_and_table(tmp_path: Path) -> None:
    model = scoped_model()
    path = tmp_path / "scoped.onnx"
    onnx.save(model, path)
    done = run_cli("inspect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["source"]["format"] == "onnx"
    assert doc["totals"]["params"] == initializer_totals(model)[0]
    assert "int8" in doc["totals"]["bytes_by_dtype"]
    table = run_cli("inspect", str(path), "--table", "--depth", "4")
    assert table.returncode == 0, table.stderr
    assert "MatMul (MatMul)" in table.stdout
    assert f"{initializer_totals(model)[0]:,}" in table.stdout
