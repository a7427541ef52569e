"""What the Explain tab can say about a model from its summary alone, before anything is loaded to run."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError

CONV_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D")

def why_not_runnable(summary: Any) -> str | None:
    """The sentence saying why this model cannot be run here, or None when Run is offered."""
    from analyzers.loaders import spec_for_format

    if summary is None:
        return "Open a model first."
    spec = spec_for_format(summary.source.format)
    if spec is None or spec.runs is not None:
        return None
    text = spec.why_not_run.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def summary_input_kind(summary: Any) -> str:
    """A guess of what a summarised model takes, before it is loaded: image, text or unknown."""
    if summary is None:
        return "unknown"
    if summary.source.format == "hf" or (summary.config or {}).get("vocab_size"):
        return "text"
    for node, _ in summary.walk():
        if node.type in CONV_TYPES:
            return "image"
        if node.type == "Embedding":
            return "text"
    return "unknown"


def summary_is_module(summary: Any) -> bool:
    """True when the checkpoint pickles a whole module (its code comes with it; no architecture needed)."""
    return summary.source.format == "pytorch-module"


def summary_layers(summary: Any) -> list[Any]:
    """The summary's layers as picker entries (the live model's list replaces them after a run)."""
    from analyzers.runtime import LayerRef

    out = []
    for node, _ in summary.walk():
        if not node.path:
            continue
        kind = "conv" if node.type in CONV_TYPES else "embedding" if node.type == "Embedding" else "other"
        out.append(LayerRef(node.path, node.type, kind))
    return out


def needs_architecture(summary: Any, has_arch: bool) -> bool:
    """True for a PyTorch state_dict with no architecture attached: weights alone cannot run."""
    weights_only = (summary.source.format in ("pytorch", "safetensors") and summary.source.framework == "torch"
                    and not summary_is_module(summary))
    return weights_only and not has_arch


def arch_classes(py_file: Path) -> list[str]:
    """Class names defined at the top of a Python file, read with `ast` (nothing is imported or run)."""
    try:
        tree = ast.parse(Path(py_file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as exc:
        raise LayerScopeError(f"{Path(py_file).name}: it could not be read as Python ({exc}).") from None
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
