"""`layerscope.summary/1`: the JSON document `inspect --json` prints (schema in the README)."""

from __future__ import annotations

from typing import Any

from analyzers.summary import ModelSummary
from analyzers.summary.memory import MemoryLine, MemoryReport, estimate_memory
from analyzers.summary.params import layer_rows

SCHEMA = "layerscope.summary/1"


def _line(line: MemoryLine) -> dict[str, Any]:
    return {"bytes": line.bytes, "formula": line.formula}


def memory_json(report: MemoryReport) -> dict[str, Any]:
    """The `memory` object of the schema."""
    kv = report.kv_cache
    return {
        "weights_by_dtype": {d: line.bytes for d, line in report.weights.items()},
        "weights_as_stored": report.as_stored.bytes,
        "int4_group_size": report.int4_group,
        "inference": {
            "batch": report.batch,
            "seq_len": report.seq_len,
            "kv_cache": None if kv is None else {
                "layers": kv.layers, "kv_heads": kv.kv_heads, "head_dim": kv.head_dim,
                "bytes_bf16": kv.bytes(report.batch, report.seq_len or 0, 2.0),
            },
            **{d: _line(line) for d, line in report.inference.items()},
        },
        "training_adam": {k: _line(line) for k, line in report.training.items()},
        "formulas": {d: line.formula for d, line in report.weights.items()},
        "assumptions": list(report.assumptions),
    }


def summary_to_json(
    summary: ModelSummary,
    depth: int | None = None,
    batch: int = 1,
    seq_len: int | None = None,
    tensors: bool = True,
) -> dict[str, Any]:
    """The whole document as plain JSON-able data."""
    totals = summary.totals
    layers = []
    for row in layer_rows(summary, depth):
        entry: dict[str, Any] = {
            "path": row.path,
            "type": row.type,
            "depth": row.depth,
            "params": row.params,
            "params_total": row.params_total,
            "trainable_params_total": row.trainable_total,
            "buffers_total": row.buffers_total,
            "bytes_total": row.bytes_total,
            "percent": round(row.percent, 4),
            "dtypes": list(row.dtypes),
            "output_shape": list(row.output_shape) if row.output_shape else None,
            "flops": row.flops,
        }
        if tensors:
            node = summary.node(row.path)
            if node.attributes:
                entry["attributes"] = {k: _jsonable(v) for k, v in node.attributes.items()}
            entry["tensors"] = [
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "kind": t.kind,
                 "trainable": t.trainable, "shared_with": t.shared_with, "bytes": t.nbytes}
                for t in node.tensors
            ]
        layers.append(entry)
    return {
        "schema": SCHEMA,
        "source": {
            "path": summary.source.path,
            "format": summary.source.format,
            "framework": summary.source.framework,
            "files": list(summary.source.files),
            "size_bytes": summary.source.size_bytes,
        },
        "totals": {
            "params": totals.params,
            "trainable_params": totals.trainable_params,
            "non_trainable_params": totals.non_trainable_params,
            "buffers": totals.buffers,
            "param_bytes": totals.param_bytes,
            "buffer_bytes": totals.buffer_bytes,
            "bytes_by_dtype": dict(sorted(totals.bytes_by_dtype.items())),
            "tensors": totals.tensors,
            "layers": summary.node_count,
        },
        "layers": layers,
        "memory": memory_json(estimate_memory(summary, batch=batch, seq_len=seq_len)),
        "metadata": _jsonable(dict(summary.metadata)),
        "notes": list(summary.notes),
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)
