"""A small CNN loaded live, shared by the method tests; TinyCNN's ReLU and pooling are modules, as DeepLIFT
and Guided Backprop need."""

from __future__ import annotations

import pytest
import torch

from analyzers.explain.inputs import ModelInput, random_input
from analyzers.loaders import LoadOptions
from analyzers.runtime import load_live_model
from tests.torch_fixtures import TinyCNN

TARGET = 3


@pytest.fixture(scope="package")
def cnn(tmp_path_factory):
    """(the torch module, its LiveModel) of a seeded TinyCNN saved as a full module."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    path = tmp_path_factory.mktemp("methods") / "cnn.pt"
    torch.save(model, path)
    live = load_live_model(path, LoadOptions(trust=True), "cpu")
    return live.module, live


def image(seed: int = 0) -> ModelInput:
    """A random 1x28x28 image input (NCHW)."""
    return random_input((1, 28, 28), seed=seed, layout="NCHW", kind="image")


def x_of(inp: ModelInput) -> torch.Tensor:
    """The input as a batched tensor, as Captum takes it."""
    return torch.from_numpy(inp.array.copy())
