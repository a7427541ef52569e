"""TorchScript and torch.export archives: counts equal the source module's, params and buffers apart."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from analyzers.loaders import LoadOptions, find_loader, open_model
from analyzers.tasks import drive
from tests.analyzers.format_cli import run_cli_batch
from tests.analyzers.test_contract import check_contract


class Block(nn.Module):
    """Linear + BatchNorm (buffers) + a non-persistent buffer."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.register_buffer("scale", torch.ones(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.lin(x))) * self.scale


class Net(nn.Module):
    """Two blocks in a ModuleList and a head whose bias is frozen."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim), Block(dim)])
        self.head = nn.Linear(dim, 3)
        self.head.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def counts(module: nn.Module) -> tuple[int, int, int]:
    """(parameters, trainable parameters, buffer elements) as torch reports them."""
    params = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in module.buffers())
    return params, trainable, buffers


def summary_counts(summary) -> tuple[int, int, int]:
    """(params, trainable params, buffer elements) as the summary reports them."""
    t = summary.totals
    return t.params, t.trainable_params, t.buffers


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A scripted, a traced and an exported copy of Net, saved once."""
    tmp = tmp_path_factory.mktemp("torch_archives")
    model = Net().eval()
    torch.jit.script(model).save(str(tmp / "net.pt"))
    torch.jit.trace(model, torch.randn(2, 6)).save(str(tmp / "traced.pt"))
    torch.export.save(torch.export.export(model, (torch.randn(2, 6),)), str(tmp / "net.pt2"))
    return {"tmp": tmp, "model": model}


@pytest.mark.parametrize("name", ["net.pt", "traced.pt"])
def test_torchscript_counts_equal_the_module(files: dict, name: str) -> None:
    path = files["tmp"] / name
    spec = find_loader(path)
    assert spec.name == "torchscript"  # not the state_dict loader
    summary = drive(open_model(path, LoadOptions()))
    check_contract(summary)
    model = files["model"]
    assert summary_counts(summary) == counts(model)
    assert summary.root.type == "Net"
    assert summary.node("blocks.0").type == "Block"
    assert summary.node("blocks.0.bn").type == "BatchNorm1d"
    kinds = {t.name: t.kind for t in summary.node("blocks.0.bn").tensors}
    assert kinds["blocks.0.bn.running_mean"] == "buffer"
    assert kinds["blocks.0.bn.weight"] == "param"
    assert [t.trainable for t in summary.node("head").tensors] == [True, False]
    assert summary.source.format == "torchscript"


def test_torchscript_attributes_from_scripted_constants(files: dict) -> None:
    summary = drive(open_model(files["tmp"] / "net.pt", LoadOptions()))
    lin = summary.node("blocks.1.lin").attributes
    assert (lin["in_features"], lin["out_features"]) == (6, 6)
    assert summary.node("blocks.0.bn").attributes["eps"] == pytest.approx(1e-5)
    assert "forward" in summary.metadata["methods"]


def test_torch_export_counts_equal_the_module(files: dict) -> None:
    path = files["tmp"] / "net.pt2"
    assert find_loader(path).name == "torch-export"
    summary = drive(open_model(path, LoadOptions()))
    check_contract(summary)
    model = files["model"]
    assert summary_counts(summary) == counts(model)
    assert summary.root.type == "Net"
    assert summary.node("blocks.1").type == "Block"
    assert summary.node("blocks.1.lin").type == "Linear"
    assert summary.node("head").own.trainable_params == model.head.weight.numel()
    assert {t.name for t in summary.node("blocks.0").tensors} == {"blocks.0.scale"}
    assert summary.metadata["non_persistent_buffers"] == ["blocks.0.scale", "blocks.1.scale"]
    assert summary.metadata["inputs"][0]["shape"] == [2, 6]


def test_torch_export_pickled_sample_inputs_are_never_opened(files: dict, tmp_path: Path) -> None:
    """A .pt2 whose sample inputs need full pickle (torch.export.load would run them) opens from its JSON."""
    src = files["tmp"] / "net.pt2"
    crafted = tmp_path / "crafted.pt2"
    buf = io.BytesIO()
    torch.save({"inputs": Block(2)}, buf)  # a module object: not loadable with weights_only=True
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(crafted, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data/sample_inputs/model.pt"):
                data = buf.getvalue()
            zout.writestr(info, data)
    summary = drive(open_model(crafted, LoadOptions()))
    assert summary_counts(summary) == counts(files["model"])
    assert summary.node("blocks.0").type == "Block"


def test_cli_json_and_table(files: dict, tmp_path: Path) -> None:
    """`inspect --json` and `--table` for both archives, in one child process (one torch import)."""
    tmp = files["tmp"]
    calls = {f"{name}:{mode}": ["inspect", str(tmp / name), f"--{mode}"]
             for name in ("net.pt", "net.pt2") for mode in ("json", "table")}
    results = run_cli_batch(calls, tmp_path)
    params, trainable, buffers = counts(files["model"])
    for name, fmt in (("net.pt", "torchscript"), ("net.pt2", "torch-export")):
        assert results[f"{name}:json"]["rc"] == 0, results[f"{name}:json"]["stderr"]
        doc = json.loads(results[f"{name}:json"]["stdout"])
        assert doc["source"]["format"] == fmt
        assert (doc["totals"]["params"], doc["totals"]["trainable_params"], doc["totals"]["buffers"]) == \
            (params, trainable, buffers)
        table = results[f"{name}:table"]
        assert table["rc"] == 0, table["stderr"]
        assert "blocks" in table["stdout"] and "Linear" in table["stdout"]
