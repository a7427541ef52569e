"""Hugging Face folders as live PyTorch models: the class from config.json, the tokenizer from the folder.

Everything runs offline (local_files_only, HF_HUB_OFFLINE): a folder that needs a download fails with
one sentence instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError
from analyzers.explain.inputs import (
    InputHint,
    ModelInput,
    TextEncoder,
    qa_input,
    split_question,
    truncation_notes,
)


def open_hf(folder: Path, entry: Any, notes: list[str] | None = None
            ) -> tuple[Any, str, str, tuple[str, ...], InputHint, TextEncoder | None]:
    """A Hugging Face folder with transformers, offline; the task from its architecture name.

    What transformers warns about while loading goes to `notes` (shown with the result), not to stderr."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    from analyzers.loaders.hf_folder import transformers_log

    hf_logging.disable_progress_bar()  # the CLI prints one report; the window shows its own progress
    with transformers_log() as said:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        cls = None
        for name in getattr(config, "architectures", None) or []:
            cls = getattr(transformers, name, None)
            if cls is not None:
                break
        cls = cls or AutoModel
        model = cls.from_pretrained(str(folder), local_files_only=True)
    if notes is not None:
        notes.extend(f"transformers: {message}" for message in said)
    cls_name = type(model).__name__
    if "QuestionAnswering" in cls_name:
        task = "qa"
    elif "CausalLM" in cls_name or "LMHeadModel" in cls_name:
        task = CAUSAL_LM
    elif "SequenceClassification" in cls_name or "ImageClassification" in cls_name:
        task = "classify"
    else:
        task = ""
    input_name = getattr(model, "main_input_name", "input_ids") or "input_ids"
    labels: tuple[str, ...] = ()
    if task == "classify":
        id2label = getattr(config, "id2label", None) or {}
        labels = tuple(str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label)))
    if input_name == "pixel_values":
        size = getattr(config, "image_size", None)
        size = size if isinstance(size, int) else None
        hint = InputHint("image", (int(getattr(config, "num_channels", 3)), size, size), "float32", "NCHW")
        return model, input_name, task, labels, hint, None
    kind = "qa" if task == "qa" else "text"
    hint = InputHint(kind, (None,), "int64", "tokens")
    encoder = None
    if entry is None:
        encoder = hf_tokenizer_encoder(folder, task, int(getattr(config, "max_position_embeddings", 512) or 512))
    tokenizer = getattr(encoder, "tokenizer", None)
    if task == CAUSAL_LM and tokenizer is not None:  # the next token's classes are the vocabulary's tokens
        labels = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    return model, input_name, task, labels, hint, encoder


# A decoder language model: its prediction is the next token (the logits at the last position).
CAUSAL_LM = "causal-lm"

# Files a Hugging Face tokenizer is read from; a folder with none of them has no tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")


def hf_tokenizer_encoder(folder: Path, task: str, max_len: int = 384) -> TextEncoder | None:
    """A TextEncoder from a Hugging Face folder's own tokenizer (offline), or None when it has none."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None  # transformers would build an empty tokenizer from config.json alone: every text -> no ids
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)

    def encode(text: str) -> ModelInput:
        if not text.strip():
            raise LayerScopeError("The text is empty.")
        if task == "qa":
            question, context = split_question(text)
            enc = tok(question, context, truncation="only_second", max_length=max_len, return_offsets_mapping=True)
            seq = enc.sequence_ids()
            ids = np.asarray(enc["input_ids"], dtype=np.int64)
            mask = np.asarray(enc["attention_mask"], dtype=np.int64)
            types = np.asarray(enc.get("token_type_ids", [0] * len(ids)), dtype=np.int64)
            tokens = tok.convert_ids_to_tokens(enc["input_ids"])
            return qa_input(text, context, ids, mask, types, tokens, list(enc["offset_mapping"]),
                             np.asarray([s == 1 for s in seq]), pad_id)
        enc = tok(text, truncation=True, max_length=max_len)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        if ids.size == 0:
            raise LayerScopeError(f"{folder.name}: its tokenizer turns the text into no tokens; give the token ids "
                                  "as a .npy array instead.")
        tokens = tok.convert_ids_to_tokens(enc["input_ids"])
        special = np.asarray(tok.get_special_tokens_mask(enc["input_ids"], already_has_special_tokens=True), bool)
        baseline = np.where(special, ids, pad_id)
        extras = {k: np.asarray(v, dtype=np.int64)[None] for k, v in enc.items()
                  if k in ("attention_mask", "token_type_ids")}
        total = len(tok(text, truncation=False)["input_ids"])
        return ModelInput("text", ids[None], "text", layout="tokens", tokens=tuple(tokens), extras=extras,
                          baseline_ids=baseline[None], text=text, notes=truncation_notes(total, int(ids.size)))

    encode.tokenizer = tok  # type: ignore[attr-defined]  # the vocabulary, for a language model's labels
    return encode
