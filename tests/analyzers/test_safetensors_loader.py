"""safetensors: counts equal torch's, shards merge, and not one byte of tensor data is read."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from analyzers.errors import CorruptFile
from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import drive
from tests.torch_fixtures import TinyCNN, buffer_count, param_count


def open_summary(path: Path):
    return drive(open_model(path, LoadOptions()))


def write_header_only(path: Path, tensors: dict[str, tuple[str, list[int], int]], data_bytes: int) -> int:
    """A real safetensors header followed by a sparse hole of `data_bytes` (no disk used)."""
    header, offset = {}, 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.truncate(8 + len(blob) + max(offset, data_bytes))
    return 8 + len(blob)


def test_counts_equal_torch(tmp_path: Path) -> None:
    model = TinyCNN()
    path = tmp_path / "cnn.safetensors"
    save_file(model.state_dict(), path)
    summary = open_summary(path)
    assert summary.totals.params == param_count(model)
    assert summary.totals.buffers == buffer_count(model)
    assert summary.totals.param_bytes == 4 * param_count(model)
    assert summary.source.format == "safetensors"
    rows_own = sum(n.own.params for n, _ in summary.walk())
    assert rows_own == summary.totals.params


def test_sharded_index_merges_shards(tmp_path: Path) -> None:
    model = TinyCNN()
    state = model.state_dict()
    names = list(state)
    first, second = names[: len(names) // 2], names[len(names) // 2 :]
    save_file({k: state[k] for k in first}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({k: state[k] for k in second}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in first}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in second})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    summary = open_summary(index)
    assert summary.totals.params == param_count(model)
    assert len(summary.source.files) == 2


def test_reads_header_only_from_a_file_larger_than_ram(tmp_path: Path) -> None:
    """64 GiB of declared tensor data in a sparse file: opening it must read only the header."""
    path = tmp_path / "huge.safetensors"
    gib = 1024**3
    tensors = {f"layers.{i}.weight": ("BF16", [32768, 32768], 2 * 32768 * 32768) for i in range(32)}
    header_len = write_header_only(path, tensors, 0)
    assert path.stat().st_size > 60 * gib
    io = Path("/proc/self/io")
    before = int(io.read_text().split("rchar: ")[1].split()[0]) if io.exists() else None
    summary = open_summary(path)
    if before is not None:
        after = int(io.read_text().split("rchar: ")[1].split()[0])
        assert after - before < header_len + 64 * 1024  # the header, a sniff, nothing more
    assert summary.totals.params == 32 * 32768 * 32768
    assert summary.totals.param_bytes == 64 * gib


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (struct.pack("<Q", 10**9) + b"{}", "past the end"),
        (struct.pack("<Q", 5) + b"{oops", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_corrupt_headers_are_one_sentence(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CorruptFile) as err:
        open_summary(path)
    assert "bad.safetensors" in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_data_region_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": torch.zeros(100, 100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 400])
    with pytest.raises(CorruptFile) as err:
        open_summary(path)
    assert "truncated" in str(err.value)
