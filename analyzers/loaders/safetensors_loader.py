"""safetensors: single files and sharded `*.safetensors.index.json`; header only, no tensor data read."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.safe_files import (
    MAX_NAME_CHARS,
    METADATA_LIMIT,
    display_name,
    read_text_capped,
    regular_file,
)
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.dtypes import (
    SAFETENSORS_DTYPES,
    canonical_dtype,
    dtype_bits,
    is_floating,
    state_dict_kind,
)
from analyzers.summary.nametree import build_name_tree, is_buffer_name
from analyzers.tasks import Progress, Steps

MAX_HEADER = 100_000_000  # the reference implementation refuses a longer header ("header too large")
MAX_TENSORS = 300_000  # per file; the largest real checkpoints hold about 100,000 in all their shards


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
    size = regular_file(path).st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CorruptFile(sentence(path, "the file is shorter than a safetensors header"))
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise CorruptFile(sentence(path, f"the header length ({n:,} bytes) runs past the end of the file "
                                             f"({size:,} bytes); the file is truncated or not safetensors"))
        if n > MAX_HEADER:
            raise CorruptFile(sentence(path, f"the header claims {n:,} bytes, more than the {MAX_HEADER:,} the "
                                             "safetensors format allows"))
        blob = f.read(n)
    entries = blob.count(b'"data_offsets"')
    if entries > MAX_TENSORS:  # counted before parsing: a 100 MB header of empty tensors parses to gigabytes
        raise CorruptFile(sentence(path, f"the header lists {entries:,} tensors, more than the {MAX_TENSORS:,} "
                                         "LayerScope reads from one file"))
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFile(sentence(path, f"the safetensors header is not valid JSON ({exc.__class__.__name__})")) from None
    except RecursionError:
        raise CorruptFile(sentence(path, "the safetensors header nests JSON deeper than any header does")) from None
    if not isinstance(header, dict):
        raise CorruptFile(sentence(path, "the safetensors header is not a JSON object"))
    return header, 8 + n


def _is_int(value: object) -> bool:
    return type(value) is int  # JSON true/false parse to bool, a subclass of int; 2.5 is not a size


def _entry(path: Path, name: str, entry: object) -> tuple[str, tuple[int, ...], int, int]:
    """(canonical dtype, shape, begin, end) of one header entry, each checked against what the format allows."""
    shown = display_name(name, 80)
    if len(name) > MAX_NAME_CHARS:
        raise CorruptFile(sentence(path, f"a tensor name is {len(name):,} characters long ('{shown}'), more than "
                                         f"the {MAX_NAME_CHARS:,} any real name has"))
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise CorruptFile(sentence(path, f"the header entry for '{shown}' lacks dtype, shape or data_offsets"))
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in SAFETENSORS_DTYPES:
        raise CorruptFile(sentence(path, f"tensor '{shown}' has dtype {display_name(json.dumps(code), 40)}, which "
                                         "is not a safetensors dtype"))
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise CorruptFile(sentence(path, f"tensor '{shown}' has shape {display_name(json.dumps(shape), 80)}, "
                                         "not a list of whole numbers"))
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(x) for x in offsets):
        raise CorruptFile(sentence(path, f"tensor '{shown}' has data_offsets "
                                         f"{display_name(json.dumps(offsets), 80)}, not two whole numbers"))
    begin, end = offsets
    if any(d < 0 for d in shape) or not 0 <= begin <= end:
        raise CorruptFile(sentence(path, f"the header entry for '{shown}' has a negative shape or offsets"))
    return canonical_dtype(code), tuple(shape), begin, end


def header_tensors(path: Path, header: dict, data_start: int, *, quantized: bool = False) -> list[TensorInfo]:
    """TensorInfos for every entry of a safetensors header, validated against the format and the file size.

    Every tensor must lie inside the file, span exactly numel x itemsize bytes and overlap no other
    (so no shape can claim more elements than the bytes on disk hold). Integer and bool tensors are
    buffers unless `quantized` (a checkpoint with a quantisation config)."""
    data_size = regular_file(path).st_size - data_start
    out: list[TensorInfo] = []
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, begin, end = _entry(path, name, entry)
        shown = display_name(name, 80)
        if end > data_size:
            raise CorruptFile(sentence(path, f"tensor '{shown}' ends at byte {end:,} but the data region has only "
                                             f"{data_size:,} bytes; the file is truncated"))
        numel = math.prod(shape)
        bits = dtype_bits(dtype) or 8
        if numel * bits != (end - begin) * 8:
            count = f"{numel:,}" if numel < 10**15 else f"{numel:.3g}"
            raise CorruptFile(sentence(path, f"tensor '{shown}' declares {count} {dtype} elements "
                                             f"(shape {display_name(list(shape), 80)}) but spans {end - begin:,} bytes "
                                             "of data"))
        if begin < end:
            spans.append((begin, end, name))
        buffer = is_buffer_name(name) or state_dict_kind(dtype, quantized=quantized) == "buffer"
        out.append(TensorInfo(name=name, shape=shape, dtype=dtype, kind="buffer" if buffer else "param",
                              trainable=not buffer))
    spans.sort()
    for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise CorruptFile(sentence(path, f"tensors '{display_name(a, 60)}' and '{display_name(b, 60)}' claim the "
                                             "same bytes; a safetensors file stores each tensor once"))
    return out


def layout_notes(path: Path, header: dict, data_start: int, tensors: list[TensorInfo]) -> list[str]:
    """Notes on a header the reference reader would refuse although every tensor's data is intact."""
    notes: list[str] = []
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        notes.append(f"{path.name}: its __metadata__ is not a map of strings (safetensors' own reader refuses the "
                     "file); it is ignored here.")
    data_size = regular_file(path).st_size - data_start
    unclaimed = data_size - sum(t.nbytes for t in tensors)
    if unclaimed > 0:
        notes.append(f"{path.name}: {unclaimed:,} bytes of its data region belong to no tensor (safetensors' own "
                     "reader refuses such a file, so running it will fail); the tensors themselves are intact.")
    return notes


def header_metadata(header: dict) -> dict[str, str]:
    """The `__metadata__` map of a header, or {} when it is absent or not a map of strings."""
    meta = header.get("__metadata__")
    if isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values()):
        return meta
    return {}


def read_index(path: Path) -> dict[str, str]:
    """`weight_map` of a `*.safetensors.index.json` (or `.bin.index.json`): tensor name -> shard file."""
    try:
        index = json.loads(read_text_capped(path, METADATA_LIMIT, "the shard index"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (json.JSONDecodeError, RecursionError):
        raise CorruptFile(sentence(path, "the shard index is not valid JSON")) from None
    except (KeyError, TypeError):
        raise CorruptFile(sentence(path, "the shard index has no 'weight_map' object")) from None
    for shard in dict.fromkeys(weight_map.values()):
        if not isinstance(shard, str) or not shard or shard != Path(shard).name or shard in (".", ".."):
            raise CorruptFile(sentence(path, f"the shard index names {display_name(json.dumps(shard), 80)} as a "
                                             "shard; shards are plain file names in the index's folder"))
    return weight_map


def sniff_index(path: Path) -> bool:
    """A small JSON file with a weight_map that points at .safetensors shards."""
    if path.stat().st_size > METADATA_LIMIT:
        return False
    with path.open("rb") as f:
        head = f.read(1).lstrip()
    return head == b"{" and ".safetensors" in path.read_text(encoding="utf-8", errors="replace")


def shard_tensors(index_path: Path, weight_map: dict[str, str], *,
                  quantized: bool = False) -> Steps[tuple[list[TensorInfo], list[Path], dict]]:
    """Read every shard header named by an index; yields one Progress per shard."""
    shards = list(dict.fromkeys(weight_map.values()))
    tensors: list[TensorInfo] = []
    metadata: dict = {}
    files: list[Path] = []
    seen: dict[str, str] = {}
    for i, shard in enumerate(shards):
        yield Progress(i, len(shards), f"Reading header of {shard}")
        shard_path = index_path.parent / shard
        if not shard_path.exists():
            raise CorruptFile(sentence(index_path, f"the shard '{display_name(shard)}' it names is missing"))
        header, start = read_header(shard_path)
        metadata.update(header_metadata(header))
        for t in header_tensors(shard_path, header, start, quantized=quantized):
            if t.name in seen:
                raise CorruptFile(sentence(index_path, f"tensor '{display_name(t.name, 80)}' is stored in both "
                                                       f"{display_name(seen[t.name])} and {display_name(shard)}; "
                                                       "which one a reader takes is ambiguous"))
            seen[t.name] = shard
            tensors.append(t)
        files.append(shard_path)
    yield Progress(len(shards), len(shards), "Headers read")
    return tensors, files, metadata


@loader(
    "safetensors",
    patterns=("*.safetensors",),
    priority=20,
    sniff=sniff_safetensors,
    description="safetensors",
    runs="torch",
    graph="weights-header",
)
def open_safetensors(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Header only: 8-byte length, JSON header. Never reads tensor data."""
    yield Progress(0, 1, f"Reading header of {path.name}")
    header, start = read_header(path)
    tensors = header_tensors(path, header, start)
    notes = ["safetensors stores tensor names only: layer types are unknown (open the model's folder with its "
             "config.json, or pass --arch, for a typed tree).", *layout_notes(path, header, start, tensors)]
    if any(t.kind == "buffer" and not is_floating(t.dtype) for t in tensors):
        notes.append("Integer and bool tensors (index tables, masks) are counted as buffers: they cannot be "
                     "trainable parameters.")
    yield Progress(1, 1, "Header read")
    return ModelSummary(
        source=SourceInfo(str(path), "safetensors", "", (str(path),), path.stat().st_size),
        root=build_name_tree(tensors),
        metadata={"safetensors_metadata": header_metadata(header)},
        notes=tuple(notes),
    )


@loader(
    "safetensors-index",
    patterns=("*.safetensors.index.json",),
    priority=25,
    sniff=sniff_index,
    description="sharded safetensors index",
    runs="torch",
    graph="weights-header",
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
