"""How much can a model shrink, and what does it cost? The bundled zoo's runnable models re-scored on their own
held-out sets after int8, int4 and global magnitude pruning, against the original.

The live model (in the model runner, or the CLI's process) keeps its weights; each variant writes a
transformed copy of the eligible weights (analyzers.weights.quantize.eligible: floating-point
parameters of two or more dimensions) into it, scores the held-out set the zoo's data generators
rebuild from their seeds (assets/zoo/data.py, the set the manifest's score was measured on), and puts
the original weights back, even when cancelled. A 0 % prune writes the weights unchanged, so it
reproduces the original score exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError
from analyzers.summary import TensorInfo
from analyzers.summary.dtypes import canonical_dtype
from analyzers.tasks import CancelToken, Progress, Steps
from analyzers.weights.accuracy import DEFAULT_VARIANTS, ShrinkReport, ShrinkRow, parse_variant, variant_label
from analyzers.weights.quantize import (
    channel_axis,
    int4_roundtrip,
    int8_roundtrip,
    magnitude_threshold,
    sizes_after,
    sparse_bytes,
)

BATCH = 256
SCORED_METRICS = ("accuracy", "exact match")


# --- the live model's weights --------------------------------------------------------------------------


class _Weights:
    """Read and write the eligible weights of a live PyTorch or Keras model as numpy arrays."""

    def __init__(self, live: Any) -> None:
        self.live = live
        self.framework = live.framework
        self.params: dict[str, Any] = {}
        self.dtypes: dict[str, str] = {}
        if self.framework == "torch":
            for name, p in live.module.named_parameters():
                self.dtypes[name] = canonical_dtype(p.dtype)
                if p.ndim >= 2 and p.is_floating_point():
                    self.params[name] = p
        else:
            for i, v in enumerate(live.model.weights):
                name = str(getattr(v, "path", None) or getattr(v, "name", f"weight_{i}"))
                dtype = str(getattr(v, "dtype", "float32"))
                self.dtypes[name] = dtype
                if len(v.shape) >= 2 and "float" in dtype:
                    self.params[name] = v

    def read(self) -> dict[str, np.ndarray]:
        """Copies of the eligible weights as float32."""
        if self.framework == "torch":
            return {n: p.detach().float().cpu().numpy().copy() for n, p in self.params.items()}
        return {n: np.array(v.numpy(), dtype=np.float32) for n, v in self.params.items()}

    def write(self, arrays: dict[str, np.ndarray]) -> None:
        """Put these values into the live model."""
        if self.framework == "torch":
            import torch

            with torch.no_grad():
                for n, arr in arrays.items():
                    p = self.params[n]
                    p.copy_(torch.from_numpy(arr).to(device=p.device, dtype=p.dtype))
            return
        for n, arr in arrays.items():
            v = self.params[n]
            v.assign(arr.astype(str(v.dtype)) if hasattr(arr, "astype") else arr)

    def infos(self) -> list[TensorInfo]:
        """The eligible weights as TensorInfos (their stored dtype), for the sizes after each transform."""
        return [TensorInfo(n, tuple(int(d) for d in p.shape), self.dtypes[n]) for n, p in self.params.items()]

    def all_bytes(self) -> int:
        """Bytes of every parameter of the live model."""
        if self.framework == "torch":
            return int(sum(p.numel() * p.element_size() for p in self.live.module.parameters()))
        return int(sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize for v in self.live.model.weights))


@contextlib.contextmanager
def _restored(weights: _Weights, original: dict[str, np.ndarray]) -> Iterator[None]:
    try:
        yield
    finally:
        weights.write(original)


# --- the held-out sets -----------------------------------------------------------------------------------


def heldout_scorer(entry: Any) -> tuple[int, Callable[[Any], float]]:
    """(examples, score(live)) for a zoo model: its held-out set rebuilt from the zoo's seeds and its metric."""
    from analyzers import samples
    from analyzers.explain.inputs import ModelInput

    if entry.metric not in SCORED_METRICS:
        raise LayerScopeError(f"{entry.title}'s {entry.metric} needs a second model to measure; the previews score "
                              "the zoo's classifiers (accuracy) and its QA model (exact match).")
    data = samples.zoo_module("data")
    spec = entry.input

    def classify(x: np.ndarray, y: np.ndarray, kind: str) -> tuple[int, Callable[[Any], float]]:
        def score(live: Any) -> float:
            right = 0
            for start in range(0, len(x), BATCH):
                out = live.outputs(ModelInput(kind, x[start:start + BATCH], "held-out set"))
                right += int((np.asarray(out["logits"]).argmax(1) == y[start:start + BATCH]).sum())
            return right / len(y)

        return len(y), score

    if spec.kind == "image":
        split = data.digits_split()
        x = (split.x_test / 255.0).astype(np.float32)
        x = x[..., None] if spec.layout == "NHWC" else x[:, None]
        return classify(x, split.y_test, "image")
    if spec.kind == "text":
        texts, y = data.sentiment_dataset(entry.heldout_size, data.HELDOUT_SEED)
        ids = np.stack([samples.encode_text(t, spec)[0] for t in texts])
        return classify(ids, y, "text")
    if spec.kind == "sequence":
        x, y, _ = data.marker_sequences(entry.heldout_size, data.HELDOUT_SEED)
        return classify(x, y, "sequence")
    if spec.kind == "qa":
        held = data.qa_dataset(entry.heldout_size, data.HELDOUT_SEED)
        encs = [samples.encode_qa(ex.question, ex.context, spec) for ex in held]

        def exact_match(live: Any) -> float:
            hits = 0
            for start in range(0, len(held), BATCH):
                part = encs[start:start + BATCH]
                inp = ModelInput("qa", np.stack([e.input_ids for e in part]), "held-out set", extras={
                    "token_type_ids": np.stack([e.token_type_ids for e in part]),
                    "attention_mask": np.stack([e.attention_mask for e in part])})
                out = live.outputs(inp)
                for i, (enc, ex) in enumerate(zip(part, held[start:start + BATCH])):
                    answer = samples.qa_answer(out["start_logits"][i], out["end_logits"][i], enc, ex.context)
                    hits += data.normalize_answer(answer) == data.normalize_answer(ex.answer)
            return hits / len(held)

        return len(held), exact_match
    raise LayerScopeError(f"{entry.title} takes {spec.kind} inputs, which have no held-out scorer here.")


# --- the job --------------------------------------------------------------------------------------------


def transformed(original: dict[str, np.ndarray], variant: str, framework: str
                ) -> tuple[dict[str, np.ndarray], list[TensorInfo] | None, float | None]:
    """The weights under one variant, and (for pruning) the threshold used."""
    kind, value = parse_variant(variant)
    axis = channel_axis(framework)
    if kind == "original":
        return original, None, None
    if kind == "int8":
        return {n: int8_roundtrip(w, axis) for n, w in original.items()}, None, None
    if kind == "int4":
        return {n: int4_roundtrip(w, axis) for n, w in original.items()}, None, None
    threshold = magnitude_threshold(original.values(), float(value or 0.0))
    if threshold is None:
        return {n: w.copy() for n, w in original.items()}, None, None
    return {n: np.where(np.abs(w) <= threshold, np.float32(0), w) for n, w in original.items()}, None, threshold


def _weight_bytes(weights: _Weights, variant: str, arrays: dict[str, np.ndarray], threshold: float | None) -> int:
    kind, _ = parse_variant(variant)
    total = weights.all_bytes()
    if kind == "prune" and threshold is None:
        return total
    axis = channel_axis(weights.framework)
    for info in weights.infos():
        if kind in ("int8", "int4"):
            total += sizes_after(info, axis)[kind] - info.nbytes
        elif kind == "prune":
            kept = int(np.count_nonzero(arrays[info.name]))
            if kept < info.numel:
                total += sparse_bytes(info, kept)[1] - info.nbytes
    return total


def shrink_job(models: Any, ref: Any, variants: tuple[str, ...] = DEFAULT_VARIANTS,
               token: CancelToken | None = None) -> Steps[ShrinkReport]:
    """Open (or reuse) a bundled model, score each variant on its held-out set, restore its weights."""
    from analyzers.samples import find_sample_model

    for v in variants:
        parse_variant(v)
    entry = find_sample_model(ref.path)
    if entry is None:
        raise LayerScopeError(f"{ref.path.name} is not one of the bundled sample models: the accuracy previews "
                              "need a held-out set, which only the sample zoo brings.")
    live = yield from models.get(ref)
    yield Progress(0, len(variants) + 1, f"Rebuilding the held-out set of {entry.title}")
    size, score = heldout_scorer(entry)
    weights = _Weights(live)
    original = weights.read()
    rows: list[ShrinkRow] = []
    base: float | None = None
    with _restored(weights, original):
        for i, variant in enumerate(("original", *[v for v in variants if v != "original"])):
            if token is not None:
                token.raise_if_cancelled()
            yield Progress(i + 1, len(variants) + 1, f"Scoring {variant_label(variant)} on {size} held-out examples")
            arrays, _, threshold = transformed(original, variant, weights.framework)
            weights.write(arrays)
            value = score(live)
            if base is None:
                base = value
            if variant in variants or variant == "original":
                rows.append(ShrinkRow(variant, variant_label(variant), value, value - base,
                                      _weight_bytes(weights, variant, arrays, threshold)))
    notes = (f"{len(original):,} weight tensors ({sum(a.size for a in original.values()):,} values) are transformed;"
             " biases and normalisation parameters stay as they are.",)
    return ShrinkReport(entry.id, entry.title, entry.metric, size, entry.heldout, tuple(rows),
                        sum(a.size for a in original.values()), notes)
