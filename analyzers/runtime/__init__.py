"""Live models behind one small interface, so Captum (PyTorch) and tf.GradientTape (Keras) answer the same calls.

`open_live_model(path, options, device)` picks the framework from the file and returns steps that end
in a `LiveModel`: it predicts (top-k with labels, a QA answer span, or the raw output summarised),
measures latency and peak memory, lists its layers and computes attributions. This module imports no
framework; `torch_runtime` and `keras_runtime` do, and are imported only when a model of theirs opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analyzers.errors import CorruptFile, LayerScopeError, UnsupportedFile, sentence
from analyzers.explain.inputs import check_input_fits
from analyzers.runtime.live import LayerRef, LiveModel
from analyzers.runtime.outputs import (
    MAX_KEPT_OUTPUT,
    Answer,
    ClassScore,
    OutputStats,
    Prediction,
    RunResult,
    Timing,
    looks_like_probabilities,
    softmax,
    summarise_outputs,
)
from analyzers.runtime.rss import RssPeak
from analyzers.tasks import Steps

if TYPE_CHECKING:
    from analyzers.explain.inputs import ModelInput
    from analyzers.loaders import LoadOptions

__all__ = ["MAX_KEPT_OUTPUT", "Answer", "ClassScore", "LayerRef", "LiveModel", "OutputStats", "Prediction",
           "RssPeak", "RunResult", "Timing", "ensure_input_fits", "framework_of", "load_live_model",
           "looks_like_probabilities", "open_live_model", "sharded_safetensors_index", "softmax",
           "summarise_outputs"]

def sharded_safetensors_index(folder: Path) -> Path | None:
    """The `*.safetensors.index.json` of a folder of shards without config.json (run with an --arch), or None."""
    if (folder / "config.json").is_file():
        return None
    found = sorted(folder.glob("*.safetensors.index.json"))
    return found[0] if len(found) == 1 else None


def framework_of(path: Path) -> str:
    """'torch' or 'keras': the runtime the format registry names for `path`; one sentence when it cannot run."""
    return runtime_and_format(path)[0]


def runtime_and_format(path: Path) -> tuple[str, str]:
    """(runtime, registered format name) of `path`: what runs it and how the runtime should read it."""
    from analyzers.loaders import runtime_for

    if path.is_dir() and sharded_safetensors_index(path) is not None:
        return "torch", "safetensors-index"  # shards without config.json: they run with an --arch
    runtime, spec = runtime_for(path)
    return runtime, spec.name


def open_live_model(path: Path | str, options: LoadOptions | None = None, device: str = "auto") -> Steps[LiveModel]:
    """Steps that load `path` for inference on `device` (auto: CUDA, else MPS, else CPU)."""
    from analyzers.loaders import LoadOptions

    path = Path(path).expanduser()
    options = options or LoadOptions()
    if not path.exists():
        raise UnsupportedFile(sentence(path, "no such file or folder"))
    kind, fmt = runtime_and_format(path)
    try:
        if kind == "keras":
            from analyzers.runtime.keras_runtime import open_keras

            return (yield from open_keras(path, options, device))
        from analyzers.runtime.torch_runtime import open_torch

        return (yield from open_torch(path, options, device, fmt))
    except LayerScopeError:
        raise
    except MemoryError:
        raise CorruptFile(sentence(path, "loading it for inference ran out of memory")) from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError, EOFError, AttributeError,
            ImportError, AssertionError) as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CorruptFile(sentence(path, f"could not load it for inference ({text.rstrip('.')})")) from exc


def load_live_model(path: Path | str, options: LoadOptions | None = None, device: str = "auto") -> LiveModel:
    """open_live_model run to completion (scripts, tests, the CLI without progress)."""
    from analyzers.tasks import drive

    return drive(open_live_model(path, options, device))


def ensure_input_fits(live: LiveModel, inp: ModelInput) -> None:
    """One sentence when an input cannot go into this model (wrong kind or shape, token ids outside the
    vocabulary)."""
    check_input_fits(live.hint, inp, live.vocab_size())
