"""Live models behind one small interface, so Captum (PyTorch) and tf.GradientTape (Keras) answer the same calls.

`open_live_model(path, options, device)` picks the framework from the file and returns steps that end
in a `LiveModel`: it predicts (top-k with labels, a QA answer span, or the raw output summarised),
measures latency and peak memory, lists its layers and computes attributions. This module imports no
framework; `torch_runtime` and `keras_runtime` do, and are imported only when a model of theirs opens.
"""

from __future__ import annotations

import statistics
import threading
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzers.errors import CorruptFile, LayerScopeError, UnsupportedFile, sentence
from analyzers.inputs import InputHint, ModelInput, TextEncoder, check_input_fits
from analyzers.tasks import CancelToken, Progress, Steps

if TYPE_CHECKING:
    from analyzers.attribution import AttributionRequest, RawAttribution
    from analyzers.loaders import LoadOptions

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors", ".jit", ".ts", ".torchscript")
MAX_KEPT_OUTPUT = 1 << 16  # a raw output this small travels with its prediction (128x128 RGB; 256 KiB)
NOT_RUNNABLE = {
    ".onnx": "ONNX models can be inspected but not run here",
    ".gguf": "GGUF files can be inspected but not run here",
    ".pt2": "torch.export programs can be inspected but not run here",
    ".tflite": "TFLite models are not supported",
}


@dataclass(frozen=True)
class LayerRef:
    """One layer of a live model, as the target-layer pickers list it."""

    path: str  # dotted module path (torch) or layer name (Keras)
    type: str  # "Conv2d", "Embedding", "Dense" ...
    kind: str  # "conv" | "embedding" | "linear" | "other"


@dataclass(frozen=True)
class ClassScore:
    """One of the top-k classes: index, label, probability and the raw score it came from."""

    index: int
    label: str
    probability: float
    score: float


@dataclass(frozen=True)
class Answer:
    """A question-answering span: its text, token positions and summed start+end logits."""

    text: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class OutputStats:
    """The raw output summarised, for models whose output has no labels (a generator, a regressor)."""

    shape: tuple[int, ...]
    min: float
    max: float
    mean: float
    std: float


@dataclass(frozen=True)
class Prediction:
    """What the model said about one input."""

    kind: str  # "classes" | "qa" | "raw"
    top: tuple[ClassScore, ...]
    output: OutputStats
    target: int  # the default attribution target: predicted class, answer start, or the largest output
    answer: Answer | None = None
    probabilities: str = "softmax"  # how probabilities were obtained: softmax | model | sigmoid | none
    # A raw output's first row as float32 (no batch axis) when it has at most MAX_KEPT_OUTPUT values:
    # what the Explain tab draws when the output is a picture (a generator's image).
    values: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form for `--json` output."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "target": self.target,
            "probabilities": self.probabilities,
            "top": [{"index": c.index, "label": c.label, "probability": c.probability, "score": c.score}
                    for c in self.top],
            "output": {"shape": list(self.output.shape), "min": self.output.min, "max": self.output.max,
                       "mean": self.output.mean, "std": self.output.std},
        }
        if self.answer is not None:
            out["answer"] = {"text": self.answer.text, "start": self.answer.start, "end": self.answer.end,
                             "score": self.answer.score}
        return out


@dataclass(frozen=True)
class Timing:
    """Latency (warm-up runs, then the median of timed runs) and peak memory of one forward pass."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    peak_bytes: int
    memory_kind: str  # "CUDA allocator peak" | "process RSS growth" | "TensorFlow GPU peak"

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"median_ms": self.median_ms, "min_ms": self.min_ms, "max_ms": self.max_ms, "runs": self.runs,
                "warmup": self.warmup, "peak_memory_bytes": self.peak_bytes, "peak_memory_kind": self.memory_kind}


@dataclass(frozen=True)
class RunResult:
    """A prediction with its timing and the device that ran it."""

    prediction: Prediction
    timing: Timing
    device: str
    framework: str
    input: Mapping[str, Any] = field(default_factory=dict)


class RssPeak:
    """Samples this process's resident memory in a thread; `growth` is the peak above the start."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = 0
        self.peak_rss = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssPeak:
        self.start_rss = self.peak_rss = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="layerscope-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    @property
    def growth(self) -> int:
        """Bytes the peak rose above the resident size at the start."""
        return max(0, self.peak_rss - self.start_rss)


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


# ---------------------------------------------------------------------------------------------
# Turning outputs into a prediction


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(row: np.ndarray) -> bool:
    """True when a row is already a distribution (a model that ends in softmax)."""
    return bool(row.size > 1 and np.all(row >= 0) and np.all(row <= 1) and abs(float(row.sum()) - 1.0) < 1e-3)


def summarise_outputs(outputs: Mapping[str, np.ndarray], labels: tuple[str, ...], top_k: int,
                      inp: ModelInput | None = None, task: str = "") -> Prediction:
    """Framework-neutral: top-k with labels, the QA span, or statistics of the raw output."""
    if "start_logits" in outputs and "end_logits" in outputs:
        return _qa_prediction(outputs["start_logits"][0], outputs["end_logits"][0], inp)
    main = np.asarray(next(iter(outputs.values())))
    row = main.reshape(main.shape[0], -1)[0].astype(np.float64) if main.ndim else main.reshape(1).astype(np.float64)
    stats = OutputStats(tuple(int(d) for d in main.shape[1:]), float(row.min()), float(row.max()),
                        float(row.mean()), float(row.std()))
    classifier = main.ndim == 2 and (bool(labels) or "classif" in task or task == "causal-lm" or main.shape[1] <= 1000)
    if not classifier or task.startswith("generat"):
        order = np.argsort(-np.abs(row))[:top_k]
        top = tuple(ClassScore(int(i), "", float("nan"), float(row[i])) for i in order)
        kept = main[0].astype(np.float32) if main.ndim and main[0].size <= MAX_KEPT_OUTPUT else None
        return Prediction("raw", top, stats, int(np.argmax(row)), probabilities="none", values=kept)
    if row.size == 1:
        value = float(row[0])
        if 0.0 <= value <= 1.0:
            p, how = value, "model"
        else:
            p, how = float(1.0 / (1.0 + np.exp(-value))), "sigmoid"
        # One output is one score: the probability of the positive class (the second of two labels, or the
        # only one). It is listed once, at its own index, so that the index is the attribution target.
        positive = labels[1] if len(labels) == 2 else labels[0] if len(labels) == 1 else "positive class"
        return Prediction("classes", (ClassScore(0, positive, p, value),), stats, 0, probabilities=how)
    if looks_like_probabilities(row):
        probs, how = row, "model"
    else:
        probs, how = softmax(row[None])[0], "softmax"
    order = np.argsort(-probs)[: max(1, top_k)]
    top = tuple(ClassScore(int(i), labels[i] if i < len(labels) else str(int(i)), float(probs[i]), float(row[i]))
                for i in order)
    return Prediction("classes", top, stats, int(order[0]), probabilities=how)


def _qa_prediction(start: np.ndarray, end: np.ndarray, inp: ModelInput | None, max_tokens: int = 30) -> Prediction:
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(end, dtype=np.float64)
    allowed = np.ones(s.shape[0], dtype=bool)
    if inp is not None and inp.context_mask is not None:
        allowed = np.asarray(inp.context_mask, dtype=bool)[: s.shape[0]]
    ss = np.where(allowed, s, -np.inf)
    ee = np.where(allowed, e, -np.inf)
    score = ss[:, None] + ee[None, :]
    i, j = np.indices(score.shape)
    score[(j < i) | (j - i >= max_tokens)] = -np.inf
    if not np.isfinite(score).any():
        score = s[:, None] + e[None, :]
        score[j < i] = -np.inf
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    text = ""
    if inp is not None and inp.offsets and inp.context and b < len(inp.offsets):
        text = inp.context[inp.offsets[a][0]: inp.offsets[b][1]]
    elif inp is not None and inp.tokens:
        text = " ".join(inp.tokens[a: b + 1]).replace(" ##", "")
    probs = softmax(ss[None])[0] if np.isfinite(ss).any() else softmax(s[None])[0]
    order = np.argsort(-probs)[:5]
    top = tuple(ClassScore(int(k), inp.tokens[k] if inp is not None and k < len(inp.tokens) else str(int(k)),
                           float(probs[k]), float(s[k])) for k in order)
    stats = OutputStats((2, int(s.shape[0])), float(min(s.min(), e.min())), float(max(s.max(), e.max())),
                        float((s.mean() + e.mean()) / 2), float(np.concatenate([s, e]).std()))
    return Prediction("qa", top, stats, int(a), Answer(text, int(a), int(b), float(score[a, b])), "softmax")


# ---------------------------------------------------------------------------------------------
# Opening


def sharded_safetensors_index(folder: Path) -> Path | None:
    """The `*.safetensors.index.json` of a folder of shards without config.json (run with an --arch), or None."""
    if (folder / "config.json").is_file():
        return None
    found = sorted(folder.glob("*.safetensors.index.json"))
    return found[0] if len(found) == 1 else None


def framework_of(path: Path) -> str:
    """'torch' or 'keras' for a model file or folder; one sentence when it cannot be run."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return "torch"
        if sharded_safetensors_index(path) is not None:
            return "torch"
        if (path / "saved_model.pb").is_file():
            raise UnsupportedFile(sentence(path, "TensorFlow SavedModel folders can be inspected but not run here; "
                                                 "save the model as .keras to run it"))
        raise UnsupportedFile(sentence(path, "this folder holds no model LayerScope can run"))
    if path.name.lower().endswith(".safetensors.index.json"):
        return "torch"
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix in NOT_RUNNABLE:
        raise UnsupportedFile(sentence(path, NOT_RUNNABLE[suffix]))
    if suffix in TORCH_SUFFIXES or zipfile.is_zipfile(path):
        return "torch"
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return "keras"
    if head.startswith(b"\x80"):
        return "torch"
    raise UnsupportedFile(sentence(path, f"'{path.suffix or path.name}' is not a model format LayerScope can run"))


def open_live_model(path: Path | str, options: LoadOptions | None = None, device: str = "auto") -> Steps[LiveModel]:
    """Steps that load `path` for inference on `device` (auto: CUDA, else MPS, else CPU)."""
    from analyzers.loaders import LoadOptions

    path = Path(path).expanduser()
    options = options or LoadOptions()
    if not path.exists():
        raise UnsupportedFile(sentence(path, "no such file or folder"))
    kind = framework_of(path)
    try:
        if kind == "keras":
            from analyzers.runtime.keras_runtime import open_keras

            return (yield from open_keras(path, options, device))
        from analyzers.runtime.torch_runtime import open_torch

        return (yield from open_torch(path, options, device))
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


def zoo_entry(path: Path) -> Any:
    """The bundled sample-model entry for `path`, or None (also None when the zoo is not installed)."""
    try:
        from analyzers.samples import find_sample_model
    except ImportError:
        return None
    return find_sample_model(path)


def ensure_input_fits(live: LiveModel, inp: ModelInput) -> None:
    """One sentence when an input cannot go into this model (wrong kind or shape, token ids outside the
    vocabulary)."""
    check_input_fits(live.hint, inp, live.vocab_size())
