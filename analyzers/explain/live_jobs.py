"""The jobs that answer Explain requests on live models: open (cached), build the input, run, attribute.

The window runs them in the model-runner process, the CLI in its own; both build inputs with
`build_input`, so a sample, a file or a text means the same thing in either.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError, sentence
from analyzers.explain.inputs import (
    ModelInput,
    Preprocess,
    image_input,
    npy_input,
    parse_input,
    random_for,
    sample_input,
    text_for,
)
from analyzers.explain.requests import (
    AttentionOutcome,
    AttentionSettings,
    AttributeOutcome,
    AttributeSettings,
    CompareOutcome,
    CompareSettings,
    InputChoice,
    ModelRef,
    RunOutcome,
    RunSettings,
)
from analyzers.tasks import CancelToken, Progress, Steps


def _sample_file(live: Any, value: str) -> str | None:
    samples = live.sample.samples
    if value in ("", None):
        return None
    try:
        index = int(value)
    except ValueError:
        raise LayerScopeError(f"Sample '{value}' is not a number; {live.sample.id} has samples 0 to "
                              f"{len(samples) - 1}.") from None
    if not 0 <= index < len(samples):
        raise LayerScopeError(f"{live.sample.id} has samples 0 to {len(samples) - 1}, not {index}.")
    return samples[index]


def build_input(live: Any, choice: InputChoice) -> ModelInput:
    """The ModelInput a choice names, checked against what the live model takes."""
    from analyzers.runtime import ensure_input_fits

    if choice.kind == "sample":
        if live.sample is None:
            raise LayerScopeError("This model has no bundled samples; pick an image, a text, a .npy or random.")
        picked = _sample_file(live, choice.value)
        inp = sample_input(live.sample, picked)
        spec = live.sample.input
        if spec.kind == "image" and choice.preprocess is not None and choice.preprocess != Preprocess.from_spec(spec):
            path = Path(picked or live.sample.default_sample)  # the user's preprocessing, on the sample
            inp = image_input(path, choice.preprocess)
            if not live.hint.fits(inp.shape):
                raise LayerScopeError(sentence(path, f"after preprocessing it has shape {inp.shape}, but the model "
                                                     f"takes {live.hint.describe()}; adjust the size or channels"))
    elif choice.kind == "image":
        if not choice.value:
            raise LayerScopeError("Choose an image file first.")
        inp = image_input(Path(choice.value), choice.preprocess or Preprocess.for_hint(live.hint))
    elif choice.kind == "text":
        inp = text_for(choice.value, live.hint, live.encoder)
    elif choice.kind == "npy":
        if not choice.value:
            raise LayerScopeError("Choose a .npy file first.")
        inp = npy_input(Path(choice.value), live.hint)
    elif choice.kind == "random":
        inp = random_for(live.hint, choice.value or None, choice.seed, live.vocab_size())
    elif choice.kind == "auto":
        pre = choice.preprocess or default_preprocess(live)
        inp = parse_input(choice.value, live.hint, live.encoder, pre, choice.seed, live.vocab_size())
    else:
        raise LayerScopeError(f"Unknown input kind '{choice.kind}'.")
    ensure_input_fits(live, inp)
    return inp


def default_preprocess(live: Any) -> Preprocess:
    """The image preprocessing a live model starts with: its manifest's, or its own size in [0, 1]."""
    sample = live.sample
    if sample is not None and sample.input.kind == "image":
        return Preprocess.from_spec(sample.input)
    return Preprocess.for_hint(live.hint)


class LiveModels:
    """Live models kept open between requests (two at most: a comparison's pair), keyed by ModelRef."""

    def __init__(self, keep: int = 2) -> None:
        self._keep = keep
        self._open: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, ref: ModelRef) -> Steps[Any]:
        """The live model for `ref`, opened (and the oldest closed) when it is not open yet."""
        from analyzers.runtime import open_live_model

        live = self._open.get(ref.key)
        if live is not None:
            self._open.move_to_end(ref.key)
            return live
        for key in [k for k in self._open if k[0] == ref.key[0]]:  # the same file with other options
            self._open.pop(key).close()
        while len(self._open) >= self._keep:
            self._open.popitem(last=False)[1].close()
        live = yield from open_live_model(ref.path, ref.options, ref.device)
        self._open[ref.key] = live
        return live

    def forget(self, path: Path | str | None = None) -> None:
        """Close the live models of `path` (every one when None)."""
        for key in [k for k in self._open if path is None or k[0] == str(path)]:
            self._open.pop(key).close()

    def __len__(self) -> int:
        return len(self._open)

    def paths(self) -> list[str]:
        """The files whose live models are open, oldest first."""
        return [key[0] for key in self._open]

    def leftover_hooks(self) -> list[str]:
        """Hooks still registered on any module of an open PyTorch model ('path: Module._forward_hooks x2');
        empty after every run, attribution or cancel (tests and the runner's self-check ask)."""
        found: list[str] = []
        for key, live in self._open.items():
            module = getattr(live, "module", None)
            if module is None or not hasattr(module, "modules"):
                continue
            from analyzers.runtime.torch_runtime import HOOK_DICTS

            for m in module.modules():
                for name in HOOK_DICTS:
                    hooks = getattr(m, name, None)
                    if hooks:
                        found.append(f"{Path(key[0]).name}: {type(m).__name__}.{name} x{len(hooks)}")
        return found


def run_job(models: LiveModels, ref: ModelRef, settings: RunSettings, token: CancelToken) -> Steps[RunOutcome]:
    """Open (or reuse) the model, build the input, predict and time it."""
    live = yield from models.get(ref)
    inp = build_input(live, settings.input)
    result = yield from live.run(inp, settings.top_k, settings.warmup, settings.runs, token)
    return RunOutcome(result, live.layers(), live.default_layer(), live.labels, [*live.notes, *inp.notes],
                      live.describe(), inp.describe())


def attribute_job(models: LiveModels, ref: ModelRef, settings: AttributeSettings, token: CancelToken
                  ) -> Steps[AttributeOutcome]:
    """Open (or reuse) the model, build the input, compute the map and, when asked, the randomisation check."""
    from analyzers.explain.attribution import attribute
    from analyzers.explain.sanity import randomization_check

    live = yield from models.get(ref)
    inp = build_input(live, settings.run.input)
    result = yield from attribute(live, inp, settings.request, token, settings.run.top_k)
    sanity = None
    if settings.sanity:
        sanity = yield from randomization_check(live, result, settings.sanity_layers, settings.request.seed, token)
    return AttributeOutcome(result, sanity, live.layers(), live.default_layer(), live.describe())


def attention_job(models: LiveModels, ref: ModelRef, settings: AttentionSettings, token: CancelToken
                  ) -> Steps[AttentionOutcome]:
    """Open (or reuse) the model, build the input and capture every attention layer's weights on it."""
    live = yield from models.get(ref)
    inp = build_input(live, settings.input)
    result = yield from live.attention(inp, token, settings.top_k)
    return AttentionOutcome(result, [*live.notes, *inp.notes, *result.notes], live.describe(), inp.describe())


def _choice_for(live: Any, choice: InputChoice, other: Any) -> InputChoice:
    """A bundled sample for a model that has none: the other model's sample file (its own preprocessing)."""
    if choice.kind != "sample" or live.sample is not None or other is None or other.sample is None:
        return choice
    picked = _sample_file(other, choice.value) or other.sample.default_sample
    if other.sample.input.kind in ("text", "qa"):
        return InputChoice("text", str(picked), choice.seed)
    return InputChoice("auto", str(picked), choice.seed, default_preprocess(live))


def _distribution(live: Any, inp: ModelInput, prediction: Any) -> Any:
    from analyzers.compare.outputs import distribution

    if prediction.kind != "classes":
        return None
    outputs = live.outputs(inp)
    main = next(iter(outputs.values()))
    return distribution(main.reshape(main.shape[0], -1)[0] if main.ndim else main, prediction.probabilities)


def compare_job(models: LiveModels, ref_a: ModelRef, ref_b: ModelRef, settings: CompareSettings,
                token: CancelToken) -> Steps[CompareOutcome]:
    """Run both models (kept open together) on one input; with a method, attribute both, B on A's target."""
    from analyzers.explain.attribution import AttributionRequest, attribute

    runs, lives, inputs, probs = [], [], [], []
    for ref in (ref_a, ref_b):
        live = yield from models.get(ref)
        lives.append(live)
    for i, live in enumerate(lives):
        choice = _choice_for(live, settings.run.input, lives[1 - i])
        inp = build_input(live, choice)
        yield Progress(i, 2, f"Running {'AB'[i]}: {live.path.name}")
        result = yield from live.run(inp, settings.run.top_k, settings.run.warmup, settings.run.runs, token)
        inputs.append(inp)
        probs.append(_distribution(live, inp, result.prediction))
        runs.append(RunOutcome(result, live.layers(), live.default_layer(), live.labels,
                               [*live.notes, *inp.notes], live.describe(), inp.describe()))
    notes: list[str] = []
    maps: list[AttributeOutcome | None] = [None, None]
    request = settings.request
    if request is not None:
        target = request.target
        for i, live in enumerate(lives):
            asked = request
            if i == 1:  # B explains A's target, at its own layer of the same name (else its default)
                shape = runs[1].result.prediction.output.shape
                if target is not None and target >= (int(np.prod(shape)) if shape else 1):
                    notes.append(f"B has no output {target}; its map explains its own prediction.")
                    target = None
                layer = request.layer if request.layer in {ref.path for ref in runs[1].layers} else None
                asked = AttributionRequest(request.method, target, layer=layer, qa_output=request.qa_output,
                                           seed=request.seed, internal_batch_size=request.internal_batch_size,
                                           params=dict(request.params))
            yield Progress(i, 2, f"Attributing {'AB'[i]}: {live.path.name}")
            result = yield from attribute(live, inputs[i], asked, token, settings.run.top_k)
            if i == 0:
                target = result.target
            maps[i] = AttributeOutcome(result, None, runs[i].layers, runs[i].default_layer, live.describe())
    return CompareOutcome(runs[0], runs[1], probs[0], probs[1], maps[0], maps[1], notes)


def hooks_job(models: LiveModels, _token: CancelToken) -> Steps[list[str]]:
    """The hooks left on open models (see LiveModels.leftover_hooks)."""
    yield Progress(0, None, "Checking hooks")
    return models.leftover_hooks()


def devices_job(_token: CancelToken) -> Steps[list[tuple[str, str]]]:
    """The devices torch can run on, as (name, description)."""
    from analyzers.runtime.devices import torch_devices

    yield Progress(0, None, "Listing devices")
    return [(d.name, d.description) for d in torch_devices()]


def warm_job(framework: str, _token: CancelToken) -> Steps[str]:
    """Import the framework a model of the shown kind will need (TensorFlow takes ~4 s), before the user
    presses Run; returns what was imported."""
    yield Progress(0, None, f"Preparing {framework}")
    if framework == "keras":
        from analyzers.runtime.tf_import import tensorflow

        tensorflow()
        import keras  # noqa: F401 - the import is the point

        return "keras"
    if framework == "torch":
        import torch  # noqa: F401 - the import is the point

        return "torch"
    return ""
