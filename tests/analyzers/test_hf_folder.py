"""Hugging Face folders: typed tree on the meta device, counts equal model.num_parameters()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, LlamaConfig, LlamaForCausalLM

from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import drive


def tiny_llama(tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=96, max_position_embeddings=64, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg)


def tiny_bert() -> BertForQuestionAnswering:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return BertForQuestionAnswering(cfg)


def open_summary(path: Path, **options):
    return drive(open_model(path, LoadOptions(**options)))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> tuple[Path, LlamaForCausalLM]:
    model = tiny_llama()
    out = tmp_path_factory.mktemp("llama")
    model.save_pretrained(out)
    return out, model


def test_llama_typed_tree_counts_equal_transformers(llama_dir) -> None:
    folder, model = llama_dir
    summary = open_summary(folder)
    assert summary.totals.params == model.num_parameters()
    assert summary.totals.params == sum(p.numel() for p in model.parameters())
    assert summary.root.type == "LlamaForCausalLM"
    assert summary.node("model.layers.0.self_attn").type == "LlamaAttention"
    assert summary.node("model.layers.1.mlp.down_proj").type == "Linear"
    head = [t for t in summary.tensors if t.name == "lm_head.weight"]
    assert head and head[0].shared_with == "model.embed_tokens.weight"
    assert summary.config["num_key_value_heads"] == 2


def test_names_only_needs_no_framework_and_counts_the_same(llama_dir) -> None:
    folder, model = llama_dir
    summary = open_summary(folder, names_only=True)
    assert summary.totals.params == model.num_parameters()
    assert summary.root.type == ""
    assert any("names-only" in n for n in summary.notes)


def test_bert_qa_sharded(tmp_path: Path) -> None:
    model = tiny_bert()
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    summary = open_summary(tmp_path)
    assert summary.totals.params == model.num_parameters()
    assert summary.root.type == "BertForQuestionAnswering"
    assert summary.node("bert.encoder.layer.0.attention.self").type == "BertSelfAttention"
    assert len(summary.source.files) > 1


def test_bin_weights(tmp_path: Path) -> None:
    model = tiny_bert()
    model.config.architectures = ["BertForQuestionAnswering"]
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    summary = open_summary(tmp_path)
    assert summary.totals.params == model.num_parameters()
    assert summary.metadata["weights"] == "bin"


def test_unknown_architecture_falls_back_to_name_tree(tmp_path: Path, llama_dir) -> None:
    folder, model = llama_dir
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(model_type="mystery-net", architectures=["MysteryNetForCausalLM"])
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    summary = open_summary(tmp_path)
    assert summary.totals.params == model.num_parameters()
    assert any("does not know" in n and "MysteryNetForCausalLM" in n for n in summary.notes)


def test_transformers_warnings_become_notes_not_stderr(tmp_path: Path) -> None:
    """A config whose special-token ids lie outside its vocabulary: transformers warns; the user reads it in the
    summary's notes (inspect and run), and stderr stays clean."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.cli_helpers import run_cli

    config = GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2, n_positions=32)  # bos/eos stay 50256
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    for _ in range(2):  # transformers says it once a process; each open still gets its note
        summary = open_summary(tmp_path / "gpt2")
        assert any("bos_token_id" in note and "50256" in note for note in summary.notes), summary.notes
    res = run_cli("inspect", str(tmp_path / "gpt2"))
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "Note: transformers: Model config: bos_token_id" in res.stdout
    res = run_cli("run", str(tmp_path / "gpt2"), "--input", "random:8", "--runs", "1")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "note:     transformers: Model config: eos_token_id" in res.stdout
    res = run_cli("run", str(tmp_path / "gpt2"), "--input", "hello world")  # no tokenizer files in the folder
    assert res.returncode == 2 and "no tokenizer or vocabulary" in res.stderr, res.stderr
