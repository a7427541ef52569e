"""`inspect` as a user runs it: JSON schema, table, and one-sentence errors with exit code 2."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.cli_helpers import run_cli
from tests.torch_fixtures import TinyCNN, param_count


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory) -> tuple[Path, TinyCNN]:
    model = TinyCNN()
    path = tmp_path_factory.mktemp("cli") / "cnn.safetensors"
    save_file(model.state_dict(), path)
    return path, model


def test_json_schema(cnn_file) -> None:
    path, model = cnn_file
    res = run_cli("inspect", str(path), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "layerscope.summary/1"
    assert doc["source"]["format"] == "safetensors"
    assert doc["totals"]["params"] == param_count(model)
    assert set(doc["totals"]) >= {"params", "trainable_params", "non_trainable_params", "buffers", "param_bytes",
                                  "bytes_by_dtype"}
    layers = {row["path"]: row for row in doc["layers"]}
    assert layers[""]["params_total"] == param_count(model)
    assert layers["head"]["params"] == model.head.weight.numel() + model.head.bias.numel()
    assert sum(row["params"] for row in doc["layers"]) == doc["totals"]["params"]
    assert all(set(row) >= {"path", "type", "depth", "params", "params_total", "bytes_total", "output_shape", "flops"}
               for row in doc["layers"])
    mem = doc["memory"]
    assert mem["weights_by_dtype"]["float32"] == 4 * param_count(model)
    assert set(mem["weights_by_dtype"]) == {"float32", "bfloat16", "float16", "int8", "int4"}
    assert "fp32" in mem["training_adam"] and "formula" in mem["training_adam"]["fp32"]


def test_json_depth_limits_rows(cnn_file) -> None:
    path, _ = cnn_file
    doc = json.loads(run_cli("inspect", str(path), "--json", "--depth", "1").stdout)
    assert max(row["depth"] for row in doc["layers"]) == 1


def test_table_and_markdown(cnn_file) -> None:
    path, model = cnn_file
    table = run_cli("inspect", str(path), "--table")
    assert table.returncode == 0
    assert f"Total params: {param_count(model):,}" in table.stdout
    assert "├─features" in table.stdout and "training Adam fp32" in table.stdout
    md = run_cli("inspect", str(path), "--markdown")
    assert md.returncode == 0 and "| Layer | Type |" in md.stdout


def test_full_module_inspected_without_trust(tmp_path: Path) -> None:
    """A pickled module is read without running it, so `inspect` needs no --trust (running it still does)."""
    path = tmp_path / "full.pt"
    model = TinyCNN()
    torch.save(model, path)
    res = run_cli("inspect", str(path), "--json")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    doc = json.loads(res.stdout)
    assert doc["layers"][0]["type"] == "TinyCNN"
    assert doc["totals"]["params"] == param_count(model)


def _zip_without_pickle(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"not a pickle at all")


def _truncated_torch(path: Path) -> None:
    torch.save({"w": torch.zeros(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _unpicklable(path: Path) -> None:
    path.write_bytes(pickle.PROTO + b"\x05garbage-that-is-not-a-pickle")


CORRUPT_CASES = {
    "missing path": (lambda p: None, "does-not-exist.pt", "no such file"),
    "empty folder": (lambda p: p.mkdir(), "empty_dir", "folder holds no model"),
    "wrong extension": (lambda p: p.write_text("hello"), "notes.txt", "not a model format"),
    "empty file": (lambda p: p.write_bytes(b""), "empty.safetensors", "empty"),
    "header past end": (lambda p: p.write_bytes(struct.pack("<Q", 10**6) + b"{}"), "past.safetensors", "corrupted"),
    "bad json": (lambda p: p.write_bytes(struct.pack("<Q", 6) + b"{nope!"), "badjson.safetensors", "JSON"),
    "bad zip": (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "badzip.pt", "corrupted"),
    "zip without pickle": (_zip_without_pickle, "nopickle.pt", ""),
    "truncated torch": (_truncated_torch, "half.pt", ""),
    "unpicklable blob": (_unpicklable, "blob.pth", ""),
    "folder with bad config": (lambda p: (p.mkdir(), (p / "config.json").write_text("{broken")), "hfdir", "config.json"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CASES))
def test_bad_input_is_one_sentence_and_exit_2(tmp_path: Path, case: str) -> None:
    make, name, fragment = CORRUPT_CASES[case]
    path = tmp_path / name
    make(path)
    res = run_cli("inspect", str(path), timeout=120)
    assert res.returncode == 2, (case, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr
    assert len(err.splitlines()) == 1, err
    assert name in err
    assert fragment.lower() in err.lower()
    assert res.stdout == ""


def test_bad_option_values(cnn_file) -> None:
    path, _ = cnn_file
    res = run_cli("inspect", str(path), "--batch", "0")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("inspect", str(path), "--arch", "x:Y", "--arch-kwargs", "{bad")
    assert res.returncode == 2 and "--arch-kwargs" in res.stderr


@pytest.mark.parametrize("args", [["inspect", "x.pt", "--seq-len", "abc"], ["inspect", "x.pt", "--json", "--table"],
                                  ["run", "x.pt", "--top-k"], ["--tab"]])
def test_a_bad_command_line_is_one_line_and_exit_2(args) -> None:
    res = run_cli(*args)
    assert res.returncode == 2
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "error: argument" in res.stderr and "--help" in res.stderr
