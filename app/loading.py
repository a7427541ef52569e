"""The loading job: open a file (in the loader process or in this thread) and prepare the views' data.

Everything slow happens here, off the GUI thread: reading the file, walking the tree for the
charts and filling every cached count, so that showing the result costs the GUI thread little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyzers.loaders import LoadOptions, open_model
from analyzers.summary import ModelSummary
from analyzers.summary.overview import OverviewData, overview_data, warm
from analyzers.tasks import CancelToken, Progress, Steps


@dataclass(frozen=True)
class Loaded:
    """A model ready to show: its summary and the charts' numbers."""

    path: Path
    options: LoadOptions
    summary: ModelSummary
    overview: OverviewData


ASSETS = Path(__file__).resolve().parent.parent / "assets"


def bundled_options(path: Path, options: LoadOptions) -> LoadOptions:
    """A bundled sample state_dict opens with the architecture its manifest names (a typed tree)."""
    try:
        Path(path).expanduser().resolve().relative_to(ASSETS)
    except (ValueError, OSError):
        return options  # not a bundled file: the manifest (and numpy with it) is not even read
    from analyzers.samples import with_sample_arch

    return with_sample_arch(Path(path), options)


def load_steps(path: Path, options: LoadOptions, isolated: bool, token: CancelToken) -> Steps[Loaded]:
    """Open `path` and prepare the views. Opening never runs a file's code, so it never asks for trust: that
    question comes when a model with code runs (app/features/explain.py)."""
    yield Progress(0, None, f"Opening {path.name}")
    options = bundled_options(path, options)
    if isolated:
        from app.loader_process import open_isolated

        summary = yield from open_isolated(path, options, token)
    else:
        summary = yield from open_model(path, options)
    token.raise_if_cancelled()
    yield Progress(0, 1, f"Preparing the views of {path.name}")
    warm(summary)
    token.raise_if_cancelled()
    data = overview_data(summary)
    yield Progress(1, 1, f"Opened {path.name}")
    return Loaded(path, options, summary, data)
