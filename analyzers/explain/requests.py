"""Plain requests and outcomes of the Explain tab and the CLI: picklable, framework-free, Qt-free.

They cross the pipe to the model-runner process, so they hold numbers, strings and numpy arrays only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.explain.attribution import AttributionRequest
from analyzers.explain.inputs import Preprocess
from analyzers.loaders import LoadOptions


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for: the file, how it was opened, and the device to run it on."""

    path: Path
    options: LoadOptions = field(default_factory=LoadOptions)
    device: str = "auto"

    @property
    def key(self) -> tuple:
        """What identifies one live model: a change of any part means loading it again."""
        o = self.options
        return (str(self.path), o.trust, o.arch, json.dumps(o.arch_kwargs, sort_keys=True), self.device)


@dataclass(frozen=True)
class InputChoice:
    """What the user picked as input: a bundled sample, an image, a text, a random shape or a .npy file.

    `kind` "auto" reads `value` as the CLI's --input does (a file by its suffix, random[:SHAPE], a text)."""

    kind: str  # "sample" | "image" | "text" | "random" | "npy" | "auto"
    value: str  # sample index, file path, text, or shape like "1x28x28" ("" = the model's own shape)
    seed: int = 0
    preprocess: Preprocess | None = None  # images; for a sample, applied only when it differs from the manifest's


@dataclass(frozen=True)
class RunSettings:
    """A Run request: the input, the device and how many classes to list."""

    input: InputChoice
    device: str = "auto"
    top_k: int = 5
    runs: int = 10
    warmup: int = 2


@dataclass(frozen=True)
class AttributeSettings:
    """An Attribute request: the run settings, the method and whether to run the randomisation check."""

    run: RunSettings
    request: AttributionRequest
    sanity: bool = False
    sanity_layers: int = 1


@dataclass(frozen=True)
class RunOutcome:
    """What a Run job hands back: the result and what the panel refreshes from the live model."""

    result: Any  # analyzers.runtime.RunResult
    layers: list[Any]  # analyzers.runtime.LayerRef
    default_layer: str | None
    labels: tuple[str, ...]
    notes: list[str]
    model: dict[str, Any] = field(default_factory=dict)  # LiveModel.describe()
    input: dict[str, Any] = field(default_factory=dict)  # ModelInput.describe()


@dataclass(frozen=True)
class AttributeOutcome:
    """What an Attribute job hands back: the map, the optional randomisation check, the live model's layers."""

    attribution: Any  # analyzers.explain.attribution.Attribution
    sanity: Any  # analyzers.explain.sanity.RandomizationCheck | None
    layers: list[Any]
    default_layer: str | None
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionSettings:
    """An attention request: the input, the device and how many classes the prediction beside the maps lists."""

    input: InputChoice
    device: str = "auto"
    top_k: int = 5


@dataclass(frozen=True)
class AttentionOutcome:
    """What an attention job hands back: every layer's maps (AttentionResult) and what it ran on."""

    result: Any  # analyzers.explain.attention.AttentionResult
    notes: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)  # LiveModel.describe()
    input: dict[str, Any] = field(default_factory=dict)  # ModelInput.describe()


@dataclass(frozen=True)
class CompareSettings:
    """A compare request: one input (and run settings) for both models, and optionally one attribution method
    applied to both (B explains A's target, so both maps answer the same question)."""

    run: RunSettings
    request: AttributionRequest | None = None


@dataclass(frozen=True)
class CompareOutcome:
    """Both models' runs on one input, their full output distributions and, when asked, both maps."""

    a: RunOutcome
    b: RunOutcome
    probs_a: Any  # np.ndarray | None: the whole distribution (the run's prediction lists the top-k only)
    probs_b: Any
    attribution_a: AttributeOutcome | None = None
    attribution_b: AttributeOutcome | None = None
    notes: list[str] = field(default_factory=list)
