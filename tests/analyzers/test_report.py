"""Reports, format by format, written and read back: JSON against its schema and inspect --json, CSV rows summing
to the total, Markdown images beside it, hostile names as text, and atomic writes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from analyzers.loaders import read_summary
from analyzers.report.formats import write_text_report
from analyzers.report.model import model_section, new_report
from analyzers.report.schema import REPORT_SCHEMA
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.document import summary_to_json
from analyzers.tasks import drive
from tests.app.model_files import safetensors_file, state_dict_file


def report_of(path: Path, depth: int = 2):
    summary = read_summary(path)
    return summary, new_report([drive(model_section(summary, depth))], f"layerscope report {path}")


def test_json_report_validates_and_its_totals_equal_inspect_json(tmp_path: Path) -> None:
    import hashlib

    import jsonschema

    fixture = state_dict_file(tmp_path)
    summary, report = report_of(fixture.path)
    out = write_text_report(report, tmp_path / "r.json")
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, REPORT_SCHEMA)
    model = doc["models"][0]
    assert model["summary"]["totals"] == summary_to_json(summary)["totals"]
    assert model["summary"]["totals"]["params"] == fixture.params  # torch's own count, through the fixture
    assert model["sha256"] == hashlib.sha256(fixture.path.read_bytes()).hexdigest()
    assert model["size_bytes"] == fixture.path.stat().st_size


def test_csv_has_one_row_per_layer_and_own_params_sum_to_the_total(tmp_path: Path) -> None:
    fixture = safetensors_file(tmp_path)
    summary, report = report_of(fixture.path, depth=0)  # depth limits tables, never the CSV
    out = write_text_report(report, tmp_path / "r.csv")
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == summary.node_count
    assert sum(int(r["params"]) for r in rows) == fixture.params
    assert {r["path"] for r in rows} == {node.path for node, _ in summary.walk()}


def test_markdown_writes_its_images_beside_it(tmp_path: Path) -> None:
    import numpy as np

    from analyzers.explain.attribution import Attribution
    from analyzers.explain.inputs import ModelInput
    from analyzers.report.model import attach_attribution
    from analyzers.runtime.outputs import OutputStats, Prediction

    fixture = safetensors_file(tmp_path)
    _, report = report_of(fixture.path)
    inp = ModelInput("image", np.zeros((1, 1, 8, 8), np.float32), "x.png", display=np.zeros((8, 8)), layout="NCHW")
    prediction = Prediction("classes", (), OutputStats((10,), 0, 1, 0.5, 0.1), 3)
    attribution = Attribution("saliency", {"abs": True}, 3, "three", np.random.default_rng(0).random((1, 8, 8)),
                              inp, prediction, "cpu", "torch", 0.01)
    attach_attribution(report.models[0], attribution)
    out = write_text_report(report, tmp_path / "r.md")
    text = out.read_text()
    image = tmp_path / "r_files" / "model0_attribution0.png"
    assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](r_files/model0_attribution0.png)" in text and "| Parameters |" in text


HOSTILE = ["<img src=x onerror=alert(1)>", "</table><script>alert(2)</script>", "ü" * 3 + "-中文-" + "x" * 300,
           "pipe|name\nnewline"]


def hostile_summary(tmp_path: Path) -> ModelSummary:
    children = tuple(LayerNode(f"layer{i}", name, (TensorInfo(f"layer{i}.{name}", (2, 2), "float32"),))
                     for i, name in enumerate(HOSTILE))
    root = LayerNode("", "<b>Root</b>", children=children)
    path = tmp_path / "evil<script>.safetensors"
    path.write_bytes(b"x")
    return ModelSummary(SourceInfo(str(path), "safetensors", "", (str(path),), 1), root,
                        notes=("<script>alert('note')</script>",))


def test_hostile_names_render_as_text_everywhere(tmp_path: Path) -> None:
    summary = hostile_summary(tmp_path)
    report = new_report([drive(model_section(summary, 3))], "layerscope report x")
    html = write_text_report(report, tmp_path / "r.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html and "</table><script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(&#39;note&#39;)" in html
    assert "-中文-" in html
    markdown = write_text_report(report, tmp_path / "r.md").read_text()
    assert "<script>" not in markdown and "pipe\\|name newline" in markdown


def test_a_failure_mid_write_keeps_the_previous_report_and_leaves_no_temporary_file(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    from analyzers.report import formats

    fixture = safetensors_file(tmp_path)
    _, report = report_of(fixture.path)
    target = tmp_path / "r.html"
    target.write_text("the previous report")

    def broken(_report):
        raise RuntimeError("disk full")

    monkeypatch.setattr("analyzers.report.html.render_html", broken)
    with pytest.raises(RuntimeError):
        formats.write_text_report(report, target)
    assert target.read_text() == "the previous report"

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("<html>half")
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        formats.write_atomic(target, half_then_fail)
    assert target.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_unknown_suffix_is_one_sentence(tmp_path: Path) -> None:
    from analyzers.errors import LayerScopeError
    from analyzers.report.formats import format_for

    with pytest.raises(LayerScopeError, match=r"^r\.docx: '\.docx' is not a report format; use \.html, \.pdf"):
        format_for(tmp_path / "r.docx")
