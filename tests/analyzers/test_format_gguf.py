"""GGUF: element counts and exact stored bytes equal what gguf.GGUFWriter wrote; metadata maps to a config."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import quantize

from analyzers.errors import CorruptFile
from analyzers.loaders import LoadOptions, find_loader, open_model
from analyzers.summary.memory import estimate_memory
from analyzers.tasks import drive
from tests.analyzers.test_contract import check_contract
from tests.cli_helpers import run_cli

Q = gguf.GGMLQuantizationType
LAYERS, HIDDEN, HEADS, KV_HEADS, VOCAB, FFN, CONTEXT = 2, 256, 4, 2, 96, 512, 512


def write_gguf(path: Path) -> dict[str, tuple[tuple[int, ...], int, str]]:
    """A tiny llama-shaped GGUF with F16, F32, Q8_0, Q4_0 and (pre-quantised raw) Q4_K tensors.

    Returns name -> (PyTorch-order shape, bytes written, GGML type name).
    """
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny")
    writer.add_block_count(LAYERS)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_token_list([f"tok{i}" for i in range(VOCAB)])
    written: dict[str, tuple[tuple[int, ...], int, str]] = {}

    def add(name: str, shape: tuple[int, ...], qtype) -> None:
        if qtype == Q.Q4_K:  # no numpy quantiser: raw blocks of the right size (144 bytes per 256 values)
            data = np.zeros(gguf.quant_shape_to_byte_shape(shape, qtype), np.uint8)
        else:
            data = quantize(rng.standard_normal(shape).astype(np.float32), qtype)
        raw = None if qtype in (Q.F32, Q.F16) else qtype
        writer.add_tensor(name, data, raw_dtype=raw)
        written[name] = (shape, int(data.nbytes), qtype.name)

    add("token_embd.weight", (VOCAB, HIDDEN), Q.F16)
    for b in range(LAYERS):
        add(f"blk.{b}.attn_norm.weight", (HIDDEN,), Q.F32)
        add(f"blk.{b}.attn_q.weight", (HIDDEN, HIDDEN), Q.Q8_0)
        add(f"blk.{b}.attn_k.weight", (HIDDEN * KV_HEADS // HEADS, HIDDEN), Q.Q4_0)
        add(f"blk.{b}.ffn_up.weight", (FFN, HIDDEN), Q.Q4_K)
    add("output_norm.weight", (HIDDEN,), Q.F32)
    add("output.weight", (VOCAB, HIDDEN), Q.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny GGUF and what was written into it, built once."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_gguf(path)


def test_counts_and_bytes_equal_what_was_written(model) -> None:
    path, written = model
    assert find_loader(path).name == "gguf"
    summary = drive(open_model(path, LoadOptions()))
    check_contract(summary)
    reader = gguf.GGUFReader(str(path))
    assert summary.totals.params == sum(int(t.n_elements) for t in reader.tensors)
    assert summary.totals.params == sum(int(np.prod(shape)) for shape, _, _ in written.values())
    assert summary.totals.param_bytes == sum(nbytes for _, nbytes, _ in written.values())
    tensors = {t.name: t for t in summary.tensors}
    for name, (shape, nbytes, _) in written.items():
        assert tensors[name].shape == shape  # PyTorch order, not GGUF's ne0-first
        assert tensors[name].nbytes == nbytes
    assert tensors["blk.0.attn_q.weight"].dtype == "q8_0"
    assert tensors["blk.0.attn_k.weight"].dtype == "q4_0"
    assert tensors["blk.0.ffn_up.weight"].dtype == "q4_K"
    assert tensors["token_embd.weight"].dtype == "float16"
    assert tensors["output_norm.weight"].dtype == "float32"
    assert tensors["blk.0.ffn_up.weight"].stored_bytes == FFN * HIDDEN // 256 * 144
    by_dtype = summary.totals.bytes_by_dtype
    assert set(by_dtype) == {"float16", "float32", "q8_0", "q4_0", "q4_K"}
    assert by_dtype["q4_K"] == sum(n for _, n, q in written.values() if q == "Q4_K")
    assert summary.is_prequantized


def test_tree_from_names_and_config_for_kv_cache(model) -> None:
    path, _ = model
    summary = drive(open_model(path, LoadOptions()))
    assert summary.root.type == "llama"
    assert [c.name for c in summary.node("blk").children] == ["0", "1"]
    assert {t.name for t in summary.node("blk.1.attn_q").tensors} == {"blk.1.attn_q.weight"}
    config = summary.config
    assert config["num_hidden_layers"] == LAYERS
    assert config["num_attention_heads"] == HEADS
    assert config["num_key_value_heads"] == KV_HEADS
    assert config["hidden_size"] == HIDDEN
    assert config["max_position_embeddings"] == CONTEXT
    assert config["head_dim"] == HIDDEN // HEADS
    assert config["vocab_size"] == VOCAB
    assert config["is_decoder"] is True
    report = estimate_memory(summary, batch=1, seq_len=100)
    assert report.kv_cache is not None
    assert report.inference["bfloat16"].bytes - report.weights["bfloat16"].bytes == \
        LAYERS * KV_HEADS * (HIDDEN // HEADS) * 100 * 2 * 2
    assert summary.metadata["general.name"] == "tiny"
    assert summary.metadata["tokenizer.ggml.tokens"] == f"array of {VOCAB} string"


def test_truncated_header_is_one_sentence(model, tmp_path: Path) -> None:
    path, _ = model
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptFile, match=r"^cut\.gguf: .*\.$"):
        drive(open_model(cut, LoadOptions()))


def test_cli_json_and_table(model) -> None:
    path, written = model
    done = run_cli("inspect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["source"]["format"] == "gguf"
    assert doc["totals"]["params"] == sum(int(np.prod(s)) for s, _, _ in written.values())
    assert doc["totals"]["bytes_by_dtype"]["q4_K"] > 0
    assert doc["memory"]["inference"]["kv_cache"]["layers"] == LAYERS
    table = run_cli("inspect", str(path), "--table")
    assert table.returncode == 0, table.stderr
    assert "blk" in table.stdout and "q4_K" in table.stdout
