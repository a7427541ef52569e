"""Tiny PyTorch models that tests save to tmp_path; importable so `--arch tests.torch_fixtures:Class` works."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Conv + BatchNorm (buffers) + a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(width * 14 * 14, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class SlowCNN(TinyCNN):
    """TinyCNN whose every forward pass takes 40 ms, so a cancel lands mid-attribution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.04)
        return super().forward(x)


class CrashingCNN(TinyCNN):
    """TinyCNN that kills its own process with SIGSEGV while `crash_marker` exists: a native crash
    inside a framework, as TensorFlow beside QtWebEngine produced it."""

    def __init__(self, crash_marker: str = "") -> None:
        super().__init__()
        self.crash_marker = crash_marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os
        import signal
        from pathlib import Path

        if self.crash_marker and Path(self.crash_marker).exists():
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().forward(x)


class FunctionalReluNet(nn.Module):
    """Activations called as functions (torch.relu in forward), as the bundled digits CNN does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3)
        self.head = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


class TiedLM(nn.Module):
    """An embedding whose weight the output projection shares (tied weights)."""

    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.block = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=32, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(self.block(self.embed(ids))))


def param_count(model: nn.Module) -> int:
    """The framework's own parameter count (tied weights once)."""
    return sum(p.numel() for p in model.parameters())


def buffer_count(model: nn.Module) -> int:
    """Elements in persistent buffers, the way a state_dict holds them."""
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return sum(t.numel() for n, t in model.state_dict().items() if n not in params)
