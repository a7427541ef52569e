"""safetensors: single files and sharded `*.safetensors.index.json`; header only, no tensor data read."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from analyzers.dtypes import bytes_for, canonical_dtype, dtype_bits
from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.nametree import build_name_tree, is_buffer_name
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

MAX_HEADER = 512 * 1024 * 1024  # the reference implementation refuses headers above 100 MB


def sniff_safetensors(path: Path) -> bool:
    """8-byte little-endian header length that fits the file, then a JSON object."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def read_header(path: Path) -> tuple[dict, int]:
    """The parsed JSON header and the offset where tensor data starts. Reads 8 + len(header) bytes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CorruptFile(sentence(path, "the file is shorter than a safetensors header"))
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise CorruptFile(sentence(path, f"the header length ({n:,} bytes) runs past the end of the file "
                                             f"({size:,} bytes); the file is truncated or not safetensors"))
        if n > MAX_HEADER:
            raise CorruptFile(sentence(path, f"the header claims {n:,} bytes, more than any real safetensors header"))
        blob = f.read(n)
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFile(sentence(path, f"the safetensors header is not valid JSON ({exc.__class__.__name__})")) from None
    if not isinstance(header, dict):
        raise CorruptFile(sentence(path, "the safetensors header is not a JSON object"))
    return header, 8 + n


def header_tensors(path: Path, header: dict, data_start: int) -> list[TensorInfo]:
    """TensorInfos for every entry of a safetensors header, validated against the file size."""
    data_size = path.stat().st_size - data_start
    out: list[TensorInfo] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = canonical_dtype(entry["dtype"])
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CorruptFile(sentence(path, f"the header entry for '{name}' lacks dtype, shape or data_offsets")) from None
        if any(d < 0 for d in shape) or not 0 <= begin <= end:
            raise CorruptFile(sentence(path, f"the header entry for '{name}' has a negative shape or offsets"))
        if end > data_size:
            raise CorruptFile(sentence(path, f"tensor '{name}' ends at byte {end:,} but the data region has only "
                                             f"{data_size:,} bytes; the file is truncated"))
        t = TensorInfo(name=name, shape=shape, dtype=dtype)
        if dtype_bits(dtype) is not None and end - begin != bytes_for(t.numel, dtype):
            raise CorruptFile(sentence(path, f"tensor '{name}' spans {end - begin:,} bytes but {shape} {dtype} needs "
                                             f"{bytes_for(t.numel, dtype):,}"))
        if is_buffer_name(name):
            t = TensorInfo(name=name, shape=shape, dtype=dtype, kind="buffer", trainable=False)
        out.append(t)
    return out


def read_index(path: Path) -> dict[str, str]:
    """`weight_map` of a `*.safetensors.index.json` (or `.bin.index.json`): tensor name -> shard file."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptFile(sentence(path, "the shard index is not valid JSON")) from None
    except (KeyError, TypeError):
        raise CorruptFile(sentence(path, "the shard index has no 'weight_map' object")) from None
    return weight_map


def sniff_index(path: Path) -> bool:
    """A small JSON file with a weight_map that points at .safetensors shards."""
    if path.stat().st_size > 64 * 1024 * 1024:
        return False
    with path.open("rb") as f:
        head = f.read(1).lstrip()
    return head == b"{" and ".safetensors" in path.read_text(encoding="utf-8", errors="replace")


def shard_tensors(index_path: Path, weight_map: dict[str, str]) -> Steps[tuple[list[TensorInfo], list[Path], dict]]:
    """Read every shard header named by an index; yields one Progress per shard."""
    shards = list(dict.fromkeys(weight_map.values()))
    tensors: list[TensorInfo] = []
    metadata: dict = {}
    files: list[Path] = []
    for i, shard in enumerate(shards):
        yield Progress(i, len(shards), f"Reading header of {shard}")
        shard_path = index_path.parent / shard
        if not shard_path.exists():
            raise CorruptFile(sentence(index_path, f"the shard '{shard}' it names is missing"))
        header, start = read_header(shard_path)
        metadata.update(header.get("__metadata__") or {})
        tensors.extend(header_tensors(shard_path, header, start))
        files.append(shard_path)
    yield Progress(len(shards), len(shards), "Headers read")
    return tensors, files, metadata


@loader(
    "safetensors",
    patterns=("*.safetensors",),
    priority=20,
    sniff=sniff_safetensors,
    description="safetensors",
)
def open_safetensors(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Header only: 8-byte length, JSON header. Never reads tensor data."""
    yield Progress(0, 1, f"Reading header of {path.name}")
    header, start = read_header(path)
    tensors = header_tensors(path, header, start)
    yield Progress(1, 1, "Header read")
    return ModelSummary(
        source=SourceInfo(str(path), "safetensors", "", (str(path),), path.stat().st_size),
        root=build_name_tree(tensors),
        metadata={"safetensors_metadata": header.get("__metadata__") or {}},
        notes=("safetensors stores tensor names only: layer types are unknown (open the model's folder with its "
               "config.json, or pass --arch, for a typed tree).",),
    )


@loader(
    "safetensors-index",
    patterns=("*.safetensors.index.json",),
    priority=25,
    sniff=sniff_index,
    description="sharded safetensors index",
)
def open_safetensors_index(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Sharded checkpoint: read the index, then every shard's header."""
    weight_map = read_index(path)
    tensors, files, metadata = yield from shard_tensors(path, weight_map)
    return ModelSummary(
        source=SourceInfo(str(path), "safetensors", "", tuple(str(f) for f in files),
                          sum(f.stat().st_size for f in files)),
        root=build_name_tree(tensors),
        metadata={"safetensors_metadata": metadata, "shards": len(files)},
        notes=("safetensors stores tensor names only: layer types are unknown.",),
    )
