"""Memory what-ifs: weights at other precisions, inference with a KV cache, training with Adam.

Each number carries the formula that made it. The reference for training is HF accelerate's
`estimate-memory` (fp32 Adam peak = 4 × fp32 weight bytes). Activations are not estimated: they
depend on batch, sequence and the framework's recomputation choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from analyzers.summary import ModelSummary

WEIGHT_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16", "int8", "int4")
BYTES_PER_PARAM: dict[str, float] = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0, "int4": 0.5}
DEFAULT_INT4_GROUP = 128
DEFAULT_SEQ_CAP = 4096
SCALE_BYTES = 2  # one fp16 scale per quantisation group

DECODER_MODEL_TYPES = {
    "llama", "mistral", "mixtral", "gpt2", "gpt_neox", "gptj", "gpt_bigcode", "falcon", "qwen2", "qwen3",
    "qwen2_moe", "qwen3_moe", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "mpt", "opt", "bloom",
    "olmo", "olmo2", "stablelm", "starcoder2", "cohere", "deepseek_v2", "deepseek_v3", "granite", "smollm3",
}


@dataclass(frozen=True)
class MemoryLine:
    """One what-if figure and the arithmetic behind it."""

    label: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class KVCacheSpec:
    """Shape of a decoder's KV cache, read from its config."""

    layers: int
    kv_heads: int
    head_dim: int
    max_positions: int | None

    def bytes(self, batch: int, seq_len: int, bytes_per_value: float) -> int:
        """layers × kv_heads × head_dim × batch × seq × 2 (K and V) × bytes."""
        return int(self.layers * self.kv_heads * self.head_dim * batch * seq_len * 2 * bytes_per_value)


@dataclass(frozen=True)
class MemoryReport:
    """All what-ifs for one model at one batch size and sequence length."""

    params: int
    buffer_bytes: int
    as_stored: MemoryLine
    weights: Mapping[str, MemoryLine]
    inference: Mapping[str, MemoryLine]
    training: Mapping[str, MemoryLine]
    kv_cache: KVCacheSpec | None
    batch: int
    seq_len: int | None
    int4_group: int
    assumptions: tuple[str, ...] = field(default=())


def int4_bytes_per_param(group: int) -> float:
    """4 bits per weight plus one fp16 scale per `group` weights."""
    return 0.5 + SCALE_BYTES / group


def _get(config: Mapping[str, object], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def is_decoder_lm(config: Mapping[str, object] | None) -> bool:
    """True for decoder-only language models (the ones whose inference needs a KV cache)."""
    if not config or config.get("is_encoder_decoder"):
        return False
    archs = config.get("architectures") or []
    if any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs if isinstance(a, str)):
        return True
    return bool(config.get("is_decoder")) or config.get("model_type") in DECODER_MODEL_TYPES


def kv_cache_spec(config: Mapping[str, object] | None) -> KVCacheSpec | None:
    """KV cache geometry from an HF-style config; None for models that are not decoder LMs."""
    if not is_decoder_lm(config):
        return None
    assert config is not None
    text = config.get("text_config")
    if isinstance(text, Mapping):
        config = {**config, **text}
    layers = _get(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    heads = _get(config, "num_attention_heads", "n_head", "num_heads", "n_heads")
    hidden = _get(config, "hidden_size", "n_embd", "d_model", "dim")
    if not layers or not heads or not hidden:
        return None
    kv_heads = _get(config, "num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num")
    if kv_heads is None:
        kv_heads = 1 if config.get("multi_query") else heads
    head_dim = _get(config, "head_dim") or hidden // heads
    max_pos = _get(config, "max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length")
    return KVCacheSpec(layers, kv_heads, head_dim, max_pos)


def default_seq_len(kv: KVCacheSpec | None) -> int | None:
    """The model's context length, capped at 4096 tokens; None without a KV cache."""
    if kv is None:
        return None
    return min(kv.max_positions or 2048, DEFAULT_SEQ_CAP)


def estimate_memory(
    summary: ModelSummary,
    batch: int = 1,
    seq_len: int | None = None,
    int4_group: int = DEFAULT_INT4_GROUP,
) -> MemoryReport:
    """Weights at fp32/bf16/fp16/int8/int4, inference (+KV cache) and Adam training, with formulas."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if seq_len is not None and seq_len < 1:
        raise ValueError("sequence length must be at least 1")
    totals = summary.totals
    n = totals.params
    buffers = totals.buffer_bytes
    kv = kv_cache_spec(summary.config)
    if kv is not None and seq_len is None:
        seq_len = default_seq_len(kv)

    weights: dict[str, MemoryLine] = {}
    for dtype in WEIGHT_DTYPES:
        if dtype == "int4":
            per = int4_bytes_per_param(int4_group)
            formula = f"{n:,} params × (0.5 B + {SCALE_BYTES} B fp16 scale / {int4_group}-weight group) = {per:g} B/param"
        elif dtype == "int8":
            per = BYTES_PER_PARAM[dtype]
            formula = f"{n:,} params × 1 B (per-channel scales negligible)"
        else:
            per = BYTES_PER_PARAM[dtype]
            formula = f"{n:,} params × {per:g} B"
        weights[dtype] = MemoryLine(f"weights {dtype}", int(round(n * per)), formula)

    stored = totals.param_bytes
    stored_line = MemoryLine("weights as stored", stored,
                             "sum of each parameter's stored bytes, dtypes as in the file: "
                             + ", ".join(f"{d} {b:,} B" for d, b in sorted(totals.bytes_by_dtype.items())))

    inference: dict[str, MemoryLine] = {}
    for dtype in WEIGHT_DTYPES:
        w = weights[dtype]
        kv_bytes = 0
        kv_text = ""
        if kv is not None and seq_len:
            per_value = 4.0 if dtype == "float32" else 2.0
            kv_bytes = kv.bytes(batch, seq_len, per_value)
            kv_text = (f" + KV cache {kv.layers} layers × {kv.kv_heads} kv-heads × {kv.head_dim} head-dim × "
                       f"{batch} batch × {seq_len} seq × 2 × {per_value:g} B = {kv_bytes:,} B")
        inference[dtype] = MemoryLine(
            f"inference {dtype}", w.bytes + buffers + kv_bytes,
            f"weights {w.bytes:,} B + buffers {buffers:,} B{kv_text}",
        )

    fp32 = weights["float32"].bytes
    training = {
        "fp32": MemoryLine(
            "training Adam fp32", 4 * fp32 + buffers,
            f"weights 4 B + gradients 4 B + Adam m,v 8 B = 16 B/param = 4 × fp32 weights ({fp32:,} B) "
            f"+ buffers {buffers:,} B; accelerate estimate-memory's fp32 peak",
        ),
        "mixed": MemoryLine(
            "training Adam mixed bf16", 4 * fp32 + buffers,
            "fp32 master weights 4 B + bf16 weights 2 B + bf16 gradients 2 B + fp32 Adam m,v 8 B = 16 B/param "
            f"+ buffers {buffers:,} B (ZeRO accounting; mixed precision saves activations, not weight state; "
            f"accelerate prints its largest single term, 2 × fp32 weights = {2 * fp32:,} B)",
        ),
        "bf16": MemoryLine(
            "training Adam pure bf16", 2 * fp32 + buffers,
            f"bf16 weights 2 B + bf16 gradients 2 B + bf16 Adam m,v 4 B = 8 B/param + buffers {buffers:,} B",
        ),
    }

    assumptions = [
        "Activations are not included: they depend on batch, sequence length and checkpointing.",
        f"int4 keeps one fp16 scale per group of {int4_group} weights; int8 uses per-channel scales (negligible).",
        f"Buffers ({buffers:,} B, e.g. BatchNorm statistics) stay at their stored size in every row.",
    ]
    if kv is not None:
        assumptions.append(
            f"KV cache for batch {batch} and {seq_len} tokens, in the compute dtype (fp32 for fp32 weights, "
            "16-bit otherwise; int8/int4 are weight-only quantisation)."
        )
    else:
        assumptions.append("No KV cache: the model is not a decoder language model with a known config.")
    if summary.is_prequantized:
        assumptions.insert(0, "The file is already quantised: 'as stored' is its real size; the other rows "
                              "are what the same parameter count would take at that precision.")
    return MemoryReport(
        params=n, buffer_bytes=buffers, as_stored=stored_line, weights=weights, inference=inference,
        training=training, kv_cache=kv, batch=batch, seq_len=seq_len, int4_group=int4_group,
        assumptions=tuple(assumptions),
    )


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units, as memory is sold."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TiB"


def human_count(n: int) -> str:
    """6738415616 -> '6.74B'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)
