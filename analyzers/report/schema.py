"""JSON Schema (draft 2020-12) of `layerscope.report/1`, for anyone who reads the JSON reports (and the tests)."""

from __future__ import annotations

from typing import Any

_COUNTS = {"type": "integer", "minimum": 0}
_NULLABLE_OBJECT = {"type": ["object", "null"]}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "layerscope.report/1",
    "type": "object",
    "required": ["schema", "title", "created", "command", "versions", "sections", "models", "compare"],
    "properties": {
        "schema": {"const": "layerscope.report/1"},
        "title": {"type": "string"},
        "created": {"type": "string"},
        "command": {"type": "string"},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}, "required": ["layerscope"]},
        "device": {"type": ["string", "null"]},
        "sections": {"type": "array", "items": {"type": "string"}},
        "models": {
            "type": "array", "minItems": 1, "maxItems": 2,
            "items": {
                "type": "object",
                "required": ["name", "path", "format", "framework", "size_bytes", "sha256", "files", "summary",
                             "memory", "notes", "run", "attributions", "attention", "weights"],
                "properties": {
                    "name": {"type": "string"}, "path": {"type": "string"}, "format": {"type": "string"},
                    "framework": {"type": "string"}, "size_bytes": _COUNTS,
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "files": {"type": "array", "items": {
                        "type": "object", "required": ["path", "size", "sha256"],
                        "properties": {"path": {"type": "string"}, "size": _COUNTS,
                                       "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
                    "summary": {
                        "type": "object", "required": ["schema", "source", "totals", "layers", "memory"],
                        "properties": {
                            "schema": {"const": "layerscope.summary/1"},
                            "totals": {"type": "object",
                                       "required": ["params", "trainable_params", "non_trainable_params", "buffers",
                                                    "param_bytes", "bytes_by_dtype"],
                                       "properties": {k: _COUNTS for k in ("params", "trainable_params",
                                                                           "non_trainable_params", "buffers",
                                                                           "param_bytes")}},
                            "layers": {"type": "array", "items": {
                                "type": "object", "required": ["path", "type", "depth", "params", "params_total"],
                                "properties": {"path": {"type": "string"}, "depth": _COUNTS, "params": _COUNTS,
                                               "params_total": _COUNTS}}},
                        },
                    },
                    "memory": {"type": "object", "required": ["weights_by_dtype", "inference", "training_adam"]},
                    "notes": {"type": "array", "items": {"type": "string"}},
                    "run": _NULLABLE_OBJECT,
                    "attributions": {"type": "array", "items": {"type": "object",
                                                                "required": ["method", "parameters", "target"]}},
                    "attention": _NULLABLE_OBJECT,
                    "weights": _NULLABLE_OBJECT,
                },
            },
        },
        "compare": _NULLABLE_OBJECT,
    },
}
