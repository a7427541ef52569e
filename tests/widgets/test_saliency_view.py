"""The saliency view draws what analyzers normalise; the token view colours tokens; the run panel's intent."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.explain.attribution import Attribution, AttributionRequest
from analyzers.explain.display import normalize, render_overlay, save_png, to_2d
from analyzers.explain.inputs import ModelInput
from analyzers.runtime import LayerRef, summarise_outputs
from widgets.run_panel import AttributeSettings, RunPanel, RunSettings
from widgets.saliency_view import SaliencyPanel, SaliencyView
from widgets.token_view import TokenView


def raw_map(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(1, 20, 20)).astype(np.float32)


def test_view_shows_the_heat_over_the_image_with_a_transparent_centre(qtbot):
    view = SaliencyView()
    qtbot.addWidget(view)
    heat = np.clip(raw_map()[0], -1, 1)
    image = np.random.default_rng(1).random((20, 20)).astype(np.float32)
    view.set_result(image, heat, symmetric=True)
    np.testing.assert_array_equal(view.heat.image, heat)
    np.testing.assert_array_equal(view.base.image, image)
    assert tuple(view.heat.levels) == (-1.0, 1.0)
    lut = view.heat.lut
    assert lut.shape[1] == 4 and lut[len(lut) // 2, 3] <= 2  # near-zero attribution is invisible
    with qtbot.waitSignal(view.opacityChanged) as sig:
        view.set_opacity(0.25)
    assert sig.args == [0.25] and view.heat.opacity() == pytest.approx(0.25)


def test_panel_normalises_like_analyzers_and_restyles_without_recomputing(qtbot, tmp_path):
    panel = SaliencyPanel()
    qtbot.addWidget(panel)
    raw = raw_map(2)
    image = np.random.default_rng(3).random((20, 20)).astype(np.float32)
    panel.set_map(raw, image, "NCHW", "all", "caption")
    np.testing.assert_allclose(panel.normalized, normalize(to_2d(raw, "NCHW"), "all", 2.0))
    panel.sign.setCurrentText("positive")
    assert panel.colormap.currentText() == "heat"
    np.testing.assert_allclose(panel.normalized, normalize(to_2d(raw, "NCHW"), "positive", 2.0))
    panel.outlier.setValue(10.0)
    np.testing.assert_allclose(panel.normalized, normalize(to_2d(raw, "NCHW"), "positive", 10.0))
    assert tuple(panel.view.heat.levels) == (0.0, 1.0)
    panel.opacity.setValue(40)
    assert panel.view.opacity() == pytest.approx(0.4)

    with qtbot.waitSignal(panel.saved):
        npy = panel.save_npy(tmp_path / "map.npy")
    np.testing.assert_array_equal(np.load(npy), raw)
    png = panel.save_png(tmp_path / "view.png")
    expected = save_png(tmp_path / "expected.png",
                        render_overlay(raw, image, "NCHW", "positive", 10.0, "heat", 0.4))
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(expected)))


def test_token_view_colours_the_strongest_token_most(qtbot):
    view = TokenView()
    qtbot.addWidget(view)
    view.set_tokens(["it", "was", "<b>", "wonderful"], np.array([0.01, -0.02, 0.0, 0.9]), caption="IG")
    assert view.strongest(1) == ["wonderful"]
    alphas = [c[3] for c in view.colors]
    assert alphas[3] == max(alphas) and alphas[2] == 0
    assert "&lt;b&gt;" in view.toHtml() and "wonderful" in view.toPlainText()


def _attribution(inp: ModelInput, amap: np.ndarray, method: str = "ig") -> Attribution:
    pred = summarise_outputs({"logits": np.array([[0.1, 2.0, -1.0]])}, ("cat", "dog", "eel"), 3, inp)
    return Attribution(method, {"steps": 64}, 1, "dog", amap, inp, pred, "cpu", "torch", 0.5, delta=1e-4)


def test_run_panel_emits_plain_requests_and_shows_results(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    layers = [LayerRef("features.0", "Conv2d", "conv"), LayerRef("head", "Linear", "linear")]
    panel.set_model("cnn.pt (pytorch-module)", "image", [("seven.png", "0"), ("two.png", "1")], None, layers,
                    ("cat", "dog", "eel"))
    assert panel.source.currentData() == "sample" and panel.sample.count() == 2
    with qtbot.waitSignal(panel.runRequested) as run_sig:
        panel.run_button.click()
    settings = run_sig.args[0]
    assert isinstance(settings, RunSettings) and settings.input.kind == "sample" and settings.device == "auto"

    panel.method.setCurrentIndex(panel.method.findData("gradcam"))
    assert panel.layer.isVisibleTo(panel) and not panel.controls["steps"].isVisibleTo(panel)
    assert panel.select_layer("features.0") and not panel.select_layer("nope")
    panel.target.setCurrentIndex(panel.target.findData(2))
    panel.sanity.setChecked(True)
    with qtbot.waitSignal(panel.attributeRequested) as attr_sig:
        panel.attribute_button.click()
    req = attr_sig.args[0]
    assert isinstance(req, AttributeSettings) and req.sanity
    assert req.request == AttributionRequest("gradcam", target=2, layer="features.0")

    inp = ModelInput("image", np.zeros((1, 1, 20, 20), np.float32), "x.png", display=np.zeros((20, 20)), layout="NCHW")
    panel.show_attribution(_attribution(inp, raw_map(4)))
    assert panel.maps.currentWidget() is panel.saliency and panel.top.rowCount() == 3
    assert panel.top.item(0, 1).text() == "dog" and "δ" in panel.saliency.caption.text()


def test_run_panel_shows_text_attributions_as_tokens(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.set_model("text.keras", "text", [], None, [], ("negative", "positive"))
    assert panel.source.currentData() == "text"
    inp = ModelInput("text", np.zeros((1, 4), np.int64), "text", layout="tokens", tokens=("so", "very", "dull", "!"))
    panel.show_attribution(_attribution(inp, np.array([0.0, 0.1, 0.8, 0.0], np.float32)))
    assert panel.maps.currentWidget() is panel.tokens and panel.tokens.strongest(1) == ["dull"]
    panel.set_busy(True, "working")
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()


def test_each_attribution_replaces_the_sanity_row(qtbot):
    """IG then Grad-CAM: IG's completeness line went on showing beside the Grad-CAM map."""
    from dataclasses import replace

    from analyzers.explain.attribution import Completeness
    from analyzers.explain.sanity import completeness_sentence

    panel = RunPanel()
    qtbot.addWidget(panel)
    inp = ModelInput("image", np.zeros((1, 1, 20, 20), np.float32), "x.png", display=np.zeros((20, 20)), layout="NCHW")
    ig = replace(_attribution(inp, raw_map(5)), completeness=Completeness(1.5, 2.0, 0.5, 0.0))
    panel.show_attribution(ig)
    assert panel.sanity_label.text() == completeness_sentence(ig)
    panel.show_attribution(_attribution(inp, raw_map(6), method="gradcam"))
    assert panel.sanity_label.text() == ""
    panel.show_attribution(ig)
    panel.show_prediction(ig.prediction, "cpu")  # a plain Run: no attribution, no check to show
    assert panel.sanity_label.text() == ""


def _page_around(panel: RunPanel, width: int, height: int):
    """The panel as the window holds it: in a page, in the tab's scroll area."""
    from PySide6.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

    page = QWidget()
    QVBoxLayout(page).setContentsMargins(0, 0, 0, 0)
    page.layout().addWidget(panel)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(page)
    area.resize(width, height)
    return area


def test_the_explain_controls_are_never_cut_off(qtbot):
    """Grad-CAM's long layer names widened the controls past their column and cut off Cancel.

    The Explain tab at 1500x900 (665 px), at about 1200x750 (560 px) and narrower (420 px): the
    controls stay whole, beside the results while they fit and above them when they do not."""
    from PySide6.QtCore import QPoint

    from tests.zoo_helpers import zoo_or_skip

    entry = zoo_or_skip("transformer_text_torch")  # its sample sentences are the long items
    panel = RunPanel()
    area = _page_around(panel, 665, 800)
    qtbot.addWidget(area)
    samples = [(text, str(i)) for i, text in enumerate(entry.samples)]
    layers = [LayerRef("embedding", "Embedding", "embedding")] + [
        LayerRef(f"encoder.layers.{i}.self_attn.out_proj", "NonDynamicallyQuantizableLinear", "linear") for i in range(2)]
    panel.set_model("transformer_text_torch.pt (pytorch)", "text", samples, None, layers, ("negative", "positive"))
    area.show()
    qtbot.waitExposed(area)
    for width in (665, 560, 420):
        area.resize(width, 800)
        for method in ("ig", "gradcam", "smoothgrad"):
            panel.method.setCurrentIndex(panel.method.findData(method))
            qtbot.wait(10)
            controls = panel.controls_scroll
            corner = panel.cancel_button.mapTo(controls.viewport(), QPoint(panel.cancel_button.width(),
                                                                          panel.cancel_button.height()))
            assert 0 < corner.x() <= controls.viewport().width(), (width, method, corner.x())
            assert not controls.horizontalScrollBar().isVisible(), (width, method)
            assert not area.horizontalScrollBar().isVisible(), (width, method, panel.minimumSizeHint().width())
        assert panel.splitter.stacked() == (width < panel.splitter.side_by_side_width()), width
    assert panel.splitter.stacked()  # 420 px: controls above the results
