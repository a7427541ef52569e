"""Hostile and impossible files, each built here: refused in one sentence, or opened with the right numbers.

Safetensors headers that lie (dtypes, shapes, offsets, a 100,000-character name), ONNX weights held in
Constant nodes inside If / Loop bodies and initializers whose dims their data cannot hold, GGUF arrays
whose counts the file cannot hold or that are merely huge, Hugging Face folders with a config that is a
loop, a device, 10^4 layers over two layers of weights or zero heads, and a named pipe. Numbers are
compared with the framework's own (torch, numpy over what was put in), never with LayerScope's.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import load_file, save_file

from analyzers.errors import CorruptFile, LayerScopeError, UnsupportedFile
from analyzers.loaders import LoaderSpec, LoadOptions, _guarded, find_loader, open_model
from analyzers.summary.nametree import MAX_TREE_DEPTH
from analyzers.tasks import drive
from tests.analyzers.test_contract import check_contract
from tests.cli_helpers import REPO, run_cli


def open_summary(path: Path, **options):
    return drive(open_model(path, LoadOptions(**options)))


def one_sentence(path: Path, *fragments: str) -> str:
    """`inspect` refuses `path`: exit 2, one line on stderr naming the file, nothing on stdout."""
    done = run_cli("inspect", str(path), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert path.name in lines[0] and lines[0].endswith("."), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert done.stdout == ""
    return lines[0]


# --- safetensors ---------------------------------------------------------------------------------------------


def raw_safetensors(path: Path, header: dict, data_bytes: int) -> Path:
    """A safetensors file with exactly this header and `data_bytes` zero bytes after it."""
    blob = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        f.truncate(8 + len(blob) + data_bytes)
    return path


@pytest.mark.parametrize("dtype", ["Q9_Z", 5, None, ["F32"]])
def test_safetensors_unknown_dtype_is_refused(tmp_path: Path, dtype: object) -> None:
    path = raw_safetensors(tmp_path / "bad.safetensors", {"w": {"dtype": dtype, "shape": [2], "data_offsets": [0, 8]}}, 8)
    with pytest.raises(CorruptFile, match=r"^bad\.safetensors: tensor 'w' has dtype .* not a safetensors dtype\.$"):
        open_summary(path)


@pytest.mark.parametrize("shape", [[10**9, 10**9], [2**1000], [2**62, 4], [True, 2], [2.5]])
def test_safetensors_shape_the_bytes_cannot_hold_is_refused(tmp_path: Path, shape: list) -> None:
    path = raw_safetensors(tmp_path / "big.safetensors", {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 8]}}, 8)
    with pytest.raises(CorruptFile, match=r"^big\.safetensors: tensor 'w' .*\.$"):
        open_summary(path)


@pytest.mark.parametrize(("entries", "fragment"), [
    ({"w": ("F32", [4], [0, 16])}, "truncated"),  # ends past the 8 data bytes
    ({"w": ("F32", [1], [0, 8])}, "spans 8 bytes"),  # 1 float is 4 bytes, not 8
    ({"a": ("F32", [2], [0, 8]), "b": ("F32", [2], [0, 8])}, "claim the same bytes"),
    ({"w": ("F32", [2], [8, 0])}, "negative"),
])
def test_safetensors_offsets_that_lie_are_refused(tmp_path: Path, entries: dict, fragment: str) -> None:
    header = {name: {"dtype": d, "shape": s, "data_offsets": o} for name, (d, s, o) in entries.items()}
    path = raw_safetensors(tmp_path / "lie.safetensors", header, 8)
    with pytest.raises(CorruptFile, match=r"^lie\.safetensors: .*\.$") as err:
        open_summary(path)
    assert fragment in str(err.value)


def test_safetensors_header_past_the_format_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge_header.safetensors"
    with path.open("wb") as f:  # sparse: claims a 200 MB header in a file that long
        f.write(struct.pack("<Q", 200_000_000) + b"{")
        f.truncate(200_000_100)
    with pytest.raises(CorruptFile, match=r"^huge_header\.safetensors: .*more than the 100,000,000 .*\.$"):
        open_summary(path)


def test_safetensors_header_listing_more_tensors_than_any_file_is_refused(tmp_path: Path) -> None:
    """300,001 empty tensors fit a 25 MB header; parsed, they would cost gigabytes."""
    entry = '"t{}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    blob = ("{" + ",".join(entry.format(i) for i in range(300_001)) + "}").encode()
    path = tmp_path / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(CorruptFile, match=r"^many\.safetensors: the header lists 300,001 tensors"):
        open_summary(path)


def test_integer_and_bool_tensors_are_buffers(tmp_path: Path) -> None:
    """Swin's relative_position_index, EfficientFormer's attention_bias_idxs, a bool mask: never parameters."""
    state = {
        "layers.0.attn.qkv.weight": torch.randn(24, 8),
        "layers.0.attn.relative_position_bias_table": torch.randn(9, 2, dtype=torch.float16),
        "layers.0.attn.relative_position_index": torch.arange(16).reshape(4, 4),
        "layers.0.attn.attention_bias_idxs": torch.zeros(7, 7, dtype=torch.int32),
        "layers.0.attn.mask": torch.ones(3, 3, dtype=torch.bool),
    }
    save_file(state, tmp_path / "swin.safetensors")
    summary = open_summary(tmp_path / "swin.safetensors")
    check_contract(summary)
    assert summary.totals.params == sum(t.numel() for t in state.values() if t.is_floating_point())
    assert summary.totals.buffers == sum(t.numel() for t in state.values() if not t.is_floating_point())
    assert any("Integer and bool tensors" in note for note in summary.notes)


def test_header_the_reference_reader_refuses_opens_with_a_note(tmp_path: Path) -> None:
    """Trailing bytes no tensor claims and a non-string metadata value: the tensors are intact, so it opens."""
    header = {"__metadata__": {"format": 5}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    path = raw_safetensors(tmp_path / "gap.safetensors", header, 24)
    summary = open_summary(path)
    assert summary.totals.params == 2
    assert any("16 bytes of its data region belong to no tensor" in note for note in summary.notes)
    assert any("__metadata__ is not a map of strings" in note for note in summary.notes)


def test_a_100000_character_name_is_one_sentence(tmp_path: Path) -> None:
    name = "a." * 50_000  # 100,000 characters, 50,000 levels deep
    path = raw_safetensors(tmp_path / "longname.safetensors", {name: {"dtype": "F32", "shape": [1],
                                                                        "data_offsets": [0, 4]}}, 4)
    with pytest.raises(CorruptFile, match=r"100,000 characters long"):
        open_summary(path)
    one_sentence(path, "100,000 characters")


def test_a_deep_name_within_the_limit_opens_as_a_shallow_tree(tmp_path: Path) -> None:
    """2,000 levels in 4,001 characters: the tree folds past MAX_TREE_DEPTH, so pickling (the loader process
    sends summaries that way) and every recursive view still work."""
    name = "a." * 2000 + "w"
    path = raw_safetensors(tmp_path / "deep.safetensors", {name: {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                                                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, 16)
    summary = open_summary(path)
    check_contract(summary)
    assert summary.totals.params == 4
    assert max(depth for _, depth in summary.walk()) <= MAX_TREE_DEPTH
    assert [t.name for t in summary.tensors if t.numel == 3] == [name]
    assert pickle.loads(pickle.dumps(summary)).totals.params == 4


# --- ONNX ----------------------------------------------------------------------------------------------------


def constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(array, name))


def subgraph_model(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[np.ndarray], list[np.ndarray]]:
    """Weights held only by Constant nodes: at top level, in both If branches and in a Loop body (a VAD
    model's shape). Returns the model, the float arrays put in, the integer arrays put in."""
    floats = [rng.standard_normal(s).astype(np.float32) for s in ((4, 4), (4,), (4,), (4, 4))]
    ints = [np.array([1, 4], np.int64), np.array([0], np.int64)]
    then_branch = helper.make_graph(
        [constant("w_then", floats[1]), helper.make_node("Add", ["x", "w_then"], ["y_then"], name="add_then")],
        "then", [], [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [1, 4])])
    else_branch = helper.make_graph(
        [constant("w_else", floats[2]), constant("shape_else", ints[0]),
         helper.make_node("Reshape", ["w_else", "shape_else"], ["w_else_r"], name="reshape_else"),
         helper.make_node("Sub", ["x", "w_else_r"], ["y_else"], name="sub_else")],
        "else", [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [1, 4])])
    body = helper.make_graph(
        [constant("w_loop", floats[3]), constant("axes_loop", ints[1]),
         helper.make_node("MatMul", ["state_in", "w_loop"], ["state_out"], name="matmul_loop"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond_loop")],
        "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, 4])])
    nodes = [
        constant("w_top", floats[0]),
        helper.make_node("MatMul", ["x", "w_top"], ["h"], name="matmul_top"),
        helper.make_node("ReduceSum", ["h"], ["s"], name="sum", keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
        helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Loop", ["trip", "", "y"], ["z"], name="loop", body=body),
    ]
    graph = helper.make_graph(
        nodes, "vad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                     numpy_helper.from_array(np.array(3, np.int64), "trip")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, [*floats, np.array(0.0, np.float32)], [*ints, np.array(3, np.int64)]


def test_onnx_constants_in_subgraphs_are_counted(tmp_path: Path) -> None:
    model, floats, ints = subgraph_model(np.random.default_rng(0))
    path = tmp_path / "vad.onnx"
    onnx.save(model, path)
    summary = open_summary(path)
    check_contract(summary)
    assert summary.totals.params == sum(a.size for a in floats)
    assert summary.totals.param_bytes == sum(a.nbytes for a in floats)
    assert summary.totals.buffers == sum(a.size for a in ints)
    assert summary.node("branch").type == "If"
    assert summary.node("branch.then_branch").type == "Graph"
    assert summary.node("branch.else_branch.reshape_else").type == "Reshape"
    assert summary.node("loop.body.matmul_loop").type == "MatMul"
    assert summary.node("loop.body").total.params == floats[3].size
    assert summary.node("branch").total.params == floats[1].size + floats[2].size


@pytest.mark.parametrize(("dims", "raw", "fragment"), [
    ([10**9, 10**9], None, "holds 0 values"),
    ([2**62, 4], None, "holds 0 values"),
    ([-5, 8], None, "negative dimension"),
    ([1000, 1000], b"\0" * 512, "holds 512 bytes"),
])
def test_onnx_dims_the_data_cannot_hold_are_refused(tmp_path: Path, dims: list[int], raw: bytes | None,
                                                    fragment: str) -> None:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    if raw is not None:
        weight.raw_data = raw
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="add")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[weight])
    path = tmp_path / "dims.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(CorruptFile, match=r"^dims\.onnx: tensor 'w' .*\.$") as err:
        open_summary(path)
    assert fragment in str(err.value)
    if dims == [-5, 8]:
        one_sentence(path, "negative dimension")


def test_onnx_external_length_that_disagrees_with_the_shape_is_refused(tmp_path: Path) -> None:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1000, 1000], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", "512")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[weight])
    path = tmp_path / "ext.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(CorruptFile, match=r"external data is 512 bytes long"):
        open_summary(path)


def test_a_200000_node_chain_opens(tmp_path: Path) -> None:
    """Every node has the same name: making names unique was quadratic (minutes); now linear."""
    n = 200_000
    graph = onnx.GraphProto(name="chain")
    previous = "x"
    for i in range(n):
        node = graph.node.add()
        node.op_type, node.name = "Add", "Add"
        node.input.extend([previous, "b"])
        node.output.append(f"t{i}")
        previous = f"t{i}"
    graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]))
    graph.output.append(helper.make_tensor_value_info(previous, TensorProto.FLOAT, [4]))
    graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "b"))
    path = tmp_path / "chain.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    summary = open_summary(path)
    assert summary.node_count == n + 1
    assert summary.metadata["nodes"] == n
    assert summary.totals.params == 4
    assert f"Add_{n - 1}" in summary


# --- GGUF ----------------------------------------------------------------------------------------------------


def gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf_file(path: Path, kvs: list[bytes], body: bytes = b"", tail: int = 0) -> Path:
    """A GGUF v3 header with these key/value entries and no tensors, then `body` and `tail` zero bytes."""
    with path.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs) + body)
        f.truncate(f.tell() + tail)  # sparse zeros
    return path


def gguf_kv(key: str, value_type: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", value_type) + payload


def test_gguf_array_count_past_the_file_is_refused(tmp_path: Path) -> None:
    path = gguf_file(tmp_path / "count.gguf", [gguf_kv("general.architecture", 8, gguf_string("llama")),
                                               gguf_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2**40))],
                     tail=64)
    with pytest.raises(CorruptFile, match=r"^count\.gguf: .*tokenizer\.ggml\.tokens.*past the end of the file"):
        open_summary(path)
    one_sentence(path, "tokenizer.ggml.tokens")


def test_gguf_huge_valid_arrays_are_skipped_with_a_preview(tmp_path: Path) -> None:
    """30 million uint8 values and 2 million strings: valid, opened without materialising them."""
    n_bytes, n_strings = 30_000_000, 2_000_000
    strings = gguf_string("ab") * n_strings
    path = gguf_file(tmp_path / "big.gguf", [
        gguf_kv("general.architecture", 8, gguf_string("llama")),
        gguf_kv("big.values", 9, struct.pack("<IQ", 0, n_bytes) + b"\x07" * n_bytes),
        gguf_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, n_strings) + strings),
        gguf_kv("llama.block_count", 4, struct.pack("<I", 2)),
    ])
    summary = open_summary(path)
    assert summary.metadata["big.values"] == f"array of {n_bytes:,} uint8"
    assert summary.metadata["tokenizer.ggml.tokens"] == f"array of {n_strings:,} string"
    assert summary.metadata["llama.block_count"] == 2  # read after both arrays: they were skipped exactly
    assert summary.config["vocab_size"] == n_strings


def test_gguf_tensor_past_the_end_is_refused(tmp_path: Path) -> None:
    info = gguf_string("blk.0.w") + struct.pack("<I", 2) + struct.pack("<QQ", 4096, 4096) + struct.pack("<IQ", 0, 0)
    path = tmp_path / "cut.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info + b"\0" * 64)
    with pytest.raises(CorruptFile, match=r"^cut\.gguf: .*tensor 'blk\.0\.w'.*does not fit"):
        open_summary(path)


# --- Hugging Face folders ------------------------------------------------------------------------------------


def tiny_llama(tied: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=96, max_position_embeddings=64, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Llama with an untied lm_head, saved, and config.json without `architectures`."""
    model = tiny_llama(tied=False)
    folder = tmp_path_factory.mktemp("llama") / "llama"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder, model


def copy_folder(src: Path, dst: Path, **config_changes: object) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    config = json.loads((dst / "config.json").read_text())
    config.update(config_changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_no_architectures_picks_the_head_the_weights_hold(llama_folder) -> None:
    """lm_head.weight was dropped into metadata when the bare LlamaModel was built: 6.61e9 for a 6.74e9 file."""
    folder, model = llama_folder
    summary = open_summary(folder)
    check_contract(summary)
    assert summary.root.type == "LlamaForCausalLM"
    assert summary.totals.params == sum(p.numel() for p in model.parameters())
    assert summary.node("lm_head").total.params == model.lm_head.weight.numel()
    assert any("names no architecture" in note and "LlamaForCausalLM" in note for note in summary.notes)


def test_tensors_the_class_lacks_are_in_the_tree_and_totals(llama_folder, tmp_path: Path) -> None:
    folder, model = llama_folder
    target = copy_folder(folder, tmp_path / "extra")
    state = load_file(target / "model.safetensors")
    extra = torch.randn(5, 32)
    state["value_head.weight"] = extra
    dropped = state.pop("model.norm.weight")
    save_file(state, target / "model.safetensors", metadata={"format": "pt"})
    summary = open_summary(target)
    check_contract(summary)
    expected = sum(p.numel() for p in model.parameters()) + extra.numel() - dropped.numel()
    assert summary.totals.params == expected
    assert summary.node("value_head").total.params == extra.numel()
    assert "model.norm.weight" not in {t.name for t in summary.tensors}
    assert any("value_head.weight" in note and "counted" in note for note in summary.notes)


def test_ten_thousand_layers_over_two_is_not_built(llama_folder, tmp_path: Path) -> None:
    folder, model = llama_folder
    target = copy_folder(folder, tmp_path / "deep", num_hidden_layers=10_000)
    summary = open_summary(target)
    assert summary.totals.params == sum(p.numel() for p in model.parameters())
    assert summary.root.type == ""  # the names tree
    assert any("num_hidden_layers 10,000" in note and "names" in note for note in summary.notes)


def test_zero_heads_opens_the_names_tree_with_a_note(llama_folder, tmp_path: Path) -> None:
    folder, model = llama_folder
    target = copy_folder(folder, tmp_path / "zero", num_attention_heads=0)
    summary = open_summary(target)
    assert summary.totals.params == sum(p.numel() for p in model.parameters())
    assert any("ZeroDivisionError" in note and "tree of tensor names" in note for note in summary.notes)


def test_config_transformers_refuses_opens_the_names_tree(llama_folder, tmp_path: Path) -> None:
    folder, model = llama_folder
    target = copy_folder(folder, tmp_path / "strict", hidden_act=5)
    summary = open_summary(target)
    assert summary.totals.params == sum(p.numel() for p in model.parameters())
    assert any("hidden_act" in note and "expected str" in note for note in summary.notes)


@pytest.mark.parametrize(("link", "fragment"), [("config.json", "points back to itself"), ("/dev/zero", "a device")])
def test_config_json_that_is_a_loop_or_a_device_is_one_sentence(llama_folder, tmp_path: Path, link: str,
                                                               fragment: str) -> None:
    folder, _ = llama_folder
    target = copy_folder(folder, tmp_path / "cfg")
    (target / "config.json").unlink()
    (target / "config.json").symlink_to(link)
    with pytest.raises(CorruptFile, match=rf"^cfg: its config\.json is .*{fragment}"):
        open_summary(target)
    one_sentence(target, fragment)


def test_quantised_folder_keeps_integer_weights_as_parameters(tmp_path: Path) -> None:
    state = {"layer.weight": torch.randint(-127, 127, (16, 8), dtype=torch.int8), "layer.scale": torch.ones(16),
             "layer.index": torch.arange(4)}
    for name, quantised in (("plain", False), ("quant", True)):
        folder = tmp_path / name
        folder.mkdir()
        config = {"model_type": "mystery-net"}
        if quantised:
            config["quantization_config"] = {"quant_method": "mystery", "bits": 8}
        (folder / "config.json").write_text(json.dumps(config))
        save_file(state, folder / "model.safetensors")
        summary = open_summary(folder)
        floats = sum(t.numel() for t in state.values() if t.is_floating_point())
        int8 = state["layer.weight"].numel()
        ints = int8 + state["layer.index"].numel()
        assert summary.totals.params == (floats + ints if quantised else floats), name
        assert summary.totals.buffers == (0 if quantised else ints), name


# --- paths and the guard -------------------------------------------------------------------------------------


def test_a_named_pipe_is_refused_before_anything_opens_it(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedFile, match=r"^model\.safetensors: it is a named pipe"):
        find_loader(fifo)
    one_sentence(fifo, "named pipe")


def test_a_self_linked_file_is_named_as_such(tmp_path: Path) -> None:
    link = tmp_path / "loop.onnx"
    link.symlink_to(link.name)
    with pytest.raises(CorruptFile, match=r"^loop\.onnx: it is a symbolic link that points back to itself\.$"):
        find_loader(link)


@pytest.mark.parametrize("error", [ZeroDivisionError("integer division or modulo by zero"), RecursionError("deep"),
                                   LookupError("x")])
def test_guard_turns_stray_library_errors_into_one_sentence(tmp_path: Path, error: Exception) -> None:
    def explode(path: Path, options: LoadOptions):
        yield from ()
        raise error

    spec = LoaderSpec("boom", explode, (), 0, None, False, "a test format")
    with pytest.raises(LayerScopeError, match=r"^model\.bin: .*\.$") as err:
        drive(_guarded(spec, tmp_path / "model.bin", LoadOptions()))
    assert "\n" not in str(err.value)


def test_memory_stays_bounded_on_hostile_files(tmp_path: Path, llama_folder) -> None:
    """Peak RSS growth of one fresh process opening each hostile file after the frameworks are imported."""
    folder, _ = llama_folder
    deep = copy_folder(folder, tmp_path / "deep", num_hidden_layers=1_000_000)
    zero = copy_folder(folder, tmp_path / "zero")
    (zero / "config.json").unlink()
    (zero / "config.json").symlink_to("/dev/zero")
    name = raw_safetensors(tmp_path / "name.safetensors", {"a." * 50_000: {"dtype": "F32", "shape": [1],
                                                                            "data_offsets": [0, 4]}}, 4)
    array = gguf_file(tmp_path / "array.gguf", [gguf_kv("big", 9, struct.pack("<IQ", 4, 30_000_000))],
                      tail=120_000_000)
    dims = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**9, 10**9])
    graph = helper.make_graph([], "g", [], [], initializer=[dims])
    (tmp_path / "dims.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    paths = [deep, zero, name, array, tmp_path / "dims.onnx"]
    script = textwrap.dedent("""
        import resource, sys
        import gguf, onnx, torch, transformers
        from analyzers.loaders import LoadOptions, open_model
        from analyzers.tasks import drive
        from analyzers.errors import LayerScopeError
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in sys.argv[1:]:
            try:
                drive(open_model(path, LoadOptions()))
            except LayerScopeError:
                pass
            print(path, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    growth = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines()}
    assert len(growth) == len(paths), done.stdout
    assert max(growth.values()) < 1024, growth  # MiB
