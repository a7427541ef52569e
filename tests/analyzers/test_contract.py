"""Every loader's summary keeps the same promises: unique paths, parents exist, rows add up to totals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from analyzers.loaders import LoadOptions, open_model
from analyzers.summary import ModelSummary
from analyzers.summary.document import summary_to_json
from analyzers.summary.params import layer_rows
from analyzers.tasks import drive
from tests.torch_fixtures import TiedLM, TinyCNN


def _state_dict(tmp: Path) -> tuple[Path, LoadOptions]:
    torch.save(TinyCNN().state_dict(), tmp / "m.pt")
    return tmp / "m.pt", LoadOptions()


def _tied(tmp: Path) -> tuple[Path, LoadOptions]:
    torch.save(TiedLM().state_dict(), tmp / "tied.pth")
    return tmp / "tied.pth", LoadOptions()


def _full_module(tmp: Path) -> tuple[Path, LoadOptions]:
    torch.save(TiedLM(), tmp / "full.pt")
    return tmp / "full.pt", LoadOptions(trust=True)


def _arch(tmp: Path) -> tuple[Path, LoadOptions]:
    torch.save(TinyCNN().state_dict(), tmp / "m.pt")
    return tmp / "m.pt", LoadOptions(arch="tests.torch_fixtures:TinyCNN")


def _safetensors(tmp: Path) -> tuple[Path, LoadOptions]:
    save_file(TinyCNN().state_dict(), tmp / "m.safetensors")
    return tmp / "m.safetensors", LoadOptions()


def _hf(tmp: Path, names_only: bool = False) -> tuple[Path, LoadOptions]:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      vocab_size=64, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(tmp / "hf")
    return tmp / "hf", LoadOptions(names_only=names_only)


FIXTURES: dict[str, Callable[[Path], tuple[Path, LoadOptions]]] = {
    "state_dict": _state_dict,
    "tied": _tied,
    "full_module": _full_module,
    "arch": _arch,
    "safetensors": _safetensors,
    "hf_typed": _hf,
    "hf_names": lambda tmp: _hf(tmp, names_only=True),
}


def check_contract(summary: ModelSummary) -> None:
    """The invariants every view relies on."""
    paths = [node.path for node, _ in summary.walk()]
    assert len(paths) == len(set(paths)), "layer paths must be unique"
    for node, _depth in summary.walk():
        if node.path:
            parent = summary.parent(node.path)
            assert parent is not None and node in parent.children
            assert summary.node(node.path) is node
        assert node.total.params == node.own.params + sum(c.total.params for c in node.children)
    names = [t.name for t in summary.tensors]
    assert len(names) == len(set(names)), "tensor names must be unique"
    counted = {t.name for t in summary.tensors if t.counted}
    for t in summary.tensors:
        if t.shared_with is not None:
            assert t.shared_with in counted, f"{t.name} is tied to {t.shared_with}, which is not counted"
    rows = layer_rows(summary)
    totals = summary.totals
    assert sum(r.params for r in rows) == totals.params
    assert totals.params == totals.trainable_params + totals.non_trainable_params
    assert sum(totals.bytes_by_dtype.values()) == totals.param_bytes + totals.buffer_bytes
    json.dumps(summary_to_json(summary))


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_loader_contract(tmp_path: Path, kind: str) -> None:
    path, options = FIXTURES[kind](tmp_path)
    check_contract(drive(open_model(path, options)))
