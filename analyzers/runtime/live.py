"""The live-model interface every framework implements, so Captum and tf.GradientTape answer the same calls."""

from __future__ import annotations

import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzers.explain.inputs import InputHint, ModelInput, TextEncoder
from analyzers.runtime.outputs import Prediction, RunResult, Timing, summarise_outputs
from analyzers.tasks import CancelToken, Progress, Steps

if TYPE_CHECKING:
    from analyzers.explain.attention import AttentionResult
    from analyzers.explain.attribution import AttributionRequest, RawAttribution


@dataclass(frozen=True)
class LayerRef:
    """One layer of a live model, as the target-layer pickers list it."""

    path: str  # dotted module path (torch) or layer name (Keras)
    type: str  # "Conv2d", "Embedding", "Dense" ...
    kind: str  # "conv" | "embedding" | "linear" | "other"


class LiveModel(ABC):
    """A model loaded for inference and attribution; the same calls for every framework."""

    framework: str = ""  # "torch" | "keras"

    def __init__(self, path: Path, fmt: str, device: str, *, hint: InputHint, labels: tuple[str, ...] = (),
                 task: str = "", notes: list[str] | None = None, sample: Any = None,
                 encoder: TextEncoder | None = None) -> None:
        self.path = Path(path)
        self.format = fmt  # "module" | "torchscript" | "hf" | "state_dict" | "keras"
        self.device = device
        self.hint = hint
        self.labels = tuple(labels)
        self.task = task
        self.notes = list(notes or [])
        self.sample = sample  # the analyzers.samples.SampleModel when this is a bundled model
        self.encoder = encoder

    # --- what each framework provides ---------------------------------------------------------

    @abstractmethod
    def outputs(self, inp: ModelInput) -> dict[str, np.ndarray]:
        """Named outputs of one forward pass as numpy ("logits", or "start_logits"/"end_logits" for QA)."""

    @abstractmethod
    def layers(self) -> list[LayerRef]:
        """Every layer, in model order, for the target-layer pickers."""

    @abstractmethod
    def attribute(self, inp: ModelInput, request: AttributionRequest, token: CancelToken | None = None
                  ) -> Steps[RawAttribution]:
        """Compute `request` (its target already resolved) on `inp`; cancellable, leaves no hook behind."""

    def attention(self, inp: ModelInput, token: CancelToken | None = None, top_k: int = 5
                  ) -> Steps[AttentionResult]:
        """Every attention layer's (heads, query, key) weights on `inp`, with the prediction of the same pass;
        one sentence when the model has no attention LayerScope can read. Leaves no hook behind."""
        from analyzers.errors import LayerScopeError, sentence

        raise LayerScopeError(sentence(self.path, "LayerScope cannot read attention from this kind of model"))
        yield  # a generator, like every step method

    @abstractmethod
    def randomized(self, top_layers: int = 1, seed: int = 0) -> LiveModel:
        """A copy whose last `top_layers` parameterised layers are re-initialised (the Adebayo check)."""

    @abstractmethod
    def timed_forward(self, inp: ModelInput) -> Callable[[], None]:
        """A closure running one forward pass and waiting for the device (what latency measures)."""

    @abstractmethod
    def peak_memory(self) -> Any:
        """A context manager whose `.bytes` / `.kind` give the peak memory of the work inside it."""

    # --- shared by every framework -----------------------------------------------------------

    def default_layer(self) -> str | None:
        """The Grad-CAM layer used when none is chosen: the last convolution."""
        convs = [layer.path for layer in self.layers() if layer.kind == "conv"]
        return convs[-1] if convs else None

    def embedding_layer(self) -> str | None:
        """The token-embedding layer text attributions integrate over (the first embedding)."""
        embeds = [layer.path for layer in self.layers() if layer.kind == "embedding"]
        return embeds[0] if embeds else None

    def vocab_size(self) -> int | None:
        """Rows of the token embedding, when the model has one (random token ids stay below it)."""
        return None

    def is_text(self, inp: ModelInput) -> bool:
        """True when the input is token ids (attributions go through the embedding)."""
        return inp.kind in ("text", "qa") or (self.hint.kind in ("text", "qa") and inp.array.dtype.kind in "iu")

    def predict(self, inp: ModelInput, top_k: int = 5) -> Prediction:
        """Top-k classes with labels and probabilities, the QA answer span, or the raw output summarised."""
        return summarise_outputs(self.outputs(inp), self.labels, top_k, inp, self.task)

    def benchmark(self, inp: ModelInput, warmup: int = 2, runs: int = 10, max_seconds: float = 10.0,
                  token: CancelToken | None = None) -> Steps[Timing]:
        """Warm-up runs, the median of up to `runs` timed runs (fewer past max_seconds), then peak memory."""
        call = self.timed_forward(inp)
        total = warmup + runs
        for i in range(warmup):
            if token is not None:
                token.raise_if_cancelled()
            yield Progress(i, total, "Warming up")
            call()
        times: list[float] = []
        started = time.perf_counter()
        for i in range(runs):
            if token is not None:
                token.raise_if_cancelled()
            yield Progress(warmup + i, total, f"Timing run {i + 1} of {runs}")
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000.0)
            if time.perf_counter() - started > max_seconds:
                break
        yield Progress(total, total, "Measuring peak memory")
        with self.peak_memory() as mem:  # its own passes, so a memory sampler never slows the timed ones
            for _ in range(min(3, len(times))):
                call()
        return Timing(statistics.median(times), min(times), max(times), len(times), warmup, int(mem.bytes), mem.kind)

    def run(self, inp: ModelInput, top_k: int = 5, warmup: int = 2, runs: int = 10,
            token: CancelToken | None = None) -> Steps[RunResult]:
        """Predict and time one input: what `layerscope run` and the Run button do."""
        yield Progress(0, None, "Running the model")
        prediction = self.predict(inp, top_k)
        timing = yield from self.benchmark(inp, warmup, runs, token=token)
        return RunResult(prediction, timing, self.device, self.framework, inp.describe())

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the model for reports."""
        return {"path": str(self.path), "framework": self.framework, "format": self.format, "device": self.device,
                "task": self.task, "input": {"kind": self.hint.kind, "shape": self.hint.describe(),
                                             "dtype": self.hint.dtype, "layout": self.hint.layout},
                "labels": len(self.labels), "notes": list(self.notes)}

    def close(self) -> None:
        """Release what the model holds (GPU memory); the object is unusable afterwards."""
        self.encoder = None


