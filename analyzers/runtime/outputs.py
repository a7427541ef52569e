"""What running a model answers, framework-neutral: top-k classes, a QA span, or the raw output summarised,
with its timing. Plain data (numpy only), so it crosses to the window and into reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzers.explain.inputs import ModelInput

MAX_KEPT_OUTPUT = 1 << 16  # a raw output this small travels with its prediction (128x128 RGB; 256 KiB)


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


