"""The Explain tab driven like a user: run, attribute, follow the tree's layer, cancel mid-IG without leftover hooks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMainWindow, QTabWidget

from analyzers.loaders import LoadOptions, open_model
from analyzers.runtime.torch_runtime import HOOK_DICTS
from analyzers.tasks import drive
from app.run_controller import AttributeOutcome, RunController, RunOutcome, arch_classes, install
from app.workers import JobRunner
from tests.torch_fixtures import TinyCNN


class SlowCNN(TinyCNN):
    """TinyCNN whose every forward pass takes 40 ms, so a cancel lands mid-attribution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.04)
        return super().forward(x)


class FakeWindow(QMainWindow):
    """The MainWindow contract the controller relies on, without loading machinery."""

    modelChanged = Signal(object)
    layerSelected = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.jobs = JobRunner(self)
        self.tabs = QTabWidget(self)
        self.setCentralWidget(self.tabs)
        self.current_summary = None
        self.current_path: Path | None = None
        self.current_options: LoadOptions | None = None
        self.errors: list[str] = []
        self.opened: list[tuple[Path, LoadOptions]] = []

    def add_tab(self, title, widget) -> int:
        return self.tabs.addTab(widget, title)

    def show_error(self, message: str) -> None:
        self.errors.append(message)

    def open_path(self, path, options=None) -> None:
        self.opened.append((Path(path), options))

    def show_model(self, path: Path, options: LoadOptions) -> None:
        self.current_path, self.current_options = path, options
        self.current_summary = drive(open_model(path, options))
        self.modelChanged.emit(self.current_summary)


@pytest.fixture
def setup(qtbot, tmp_path):
    def make(model_cls=TinyCNN):
        torch.manual_seed(0)
        model = model_cls().eval()
        path = tmp_path / "cnn.pt"
        torch.save(model, path)
        window = FakeWindow()
        qtbot.addWidget(window)
        controller = install(window)
        window.show_model(path, LoadOptions(trust=True))
        return window, controller, model

    return make


def is_outcome(cls):
    """A waitSignal check: the finished job is an Explain job of this kind (not e.g. the device listing)."""
    return lambda _job, result: isinstance(result, cls)


def wait_done(qtbot, window, timeout=60_000):
    qtbot.waitUntil(lambda: not window.jobs.is_busy(), timeout=timeout)


def test_model_change_fills_the_panel_without_loading_a_framework_model(setup):
    window, controller, _ = setup()
    panel = controller.panel
    assert window.tabs.tabText(controller.tab_index) == "Explain"
    assert panel.run_button.isEnabled() and panel.pre_box.isVisibleTo(panel)
    assert panel.layer.findData("features.0") >= 0
    assert panel.source.currentData() == "image"
    assert controller._live is None  # nothing runs before the user asks


def test_run_shows_top_k_latency_and_device(qtbot, setup):
    window, controller, model = setup()
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.shape.setText("1x28x28")
    panel.top_k.setValue(4)
    with qtbot.waitSignal(window.jobs.finished, timeout=60_000, check_params_cb=is_outcome(RunOutcome)):
        panel.run_button.click()
    assert panel.top.rowCount() == 4 and panel.device_label.text() == "cpu"
    assert "ms median" in panel.latency_label.text() and panel.memory_label.text()
    x = torch.from_numpy(controller._input(controller._live, panel.input_choice()).array)
    with torch.no_grad():
        best = int(model(x).argmax())
    assert panel.top.item(0, 0).text() == str(best)
    assert window.errors == []


def test_attribute_paints_the_captum_map_and_follows_the_tree(qtbot, setup):
    from captum.attr import LayerGradCam

    window, controller, model = setup()
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.shape.setText("1x28x28")
    panel.method.setCurrentIndex(panel.method.findData("gradcam"))
    window.layerSelected.emit("features.2")  # the user clicks a layer in the tree
    assert panel.layer.currentData() == "features.2"
    panel.target.setCurrentIndex(panel.target.findData(None))
    with qtbot.waitSignal(window.jobs.finished, timeout=60_000, check_params_cb=is_outcome(AttributeOutcome)):
        panel.attribute_button.click()
    result = controller.last_attribution.attribution
    assert result.parameters["layer"] == "features.2"
    x = torch.from_numpy(result.input.array)
    theirs = LayerGradCam(model, model.features[2]).attribute(x, target=result.target, relu_attributions=True)
    np.testing.assert_allclose(result.layer_map, theirs.detach().numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(panel.saliency.raw, result.map)
    assert panel.maps.currentWidget() is panel.saliency


def test_text_for_an_image_model_is_one_sentence(qtbot, setup):
    window, controller, _ = setup()
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("text"))
    panel.text.setPlainText("what a wonderful evening")
    with qtbot.waitSignal(window.jobs.failed, timeout=60_000):
        panel.run_button.click()
    assert len(window.errors) == 1 and "takes images" in window.errors[0]
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_cancel_mid_ig_from_the_gui_leaves_no_hooks(qtbot, setup):
    window, controller, _ = setup(SlowCNN)
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.shape.setText("1x28x28")
    panel.method.setCurrentIndex(panel.method.findData("ig"))
    panel.steps.setValue(512)  # 32 forward passes of 40 ms each
    with qtbot.waitSignal(window.jobs.progress, timeout=60_000,
                          check_params_cb=lambda _job, p: "forward passes" in p.text and p.done >= 1):
        panel.attribute_button.click()
    assert panel.cancel_button.isEnabled()
    with qtbot.waitSignal(window.jobs.cancelled, timeout=10_000):
        panel.cancel_button.click()
    assert panel.run_button.isEnabled() and panel.status.text() == "Cancelled."
    wait_done(qtbot, window)
    module = controller._live.module
    for m in module.modules():
        for name in HOOK_DICTS:
            hooks = getattr(m, name, None)
            assert not hooks, (type(m).__name__, name, hooks)
    assert controller.last_attribution is None  # the cancelled result was never painted


def test_attach_architecture_reopens_with_arch(setup, tmp_path):
    window, controller, _ = setup()
    code = tmp_path / "arch.py"
    code.write_text("import torch\n\nclass Net(torch.nn.Module):\n    pass\n\nclass Other:\n    pass\n")
    assert arch_classes(code) == ["Net", "Other"]
    controller.apply_architecture(code, "Net", '{"width": 4}')
    path, options = window.opened[-1]
    assert path == window.current_path and options.arch == f"{code.resolve()}:Net"
    assert options.arch_kwargs == {"width": 4} and options.trust
    controller.apply_architecture(code, "Net", "{not json")
    assert "not valid JSON" in window.errors[-1]


def test_the_real_window_gets_an_explain_tab(qtbot, make_window, open_and_wait, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "cnn_sd.pt"
    torch.save(TinyCNN().state_dict(), path)
    window = make_window(isolated_loading=False, interactive=False)
    controller = install(window)
    assert isinstance(controller, RunController) and window.tab_index("Explain") >= 0
    assert controller._panel is None  # nothing heavy is built before a model is open
    ok, message = open_and_wait(window, path)
    assert ok, message
    panel = controller.panel
    assert panel.arch_button.isVisible() or panel.arch_button.isVisibleTo(panel)
    assert "attach its architecture" in panel.status.text()


def test_bundled_sample_model_lists_its_samples_and_runs_one(qtbot):
    from analyzers import samples
    from analyzers.errors import LayerScopeError

    try:
        entry = samples.sample_model("digits_cnn_torch")
    except LayerScopeError as exc:
        pytest.skip(f"sample zoo not built: {exc}")
    window = FakeWindow()
    qtbot.addWidget(window)
    controller = install(window)
    window.show_model(entry.file, LoadOptions())
    panel = controller.panel
    assert panel.source.currentData() == "sample" and panel.sample.count() == len(entry.samples)
    assert panel.pre_h.value() == 28 and panel.pre_layout.currentText() == "NCHW"
    assert panel.target.count() == 1 + len(entry.labels)
    index = next(i for i, s in enumerate(entry.samples) if Path(s).stem.endswith("_7"))
    panel.sample.setCurrentIndex(index)
    with qtbot.waitSignal(window.jobs.finished, timeout=60_000, check_params_cb=is_outcome(RunOutcome)):
        panel.run_button.click()
    assert panel.top.item(0, 1).text() == "7"
