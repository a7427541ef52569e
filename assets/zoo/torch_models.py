"""PyTorch classes of the sample zoo's state_dicts (the `--arch` entry points in assets/samples.json).

Self-contained on purpose: `--arch assets/zoo/torch_models.py:DigitCNN` imports this file alone.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitCNN(nn.Module):
    """Seed problem 1 ported from Keras: Conv(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense 64 -> 10.

    Input (B, 1, 28, 28); returns logits (the Keras model ends in softmax, this one leaves it to the loss).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 32, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 13 * 13, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of 28x28 single-channel images."""
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))


class SelfAttentionClassifier(nn.Module):
    """Seed problem 3, fixed: project inputs to hidden_dim, score each step, softmax-pool the projections.

    The seed scored raw inputs with a Linear(hidden_dim, 1), multiplied the weights by themselves and
    averaged them; here the softmax weights pool the projected sequence. `last_attention` holds the
    weights (B, L) of the latest forward; `forward(x, return_attention=True)` also returns them.
    """

    def __init__(self, input_dim: int = 10, hidden_dim: int = 50, num_classes: int = 2) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden_dim)
        self.attention = nn.Linear(hidden_dim, 1)
        self.fc = nn.Linear(hidden_dim, num_classes)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Logits (B, classes) for x (B, L, input_dim); with return_attention, (logits, weights (B, L))."""
        h = torch.tanh(self.proj(x))  # (B, L, hidden)
        weights = torch.softmax(self.attention(h).squeeze(-1), dim=1)  # (B, L)
        pooled = torch.bmm(weights.unsqueeze(1), h).squeeze(1)  # (B, hidden)
        logits = self.fc(pooled)
        self.last_attention = weights.detach()
        return (logits, weights) if return_attention else logits


class TransformerTextClassifier(nn.Module):
    """Seed problem 5, fixed: encoder-only (nn.TransformerEncoder), masked mean pooling, linear head.

    The seed fed the same tokens to nn.Transformer as source and target; a classifier needs the
    encoder alone. Token id `pad_id` is padding. `forward(ids, return_attention=True)` also returns
    the per-layer attention weights, a list of (B, heads, L, L) tensors; `last_attention` keeps them.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, nhead: int = 4, num_layers: int = 2,
                 dim_feedforward: int = 128, max_len: int = 64, num_classes: int = 2, dropout: float = 0.1,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(d_model, num_classes)
        self.last_attention: list[torch.Tensor] | None = None

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token plus position embeddings (B, L, d_model)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.embedding(ids) + self.position(positions)[None]

    def forward_embedded(self, x: torch.Tensor, pad_mask: torch.Tensor, return_attention: bool = False):
        """The classifier from embeddings on (what gradient attributions on embeddings differentiate)."""
        if return_attention:
            h, maps = self._encode_with_weights(x, pad_mask)
            self.last_attention = [m.detach() for m in maps]
        else:
            h = self.encoder(x, src_key_padding_mask=pad_mask)
        keep = (~pad_mask).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        logits = self.fc(self.dropout(pooled))
        return (logits, maps) if return_attention else logits

    def forward(self, ids: torch.Tensor, return_attention: bool = False):
        """Logits (B, classes) for token ids (B, L); with return_attention, (logits, [weights per layer])."""
        pad_mask = ids == self.pad_id
        return self.forward_embedded(self.embed(ids), pad_mask, return_attention)

    def _encode_with_weights(self, x: torch.Tensor, pad_mask: torch.Tensor):
        """The encoder's post-norm layers step by step, asking each self-attention for its weights."""
        maps = []
        for layer in self.encoder.layers:
            attn, weights = layer.self_attn(x, x, x, key_padding_mask=pad_mask, need_weights=True,
                                            average_attn_weights=False)
            x = layer.norm1(x + layer.dropout1(attn))
            ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))
            x = layer.norm2(x + layer.dropout2(ff))
            maps.append(weights)
        if self.encoder.norm is not None:
            x = self.encoder.norm(x)
        return x, maps


class DigitViT(nn.Module):
    """A small vision transformer for the 28x28 digits: 4x4 patches (a 7x7 grid) embedded by a strided
    convolution, a class token, learned positions, pre-norm nn.TransformerEncoder layers, a linear head on the
    class token. Input (B, 1, 28, 28); returns logits. Its attention is what the Attention tab lays over the digit.
    """

    def __init__(self, num_classes: int = 10, image_size: int = 28, patch_size: int = 4, d_model: int = 48,
                 nhead: int = 4, num_layers: int = 3, dim_feedforward: int = 96, dropout: float = 0.1) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(1, d_model, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.position = nn.Parameter(torch.randn(1, 1 + self.grid * self.grid, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of 28x28 single-channel images."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 49, d_model), row by row
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], dim=1) + self.position
        return self.head(self.norm(self.encoder(tokens)[:, 0]))
