"""`layerscope compare A B` through app.cli.main: the layerscope.compare/1 document, tables, drift, the same input
through both, and one-sentence errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from app.cli import main
from tests.zoo_helpers import zoo_or_skip


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def pair(tmp_path):
    """A small MLP and a copy whose second layer was moved by a known amount."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    a = {k: v.detach().clone() for k, v in model.state_dict().items()}
    b = {k: v.clone() for k, v in a.items()}
    b["2.weight"] = b["2.weight"] * 2.0
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt", a, b


def test_json_document_with_weights(capsys, pair):
    path_a, path_b, a, b = pair
    code, out, err = _cli(capsys, str(path_a), str(path_b), "--weights", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "layerscope.compare/1"
    assert doc["a"]["params"] == doc["b"]["params"] == sum(v.numel() for v in a.values())
    assert doc["alignment"]["matched"] == 2 and doc["alignment"]["only_a"] == doc["alignment"]["only_b"] == 0
    assert doc["totals"]["parameters"] == {"a": 172, "b": 172, "delta": 0, "delta_percent": 0.0}
    assert set(doc["memory"]) >= {"weights as stored", "inference float32", "training Adam fp32"}
    drift = doc["drift"]
    first = drift["layers"][0]  # ranked by relative change: the doubled layer
    assert (first["a"], first["b"]) == ("2", "2")
    wa = a["2.weight"].numpy().astype(np.float64)
    ba = np.concatenate([wa.ravel(), a["2.bias"].numpy()])
    bb = np.concatenate([2 * wa.ravel(), a["2.bias"].numpy()])
    assert first["own"]["relative_change"] == pytest.approx(np.linalg.norm(bb - ba) / np.linalg.norm(ba), rel=1e-6)
    assert drift["layers"][1]["own"]["relative_change"] == 0.0
    assert drift["model"]["elements"] == 172 and not drift["not_comparable"]
    assert doc["outputs"] is None and doc["attribution"] is None


def test_table_and_markdown(capsys, pair):
    path_a, path_b, *_ = pair
    code, out, _ = _cli(capsys, str(path_a), str(path_b), "--weights")
    assert code == 0
    assert "Aligned: 2 matched" in out and "Weight drift" in out and "Memory what-ifs" in out
    code, out, _ = _cli(capsys, str(path_a), str(path_b), "--markdown")
    assert code == 0 and "## Totals" in out and "| parameters | 172 | 172 | 0 |" in out


def test_keras_digits_against_its_torch_port_by_structure(capsys):
    keras, port = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_torch")
    code, out, err = _cli(capsys, str(keras.file), str(port.file), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["alignment"]["cross_framework"] and doc["only_a"] == ["image"] and doc["only_b"] == []
    rows = {(r["a"], r["b"]): r for r in doc["layers"]}
    assert rows[("dense", "fc1")]["renamed"] and rows[("classes", "fc2")]["paired_by"] == "signature"
    fc1 = {t["name"]: t for t in rows[("dense", "fc1")]["tensors"]}
    assert fc1["weight"]["shape_a"] == fc1["weight"]["shape_b"] == [64, 5408]
    assert "HWC -> CHW" in fc1["weight"]["layout"]


def test_int8_copy_shows_dtype_changes_and_dequantised_drift(capsys):
    base, int8 = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_int8_keras")
    code, out, err = _cli(capsys, str(base.file), str(int8.file), "--weights", "--json")
    assert code == 0, err
    doc = json.loads(out)
    dense = next(r for r in doc["layers"] if r["a"] == "dense")
    assert dense["status"] == "changed" and "kernel float32 → int8" in dense["changes"]
    assert doc["totals"]["bytes int8"]["b"] == 5408 * 64 + 64 * 10
    kernel = next(t for t in doc["drift"]["tensors"] if t["a"] == "dense.kernel")
    assert "kernel_scale" in kernel["dequantized"] and 0 < kernel["relative_change"] < 0.05


@pytest.mark.slow
def test_same_sample_through_both_with_maps_on_one_scale(capsys, tmp_path):
    keras, port = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_torch")
    png = tmp_path / "maps.png"
    code, out, err = _cli(capsys, str(keras.file), str(port.file), "--input", "sample:3", "--method", "saliency",
                          "--png", str(png), "--json")
    assert code == 0, err
    doc = json.loads(out)
    outputs = doc["outputs"]
    assert outputs["agreement"] is True and outputs["target_a"] == outputs["target_b"] == 3
    p, q = np.array([c["probability"] for c in outputs["top_a"]]), np.array([c["probability"] for c in outputs["top_b"]])
    assert p[0] > 0.9 and q[0] > 0.9 and outputs["kl_a_b"] >= 0
    assert doc["attribution"]["shared_scale"] > 0 and doc["attribution"]["sign"] == "absolute"
    from PIL import Image

    with Image.open(png) as image:
        assert image.width > 2.5 * image.height  # A, B and B - A side by side


@pytest.mark.parametrize("args, words", [
    (["missing_a.pt", "{b}"], "no such file"),
    (["{a}", "{b}", "--png", "maps.png"], "give --method too"),
    (["{a}", "{b}", "--depth", "-1"], "--depth"),
    (["{a}", "{b}", "--method", "nope"], "nope"),
    (["{a}", "{notmodel}"], "notes.txt"),
])
def test_bad_input_is_one_sentence_and_exit_2(capsys, pair, tmp_path, args, words):
    path_a, path_b, *_ = pair
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    args = [a.format(a=path_a, b=path_b, notmodel=notes) for a in args]
    code, out, err = _cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerscope: error:") and words in lines[0]
    assert "Traceback" not in err and out == ""
