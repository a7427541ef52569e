"""A format's registry entry is the one place that says how it is read, whether and how it runs, and how its
graph is drawn: the runtime, the Explain tab and the Graph tab all ask it, and agree on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzers.errors import UnsupportedFile
from analyzers.explain.model_hints import why_not_runnable
from analyzers.graph.standin import WRITERS, graph_format
from analyzers.loaders import GRAPH_RECIPES, RUNTIMES, find_loader, read_summary, registered, spec_for_format
from analyzers.runtime import framework_of
from tests.app import model_files


def test_every_format_says_how_it_runs_and_how_it_is_drawn() -> None:
    seen: dict[str, str] = {}
    for spec in registered():
        assert spec.runs in (*RUNTIMES, None), spec.name
        assert spec.runs is not None or spec.why_not_run.strip(), spec.name
        assert spec.graph in GRAPH_RECIPES, spec.name
        assert spec.graph in ("original", "weights-header", "none", "savedmodel") or spec.graph in WRITERS, spec.name
        for fmt in spec.formats:
            assert fmt not in seen, f"{fmt} is written by {seen[fmt]} and {spec.name}"
            seen[fmt] = spec.name


@pytest.mark.parametrize("make", ["safetensors_file", "state_dict_file", "full_module_file", "keras_file",
                                  "onnx_file", "gguf_file"])
def test_runtime_explain_tab_and_graph_tab_agree_with_the_registry(tmp_path: Path, make: str) -> None:
    fixture = getattr(model_files, make)(tmp_path)
    spec = find_loader(fixture.path)
    summary = read_summary(fixture.path)
    assert spec_for_format(summary.source.format) is spec
    assert graph_format(summary) == spec.graph
    if spec.runs is None:
        with pytest.raises(UnsupportedFile) as refused:
            framework_of(fixture.path)
        assert spec.why_not_run.rstrip(".") in str(refused.value)
        assert why_not_runnable(summary).lower().startswith(spec.why_not_run[:20].lower())
    else:
        assert framework_of(fixture.path) == spec.runs
        assert why_not_runnable(summary) is None
