"""One weights job (statistics, quantisation preview, pruning preview on one checkpoint) and its JSON
document, schema `layerscope.weights/1` (`layerscope weights MODEL --json`, described in docs/weights.md).

The job opens the checkpoint's values with analyzers.weights.source and runs each analysis in turn;
it reads files (h5py, onnx, gguf), so the window runs it in the model-runner process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from analyzers.summary import ModelSummary
from analyzers.tasks import CancelToken, Steps
from analyzers.weights.accuracy import ShrinkReport
from analyzers.weights.quantize import PrunePreview, QuantPreview, prune_preview, quant_preview
from analyzers.weights.stats import HIST_BINS, WeightStats, weight_stats

SCHEMA = "layerscope.weights/1"


@dataclass(frozen=True)
class WeightsRequest:
    """What to compute: statistics, which quantisations, which pruning sparsity (None: none)."""

    stats: bool = True
    schemes: tuple[str, ...] = ()
    sparsity: float | None = None


@dataclass(frozen=True)
class WeightsAnalysis:
    """What a weights job found (None for what was not asked)."""

    stats: WeightStats | None = None
    quant: QuantPreview | None = None
    prune: PrunePreview | None = None
    notes: tuple[str, ...] = ()


def analyze_weights(summary: ModelSummary, request: WeightsRequest, token: CancelToken | None = None
                    ) -> Steps[WeightsAnalysis]:
    """Open the checkpoint's values and run the requested analyses, one streamed pass (or three) each."""
    from analyzers.weights.source import open_weights

    with open_weights(summary) as source:
        stats = (yield from weight_stats(summary, source, token)) if request.stats else None
        quant = (yield from quant_preview(summary, source, request.schemes, token)) if request.schemes else None
        prune = (yield from prune_preview(summary, source, request.sparsity, token)) \
            if request.sparsity is not None else None
        notes = tuple(source.notes)
    return WeightsAnalysis(stats, quant, prune, notes)


def _num(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def weights_to_json(summary: ModelSummary, analysis: WeightsAnalysis, shrink: ShrinkReport | None = None
                    ) -> dict[str, Any]:
    """The `layerscope.weights/1` document."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "source": {"path": summary.source.path, "format": summary.source.format,
                   "framework": summary.source.framework},
        "notes": list(analysis.notes),
    }
    if analysis.stats is not None:
        s = analysis.stats
        doc["stats"] = {
            "histogram_bins": HIST_BINS,
            "seconds": round(s.seconds, 3),
            "bytes_read": s.bytes_read,
            "model": (s.subtree("").to_json() if s.subtree("") is not None else None),
            "layers": [{"path": p, "type": s.layer_types.get(p, ""), **v.to_json()} for p, v in s.layers.items()],
            "tensors": [{"name": n, "layer": s.owners.get(n, ""), **v.to_json()} for n, v in s.tensors.items()],
            "findings": [f.to_json() for f in s.findings],
            "skipped": dict(s.skipped),
            "notes": list(s.notes),
        }
    if analysis.quant is not None:
        q = analysis.quant
        doc["quantization"] = {
            "schemes": list(q.schemes),
            "definitions": {"int8": "symmetric, one fp16 scale per output channel, levels -127..127",
                            "int4": "symmetric, one fp16 scale per group of 128 inputs of each output channel, "
                                    "levels -7..7"},
            "channel_axis": q.channel_axis,
            "model_bytes": q.model_bytes,
            "model_bytes_after": dict(q.model_bytes_after),
            "totals": {sch: q.totals(sch).to_json() for sch in q.schemes},
            "layers": [{"path": p, **{sch: e.to_json() for sch, e in errs.items()}} for p, errs in q.layers.items()],
            "tensors": [{"name": n, **{sch: e.to_json() for sch, e in errs.items()}} for n, errs in q.tensors.items()],
        }
    if analysis.prune is not None:
        pr = analysis.prune
        doc["pruning"] = {
            "method": "global magnitude: the smallest |w| of all eligible weights are zeroed",
            "sparsity": pr.sparsity,
            "achieved": pr.achieved,
            "threshold": _num(pr.threshold),
            "model_bytes": pr.model_bytes,
            "model_bytes_after": pr.model_bytes_after,
            "sparse_formats": "CSR (values + int32 column indices + int32 row pointers) or bitmap (1 bit per "
                              "weight + kept values), whichever is smaller; dense when neither saves bytes",
            "layers": [{"path": p, **loss.to_json()} for p, loss in pr.layers.items()],
            "tensors": [{"name": n, **loss.to_json()} for n, loss in pr.tensors.items()],
        }
    if shrink is not None:
        doc["accuracy"] = shrink.to_json()
    return _finite(doc)


def _finite(value: Any) -> Any:
    """NaN and infinities (a tensor full of NaN, an exact round trip) as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
