"""Every chart and picture follows a theme switched at run time (app.theme.apply_theme), not only at start."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.memory import estimate_memory
from app.theme import apply_theme
from widgets.memory_view import MemoryView
from widgets.saliency_view import SaliencyPanel


def _html_color(label) -> QColor:
    """The colour a pyqtgraph LabelItem (or an axis label) was last rendered with (its span's CSS colour)."""
    import re

    html = (label.item if hasattr(label, "item") else label).toHtml()
    found = re.findall(r"color:\s*(#[0-9a-fA-F]{6})", html)
    assert found, html
    return QColor(found[-1])


@pytest.fixture
def themed(qtbot):
    """Switch the application's theme inside a test and put the system's look back afterwards."""
    app = QApplication.instance()

    def switch(choice: str) -> QPalette:
        apply_theme(app, choice)
        qtbot.wait(20)  # palette-change events are delivered synchronously; let repaints settle
        return QApplication.palette()

    yield switch
    apply_theme(app, "system")


def _summary() -> ModelSummary:
    root = LayerNode("", "Net", (), (LayerNode("fc", "Linear", (TensorInfo("fc.weight", (64, 32), "float32"),)),))
    return ModelSummary(SourceInfo("/m/net.pt", "pytorch", "torch"), root)


def _assert_follows(view: MemoryView, panel: SaliencyPanel, palette: QPalette) -> None:
    text = palette.color(QPalette.ColorRole.WindowText)
    base = palette.color(QPalette.ColorRole.Base)
    chart = view.chart
    assert chart.backgroundBrush().color() == base
    labels = [label for _, label in chart._legend.items]
    assert labels, "the legend lists the segments"
    for label in labels:
        assert _html_color(label).name() == text.name(), label.text
    assert chart.captions._color == text
    assert panel.view.backgroundBrush().color() == base


def test_memory_legend_and_saliency_view_follow_a_theme_switch(qtbot, themed) -> None:
    view = MemoryView()
    qtbot.addWidget(view)
    view.set_report(estimate_memory(_summary()))
    panel = SaliencyPanel()
    qtbot.addWidget(panel)
    panel.set_map(np.random.default_rng(0).normal(size=(1, 8, 8)).astype(np.float32), None, "NCHW")
    view.show()
    panel.show()
    dark = themed("dark")
    assert dark.color(QPalette.ColorRole.Base).lightness() < 128
    _assert_follows(view, panel, dark)
    light = themed("light")
    assert light.color(QPalette.ColorRole.Base).lightness() > 128
    _assert_follows(view, panel, light)


def test_the_output_image_and_latent_bars_follow_a_theme_switch(qtbot, themed) -> None:
    from widgets.output_views import OutputImageView, VectorPanel

    image = OutputImageView()
    bars = VectorPanel()
    for w in (image, bars):
        qtbot.addWidget(w)
        w.show()
    bars.set_map(np.array([0.5, -0.25, 0.1], np.float32))
    for choice in ("dark", "light"):
        palette = themed(choice)
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.WindowText)
        assert image.backgroundBrush().color() == base, choice
        assert bars.bars.backgroundBrush().color() == base, choice
        axis = bars.bars.getPlotItem().getAxis("bottom")
        assert axis.textPen().color() == text, choice
        assert _html_color(axis.label).name() == text.name(), choice
