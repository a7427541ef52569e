"""Every tensor read through a WeightSource equals the framework's own values, for every format with data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from analyzers.errors import UnsupportedFile
from analyzers.loaders import read_summary
from analyzers.weights.source import open_weights
from tests.torch_fixtures import TiedLM, TinyCNN


def check_all(path: Path, expected: dict[str, np.ndarray]) -> None:
    summary = read_summary(path)
    with open_weights(summary) as source:
        names = source.names()
        assert set(expected) <= set(names), set(expected) - set(names)
        for name, want in expected.items():
            got = np.asarray(source.read(name))
            assert got.shape == want.shape, name
            np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64), err_msg=name)


def torch_values(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in state.items()}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_state_dict_values_views_and_bfloat16(tmp_path: Path, legacy: bool) -> None:
    torch.manual_seed(0)
    state = TinyCNN().state_dict()
    base = torch.randn(6, 4)
    state["extra.transposed"] = base.t()  # a strided view of its storage
    state["extra.slice"] = base[2:5]  # an offset into it
    state["extra.half"] = torch.randn(3, 5).to(torch.bfloat16)
    path = tmp_path / "state.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    check_all(path, torch_values(state))


def test_full_pickled_module_values_without_running_it(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = TinyCNN()
    path = tmp_path / "module.pt"
    torch.save(model, path)
    check_all(path, torch_values(model.state_dict()))


def test_tied_weights_are_read_once(tmp_path: Path) -> None:
    model = TiedLM()
    path = tmp_path / "tied.pt"
    torch.save(model.state_dict(), path)
    summary = read_summary(path)
    with open_weights(summary) as source:
        assert "embed.weight" in source.names() and "lm_head.weight" not in source.names()
        np.testing.assert_array_equal(source.read("embed.weight"), model.embed.weight.detach().numpy())


def test_safetensors_including_bfloat16(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(2)
    state = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4), "b.weight": torch.randn(2, 2).to(torch.bfloat16),
             "b.count": torch.arange(5, dtype=torch.int64)}
    path = tmp_path / "m.safetensors"
    save_file(state, str(path))
    check_all(path, torch_values(state))


def test_keras_archive_and_legacy_h5(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, name="conv"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.Flatten(),
                              keras.layers.Dense(2, name="head")])
    for path in (tmp_path / "m.keras", tmp_path / "m.h5"):
        model.save(path)
        summary = read_summary(path)
        with open_weights(summary) as source:
            got = sorted(np.asarray(source.read(n)).tobytes() for n in source.names())
        want = sorted(np.asarray(w).tobytes() for w in model.weights)
        assert got == want, path.name  # every variable's values, byte for byte


def test_onnx_initializers_constants_in_subgraphs_and_external_data(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    c = rng.normal(size=(3,)).astype(np.float32)
    inner = helper.make_graph([helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(c, "k")),
                               helper.make_node("Identity", ["k"], ["out"])], "then",
                              [], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]),
                               helper.make_node("If", ["cond"], ["z"], then_branch=inner, else_branch=inner)],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(w, "w"), cond])
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data",
              size_threshold=0)
    summary = read_summary(path)
    with open_weights(summary) as source:
        np.testing.assert_array_equal(source.read("w"), w)
        constant_names = [n for n in source.names() if source.info(n).location]
        assert constant_names and all(np.array_equal(source.read(n), c) for n in constant_names)


def test_gguf_dequantises_through_gguf(tmp_path: Path) -> None:
    import gguf

    rng = np.random.default_rng(3)
    plain = rng.normal(size=(8, 32)).astype(np.float32)
    quant = rng.normal(size=(4, 64)).astype(np.float32)
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("plain.weight", plain)
    q8 = gguf.quants.quantize(quant, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("quant.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    summary = read_summary(path)
    with open_weights(summary) as source:
        np.testing.assert_array_equal(source.read("plain.weight"), plain)
        expected = gguf.quants.dequantize(q8, gguf.GGMLQuantizationType.Q8_0).reshape(quant.shape)
        np.testing.assert_array_equal(source.read("quant.weight"), expected)
        assert np.abs(source.read("quant.weight") - quant).max() < 0.05  # q8_0 is close to the original


def test_a_format_without_values_is_one_sentence(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    path = tmp_path / "script.pt"
    torch.jit.script(model).save(str(path))
    with pytest.raises(UnsupportedFile, match=r"^script\.pt: LayerScope does not read the values of torchscript"):
        open_weights(read_summary(path))
