"""One open model is one session: its file, how it was opened, its summary, its runs and its jobs.

Views and controllers bind to a session (glue's state objects) instead of reading the window's
attributes, so a window can hold one session, or two in compare mode. The live model itself sits in
the model-runner process; the session holds what identifies it (`model_ref`) and the last results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from analyzers.explain.requests import AttributeOutcome, ModelRef, RunOutcome
    from analyzers.loaders import LoadOptions
    from analyzers.summary import ModelSummary
    from app.loading import Loaded


class ModelSession(QObject):
    """Everything known about one opened model; signals tell bound views when it changes."""

    changed = Signal(object)  # the session, after a new model (or none) was set
    runFinished = Signal(object)  # RunOutcome
    attributionFinished = Signal(object)  # AttributeOutcome
    attentionFinished = Signal(object)  # AttentionOutcome
    resultsCleared = Signal()

    def __init__(self, name: str = "A", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name  # "A" / "B" in compare mode
        self.loaded: Loaded | None = None
        self.device = "auto"
        self.last_run: RunOutcome | None = None
        self.last_attribution: AttributeOutcome | None = None
        self.last_attention: Any = None  # AttentionOutcome of the Attention tab's last capture
        self.jobs: dict[str, int] = {}  # label -> job id of the jobs running for this model

    # -- what is open --------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True when a model is shown."""
        return self.loaded is not None

    @property
    def path(self) -> Path | None:
        """The opened file or folder."""
        return self.loaded.path if self.loaded else None

    @property
    def options(self) -> LoadOptions | None:
        """How it was opened (trust, --arch)."""
        return self.loaded.options if self.loaded else None

    @property
    def summary(self) -> ModelSummary | None:
        """The neutral summary every view renders."""
        return self.loaded.summary if self.loaded else None

    @property
    def overview(self) -> Any:
        """The charts' numbers, prepared off the GUI thread (analyzers.overview.OverviewData)."""
        return self.loaded.overview if self.loaded else None

    def model_ref(self, device: str | None = None) -> ModelRef:
        """What the model runner needs to open this model's live copy on `device`."""
        from analyzers.explain.requests import ModelRef

        if self.loaded is None:
            raise RuntimeError("no model is open in this session")
        return ModelRef(self.loaded.path, self.loaded.options, device or self.device)

    # -- changes -------------------------------------------------------------------------------------
    def set_loaded(self, loaded: Loaded | None) -> None:
        """A new model (or none): results of the previous one are dropped; bound views refresh."""
        self.loaded = loaded
        self.last_run = None
        self.last_attribution = None
        self.last_attention = None
        self.changed.emit(self)

    def grant_trust(self) -> None:
        """The user trusts this file: its code may run (the summary stays; only how it is run changes)."""
        import dataclasses

        from analyzers.loaders import LoadOptions

        if self.loaded is None or self.loaded.options.trust:
            return
        o = self.loaded.options
        self.loaded = dataclasses.replace(self.loaded, options=LoadOptions(True, o.arch, o.arch_kwargs, o.names_only))

    def set_run(self, outcome: RunOutcome) -> None:
        """Record a finished Run."""
        self.last_run = outcome
        self.runFinished.emit(outcome)

    def set_attribution(self, outcome: AttributeOutcome) -> None:
        """Record a finished attribution."""
        self.last_attribution = outcome
        self.attributionFinished.emit(outcome)

    def set_attention(self, outcome: Any) -> None:
        """Record a finished attention capture."""
        self.last_attention = outcome
        self.attentionFinished.emit(outcome)

    def clear_results(self, kind: str = "all") -> None:
        """Forget the last run ("run"), attribution ("attribution") or both, before a new request of that
        kind, so a stale result is never taken for the new one."""
        if kind in ("run", "all"):
            self.last_run = None
        if kind in ("attribution", "all"):
            self.last_attribution = None
        self.resultsCleared.emit()
