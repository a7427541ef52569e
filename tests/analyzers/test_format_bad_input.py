"""A broken file of each format: `inspect` prints one sentence naming the file, exits 2, no traceback."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def truncated_weights_h5(tmp: Path) -> Path:
    import h5py
    import numpy as np

    path = tmp / "weights.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.ones((64, 64), np.float32))
    return _truncate(path, 1500)


def truncated_full_model_h5(tmp: Path) -> Path:
    import h5py
    import numpy as np

    path = tmp / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        f.create_dataset("model_weights/dense/dense/kernel", data=np.ones((64, 64), np.float32))
    return _truncate(path, 2000)


def truncated_keras_zip(tmp: Path) -> Path:
    path = tmp / "model.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {}}))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 4000)
    return _truncate(path, 2000)


def garbage_onnx(tmp: Path) -> Path:
    path = tmp / "garbage.onnx"
    path.write_bytes(b"\xde\xad\xbe\xef" * 256)
    return path


def broken_protobuf_onnx(tmp: Path) -> Path:
    path = tmp / "broken.onnx"
    path.write_bytes(b"\x08\x08\x3a\xff\xff\xff\xff\x0f" + b"\x01" * 64)  # ir_version 8, then a graph cut short
    return path


def bad_magic_gguf(tmp: Path) -> Path:
    path = tmp / "model.gguf"
    path.write_bytes(b"GGUX" + b"\x03\0\0\0" + b"\0" * 64)
    return path


def truncated_gguf(tmp: Path) -> Path:
    import gguf
    import numpy as np

    path = tmp / "cut.gguf"
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_block_count(1)
    writer.add_tensor("blk.0.attn_q.weight", np.ones((32, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return _truncate(path, 90)


def zip_that_is_not_torchscript(tmp: Path) -> Path:
    path = tmp / "model.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    return path


def broken_torchscript(tmp: Path) -> Path:
    path = tmp / "scripted.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("scripted/code/__torch__.py", "this is not TorchScript")
        zf.writestr("scripted/constants.pkl", b"garbage")
        zf.writestr("scripted/data.pkl", b"garbage")
    return path


def truncated_export(tmp: Path) -> Path:
    path = tmp / "program.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("program/archive_format", "pt2")
        zf.writestr("program/models/model.json", "{" * 2000)
    return _truncate(path, 600)


CASES: dict[str, Callable[[Path], Path]] = {
    "truncated .weights.h5": truncated_weights_h5,
    "truncated full-model .h5": truncated_full_model_h5,
    "truncated .keras zip": truncated_keras_zip,
    "garbage .onnx": garbage_onnx,
    "broken ONNX protobuf": broken_protobuf_onnx,
    "bad GGUF magic": bad_magic_gguf,
    "truncated GGUF": truncated_gguf,
    "zip that is not TorchScript": zip_that_is_not_torchscript,
    "broken TorchScript": broken_torchscript,
    "truncated .pt2": truncated_export,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_one_sentence(tmp_path: Path, case: str) -> None:
    path = CASES[case](tmp_path)
    done = run_cli("inspect", str(path), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert path.name in lines[0]
    assert lines[0].endswith(".")
    assert done.stdout == ""
