"""Reports in a real browser engine: the HTML loads in QtWebEngine offscreen with no console error and no network
request, shows its rows and is not blank; the PDF's text reads back; the window's Export report writes them; the
CLI writes them and refuses bad requests in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzers.loaders import read_summary
from analyzers.report.formats import write_text_report
from analyzers.report.model import model_section, new_report
from analyzers.summary.params import layer_rows
from analyzers.tasks import drive
from tests.app.model_files import safetensors_file
from tests.cli_helpers import run_cli


def pixel_variance(image) -> float:
    from PIL import Image, ImageStat

    buffer = image.constBits()
    pil = Image.frombytes("RGBA", (image.width(), image.height()), bytes(buffer)[: image.width() * image.height() * 4])
    return float(ImageStat.Stat(pil.convert("L")).var[0])


def test_the_html_report_loads_offline_with_its_rows_and_is_not_blank(qtbot, tmp_path: Path) -> None:
    from app.report_browser import check_page

    fixture = safetensors_file(tmp_path)
    summary = read_summary(fixture.path)
    report = new_report([drive(model_section(summary, 2))], "layerscope report x")
    page = write_text_report(report, tmp_path / "report.html")
    check = check_page(page)
    assert check.loaded and check.console_errors == [] and check.requests == []
    assert check.rows == len(layer_rows(summary, 2))
    assert pixel_variance(check.screenshot.convertToFormat(check.screenshot.Format.Format_RGBA8888)) > 50
    check.screenshot.save(str(tmp_path / "report.png"))


def test_the_request_counter_sees_a_page_that_reaches_out(qtbot, tmp_path: Path) -> None:
    """The no-request assertion above means something: a page that asks the network is counted (and blocked)."""
    from app.report_browser import check_page

    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://198.51.100.7/pixel.png"><script>undefinedFunction()</script>'
                    "</body></html>")
    check = check_page(page)
    assert check.requests == ["http://198.51.100.7/pixel.png"]
    assert check.console_errors and "undefinedFunction" in check.console_errors[0]


@pytest.mark.parametrize("size", ["A4", "Letter"])
def test_the_pdf_is_the_same_page_printed_and_its_text_reads_back(qtbot, tmp_path: Path, size: str) -> None:
    import pypdf

    from analyzers.report.html import render_html
    from app.report_browser import print_pdf

    fixture = safetensors_file(tmp_path)
    summary = read_summary(fixture.path)
    report = new_report([drive(model_section(summary, 2))], "layerscope report x")
    out = print_pdf(render_html(report), tmp_path / "report.pdf", size)
    reader = pypdf.PdfReader(str(out))
    text = " ".join(p.extract_text() for p in reader.pages)
    assert fixture.path.name in text and f"{fixture.params:,}" in text
    width_mm = float(reader.pages[0].mediabox.width) / 72 * 25.4
    assert width_mm == pytest.approx(210 if size == "A4" else 215.9, abs=1)


def test_export_report_from_the_window(make_window, open_and_wait, qtbot, tmp_path: Path) -> None:
    from app.features.report import install, section_availability
    from widgets.report_dialog import ReportChoice, ReportDialog

    window = make_window(interactive=False)
    feature = install(window)
    assert feature.action.shortcut().toString() == "Ctrl+E" and feature.action in window.menu("file").actions()
    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    available = section_availability(window.session)
    assert available["run"] and available["attribution"] and not available["layers"]  # no run yet: greyed out
    dialog = ReportDialog(available, [1, 3, 0])
    qtbot.addWidget(dialog)
    assert not dialog.boxes["run"].isEnabled() and dialog.boxes["run"].toolTip().startswith("Run the model")
    dialog.depth.setValue(1)
    assert "to depth 1: 4 rows" in dialog.preview_text()
    for fmt, suffix in (("html", ".html"), ("json", ".json"), ("pdf", ".pdf")):
        target = tmp_path / f"exported{suffix}"
        choice = ReportChoice(("header", "totals", "layers", "notes"), 2, fmt, suffix, "A4")
        with qtbot.waitSignal(feature.exported, timeout=120_000) as done:
            feature.export(target, choice)
        assert done.args == [str(target)] and target.stat().st_size > 0
    doc = json.loads((tmp_path / "exported.json").read_text())
    assert doc["models"][0]["summary"]["totals"]["params"] == fixture.params and doc["sections"][0] == "header"


def test_the_report_command_writes_and_refuses_in_one_sentence(tmp_path: Path) -> None:
    fixture = safetensors_file(tmp_path)
    out = tmp_path / "r.json"
    ok = run_cli("report", str(fixture.path), "--out", str(out), "--depth", "1", timeout=240)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.strip() == ""
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("layerscope report ") and "--depth 1" in doc["command"]
    for args, message in ((["--out", str(tmp_path / "r.docx")], "is not a report format"),
                          (["--out", str(tmp_path / "no" / "r.html")], "does not exist"),
                          (["--out", str(tmp_path / "r.html"), "--sections", "layers,bogus"], "unknown section 'bogus'")):
        bad = run_cli("report", str(fixture.path), *args, timeout=120)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and message in lines[0], bad.stderr


@pytest.mark.slow
def test_the_report_command_with_an_attribution_on_the_bundled_cnn(tmp_path: Path) -> None:
    from tests.zoo_helpers import zoo_or_skip

    entry = zoo_or_skip("digits_cnn_torch")
    out = tmp_path / "r.json"
    res = run_cli("report", str(entry.file), "--input", "sample:3", "--method", "ig", "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr
    model = json.loads(out.read_text())["models"][0]
    assert model["run"]["prediction"]["top"][0]["index"] == 3
    (attribution,) = model["attributions"]
    assert attribution["method"] == "ig" and attribution["completeness"]["within_1_percent"]


@pytest.mark.slow
def test_a_report_of_two_models_embeds_their_comparison(tmp_path: Path) -> None:
    """report A B --weights holds both models and the compare/1 document the compare command prints."""
    from tests.zoo_helpers import zoo_or_skip

    a = zoo_or_skip("digits_cnn_keras").file
    b = a.with_name("digits_cnn_pruned.keras")
    if not b.exists():
        pytest.skip("the pruned copy of the digits CNN is not built")
    out = tmp_path / "r.json"
    res = run_cli("report", str(a), str(b), "--weights", "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert [m["name"] for m in doc["models"]] == [a.name, b.name]
    direct = run_cli("compare", str(a), str(b), "--weights", "--json", timeout=300)
    theirs = json.loads(direct.stdout)
    ours = doc["compare"]
    assert ours["schema"] == "layerscope.compare/1" and ours["drift"]["model"] == theirs["drift"]["model"]
    assert ours["drift"]["model"]["sparsity_b"] > 0.45  # half of every kernel is zero in the pruned copy
    html = tmp_path / "r.html"
    assert run_cli("report", str(a), str(b), "--out", str(html), timeout=300).returncode == 0
    assert "Aligned layers" in html.read_text() and "Comparison: A =" in html.read_text()


@pytest.mark.slow
def test_a_report_with_attention_holds_the_vits_maps(tmp_path: Path) -> None:
    import torch

    from analyzers.loaders import LoadOptions
    from analyzers.runtime import load_live_model
    from tests.zoo_helpers import zoo_or_skip

    entry = zoo_or_skip("digits_vit_torch")
    out = tmp_path / "r.json"
    res = run_cli("report", str(entry.file), "--input", "sample:0", "--attention", "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr
    attention = json.loads(out.read_text())["models"][0]["attention"]
    module = load_live_model(entry.file, LoadOptions()).module
    mha = [m for m in module.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert attention["schema"] == "layerscope.attention/1"
    assert len(attention["layers"]) == len(mha) and attention["heads"] == mha[0].num_heads
    html = tmp_path / "r.html"
    assert run_cli("report", str(entry.file), "--input", "sample:0", "--attention", "--out", str(html),
                   timeout=300).returncode == 0
    assert html.read_text().count('alt="') >= 2 and "rollout through every layer" in html.read_text()
