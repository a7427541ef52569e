"""The bundled sample zoo: its manifest (light: json only), its inputs (numpy) and its README table.

`from analyzers.samples import X` keeps working for every name: the manifest's are imported at once,
the rest on first use, so asking for the default model costs the window no numpy import.
"""

from __future__ import annotations

import importlib
from typing import Any

from analyzers.samples.manifest import (
    ASSETS,
    DEFAULT_MODEL_ID,
    FILE_KINDS,
    MANIFEST,
    REPO,
    SCHEMA,
    InputSpec,
    SampleModel,
    default_model,
    find_sample_model,
    load_manifest,
    resolved_arch,
    sample_model,
    with_sample_arch,
    zoo_module,
)

_LAZY = {
    "zoo_inputs": ("TOKEN_PATTERN", "prepare_image", "read_vocab", "tokenize", "encode_text", "QAInputs",
                   "encode_qa", "qa_answer", "parse_qa_sample", "prepare_input"),
    "readme": ("SEED_PROBLEMS", "samples_markdown", "README_BEGIN", "README_END", "readme_with_samples"),
}

__all__ = ["ASSETS", "DEFAULT_MODEL_ID", "FILE_KINDS", "MANIFEST", "REPO", "SCHEMA", "InputSpec", "SampleModel",
           "default_model", "find_sample_model", "load_manifest", "resolved_arch", "sample_model",
           "with_sample_arch", "zoo_module", *(n for names in _LAZY.values() for n in names)]


def __getattr__(name: str) -> Any:
    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
