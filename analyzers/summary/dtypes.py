"""One spelling per dtype across frameworks, and its size in bits."""

from __future__ import annotations

# Canonical name -> bits per element.
DTYPE_BITS: dict[str, int] = {
    "float64": 64,
    "float32": 32,
    "float16": 16,
    "bfloat16": 16,
    "float8_e4m3fn": 8,
    "float8_e4m3fnuz": 8,
    "float8_e5m2": 8,
    "float8_e5m2fnuz": 8,
    "float8_e8m0fnu": 8,
    "float4_e2m1fn_x2": 8,  # torch's packed pair: one element is two fp4 values
    "float4_e2m1": 4,
    "float6_e2m3": 6,
    "float6_e3m2": 6,
    "complex128": 128,
    "complex64": 64,
    "int64": 64,
    "int32": 32,
    "int16": 16,
    "int8": 8,
    "uint64": 64,
    "uint32": 32,
    "uint16": 16,
    "uint8": 8,
    "int4": 4,
    "uint4": 4,
    "bool": 8,
    "string": 0,
}

_ALIASES: dict[str, str] = {
    # safetensors header codes
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F4": "float4_e2m1",  # safetensors counts single fp4 values: 4 bits each
    "F6_E2M3": "float6_e2m3",
    "F6_E3M2": "float6_e3m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
    # common spellings
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "fp32": "float32",
    "fp16": "float16",
    "bf16": "bfloat16",
    "fp64": "float64",
    "float8_e4m3": "float8_e4m3fn",
}


def canonical_dtype(name: object) -> str:
    """Map `torch.float32`, `F32`, `<dtype: 'float32'>`, numpy dtypes ... to one lower-case name."""
    text = str(name).strip()
    if text.startswith("<dtype:"):  # TensorFlow DType repr
        text = text.split("'")[1]
    if text.startswith("torch."):
        text = text[len("torch.") :]
    if text.startswith("tf."):
        text = text[len("tf.") :]
    if text in _ALIASES:
        return _ALIASES[text]
    lower = text.lower()
    if lower in DTYPE_BITS:
        return lower
    return _ALIASES.get(lower, text)


def dtype_bits(dtype: str) -> int | None:
    """Bits per element of a canonical dtype, or None for a type whose size only the file knows (GGUF quants)."""
    return DTYPE_BITS.get(dtype)


def bytes_for(numel: int, dtype: str) -> int:
    """Bytes that `numel` elements of `dtype` take, rounded up to whole bytes (0 when unknown)."""
    bits = DTYPE_BITS.get(dtype)
    if bits is None:
        return 0
    return (numel * bits + 7) // 8


# safetensors header codes the format defines (https://github.com/huggingface/safetensors, `Dtype`).
SAFETENSORS_DTYPES = frozenset({"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                                "C64", "F64", "I64", "U64"})


def is_floating(dtype: str) -> bool:
    """True for float, bfloat16, float8/float4 and complex dtypes: the only ones a trainable parameter can have."""
    return dtype.startswith(("float", "bfloat", "complex"))


def state_dict_kind(dtype: str, *, quantized: bool = False) -> str:
    """"param" or "buffer" for a tensor of a plain state_dict format (safetensors, .pt, HF folder).

    An integer or bool tensor can never be a trainable parameter (autograd refuses it): it is an index
    table or a mask, a buffer. Checkpoints with a quantisation config store their weights as integers;
    `quantized=True` keeps those as parameters. GGUF and ONNX decide for themselves."""
    if quantized or is_floating(dtype) or dtype_bits(dtype) is None:
        return "param"
    return "buffer"
