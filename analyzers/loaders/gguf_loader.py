"""GGUF (llama.cpp) files: header only, read by our own bounded parser, never dequantised.

The header is read through a memory map: the key/value metadata and the tensor infos, nothing
else. `gguf.GGUFReader` is not used for it because it materialises every metadata array element
as a numpy view (a 30-million-entry array took 3.7 GB) and trusts every count (an array of 2^40
entries): here a count is checked against the bytes left before anything is read, big arrays are
skipped with a short preview kept, and each tensor's extent is checked against the file. Each
tensor keeps its quantisation type as dtype (`q4_K`, `q8_0`, `float16` ...) and its exact stored
bytes. GGUF lists dimensions fastest-first (ne0 first); shapes are reported in PyTorch order. The
metadata is also mapped onto Hugging Face config keys so the memory what-ifs can size the KV cache.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.safe_files import MAX_NAME_CHARS, display_name, regular_file
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.dtypes import dtype_bits
from analyzers.summary.nametree import build_name_tree
from analyzers.tasks import Progress, Steps

GGUF_MAGIC = b"GGUF"
PLAIN_TYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
               "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}
# Architectures that are not decoder-only language models (no KV cache to estimate).
ENCODER_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
                           "modern-bert", "t5encoder", "clip", "wavtokenizer-dec"})
ENCODER_DECODER_ARCHS = frozenset({"t5"})
# Rotary tables some converters store as tensors: data the model reads, not weights it learns.
BUFFER_SUFFIXES = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
MAX_LISTED = 64  # longer arrays (vocabularies, merges) are summarised, not copied into the metadata
MAX_KEPT_NUMBERS = 4096  # numeric arrays up to this long are kept whole (per-layer head counts)
MAX_STRING_KEPT = 1 << 16  # a metadata string (a chat template) is kept up to this many bytes
MAX_ARRAY_NESTING = 4
MAX_DIMS = 8  # GGML_MAX_DIMS is 4
MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, the smallest value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, dim count, type, offset
# GGUFValueType codes (the format's, fixed) -> struct codes of the scalars.
STRING, ARRAY = 8, 9
SCALAR_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
VALUE_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
                    8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
# GGUF key (after "<arch>.") -> Hugging Face config key.
CONFIG_KEYS = {
    "block_count": "num_hidden_layers",
    "context_length": "max_position_embeddings",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "vocab_size": "vocab_size",
    "rope.freq_base": "rope_theta",
    "expert_count": "num_local_experts",
    "expert_used_count": "num_experts_per_tok",
}


def sniff_gguf(path: Path) -> bool:
    """The four bytes GGUF."""
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def ggml_dtype(type_name: str) -> str:
    """`F16` -> `float16`, `Q4_K` -> `q4_K`, `Q8_0` -> `q8_0`, `IQ2_XXS` -> `iq2_xxs`."""
    if type_name in PLAIN_TYPES:
        return PLAIN_TYPES[type_name]
    lower = type_name.lower()
    return lower[:-2] + "_K" if lower.endswith("_k") else lower


class GGUFError(ValueError):
    """The header breaks the GGUF format; the message says how, in words."""


@dataclass(frozen=True)
class GGUFField:
    """One metadata value: its type, and for arrays the element type, the count and a preview."""

    type: int
    value: Any  # scalar, str (capped), or the first elements of an array
    count: int = 1  # arrays: the number of elements in the file
    sub: int | None = None  # arrays: the element type

    def display(self, limit: int = MAX_LISTED) -> Any:
        """Plain Python for the metadata panel: arrays longer than `limit` become 'array of N <type>'."""
        if self.type != ARRAY:
            return self.value
        if self.count > limit or self.sub == ARRAY or len(self.value) < self.count:
            return f"array of {self.count:,} {VALUE_TYPE_NAMES.get(self.sub, 'values')}"
        return list(self.value)


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor info: name, ggml dims (ne0 first), type, offset into the data region and stored bytes."""

    name: str
    dims: tuple[int, ...]
    type_name: str
    offset: int
    n_bytes: int


class _Cursor:
    """Reads little- or big-endian GGUF values from a buffer, every count checked against what is left."""

    def __init__(self, buf: Any, size: int) -> None:
        self.buf, self.size, self.pos, self.order = buf, size, 0, "<"

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"{what} runs past the end of the file (byte {self.pos:,} + {n:,} of {self.size:,}); "
                            "the file is truncated or its header is corrupted")

    def unpack(self, code: str, what: str) -> Any:
        n = struct.calcsize(code)
        self.need(n, what)
        (value,) = struct.unpack_from(self.order + code, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str, keep: int = MAX_STRING_KEPT) -> tuple[str, int]:
        """(text, its length in bytes); only the first `keep` bytes are decoded."""
        n = self.unpack("Q", what)
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + min(n, keep)])
        self.pos += n
        text = raw.decode("utf-8", "replace")
        return (text + "…" if n > keep else text), n

    def skip_strings(self, count: int, what: str) -> None:
        """Step over `count` length-prefixed strings without decoding them (a 30-million-entry array is fine)."""
        buf, pos, size, order = self.buf, self.pos, self.size, self.order + "Q"
        self.need(count * 8, what)
        unpack = struct.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                pos = size + 1
                break
            pos += 8 + unpack(order, buf, pos)[0]
        if pos > size:
            raise GGUFError(f"{what} runs past the end of the file; the file is truncated or its header is corrupted")
        self.pos = pos

    def value(self, vtype: int, what: str, depth: int = 0) -> GGUFField:
        if vtype in SCALAR_CODES:
            return GGUFField(vtype, self.unpack(SCALAR_CODES[vtype], what))
        if vtype == STRING:
            return GGUFField(vtype, self.string(what)[0])
        if vtype != ARRAY:
            raise GGUFError(f"{what} has value type {vtype}, which GGUF does not define")
        if depth >= MAX_ARRAY_NESTING:
            raise GGUFError(f"{what} nests arrays {depth} deep; GGUF files do not")
        sub = self.unpack("I", what)
        count = self.unpack("Q", what)
        keep = count if count <= MAX_KEPT_NUMBERS else MAX_LISTED
        if sub in SCALAR_CODES:
            code = SCALAR_CODES[sub]
            self.need(count * struct.calcsize(code), f"{what} ({count:,} values)")
            items = list(struct.unpack_from(f"{self.order}{keep}{code}", self.buf, self.pos)) if keep else []
            self.pos += count * struct.calcsize(code)
            return GGUFField(ARRAY, items, count, sub)
        if sub == STRING:
            self.need(count * 8, f"{what} ({count:,} strings)")
            items = [self.string(what)[0] for _ in range(min(count, MAX_LISTED))]
            self.skip_strings(count - len(items), f"{what} ({count:,} strings)")
            return GGUFField(ARRAY, items, count, sub)
        if sub == ARRAY:
            self.need(count * 12, f"{what} ({count:,} arrays)")
            for _ in range(count):
                self.value(ARRAY, what, depth + 1)
            return GGUFField(ARRAY, [], count, sub)
        raise GGUFError(f"{what} is an array of value type {sub}, which GGUF does not define")


def read_gguf_header(path: Path, gguf: Any) -> tuple[int, dict[str, GGUFField], list[GGUFTensor]]:
    """(version, metadata fields, tensor infos) of a GGUF file, every count and extent checked."""
    size = regular_file(path).st_size
    if size < 24:
        raise GGUFError("the file is shorter than a GGUF header")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        cur = _Cursor(mm, size)
        if bytes(mm[:4]) != GGUF_MAGIC:
            raise GGUFError("it does not start with the GGUF magic")
        cur.pos = 4
        version = cur.unpack("I", "the version")
        if version & 0xFFFF == 0:  # written on a big-endian machine
            cur.order, cur.pos = ">", 4
            version = cur.unpack("I", "the version")
        if version not in (2, 3):
            raise GGUFError(f"it is GGUF version {version}; LayerScope reads versions 2 and 3")
        n_tensors = cur.unpack("Q", "the tensor count")
        n_kv = cur.unpack("Q", "the metadata count")
        if n_kv * MIN_KV_BYTES > size - cur.pos or n_tensors * MIN_TENSOR_INFO_BYTES > size - cur.pos:
            raise GGUFError(f"its header declares {n_kv:,} metadata entries and {n_tensors:,} tensors, more than "
                            f"its {size:,} bytes can hold")
        fields: dict[str, GGUFField] = {}
        for i in range(n_kv):
            key, key_len = cur.string(f"metadata key {i}", MAX_NAME_CHARS + 1)
            if key_len > MAX_NAME_CHARS:
                raise GGUFError(f"metadata key {i} is {key_len:,} bytes long, more than any real key")
            fields[key] = cur.value(cur.unpack("I", f"metadata '{display_name(key)}'"),
                                    f"metadata '{display_name(key)}'")
        infos = []
        for i in range(n_tensors):
            name, name_len = cur.string(f"tensor name {i}", MAX_NAME_CHARS + 1)
            if name_len > MAX_NAME_CHARS:
                raise GGUFError(f"tensor {i}'s name is {name_len:,} bytes long, more than any real name")
            what = f"tensor '{display_name(name)}'"
            n_dims = cur.unpack("I", what)
            if n_dims > MAX_DIMS:
                raise GGUFError(f"{what} has {n_dims:,} dimensions; GGML tensors have at most {MAX_DIMS}")
            dims = tuple(cur.unpack("Q", what) for _ in range(n_dims))
            infos.append((name, dims, cur.unpack("I", what), cur.unpack("Q", what)))
        alignment = fields.get("general.alignment")
        align = 32 if alignment is None else alignment.value
        if alignment is not None and (alignment.type != 4 or align <= 0 or align & (align - 1)):
            raise GGUFError("its general.alignment is not a power of two")
        data_start = -(-cur.pos // align) * align
    tensors = _checked_tensors(infos, gguf, size - data_start, align)
    return version, fields, tensors


def _checked_tensors(infos: list[tuple[str, tuple[int, ...], int, int]], gguf: Any, data_size: int,
                     align: int) -> list[GGUFTensor]:
    """Tensor infos with known types, whole blocks, extents inside the data region and no overlaps."""
    out: list[GGUFTensor] = []
    seen: set[str] = set()
    for name, dims, type_id, offset in infos:
        what = f"tensor '{display_name(name)}'"
        if name in seen:
            raise GGUFError(f"{what} is listed twice")
        seen.add(name)
        try:
            qtype = gguf.GGMLQuantizationType(type_id)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise GGUFError(f"{what} has GGML type {type_id}, which this gguf library does not know") from None
        numel = math.prod(dims)
        first = dims[0] if dims else 1
        if first % block:
            raise GGUFError(f"{what} has a first dimension of {first:,}, not a multiple of the {block}-value "
                            f"blocks of {qtype.name}")
        n_bytes = numel // block * type_size
        if offset % align or offset + n_bytes > data_size:
            count = f"{numel:,}" if numel < 10**15 else f"{numel:.3g}"
            raise GGUFError(f"{what} ({count} {qtype.name} values, {n_bytes:,} bytes at offset {offset:,}) does not "
                            f"fit the {max(data_size, 0):,}-byte data region; the file is truncated or corrupted")
        out.append(GGUFTensor(name, dims, qtype.name, offset, n_bytes))
    spans = sorted((t.offset, t.offset + t.n_bytes, t.name) for t in out if t.n_bytes)
    for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise GGUFError(f"tensors '{display_name(a)}' and '{display_name(b)}' claim the same bytes")
    return out


def hf_config(fields: dict[str, GGUFField]) -> dict[str, Any]:
    """Hugging Face style config keys from GGUF metadata (for the KV-cache estimate)."""
    arch_field = fields.get("general.architecture")
    arch = arch_field.value if arch_field is not None else None
    if not isinstance(arch, str):
        return {}
    config: dict[str, Any] = {"model_type": arch}
    for key, hf_key in CONFIG_KEYS.items():
        field = fields.get(f"{arch}.{key}")
        if field is None:
            continue
        value = field.value
        if field.type == ARRAY:  # per-layer values (head counts of hybrid models): the largest
            numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
            value = max(numbers) if numbers and len(value) == field.count else None
        if isinstance(value, float) and hf_key != "rope_theta" and value.is_integer():
            value = int(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            config[hf_key] = value
    if "vocab_size" not in config:
        tokens = fields.get("tokenizer.ggml.tokens")
        if tokens is not None and tokens.type == ARRAY:
            config["vocab_size"] = tokens.count
    if arch in ENCODER_DECODER_ARCHS:
        config["is_encoder_decoder"] = True
    elif arch not in ENCODER_ARCHS:
        config["is_decoder"] = True
    if "head_dim" not in config and config.get("hidden_size") and config.get("num_attention_heads"):
        config["head_dim"] = int(config["hidden_size"]) // int(config["num_attention_heads"])
    return config


def tensor_infos(tensors: list[GGUFTensor]) -> list[TensorInfo]:
    """One TensorInfo per GGUF tensor: PyTorch-order shape, quant type as dtype, exact stored bytes."""
    out: list[TensorInfo] = []
    for t in tensors:
        dtype = ggml_dtype(t.type_name)
        buffer = t.name.endswith(BUFFER_SUFFIXES)
        out.append(TensorInfo(
            name=t.name,
            shape=tuple(reversed(t.dims)),
            dtype=dtype,
            kind="buffer" if buffer else "param",
            trainable=not buffer,
            stored_bytes=t.n_bytes if dtype_bits(dtype) is None else None,
        ))
    return out


@loader(
    "gguf",
    patterns=("*.gguf",),
    priority=20,
    sniff=sniff_gguf,
    description="GGUF (llama.cpp)",
    why_not_run="GGUF files can be inspected here but not run (llama.cpp runs them)",
    graph="gguf",
)
def open_gguf(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Metadata and tensor infos through a memory map; tensor data is never touched."""
    yield Progress(0, 3, "Importing gguf")
    import gguf

    yield Progress(1, 3, f"Reading the header of {path.name} (memory-mapped)")
    try:
        version, fields, tensors = read_gguf_header(path, gguf)
    except GGUFError as exc:
        raise CorruptFile(sentence(path, f"its GGUF header is broken: {exc}")) from None
    meta: dict[str, Any] = {"GGUF.version": version}
    for key, field in fields.items():
        meta[key] = field.display()
    yield Progress(2, 3, f"Summarising {len(tensors):,} tensors")
    infos = tensor_infos(tensors)
    config = hf_config(fields)
    notes = ["GGUF blocks are stored quantised: 'weights as stored' is the exact size on disk; the other "
             "what-if rows start from the parameter count.",
             "GGUF stores no layer classes: the tree comes from the tensor names."]
    split_count, split_no = meta.get("split.count"), meta.get("split.no", 0)
    if isinstance(split_count, int) and split_count and isinstance(split_no, int):
        notes.append(f"This is part {split_no + 1} of {split_count} of a split model; only its tensors are counted.")
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int):
        try:
            meta["general.file_type"] = f"{file_type} ({gguf.LlamaFileType(file_type).name})"
        except ValueError:
            pass
    arch = meta.get("general.architecture")
    yield Progress(3, 3, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "gguf", "gguf", (str(path),), path.stat().st_size),
        root=build_name_tree(infos, root_type=display_name(arch, 80) if isinstance(arch, str) else ""),
        metadata=meta,
        notes=tuple(notes),
        config=config or None,
    )
