"""Tiny attention models that tests save to tmp_path; importable, so the runner process can unpickle them."""

from __future__ import annotations

import torch
from torch import nn


class EncoderClassifier(nn.Module):
    """Token ids -> nn.TransformerEncoder (post-norm, batch-first, nested tensors on: every fast path torch has)
    -> mean of the kept tokens -> logits. Id 0 is padding."""

    def __init__(self, vocab: int = 40, d_model: int = 16, nhead: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=0)
        layer = nn.TransformerEncoderLayer(d_model, nhead, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=True)
        self.head = nn.Linear(d_model, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0
        h = self.encoder(self.embedding(ids), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1).clamp(min=1.0))


class SlowLayer(nn.TransformerEncoderLayer):
    """An encoder layer that takes 0.3 s, so a cancel lands mid-capture."""

    def forward(self, *args, **kwargs):
        import time

        time.sleep(0.3)
        return super().forward(*args, **kwargs)


class SlowEncoder(EncoderClassifier):
    """EncoderClassifier of six slow layers."""

    def __init__(self) -> None:
        super().__init__(layers=6)
        self.encoder = nn.TransformerEncoder(SlowLayer(16, 4, 32, dropout=0.0, batch_first=True), 6,
                                             enable_nested_tensor=False)


class NoAttention(nn.Module):
    """An MLP over token embeddings: nothing to read attention from."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(40, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids).mean(1))


class Seq2Seq(nn.Module):
    """Token ids -> nn.TransformerEncoder memory -> nn.TransformerDecoder over the same ids with a causal mask:
    self-attention (causal) and cross-attention in every decoder layer."""

    def __init__(self, vocab: int = 30, d_model: int = 16, nhead: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model, nhead, 32, 0.0, batch_first=True), 1,
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(d_model, nhead, 32, 0.0, batch_first=True), 2)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        memory = self.encoder(x)
        causal = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        return self.head(self.decoder(x[:, :-1], memory, tgt_mask=causal[:-1, :-1], tgt_is_causal=True))
