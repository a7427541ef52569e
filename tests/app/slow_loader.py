"""Test loaders: one slow on purpose (`*.slowmodel`), one that crashes, one that prints to stdout.

Tests register them with fixtures. The loader process imports the module of every plug-in loader
registered in the window's process; there, importing this module registers them all.
"""

from __future__ import annotations

import time
from pathlib import Path

from analyzers.loaders import LoadOptions, loader
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

MAGIC = b"SLOWMODL"
NAME = "slow-test"


def sniff_slow(path: Path) -> bool:
    """The file starts with the magic bytes."""
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def open_slow(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Sleeps 50 ms per step for the number of steps written after the magic."""
    steps = int(path.read_bytes()[len(MAGIC):] or b"100")
    for i in range(steps):
        yield Progress(i, steps, f"Slow step {i}")
        time.sleep(0.05)
    weight = TensorInfo("layer.weight", (3, 4), "float32")
    return ModelSummary(SourceInfo(str(path), "slow", ""),
                        LayerNode("", "Slow", (), (LayerNode("layer", "Linear", (weight,)),)))


def register() -> None:
    """(Re-)register the loader."""
    loader(NAME, patterns=("*.slowmodel",), priority=100, sniff=sniff_slow, description="slow test model")(open_slow)


def unregister() -> None:
    """Remove it again, so other tests see the normal registry."""
    from analyzers import loaders

    loaders._REGISTRY[:] = [s for s in loaders._REGISTRY if s.name != NAME]


def write_slow(path: Path, steps: int = 100) -> Path:
    """A file the slow loader opens in about steps × 50 ms."""
    path.write_bytes(MAGIC + str(steps).encode())
    return path



def in_loader_process() -> bool:
    """True inside `python -m app.loader_process` (never in the test process)."""
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", "") == "app.loader_process"


def open_crash(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Dies like a segfaulting extension would, but only in the loader process."""
    yield Progress(0, 1, "About to crash")
    if in_loader_process():
        import os

        os._exit(3)
    raise RuntimeError("the crash loader only crashes in the loader process")


def open_noisy(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Prints to stdout (as chatty libraries do) while loading."""
    print("chatter on stdout " * 50)
    yield Progress(0, 1, "Noisy")
    print("more chatter")
    weight = TensorInfo("w", (5,), "float32")
    return ModelSummary(SourceInfo(str(path), "noisy", ""), LayerNode("", "Noisy", (weight,)))


def register_extras() -> None:
    """Loaders for *.crashmodel and *.noisymodel (by extension only)."""
    loader("crash-test", patterns=("*.crashmodel",), priority=100, description="crash test model")(open_crash)
    loader("noisy-test", patterns=("*.noisymodel",), priority=100, description="noisy test model")(open_noisy)


def unregister_extras() -> None:
    """Remove the extra loaders."""
    from analyzers import loaders

    loaders._REGISTRY[:] = [s for s in loaders._REGISTRY if s.name not in ("crash-test", "noisy-test")]


if in_loader_process():
    register()
    register_extras()
