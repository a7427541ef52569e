"""GGUF (llama.cpp) files via the `gguf` package: header only, never dequantised.

`gguf.GGUFReader` memory-maps the file; only the key/value metadata and the tensor infos are
looked at. Each tensor keeps its quantisation type as dtype (`q4_K`, `q8_0`, `float16` ...) and
its exact stored bytes. GGUF lists dimensions fastest-first (ne0 first); shapes are reported in
PyTorch order. The metadata is also mapped onto Hugging Face config keys so the memory what-ifs
can size the KV cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analyzers.dtypes import dtype_bits
from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import first_line
from analyzers.nametree import build_name_tree
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
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


def _scalar(part: Any) -> Any:
    value = part[0] if getattr(part, "shape", ()) else part
    return value.item() if hasattr(value, "item") else value


def field_value(field: Any, gguf: Any, limit: int = MAX_LISTED) -> Any:
    """A metadata value as plain Python; arrays longer than `limit` become 'array of N <type>'."""
    types = list(field.types)
    if not types:
        return None
    vt = gguf.GGUFValueType
    main = types[0]
    if main == vt.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    if main == vt.ARRAY:
        sub = types[1] if len(types) > 1 else None
        n = len(field.data)
        if n > limit or sub == vt.ARRAY:
            return f"array of {n:,} {sub.name.lower() if sub is not None else 'values'}"
        if sub == vt.STRING:
            return [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
        return [_scalar(field.parts[i]) for i in field.data]
    return _scalar(field.parts[field.data[0]])


def hf_config(meta: dict[str, Any], reader: Any, gguf: Any) -> dict[str, Any]:
    """Hugging Face style config keys from GGUF metadata (for the KV-cache estimate)."""
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        return {}
    config: dict[str, Any] = {"model_type": arch}
    for key, hf_key in CONFIG_KEYS.items():
        field = reader.fields.get(f"{arch}.{key}")
        if field is None:
            continue
        value = field_value(field, gguf, limit=1 << 16)
        if isinstance(value, list):  # per-layer values (head counts of hybrid models): the largest
            numbers = [v for v in value if isinstance(v, int | float)]
            value = max(numbers) if numbers else None
        if isinstance(value, float) and hf_key != "rope_theta" and value.is_integer():
            value = int(value)
        if value is not None:
            config[hf_key] = value
    if "vocab_size" not in config:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        if tokens is not None:
            config["vocab_size"] = len(tokens.data)
    if arch in ENCODER_DECODER_ARCHS:
        config["is_encoder_decoder"] = True
    elif arch not in ENCODER_ARCHS:
        config["is_decoder"] = True
    if "head_dim" not in config and config.get("hidden_size") and config.get("num_attention_heads"):
        config["head_dim"] = int(config["hidden_size"]) // int(config["num_attention_heads"])
    return config


def tensor_infos(reader: Any) -> list[TensorInfo]:
    """One TensorInfo per GGUF tensor: PyTorch-order shape, quant type as dtype, exact stored bytes."""
    out: list[TensorInfo] = []
    for t in reader.tensors:
        dtype = ggml_dtype(t.tensor_type.name)
        shape = tuple(int(d) for d in reversed(list(t.shape)))
        buffer = t.name.endswith(BUFFER_SUFFIXES)
        out.append(TensorInfo(
            name=t.name,
            shape=shape,
            dtype=dtype,
            kind="buffer" if buffer else "param",
            trainable=not buffer,
            stored_bytes=int(t.n_bytes) if dtype_bits(dtype) is None else None,
        ))
    return out


@loader(
    "gguf",
    patterns=("*.gguf",),
    priority=20,
    sniff=sniff_gguf,
    description="GGUF (llama.cpp)",
)
def open_gguf(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Metadata and tensor infos through a memory map; tensor data is never touched."""
    yield Progress(0, 3, "Importing gguf")
    import gguf

    yield Progress(1, 3, f"Reading the header of {path.name} (memory-mapped)")
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except (ValueError, IndexError, KeyError, OverflowError, TypeError) as exc:
        raise CorruptFile(sentence(path, f"its GGUF header is broken ({first_line(exc)}); the file is truncated "
                                         "or corrupted")) from None
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") and key != "GGUF.version":
            continue
        try:
            meta[key] = field_value(field, gguf)
        except (ValueError, IndexError, UnicodeDecodeError):
            meta[key] = "(unreadable)"
    yield Progress(2, 3, f"Summarising {len(reader.tensors):,} tensors")
    tensors = tensor_infos(reader)
    config = hf_config(meta, reader, gguf)
    notes = ["GGUF blocks are stored quantised: 'weights as stored' is the exact size on disk; the other "
             "what-if rows start from the parameter count.",
             "GGUF stores no layer classes: the tree comes from the tensor names."]
    if meta.get("split.count"):
        notes.append(f"This is part {int(meta.get('split.no', 0)) + 1} of {meta['split.count']} of a split model; "
                     "only its tensors are counted.")
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
        root=build_name_tree(tensors, root_type=str(arch) if arch else ""),
        metadata=meta,
        notes=tuple(notes),
        config=config or None,
    )
