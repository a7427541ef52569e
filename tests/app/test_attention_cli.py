"""`layerscope attention` as a user types it on the bundled transformer text classifier, BERT QA and ViT: the .npz
equals the frameworks' own weights, the JSON document, the PNG, and one-sentence errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.cli import main
from tests.cli_helpers import run_cli
from tests.zoo_helpers import zoo_or_skip

FP16 = 1e-3


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_transformer_text_classifier_file_equals_its_own_attention_weights(capsys, tmp_path):
    from analyzers.explain.inputs import sample_input
    from analyzers.runtime import load_live_model

    entry = zoo_or_skip("transformer_text_torch")
    out = tmp_path / "att.npz"
    code, stdout, err = cli(capsys, "attention", str(entry.file), "--out", str(out), "--rollout", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["schema"] == "layerscope.attention/1" and doc["route"] == "torch-mha" and doc["heads"] == 4
    assert [layer["shape"] for layer in doc["layers"]] == [[4, 64, 64], [4, 64, 64]]
    assert doc["maps"][:4] == ["tokens", "layer_names", "layer_kinds", "layer_indices"]
    assert {"attention_0", "attention_1", "mean_0", "rollout", "rollout_progression"} <= set(doc["maps"])
    live = load_live_model(entry.file)
    ids = torch.from_numpy(sample_input(entry).array)
    with torch.no_grad():
        _, maps = live.module(ids, return_attention=True)  # the zoo class asks each layer for need_weights=True
    valid = (ids[0] != 0).numpy()
    with np.load(out, allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(doc["maps"])
        for i, ref in enumerate(maps):
            expected = torch.nan_to_num(ref[0]).numpy() * valid[None, :, None]
            np.testing.assert_allclose(saved[f"attention_{i}"].astype(np.float32), expected, atol=FP16)
        assert list(saved["tokens"][: int(valid.sum())]) == doc["tokens"][: int(valid.sum())]
        assert saved["rollout_progression"].shape == (2, 64, 64)
    assert doc["padding"] == int((~valid).sum()) and doc["tokens"][-1] == "[PAD]"


def test_bert_qa_one_layer_one_head_and_a_png(capsys, tmp_path):
    from transformers import BertForQuestionAnswering

    from analyzers.explain.inputs import sample_input

    entry = zoo_or_skip("bert_qa")
    out, png = tmp_path / "qa.npz", tmp_path / "qa.png"
    code, stdout, err = cli(capsys, "attention", str(entry.file), "--layer", "1", "--head", "3", "--out", str(out),
                            "--png", str(png))
    assert code == 0, err
    assert "capture:  hf, 2 attention layers, up to 4 heads" in stdout and "answer:" in stdout
    inp = sample_input(entry)
    model = BertForQuestionAnswering.from_pretrained(str(entry.file), attn_implementation="eager").eval()
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(inp.array), output_attentions=True,
                    **{k: torch.from_numpy(v) for k, v in inp.extras.items()}).attentions[1][0, 3].numpy()
    valid = inp.extras["attention_mask"][0] > 0
    with np.load(out, allow_pickle=False) as saved:
        assert "attention_0" not in saved.files and "attention_1" not in saved.files
        np.testing.assert_allclose(saved["attention_1_head_3"].astype(np.float32),
                                   ref * valid[:, None] * valid[None, :], atol=FP16)
    from PIL import Image

    width, height = Image.open(png).size
    assert width > 300 and height > 300


def test_vit_class_token_grid_and_overlay(capsys, tmp_path):
    from analyzers.explain.inputs import sample_input
    from analyzers.runtime import load_live_model

    entry = zoo_or_skip("digits_vit_torch")
    out, png = tmp_path / "vit.npz", tmp_path / "vit.png"
    code, stdout, err = cli(capsys, "attention", str(entry.file), "--out", str(out), "--png", str(png), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["grid"] == [7, 7] and doc["prefix"] == 1 and doc["tokens"][:2] == ["[CLS]", "0,0"]
    live = load_live_model(entry.file)
    model = live.module
    x = torch.from_numpy(sample_input(entry).array)
    normed = []
    handles = [layer.norm1.register_forward_hook(lambda _m, _i, o: normed.append(o)) for layer in model.encoder.layers]
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            logits = model(x)
            last = model.encoder.layers[-1].self_attn(normed[-1], normed[-1], normed[-1], need_weights=True,
                                                       average_attn_weights=False)[1][0]
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for h in handles:
            h.remove()
    with np.load(out, allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["cls_grid"], last.mean(0)[0, 1:].reshape(7, 7).numpy(), atol=1e-5)
        assert saved["image"].shape == (28, 28)
    assert doc["prediction"]["top"][0]["index"] == int(logits.argmax())
    from PIL import Image

    assert Image.open(png).size[0] >= 224


@pytest.mark.parametrize("args, expected", [
    (["--layer", "9"], "The model has 2 attention layers (0 to 1); there is no layer 9."),
    (["--layer", "0", "--head", "4"], "Layer 0 has 4 heads (0 to 3); there is no head 4."),
    (["--out", "maps.npy"], "--out must name a .npz file."),
])
def test_bad_requests_are_one_sentence(capsys, args, expected):
    entry = zoo_or_skip("transformer_text_torch")
    code, _, err = cli(capsys, "attention", str(entry.file), *args)
    assert code == 2 and err.strip() == f"layerscope: error: {expected}"


def test_a_model_without_attention_from_a_shell():
    entry = zoo_or_skip("digits_cnn_torch")
    done = run_cli("attention", str(entry.file))
    assert done.returncode == 2
    assert done.stderr.strip() == ("layerscope: error: digits_cnn_torch.pt: it has no attention LayerScope can read "
                                   "(no Hugging Face attention, torch.nn.MultiheadAttention or attention weights the "
                                   "model exposes as last_attention).")
