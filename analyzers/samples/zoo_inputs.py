"""Bundled samples as model inputs: images through the manifest's preprocessing, texts through its vocabulary or
tokenizer. The zoo's build script uses these, so the models were trained on exactly what the app feeds them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError, UnsupportedFile, sentence
from analyzers.samples.manifest import InputSpec, SampleModel

TOKEN_PATTERN = re.compile(r"[\w']+|[^\w\s]")


def prepare_image(path: Path, spec: InputSpec) -> np.ndarray:
    """A PNG/JPEG as the model's float32 input, shaped spec.shape (grey/RGB, resized, scaled, laid out)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    channels = spec.channels or (spec.shape[-1] if spec.layout == "NHWC" else spec.shape[0])
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if spec.size is not None and img.size != (spec.size[1], spec.size[0]):
                img = img.resize((spec.size[1], spec.size[0]), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "no such image")) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UnsupportedFile(sentence(path, f"it is not an image PIL can read ({exc})")) from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.invert or (spec.auto_invert and _light_border(pixels)):
        pixels = 255.0 - pixels
    x = (pixels * spec.scale - spec.mean) / spec.std
    if spec.layout == "NCHW":
        x = np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x.reshape(spec.shape), dtype=spec.dtype)


def _light_border(pixels: np.ndarray) -> bool:
    """True when the image's outer ring is mostly light: dark strokes on a light ground."""
    ring = np.concatenate([pixels[0].ravel(), pixels[-1].ravel(), pixels[:, 0].ravel(), pixels[:, -1].ravel()])
    return float(ring.mean()) > 127.5


_VOCABS: dict[Path, dict[str, int]] = {}


def read_vocab(path: Path) -> dict[str, int]:
    """token -> id from a one-token-per-line file (cached)."""
    path = Path(path)
    if path not in _VOCABS:
        lines = path.read_text(encoding="utf-8").splitlines()
        _VOCABS[path] = {tok: i for i, tok in enumerate(lines)}
    return _VOCABS[path]


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks: the tokenizer the text samples were trained with."""
    return TOKEN_PATTERN.findall(text.lower() if lowercase else text)


def encode_text(text: str, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
    """Token ids shaped spec.shape (padded with pad_id / truncated) and the kept tokens, for display."""
    if spec.vocab is None or spec.max_len is None:
        raise LayerScopeError("This model's input spec has no vocabulary or maximum length for text.")
    vocab = read_vocab(spec.vocab)
    tokens = tokenize(text, spec.lowercase)[: spec.max_len]
    ids = np.full(spec.max_len, spec.pad_id, dtype=spec.dtype)
    ids[: len(tokens)] = [vocab.get(t, spec.unk_id) for t in tokens]
    return ids.reshape(spec.shape), tokens


@dataclass(frozen=True)
class QAInputs:
    """A question/context pair as BERT inputs (each shaped (max_len,) int64) plus token texts and offsets."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: list[str]
    offsets: list[tuple[int, int]]  # character span of each token in its own text
    context_mask: np.ndarray  # True where a token belongs to the context (answers may only start there)


_TOKENIZERS: dict[tuple[Path, int], Any] = {}


def _qa_tokenizer(path: Path) -> Any:
    """The fast tokenizer saved in a model folder, cached until the file changes."""
    from tokenizers import Tokenizer

    try:
        key = (path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "the model folder has no tokenizer.json")) from None
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = Tokenizer.from_file(str(path))
    return _TOKENIZERS[key]


def encode_qa(question: str, context: str, spec: InputSpec) -> QAInputs:
    """Question and context through the model folder's fast tokenizer, padded/truncated to max_len."""
    if spec.tokenizer is None or spec.max_len is None:
        raise LayerScopeError("This model's input spec has no tokenizer folder or maximum length.")
    tok = _qa_tokenizer(Path(spec.tokenizer) / "tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(spec.max_len, strategy="only_second")
    enc = tok.encode(question, context)
    n = len(enc.ids)

    def padded(values: list[int]) -> np.ndarray:
        out = np.full(spec.max_len, 0, dtype=np.int64)
        out[:n] = values
        return out

    ids = np.full(spec.max_len, spec.pad_id, dtype=np.int64)
    ids[:n] = enc.ids
    seq_ids = enc.sequence_ids
    context_mask = np.zeros(spec.max_len, dtype=bool)
    context_mask[:n] = [s == 1 for s in seq_ids]
    return QAInputs(ids, padded(enc.type_ids), padded(enc.attention_mask), list(enc.tokens),
                    [tuple(o) for o in enc.offsets], context_mask)


def qa_answer(start_logits: np.ndarray, end_logits: np.ndarray, inputs: QAInputs, context: str,
              max_answer_tokens: int = 8) -> str:
    """The best context span (start <= end, at most max_answer_tokens) as text cut from `context`."""
    s = np.where(inputs.context_mask, np.asarray(start_logits, dtype=np.float64), -np.inf)
    e = np.where(inputs.context_mask, np.asarray(end_logits, dtype=np.float64), -np.inf)
    score = s[:, None] + e[None, :]
    i, j = np.indices(score.shape)
    score[(j < i) | (j - i >= max_answer_tokens)] = -np.inf
    start, end = np.unravel_index(int(np.argmax(score)), score.shape)
    return context[inputs.offsets[start][0]: inputs.offsets[end][1]]


def parse_qa_sample(sample: str) -> tuple[str, str]:
    """(question, context) from a QA sample: JSON {"question": ..., "context": ...}."""
    try:
        d = json.loads(sample)
        return str(d["question"]), str(d["context"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise LayerScopeError('A question-answering sample must be JSON: {"question": "...", "context": "..."}.') \
            from None


def prepare_input(entry: SampleModel, sample: str | None = None) -> np.ndarray:
    """One model input (no batch axis) from a sample path or text; the entry's default sample when None."""
    spec = entry.input
    sample = entry.default_sample if sample is None else sample
    if spec.kind == "image":
        return prepare_image(Path(sample), spec)
    if spec.kind in ("sequence", "latent"):
        path = Path(sample)
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UnsupportedFile(sentence(path, f"it is not a numpy .npy array ({exc})")) from None
        if tuple(x.shape) != spec.shape:
            raise LayerScopeError(sentence(path, f"it holds shape {tuple(x.shape)}, the model takes {spec.shape}"))
        return x.astype(spec.dtype)
    if spec.kind == "text":
        return encode_text(sample, spec)[0]
    if spec.kind == "qa":
        question, context = parse_qa_sample(sample)
        return encode_qa(question, context, spec).input_ids
    raise LayerScopeError(f"Sample model {entry.id} has an input kind '{spec.kind}' LayerScope cannot prepare.")


