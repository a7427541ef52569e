"""Memory what-ifs: checked against accelerate's estimator and against a real KV cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.commands.estimate import estimate_training_usage
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from analyzers.loaders import LoadOptions, open_model
from analyzers.summary.memory import estimate_memory, int4_bytes_per_param, kv_cache_spec
from analyzers.tasks import drive


def measured_cache_bytes(model, batch: int, seq: int) -> int:
    out = model(torch.randint(0, model.config.vocab_size, (batch, seq)), use_cache=True)
    cache = out.past_key_values
    return sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
               for layer in cache.layers)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=3, num_attention_heads=6,
                      num_key_value_heads=2, vocab_size=80, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder)
    return model, drive(open_model(folder, LoadOptions()))


def test_fp32_training_matches_accelerate(llama) -> None:
    model, summary = llama
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    report = estimate_memory(summary)
    reference = max(estimate_training_usage(fp32_bytes, "float32").values())
    assert report.training["fp32"].bytes == reference + report.buffer_bytes
    assert report.weights["float32"].bytes == fp32_bytes


def test_weight_rows_follow_bytes_per_param(llama) -> None:
    model, summary = llama
    n = model.num_parameters()
    report = estimate_memory(summary, int4_group=64)
    assert report.weights["bfloat16"].bytes == 2 * n
    assert report.weights["int8"].bytes == n
    assert report.weights["int4"].bytes == round(n * (0.5 + 2 / 64))
    assert int4_bytes_per_param(64) == 0.5 + 2 / 64
    assert "group" in report.weights["int4"].formula


@pytest.mark.parametrize(("batch", "seq"), [(1, 5), (3, 11)])
def test_kv_cache_equals_a_real_cache(llama, batch: int, seq: int) -> None:
    model, summary = llama
    with torch.no_grad():
        real = measured_cache_bytes(model, batch, seq)
    report = estimate_memory(summary, batch=batch, seq_len=seq)
    kv = report.kv_cache
    assert kv is not None and kv.kv_heads == 2
    assert kv.bytes(batch, seq, 4.0) == real
    weights = report.weights["float32"].bytes
    assert report.inference["float32"].bytes == weights + report.buffer_bytes + real


def test_gpt2_config_aliases(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=32)).eval()
    with torch.no_grad():
        real = measured_cache_bytes(model, 2, 9)
    spec = kv_cache_spec(model.config.to_dict())
    assert spec is not None and spec.bytes(2, 9, 4.0) == real


def test_encoder_models_have_no_kv_cache() -> None:
    assert kv_cache_spec({"model_type": "bert", "architectures": ["BertForQuestionAnswering"],
                          "num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 64}) is None


def test_default_sequence_length_is_capped(llama) -> None:
    _, summary = llama
    assert estimate_memory(summary).seq_len == 128
    big = dict(summary.config, max_position_embeddings=131072)
    assert estimate_memory(type(summary)(summary.source, summary.root, config=big)).seq_len == 4096
