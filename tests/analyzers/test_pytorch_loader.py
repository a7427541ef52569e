"""PyTorch checkpoints: counts equal torch's own, buffers apart, tied once, pickled code never run."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from analyzers.errors import ArchitectureError, CorruptFile, TrustRequired
from analyzers.loaders import LoadOptions, open_model
from analyzers.loaders.pytorch_loader import load_checkpoint
from analyzers.tasks import drive
from tests.torch_fixtures import TiedLM, TinyCNN, buffer_count, param_count


def open_summary(path: Path, **options):
    return drive(open_model(path, LoadOptions(**options)))


def test_state_dict_counts_equal_torch(tmp_path: Path) -> None:
    model = TinyCNN()
    path = tmp_path / "cnn.pt"
    torch.save(model.state_dict(), path)
    summary = open_summary(path)
    assert summary.totals.params == param_count(model)
    assert summary.totals.buffers == buffer_count(model)
    assert summary.totals.trainable_params == param_count(model)
    bn = summary.node("features.1")
    kinds = {t.name.rsplit(".", 1)[-1]: t.kind for t in bn.tensors}
    assert kinds == {"weight": "param", "bias": "param", "running_mean": "buffer",
                     "running_var": "buffer", "num_batches_tracked": "buffer"}
    assert summary.node("features.1").own.params == model.features[1].weight.numel() * 2
    # Children keep the module order of the state_dict, not alphabetical order.
    assert [c.name for c in summary.root.children] == ["features", "head"]


def test_tied_embedding_counted_once(tmp_path: Path) -> None:
    model = TiedLM()
    assert model.lm_head.weight is model.embed.weight
    path = tmp_path / "tied.pt"
    torch.save(model.state_dict(), path)
    summary = open_summary(path)
    assert summary.totals.params == param_count(model)
    head = [t for t in summary.tensors if t.name == "lm_head.weight"][0]
    assert head.shared_with == "embed.weight"
    own_sum = sum(node.own.params for node, _ in summary.walk())
    assert own_sum == summary.totals.params


@pytest.mark.parametrize("wrap", ["state_dict", "model", "lightning"])
def test_training_checkpoints_nest_the_state_dict(tmp_path: Path, wrap: str) -> None:
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    opt.step()
    if wrap == "lightning":
        ckpt = {"epoch": 7, "global_step": 140, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "optimizer_states": [opt.state_dict()], "lr_schedulers": [], "loops": {},
                "hyper_parameters": {"lr": 1e-3, "width": 8}}
        path = tmp_path / "run.ckpt"
    else:
        ckpt = {wrap: model.state_dict(), "optimizer": opt.state_dict(), "epoch": 7}
        path = tmp_path / "run.pth"
    torch.save(ckpt, path)
    summary = open_summary(path)
    assert summary.totals.params == param_count(model)
    assert summary.metadata["epoch"] == 7
    # optimizer state is metadata, never layers
    assert not any("exp_avg" in t.name or "optimizer" in t.name for t in summary.tensors)
    opt_key = "optimizer_states" if wrap == "lightning" else "optimizer"
    assert opt_key in summary.metadata
    json.dumps(summary.metadata)  # JSON-able


def test_full_module_read_without_running_it(tmp_path: Path) -> None:
    """A pickled nn.Module opens without --trust: the restricted unpickler shows its tree, nothing runs."""
    model = TinyCNN()
    path = tmp_path / "full.pt"
    torch.save(model, path)
    for trust in (False, True):  # inspecting never unpickles for real, trusted or not
        summary = open_summary(path, trust=trust)
        assert summary.totals.params == param_count(model)
        assert summary.totals.buffers == sum(b.numel() for b in model.buffers())
        assert summary.root.type == "TinyCNN"
        conv = summary.node("features.0")
        assert conv.type == "Conv2d"
        assert conv.attributes["kernel_size"] == (3, 3)
        assert conv.attributes["out_channels"] == 8
        assert summary.node("features.1").type == "BatchNorm2d"
        assert summary.notes[0].startswith("Full pickled module read without running it: classes TinyCNN")


class _Payload:
    """Unpickling this object writes a file: the proof that code would run."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_malicious_pickle_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "created_by_pickle.txt"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(str(target))}, path)
    summary = open_summary(path)
    assert summary.totals.params == 2
    assert summary.metadata["payload"] == "write_text object"
    assert not target.exists()
    with pytest.raises(TrustRequired):  # running it (the runtime's loader) still needs trust
        load_checkpoint(path, trust=False)
    assert not target.exists()
    legacy = tmp_path / "evil.pth"
    with legacy.open("wb") as f:
        pickle.dump(_Payload(str(target)), f)
    with pytest.raises((TrustRequired, CorruptFile)):
        open_summary(legacy)
    assert not target.exists()


def test_legacy_serialization(tmp_path: Path) -> None:
    model = TinyCNN()
    path = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert open_summary(path).totals.params == param_count(model)


def test_arch_module_spec_gives_typed_tree(tmp_path: Path) -> None:
    model = TinyCNN(num_classes=5)
    path = tmp_path / "cnn.pt"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    summary = open_summary(path, arch="tests.torch_fixtures:TinyCNN", arch_kwargs={"num_classes": 5})
    assert summary.root.type == "TinyCNN"
    assert summary.node("head").type == "Linear"
    assert summary.node("head").attributes["out_features"] == 5
    assert summary.totals.params == param_count(model)
    assert summary.metadata["arch"]["missing"] == []
    assert summary.metadata["arch"]["prefix_change"] == "-module."


def test_arch_file_spec_reports_missing_and_unexpected(tmp_path: Path) -> None:
    src = tmp_path / "mynet.py"
    src.write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a = nn.Linear(4, 3)\n"
        "        self.b = nn.Linear(3, 2)\n"
    )
    state = {"a.weight": torch.zeros(3, 4), "a.bias": torch.zeros(3), "extra.weight": torch.zeros(7)}
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    summary = open_summary(path, arch=f"{src}:Net")
    arch = summary.metadata["arch"]
    assert sorted(arch["missing"]) == ["b.bias", "b.weight"]
    assert arch["unexpected"] == ["extra.weight"]
    assert any("missing" in n for n in summary.notes)
    assert summary.node("b").type == "Linear"


def test_arch_errors_are_sentences(tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(TinyCNN().state_dict(), path)
    for spec in ("nocolon", "tests.torch_fixtures:Nope", str(tmp_path / "missing.py") + ":Net"):
        with pytest.raises(ArchitectureError) as err:
            open_summary(path, arch=spec)
        assert "\n" not in str(err.value)


def test_state_dict_tensor_data_is_not_read(tmp_path: Path) -> None:
    """A 256 MB tensor is memory-mapped, never paged in: resident memory barely moves."""
    psutil = pytest.importorskip("psutil")
    path = tmp_path / "big.pt"
    torch.save({"big.weight": torch.randn(64 * 1024 * 1024 // 4 * 4)}, path)
    proc = psutil.Process()
    before = proc.memory_info().rss
    summary = open_summary(path)
    grown = proc.memory_info().rss - before
    assert summary.totals.params == 64 * 1024 * 1024
    assert grown < 48 * 1024 * 1024, f"resident memory grew by {grown / 2**20:.0f} MiB"
