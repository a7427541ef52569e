"""The Attention tab driven like a user: the bundled transformer text classifier, BERT QA and ViT show their maps
(grid, matrix with labels and hover read-out, token lines, the map over the digit), grid clicks and toggles pick
maps, Save map / Save view write files, a cancel mid-capture and every finished capture leave no hook, a model
without attention is one sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMainWindow, QTabWidget

from analyzers.explain.attention_display import view_map
from analyzers.explain.requests import AttentionOutcome
from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import CancelToken, drive
from app.features.attention import AttentionController
from app.loading import Loaded
from app.runner_process import RunnerProcess
from app.session import ModelSession
from app.workers import JobRunner
from tests.attention_fixtures import NoAttention, SlowEncoder
from tests.zoo_helpers import zoo_or_skip


class FakeWindow(QMainWindow):
    """What the controller needs of a MainWindow: a session, jobs, tabs, error reporting."""

    layerSelected = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.jobs = JobRunner(self)
        self.tabs = QTabWidget(self)
        self.setCentralWidget(self.tabs)
        self.session = ModelSession("A", self)
        self.interactive = False
        self.errors: list[str] = []

    def add_tab(self, title, widget) -> int:
        return self.tabs.addTab(widget, title)

    def show_error(self, message: str) -> None:
        self.errors.append(message)

    def show_model(self, path: Path, options: LoadOptions | None = None) -> None:
        options = options or LoadOptions()
        self.session.set_loaded(Loaded(Path(path), options, drive(open_model(path, options)), None))


@pytest.fixture(scope="module")
def runner():
    process = RunnerProcess()
    yield process
    process.close()


@pytest.fixture
def open_tab(qtbot, runner):
    def make(path: Path, options: LoadOptions | None = None):
        window = FakeWindow()
        qtbot.addWidget(window)
        window.resize(1400, 850)
        controller = AttentionController(window, runner=runner)
        window.show_model(path, options)
        window.tabs.setCurrentIndex(controller.tab_index)
        window.show()
        return window, controller

    return make


def capture(qtbot, controller, timeout=120_000) -> AttentionOutcome:
    with qtbot.waitSignal(controller.requestEnded, timeout=timeout):
        controller.panel.show_button.click()
    assert controller.last_outcome is not None, controller.window.errors
    return controller.last_outcome


def leftover_hooks(runner) -> list[str]:
    return drive(runner.request("hooks", CancelToken()))


def click_cell(panel, row: int, column: int) -> None:
    """A real mouse click on a grid thumbnail."""
    from widgets.attention_view import GAP, THUMB

    grid = panel.grid
    scene = grid.view.mapViewToScene(QPointF(column * (THUMB + GAP) + THUMB / 2, row * (THUMB + GAP) + THUMB / 2))
    QTest.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.mapFromScene(scene))


def test_transformer_text_classifier_grid_matrix_tokens_and_saving(qtbot, open_tab, runner, tmp_path):
    entry = zoo_or_skip("transformer_text_torch")
    window, controller = open_tab(entry.file)
    panel = controller.panel
    assert window.tabs.tabText(controller.tab_index) == "Attention" and panel.sample.count() == len(entry.samples)
    outcome = capture(qtbot, controller)
    result = outcome.result
    assert result.route == "torch-mha" and len(result.layers) == 2 and result.heads == 4
    # The grid: 2 layers × (4 heads, mean, rollout); the first head of the first layer is shown.
    assert panel.grid.shape == (2, 6) and panel.grid.frame.isVisible()
    shown = result.shown_tokens()
    assert 0 < shown < 64  # the trailing padding is left out of the views
    np.testing.assert_allclose(panel.matrix.image.image, result.layers[0].weights[0, :shown, :shown].astype(np.float32))
    ticks = panel.matrix.plot.getAxis("left")._tickLevels[0]
    assert [t for _, t in ticks][:3] == list(result.tokens[:3])
    # A click on layer 1, head 2 shows that map; the hover read-out names both tokens and the weight.
    click_cell(panel, 1, 2)
    assert (panel.layer_index, panel.head) == (1, 2) and panel.layer.currentData() == 1
    np.testing.assert_allclose(panel.matrix.image.image, result.layers[1].weights[2, :shown, :shown].astype(np.float32))
    qtbot.wait(100)  # the views are laid out once shown
    scene = panel.matrix.plot.vb.mapViewToScene(QPointF(3.5, 1.5))
    QTest.mouseMove(panel.matrix.viewport(), panel.matrix.mapFromScene(scene))
    weight = float(result.layers[1].weights[2, 1, 3])
    assert panel.readout.text() == f"query 1 '{result.tokens[1]}' → key 3 '{result.tokens[3]}': {weight:.4f}"
    # Mean and rollout toggles, and the mean column of the grid.
    panel.mean_box.setChecked(True)
    np.testing.assert_allclose(panel.matrix.image.image, result.layers[1].mean[:shown, :shown], rtol=1e-6)
    panel.rollout_box.setChecked(True)
    np.testing.assert_allclose(panel.matrix.image.image, result.rollout()[1][:shown, :shown], rtol=1e-6)
    panel.rollout_box.setChecked(False)
    click_cell(panel, 0, 4)
    assert panel.head is None and panel.layer_index == 0 and panel.mean_box.isChecked()
    # The token lines: every line of the map, then only the clicked token's.
    panel.views.setCurrentIndex(panel.tokens_tab)
    lines = panel.lines
    strongest = int(np.argmax(result.layers[0].mean[2, :shown]))
    QTest.mouseClick(lines, Qt.MouseButton.LeftButton, pos=QPointF(10, 4 + 2.5 * 18).toPoint())
    assert lines.focus == 2 and {q for q, _, _ in lines.lines()} == {2}
    assert max(lines.lines(), key=lambda line: line[2])[1] == strongest
    np.testing.assert_allclose(panel.across.image.image[0], result.layers[0].mean[2, :shown], rtol=1e-6)
    # Saving: the .npz holds every layer as captured; the PNG is the view on screen.
    npz, png = tmp_path / "att.npz", tmp_path / "view.png"
    panel.save_npz(npz)
    panel.save_png(png)
    with np.load(npz, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["attention_1"], result.layers[1].weights)
        assert list(saved["tokens"]) == list(result.tokens)
        np.testing.assert_allclose(saved["rollout"], result.rollout()[-1])
    from PIL import Image

    assert Image.open(png).size[0] > 200
    assert leftover_hooks(runner) == [] and window.errors == []


def test_bert_qa_shows_every_layer_with_the_answer(qtbot, open_tab, runner):
    entry = zoo_or_skip("bert_qa")
    window, controller = open_tab(entry.file)
    outcome = capture(qtbot, controller)
    result = outcome.result
    assert result.route == "hf" and controller.panel.grid.shape == (2, 6)
    assert result.tokens[0] == "[CLS]" and "[SEP]" in result.tokens and result.valid is not None
    assert "answer:" in controller.panel.caption.text()
    view = view_map(result, 1, 3)
    controller.panel.select(1, 3)
    np.testing.assert_allclose(controller.panel.matrix.image.image, view.map)
    assert leftover_hooks(runner) == [] and window.errors == []


def test_vit_class_token_map_over_the_digit(qtbot, open_tab, runner):
    entry = zoo_or_skip("digits_vit_torch")
    window, controller = open_tab(entry.file)
    panel = controller.panel
    outcome = capture(qtbot, controller)
    result = outcome.result
    assert result.grid == (7, 7) and result.prefix == 1 and result.image is not None
    assert panel.views.currentIndex() == panel.image_tab and panel.views.isTabVisible(panel.image_tab)
    assert not panel.views.isTabVisible(panel.tokens_tab)
    panel.select(len(result.layers) - 1, None, rollout=True)
    heat = panel.overlay.heat.image
    expected = result.cls_grid(rollout=True)
    np.testing.assert_allclose(heat, expected / expected.max(), rtol=1e-6)
    assert panel.overlay.base.image.shape[:2] == (28, 28)
    panel.opacity.setValue(30)
    assert panel.overlay.opacity() == pytest.approx(0.3)
    panel.colormap.setCurrentText("magma")
    assert panel.overlay.colormap_name == "magma"
    assert leftover_hooks(runner) == [] and window.errors == []


def test_cancel_mid_capture_leaves_no_hook(qtbot, open_tab, runner, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "slow.pt"
    torch.save(SlowEncoder().eval(), path)
    window, controller = open_tab(path, LoadOptions(trust=True))
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.value.setText("12")
    with qtbot.waitSignal(controller.requestEnded, timeout=120_000):
        panel.show_button.click()
        qtbot.waitUntil(lambda: "attention capture" in panel.status.text(), timeout=60_000)
        qtbot.wait(400)  # inside the slow layers
        panel.cancel_button.click()
    assert panel.status.text() == "Cancelled." and controller.last_outcome is None
    assert leftover_hooks(runner) == []
    assert not drive(runner.request("status", CancelToken()))["open_models"] == []  # the model stays open


def test_a_model_without_attention_is_one_sentence(qtbot, open_tab, tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(NoAttention().eval(), path)
    window, controller = open_tab(path, LoadOptions(trust=True))
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.value.setText("5")
    with qtbot.waitSignal(controller.requestFailed, timeout=120_000) as failed:
        panel.show_button.click()
    message = failed.args[0]
    assert message.startswith("mlp.pt: it has no attention LayerScope can read") and message.endswith(".")
    assert "\n" not in message
    assert "Traceback" not in message and panel.grid.shape == (0, 0)
