"""The Explain tab driven like a user: run, attribute, follow the tree's layer, cancel mid-IG without leftover
hooks, and a framework crash that ends the runner process, never the window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QMainWindow, QTabWidget

from analyzers.explain.live_jobs import build_input
from analyzers.loaders import LoadOptions, open_model
from analyzers.runtime import load_live_model
from analyzers.tasks import CancelToken, drive
from app.features.explain import AttributeOutcome, RunController, RunOutcome, arch_classes, install
from app.loading import Loaded
from app.runner_process import RunnerProcess
from app.session import ModelSession
from app.workers import JobRunner
from tests.torch_fixtures import CrashingCNN, SlowCNN, TinyCNN


class FakeWindow(QMainWindow):
    """The MainWindow contract the controller relies on (a session, jobs, tabs), without loading machinery."""

    layerSelected = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.jobs = JobRunner(self)
        self.tabs = QTabWidget(self)
        self.setCentralWidget(self.tabs)
        self.session = ModelSession("A", self)
        self.interactive = True
        self.errors: list[str] = []
        self.last_error: str | None = None
        self.opened: list[tuple[Path, LoadOptions]] = []

    def add_tab(self, title, widget) -> int:
        return self.tabs.addTab(widget, title)

    def show_error(self, message: str) -> None:
        self.errors.append(message)
        self.last_error = message

    def open_path(self, path, options=None) -> None:
        self.opened.append((Path(path), options))

    def show_model(self, path: Path, options: LoadOptions) -> None:
        summary = drive(open_model(path, options))
        self.session.set_loaded(Loaded(Path(path), options, summary, None))


@pytest.fixture
def runner():
    """A model-runner process of this test's own (the shared one is the application's)."""
    process = RunnerProcess()
    yield process
    process.close()


@pytest.fixture
def setup(qtbot, tmp_path, runner):
    def make(model_cls=TinyCNN, **kwargs):
        torch.manual_seed(0)
        model = model_cls(**kwargs).eval()
        path = tmp_path / "cnn.pt"
        torch.save(model, path)
        window = FakeWindow()
        qtbot.addWidget(window)
        controller = RunController(window, runner=runner)
        window.show_model(path, LoadOptions(trust=True))
        return window, controller, model

    return make


def leftover_hooks(runner: RunnerProcess) -> list[str]:
    """Hooks on the runner's open models, asked of the runner process itself."""
    return drive(runner.request("hooks", CancelToken()))


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
    # Nothing is loaded to run before the user asks (the runner may be up, listing devices).
    assert drive(controller.runner.request("status", CancelToken()))["open_models"] == []


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
    live = load_live_model(window.session.path, LoadOptions(trust=True))  # the same input, built here
    x = torch.from_numpy(build_input(live, panel.input_choice()).array)
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
    result = window.session.last_attribution.attribution
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
    panel.controls["steps"].setValue(512)  # 32 forward passes of 40 ms each
    with qtbot.waitSignal(window.jobs.progress, timeout=60_000,
                          check_params_cb=lambda _job, p: "forward passes" in p.text and p.done >= 1):
        panel.attribute_button.click()
    assert panel.cancel_button.isEnabled()
    with qtbot.waitSignal(window.jobs.cancelled, timeout=10_000):
        panel.cancel_button.click()
    assert panel.run_button.isEnabled() and panel.status.text() == "Cancelled."
    wait_done(qtbot, window)
    assert controller.runner.running  # a cancel stops the job, not the runner (its model stays open)
    assert leftover_hooks(controller.runner) == []
    assert window.session.last_attribution is None  # the cancelled result was never painted


def test_attach_architecture_reopens_with_arch(setup, tmp_path):
    window, controller, _ = setup()
    code = tmp_path / "arch.py"
    code.write_text("import torch\n\nclass Net(torch.nn.Module):\n    pass\n\nclass Other:\n    pass\n")
    assert arch_classes(code) == ["Net", "Other"]
    controller.apply_architecture(code, "Net", '{"width": 4}')
    path, options = window.opened[-1]
    assert path == window.session.path and options.arch == f"{code.resolve()}:Net"
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


def test_bundled_sample_model_lists_its_samples_and_runs_one(qtbot, runner):
    from analyzers import samples
    from analyzers.errors import LayerScopeError

    try:
        entry = samples.sample_model("digits_cnn_torch")
    except LayerScopeError as exc:
        pytest.skip(f"sample zoo not built: {exc}")
    window = FakeWindow()
    qtbot.addWidget(window)
    controller = RunController(window, runner=runner)
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


def test_a_crash_inside_the_framework_ends_the_runner_not_the_window(qtbot, setup, tmp_path):
    """A native crash (SIGSEGV) while the model runs: one sentence, the window lives, Run works again."""
    marker = tmp_path / "crash-now"
    marker.touch()
    window, controller, model = setup(CrashingCNN, crash_marker=str(marker))
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.shape.setText("1x28x28")
    with qtbot.waitSignal(controller.requestFailed, timeout=120_000) as failed:
        panel.run_button.click()
    message = failed.args[0]
    assert message.startswith("cnn.pt: the model runner stopped") and "SIGSEGV" in message
    assert message.count(".") >= 1 and "\n" not in message and window.errors == [message]
    assert controller.runner.deaths == 1 and not controller.runner.running
    assert panel.run_button.isEnabled()  # the user can run again
    marker.unlink()
    with qtbot.waitSignal(controller.runFinished, timeout=120_000) as done:
        panel.run_button.click()
    live = load_live_model(window.session.path, LoadOptions(trust=True))
    x = torch.from_numpy(build_input(live, panel.input_choice()).array)
    with torch.no_grad():
        best = int(model(x).argmax())
    assert done.args[0].result.prediction.top[0].index == best
    assert controller.runner.running and len(window.errors) == 1


def test_the_window_process_never_imports_a_framework_to_run(tmp_path):
    """Run and Attribute in the real window leave torch and TensorFlow out of the GUI process."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from app.gui import main\n"
        "code = main(['--screenshot', sys.argv[1], '--tab', 'explain', '--attribute', 'saliency', sys.argv[2]])\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'keras', 'captum') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
        "sys.exit(code)\n"
    )
    from analyzers import samples

    try:
        model = samples.sample_model("digits_cnn_keras").file
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"sample zoo not built: {exc}")
    out = tmp_path / "explain.png"
    done = subprocess.run([sys.executable, "-c", script, str(out), str(model)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY=\n" in done.stdout or done.stdout.strip().endswith("HEAVY="), done.stdout
    assert out.stat().st_size > 10_000


def test_running_a_file_with_code_asks_first_and_no_is_the_default(qtbot, tmp_path, runner):
    """A full pickled module opened untrusted shows its layers; Run asks before its code runs (Enter = no),
    and the model runs only after the user says yes."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    torch.manual_seed(0)
    model = TinyCNN().eval()
    path = tmp_path / "module.pt"
    torch.save(model, path)
    window = FakeWindow()
    qtbot.addWidget(window)
    controller = RunController(window, runner=runner)
    window.show_model(path, LoadOptions())
    assert not window.session.options.trust and window.session.summary.totals.params == sum(
        p.numel() for p in model.parameters())
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.shape.setText("1x28x28")
    panel.run_button.click()
    qtbot.waitUntil(lambda: controller.trust_dialog is not None, timeout=120_000)
    dialog = controller.trust_dialog
    assert dialog.defaultButton() is dialog.no_button and dialog.escapeButton() is dialog.no_button
    assert "code" in dialog.informativeText()
    with qtbot.waitSignal(controller.requestEnded, timeout=5000):
        QTest.keyClick(dialog, Qt.Key.Key_Return)  # Enter takes the default answer
    assert window.session.last_run is None and not window.session.options.trust
    assert "not trusted" in panel.status.text()
    panel.run_button.click()
    qtbot.waitUntil(lambda: controller.trust_dialog is not None, timeout=120_000)
    with qtbot.waitSignal(controller.runFinished, timeout=120_000):
        qtbot.mouseClick(controller.trust_dialog.open_button, Qt.MouseButton.LeftButton)
    assert window.session.options.trust and window.session.last_run is not None
    assert window.errors == []


def test_an_onnx_model_says_it_cannot_run_before_the_user_clicks(qtbot, tmp_path, runner):
    """The Explain tab offered Run on an ONNX model and then failed with 'the Explain tab's job failed'."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [0.5] * 12)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    window = FakeWindow()
    qtbot.addWidget(window)
    controller = RunController(window, runner=runner)
    window.show_model(path, LoadOptions())
    panel = controller.panel
    assert not panel.run_button.isEnabled() and not panel.attribute_button.isEnabled()
    assert panel.status.text().startswith("ONNX models can be inspected here but not run")
    controller._click_run()  # Explain ▸ Run the model (Ctrl+Shift+R) does nothing either
    assert not window.jobs.is_busy() and window.errors == []


@pytest.mark.slow
def test_running_a_keras_lambda_asks_first_like_a_pickled_module(qtbot, tmp_path, runner):
    """The trust question covers every format that carries code: a Keras Lambda layer's bytecode too."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2.0, name="double"),
                              keras.layers.Dense(2, name="head")])
    path = tmp_path / "lambda.keras"
    model.save(path)
    window = FakeWindow()
    qtbot.addWidget(window)
    controller = RunController(window, runner=runner)
    window.show_model(path, LoadOptions())
    assert any("Lambda" in n or "Python code" in n for n in window.session.summary.notes)
    panel = controller.panel
    panel.source.setCurrentIndex(panel.source.findData("random"))
    panel.shape.setText("4")
    panel.run_button.click()
    qtbot.waitUntil(lambda: controller.trust_dialog is not None, timeout=180_000)
    with qtbot.waitSignal(controller.runFinished, timeout=180_000) as done:
        qtbot.mouseClick(controller.trust_dialog.open_button, Qt.MouseButton.LeftButton)
    x = build_input(load_live_model(path, LoadOptions(trust=True)), panel.input_choice()).array
    expected = model(x).numpy()
    got = done.args[0].result.prediction
    assert got.top[0].index == int(np.argmax(expected[0]))


@pytest.mark.slow
def test_looking_at_the_explain_tab_of_a_keras_model_warms_tensorflow_in_the_runner(qtbot, tmp_path, runner):
    """The first Keras Run waited 12-25 s for TensorFlow's import; the runner imports it while the user
    picks an input (before any model is loaded)."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "dense.keras"
    model.save(path)
    window = FakeWindow()
    qtbot.addWidget(window)
    controller = RunController(window, runner=runner)
    window.show_model(path, LoadOptions())
    assert window.tabs.currentIndex() == controller.tab_index  # the user is looking at the Explain tab
    qtbot.waitUntil(lambda: not window.jobs.is_busy(), timeout=120_000)
    status = drive(runner.request("status", CancelToken()))
    assert "keras" in status["frameworks"] and "tensorflow" in status["frameworks"]
    assert status["open_models"] == []  # warmed, not loaded: the model itself waits for Run
