"""Output shapes and FLOPs without weights, checked against real forward passes and the hand formulas.

Shapes from the meta-device pass must equal the shapes a real forward pass (real weights, forward hooks)
produces, on the bundled zoo and on transformers models built from small configs; FLOPs of Linear,
Conv2d and attention equal 2 × their multiply-adds counted by hand; the meta pass reads no weight byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analyzers import samples as S
from analyzers.errors import LayerScopeError
from analyzers.loaders import LoadOptions, open_model
from analyzers.loaders.shape_inference import infer_shapes
from analyzers.summary.shapes import apply_report, flops_by_type, input_from_text, own_flops, parse_shape_text
from analyzers.tasks import drive
from tests.cli_helpers import run_cli
from tests.zoo_helpers import zoo_or_skip


def real_shapes(model, *args, **kwargs) -> dict[str, tuple[int, ...]]:
    """Each module's first output shape in a real forward pass (hooks removed after)."""
    import torch

    from analyzers.loaders.shape_inference import _first_shape

    names = {id(m): n for n, m in model.named_modules()}
    seen: dict[str, tuple[int, ...]] = {}

    def hook(mod, _args, out):
        name = names[id(mod)]
        if name not in seen:
            shape = _first_shape(out)
            if shape is not None:
                seen[name] = shape

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return seen


def zoo_torch(entry):
    import torch

    from analyzers.loaders.arch import instantiate, parse_arch

    model = instantiate(parse_arch(S.resolved_arch(entry), entry.arch_kwargs), "cpu")
    model.load_state_dict(torch.load(entry.file, map_location="cpu", weights_only=True))
    return model.eval()


@pytest.mark.parametrize("model_id", ["digits_cnn_torch", "attention_seq_torch", "transformer_text_torch"])
def test_zoo_shapes_equal_a_real_forward_pass(model_id):
    import torch

    entry = zoo_or_skip(model_id)
    summary = drive(open_model(entry.file, LoadOptions(arch=S.resolved_arch(entry), arch_kwargs=entry.arch_kwargs)))
    report = drive(infer_shapes(summary))
    assert report.input.shape == (1, *entry.input.shape) and report.input.source == "the sample manifest"
    x = torch.from_numpy(np.stack([S.prepare_input(entry)]))
    real = real_shapes(zoo_torch(entry), x)
    assert real, model_id
    for path, shape in real.items():
        assert report.shapes[path] == shape, path
    assert report.total_flops > 0
    decorated = apply_report(summary, report)
    assert decorated.root.flops == report.total_flops
    assert decorated.node(next(iter(real))).output_shape == next(iter(real.values()))


def _hf_folder(tmp_path: Path, config, cls) -> tuple[Path, object]:
    import torch

    torch.manual_seed(0)
    model = cls(config).eval()
    folder = tmp_path / cls.__name__
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


def _small_configs():
    import transformers as T

    return [
        (T.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=120, max_position_embeddings=64), T.LlamaForCausalLM),
        (T.BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                      vocab_size=120, max_position_embeddings=64), T.BertForSequenceClassification),
        (T.GPT2Config(n_embd=48, n_layer=2, n_head=4, vocab_size=120, n_positions=64, bos_token_id=0,
                      eos_token_id=0), T.GPT2LMHeadModel),
        (T.ViTConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=4, intermediate_size=96,
                     image_size=32, patch_size=8, num_labels=3), T.ViTForImageClassification),
    ]


@pytest.mark.parametrize("index", range(4), ids=["llama", "bert", "gpt2", "vit"])
def test_transformers_shapes_equal_a_real_forward_pass(tmp_path, index):
    import torch

    config, cls = _small_configs()[index]
    folder, model = _hf_folder(tmp_path, config, cls)
    summary = drive(open_model(folder))
    report = drive(infer_shapes(summary, (2, 3, 32, 32) if index == 3 else (2, 16)))
    assert not report.shapes_reason, report.shapes_reason
    if index == 3:
        x = {"pixel_values": torch.zeros(2, 3, 32, 32)}
    else:
        x = {"input_ids": torch.zeros(2, 16, dtype=torch.long)}
    real = real_shapes(model, **x)
    compared = [p for p in real if p in report.shapes]
    assert len(compared) >= len(real) - 1  # every module the real pass saw (a rotary helper may differ)
    for path in compared:
        assert report.shapes[path] == real[path], path
    assert report.input.batch == 2


def test_default_text_input_comes_from_config(tmp_path):
    config, cls = _small_configs()[0]
    folder, _ = _hf_folder(tmp_path, config, cls)
    report = drive(infer_shapes(drive(open_model(folder))))
    assert report.input.shape == (1, 64)  # max_position_embeddings is below the 512-token default
    assert report.input.kind == "tokens" and report.input.source == "config.json"
    assert report.input_text == "batch 1 × 64 tokens"


ARCH = '''
import torch
from torch import nn
import torch.nn.functional as F


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, stride=2)
        self.fc = nn.Linear(8 * 5 * 5, 12)
        self.heads = 3

    def forward(self, x):
        h = self.fc(self.conv(x).flatten(1))  # (B, 12)
        q = h.reshape(h.shape[0], self.heads, 1, 4).expand(-1, -1, 6, -1)  # (B, 3 heads, 6 steps, 4)
        return F.scaled_dot_product_attention(q, q, q)
'''


def test_flops_equal_the_hand_formulas(tmp_path):
    import torch

    arch = tmp_path / "mixed.py"
    arch.write_text(ARCH)
    import importlib.util

    spec = importlib.util.spec_from_file_location("mixed_for_test", arch)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.Mixed().state_dict(), tmp_path / "mixed.pt")
    summary = drive(open_model(tmp_path / "mixed.pt", LoadOptions(arch=f"{arch}:Mixed")))
    report = drive(infer_shapes(summary, (2, 3, 10, 10)))
    batch = 2
    conv = 2 * (batch * 8 * 5 * 5) * (3 * 3 * 3)  # 2 × output elements × (kernel × input channels)
    fc = 2 * batch * (8 * 5 * 5) * 12  # 2·M·K·N
    attention = 2 * batch * 3 * 6 * 6 * 4 * 2  # Q·Kᵀ and the weighted sum of V, 2·B·H·T·T·d each
    assert report.flops["conv"] == conv
    assert report.flops["fc"] == fc
    own = own_flops(summary.root, report.flops)
    assert own[""] == attention  # the attention runs in the root's own forward
    assert report.total_flops == conv + fc + attention
    assert report.shapes["conv"] == (2, 8, 5, 5) and report.shapes[""] == (2, 3, 6, 4)
    assert dict(flops_by_type(summary.root, report.flops)) == {"Conv2d": conv, "Linear": fc, "Mixed": attention}


def test_llama_attention_flops_by_hand(tmp_path):
    config, cls = _small_configs()[0]
    folder, _ = _hf_folder(tmp_path, config, cls)
    report = drive(infer_shapes(drive(open_model(folder)), (1, 16)))
    t, h, heads, kv, d = 16, 64, 4, 2, 16
    q_proj, kv_proj, o_proj = 2 * t * h * h, 2 * t * h * kv * d, 2 * t * h * h
    scores = 2 * heads * t * t * d * 2  # Q·Kᵀ and A·V over the 4 query heads (the 2 KV heads are repeated)
    assert report.flops["model.layers.0.self_attn.q_proj"] == q_proj
    assert report.flops["model.layers.0.self_attn.k_proj"] == kv_proj
    assert report.flops["model.layers.0.self_attn"] == q_proj + 2 * kv_proj + o_proj + scores
    mlp = 3 * 2 * t * h * 96
    assert report.flops["model.layers.0.mlp"] == mlp
    assert report.flops["lm_head"] == 2 * t * h * 120


def test_meta_pass_reads_no_weight_bytes(tmp_path):
    config, cls = _small_configs()[0]
    folder, _ = _hf_folder(tmp_path, config, cls)
    summary = drive(open_model(folder))
    before = drive(infer_shapes(summary, (1, 8)))
    weights = folder / "model.safetensors"
    header = 8 + int.from_bytes(weights.read_bytes()[:8], "little")
    with weights.open("r+b") as f:  # the data region is gone: any read of a weight would fail or be garbage
        f.truncate(header)
    after = drive(infer_shapes(summary, (1, 8)))
    assert after.shapes == before.shapes and after.flops == before.flops
    weights.unlink()  # not even the header is needed any more
    assert drive(infer_shapes(summary, (1, 8))).flops == before.flops


def test_keras_flops_by_hand_and_another_input_size():
    entry = zoo_or_skip("digits_cnn_keras")
    summary = drive(open_model(entry.file))
    report = drive(infer_shapes(summary))
    conv = 2 * (26 * 26 * 32) * (3 * 3 * 1)
    dense = 2 * 5408 * 64
    classes = 2 * 64 * 10
    assert report.flops["conv"] == conv and report.flops["dense"] == dense and report.flops["classes"] == classes
    assert report.total_flops == conv + dense + classes
    torch_entry = zoo_or_skip("digits_cnn_torch")
    torch_summary = drive(open_model(torch_entry.file, LoadOptions(arch=S.resolved_arch(torch_entry))))
    assert drive(infer_shapes(torch_summary)).total_flops == report.total_flops  # the same network, twice
    text = drive(open_model(zoo_or_skip("text_cnn_keras").file))
    longer = drive(infer_shapes(text, (4, 80)))
    assert longer.shapes["conv1"] == (4, 76, 128) and longer.shapes["conv2"] == (4, 11, 128)
    assert longer.flops["conv1"] == 2 * (4 * 76 * 128) * (5 * 16)
    with pytest.raises(LayerScopeError, match="rank-2"):
        drive(infer_shapes(text, (4, 80, 1)))
    with pytest.raises(LayerScopeError, match="features"):
        drive(infer_shapes(summary, (1, 32, 32, 1)))  # the Dense after Flatten would not fit


def test_keras_transposed_convolution_and_batch_norm():
    entry = zoo_or_skip("gan_generator_keras")
    summary = drive(open_model(entry.file))
    report = drive(infer_shapes(summary))
    node = summary.node("up1")
    k = node.tensors[0].shape  # (5, 5, 128, 128): every input position meets the whole kernel
    assert report.flops["up1"] == 2 * (7 * 7) * math.prod(k)
    assert report.flops["project_bn"] == 2 * 6272  # inference batch norm: one multiply-add per value


def test_onnx_shapes_and_flops(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((6, 4), dtype=np.float32), "w")
    k = numpy_helper.from_array(np.ones((5, 3, 3, 3), dtype=np.float32), "k")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul"),
         helper.make_node("Conv", ["img", "k"], ["z"], name="/conv/Conv", pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7, 6]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [w, k])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    summary = drive(open_model(path))
    report = drive(infer_shapes(summary, (3, 7, 6)))
    assert report.shapes["fc.MatMul"] == (3, 7, 4)
    assert report.flops["fc.MatMul"] == 2 * (3 * 7 * 4) * 6
    assert report.shapes["conv.Conv"] == (1, 5, 8, 8)
    assert report.flops["conv.Conv"] == 2 * (5 * 8 * 8) * (3 * 3 * 3)
    assert report.total_flops == 2 * 84 * 6 + 2 * 320 * 27


def test_unknown_is_said_plainly(tmp_path):
    import torch

    torch.save({"w": torch.zeros(3, 3)}, tmp_path / "sd.pt")
    report = drive(infer_shapes(drive(open_model(tmp_path / "sd.pt"))))
    assert not report.shapes and report.total_flops is None
    assert "architecture" in report.shapes_reason and report.shapes_reason.endswith(".")
    module = torch.nn.Sequential(torch.nn.Linear(4, 2))
    torch.save(module, tmp_path / "full.pt")
    summary = drive(open_model(tmp_path / "full.pt"))
    assert "trust" in drive(infer_shapes(summary)).shapes_reason
    trusted = drive(infer_shapes(summary, (5, 4), trust=True))
    assert trusted.shapes["0"] == (5, 2) and trusted.total_flops == 2 * 5 * 4 * 2


def test_input_shape_text():
    assert parse_shape_text("1x3x224x224") == (1, 3, 224, 224)
    assert parse_shape_text("2 × 128") == (2, 128) and parse_shape_text("4,16") == (4, 16)
    for bad in ("", "1x0", "axb", "-1x3"):
        with pytest.raises(LayerScopeError, match="not a shape"):
            parse_shape_text(bad)
    tokens = input_from_text("2x64", None)
    assert tokens.kind == "tensor" and tokens.describe() == "batch 2 × 64"


def test_inspect_cli_shapes_flops_json_and_errors():
    entry = zoo_or_skip("digits_cnn_torch")
    result = run_cli("inspect", str(entry.file), "--json", "--shapes", "--flops", "--input-shape", "2x1x28x28")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["shapes"]["input"]["shape"] == [2, 1, 28, 28]
    layers = {layer["path"]: layer for layer in doc["layers"]}
    assert layers["conv"]["output_shape"] == [2, 32, 26, 26]
    assert layers["conv"]["flops"] == 2 * (2 * 32 * 26 * 26) * 9
    assert doc["shapes"]["total_flops"] == layers[""]["flops"]
    bad = run_cli("inspect", str(entry.file), "--flops", "--input-shape", "2x1x20")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("index", range(3), ids=["llama", "bert", "gpt2"])
def test_repeated_blocks_shortcut_equals_the_full_pass(index):
    """Running two of N identical transformer layers and filling in the rest gives exactly the full pass."""
    import torch

    from analyzers.loaders.shape_inference import repeated_blocks, run_on_meta
    from analyzers.summary.shapes import ShapeInput

    config, cls = _small_configs()[index]
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(config, key):
            setattr(config, key, 5)
    with torch.device("meta"):
        model = cls(config)
    assert len(repeated_blocks(model)) == 1
    inp = ShapeInput((2, 16), "int64", "tokens")
    fast = run_on_meta(model, inp, "hf", shortcut=True)
    full = run_on_meta(model, inp, "hf", shortcut=False)
    assert fast == full
    assert any(".4." in p for p in fast[0])  # the fifth layer has its figures too
