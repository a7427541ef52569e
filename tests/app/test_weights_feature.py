"""Shapes, FLOPs and the Weights tab driven like a user, in a real window with its own model runner.

The tree's Output shape and FLOPs columns, the inspector and the Overview's FLOPs chart come from the
runner's meta-device pass and change when the input size does; the Weights tab's table, findings and
histogram equal the statistics computed directly; the previews' sizes become the Memory tab's rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from analyzers import samples as S
from analyzers.loaders import LoadOptions, open_model
from analyzers.loaders.shape_inference import infer_shapes
from analyzers.summary.shapes import human_flops
from analyzers.tasks import drive
from analyzers.weights.source import open_weights
from analyzers.weights.stats import weight_stats
from app.features.shapes import ShapesController
from app.features.weights import WeightsController
from app.runner_process import RunnerProcess
from tests.zoo_helpers import zoo_or_skip
from widgets.layer_tree import FLOPS, SHAPE


@pytest.fixture
def runner():
    """A model runner of this test's own."""
    process = RunnerProcess()
    yield process
    process.close()


def _index(window, path):
    return window.tree.model.index_for_path(path)


def test_shapes_and_flops_fill_the_tree_inspector_and_overview_and_follow_the_input(window, open_and_wait, qtbot,
                                                                                 runner):
    entry = zoo_or_skip("digits_cnn_torch")
    window.ensure_views()
    controller = ShapesController(window, runner=runner)
    with qtbot.waitSignal(controller.reportReady, timeout=120_000) as got:
        ok, message = open_and_wait(window, entry.file)
    assert ok, message
    report = got.args[0]
    options = LoadOptions(arch=S.resolved_arch(entry), arch_kwargs=entry.arch_kwargs)
    direct = drive(infer_shapes(drive(open_model(entry.file, options))))
    assert report.flops == direct.flops and report.shapes == direct.shapes
    conv = _index(window, "conv")
    assert conv.siblingAtColumn(SHAPE).data() == "1 × 32 × 26 × 26"
    assert conv.siblingAtColumn(FLOPS).data() == human_flops(direct.flops["conv"]).replace(" FLOPs", "")
    header = window.tree.model.headerData(FLOPS, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "batch 1 × 1 × 28 × 28" in header
    window.select_layer("conv")
    assert window.inspector.fields["Output shape"].text().startswith("1 × 32 × 26 × 26")
    assert f"{direct.flops['conv']:,}" in window.inspector.fields["FLOPs"].text()
    panel = window.overview.flops_panel
    assert dict(zip(panel.chart.keys, panel.chart.values)) == {"Linear": direct.flops["fc1"] + direct.flops["fc2"],
                                                              "Conv2d": direct.flops["conv"]}
    assert "batch 1 × 1 × 28 × 28" in panel.caption.text()
    with qtbot.waitSignal(controller.reportReady, timeout=120_000) as again:
        panel.shape_edit.setText("4x1x28x28")
        panel.recompute_button.click()
    assert again.args[0].flops["conv"] == 4 * direct.flops["conv"]
    assert _index(window, "conv").siblingAtColumn(SHAPE).data() == "4 × 32 × 26 × 26"
    assert "batch 4" in panel.caption.text()
    with qtbot.waitSignal(controller.failed, timeout=60_000) as bad:
        panel.shape_edit.setText("4x1x28")
        panel.recompute_button.click()
    assert "rank-4" in bad.args[0]


def test_keras_shapes_need_no_runner(window, open_and_wait, qtbot):
    entry = zoo_or_skip("digits_cnn_keras")
    controller = ShapesController(window, runner=None)
    with qtbot.waitSignal(controller.reportReady, timeout=60_000) as got:
        open_and_wait(window, entry.file)
    assert got.args[0].total_flops == 2 * 26 * 26 * 32 * 9 + 2 * 5408 * 64 + 2 * 64 * 10
    assert controller._runner is None  # the default input of a Keras model is pure arithmetic


def _planted(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    t = {"enc.weight": rng.standard_normal((64, 32)).astype(np.float32),
         "enc.bias": rng.standard_normal(64).astype(np.float32),
         "dead.weight": np.zeros((8, 8), dtype=np.float32),
         "sick.weight": rng.standard_normal((16, 16)).astype(np.float32)}
    t["sick.weight"][2, 3] = np.nan
    path = tmp_path / "planted.safetensors"
    save_file(t, str(path))
    return path


def test_weights_tab_statistics_histogram_previews_and_memory_rows(window, open_and_wait, qtbot, runner, tmp_path):
    path = _planted(tmp_path)
    window.ensure_views()
    controller = WeightsController(window, runner=runner)
    open_and_wait(window, path)
    summary = window.session.summary
    with qtbot.waitSignal(controller.finished, timeout=120_000) as done:
        window.tabs.setCurrentIndex(controller.tab_index)  # statistics start by themselves for small weights
    assert done.args == ["stats"]
    view = controller.view
    with open_weights(summary) as source:
        direct = drive(weight_stats(summary, source))
    rows = {view.model.text(r, 0): r for r in range(view.model.rowCount())}
    assert set(rows) == set(direct.layers)
    enc = direct.layers["enc"]
    assert view.model.text(rows["enc"], 4) == f"{enc.max:.4g}" and view.model.text(rows["enc"], 6) == f"{enc.std:.4g}"
    assert "NaN" in view.findings.text() and "dead" in view.findings.text()
    view.table.sortByColumn(6, Qt.SortOrder.DescendingOrder)  # by std
    stds = [direct.layers[view.model.path_at(r)].std for r in range(view.model.rowCount())]
    assert stds == sorted(stds, reverse=True)
    window.select_layer("enc")
    assert view.histogram.counts.tolist() == list(enc.hist)
    view.histogram.log_box.setChecked(True)
    with qtbot.waitSignal(controller.finished, timeout=120_000):
        view.quant_button.click()
    with qtbot.waitSignal(controller.finished, timeout=120_000):
        view.sparsity_spin.setValue(50)
        view.prune_button.click()
    quant, prune = controller.results["quant"], controller.results["prune"]
    labels = {line.label: line.bytes for line in window.memory_view.previews}
    assert labels == {"After int8 (preview)": quant.model_bytes_after["int8"],
                      "After int4 (preview)": quant.model_bytes_after["int4"],
                      "After pruning 50% (preview)": prune.model_bytes_after}
    table = window.memory_view.table
    shown = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert "After int8 (preview)" in shown and "After pruning 50% (preview)" in shown
    assert prune.achieved == pytest.approx(0.5, abs=0.01)
    assert view.model.text(rows["enc"], 10).endswith("dB")
    window.close_model()
    assert window.memory_view.previews == []


@pytest.mark.slow
def test_held_out_accuracy_button(window, open_and_wait, qtbot, runner):
    entry = zoo_or_skip("attention_seq_torch")
    controller = WeightsController(window, runner=runner)
    open_and_wait(window, entry.file)
    window.tabs.setCurrentIndex(controller.tab_index)
    view = controller.view
    assert view.accuracy_button.isEnabled()
    qtbot.waitUntil(lambda: not controller.busy, timeout=120_000)
    with qtbot.waitSignal(controller.finished, timeout=300_000) as done:
        view.accuracy_button.click()
    assert done.args == ["accuracy"]
    report = controller.results["accuracy"]
    assert [r.variant for r in report.rows] == ["original", "int8", "int4", "prune0.3", "prune0.5", "prune0.7"]
    assert report.rows[0].score == pytest.approx(entry.heldout, abs=0.005)
    assert "held-out" in view.previews.text() or report.title in view.previews.text()


WINDOW_SCRIPT = r"""
import sys
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.features.shapes import ShapesController
from app.features.weights import WeightsController
from app.main_window import MainWindow
window = MainWindow(interactive=False)
window.ensure_views()
shapes, weights = ShapesController(window), WeightsController(window)
state = {}
def finish(code):
    state['code'] = code
    app.quit()
shapes.reportReady.connect(lambda r: (state.__setitem__('flops', r.total_flops), weights.run_stats()))
weights.finished.connect(lambda kind: kind == 'stats' and weights.run_quant() or kind == 'quant' and finish(0))
shapes.failed.connect(lambda m: finish(3))
weights.failed.connect(lambda m: finish(4))
window.open_path(Path(sys.argv[1]))
QTimer.singleShot(240000, lambda: finish(5))
app.exec()
from app.loader_process import shutdown_shared
from app.runner_process import shutdown_shared as stop_runner
stop_runner(); shutdown_shared()
heavy = sorted(m for m in ('torch', 'tensorflow', 'keras', 'h5py', 'onnx', 'gguf', 'transformers') if m in sys.modules)
print('FLOPS=%s HEAVY=%s' % (state.get('flops'), ','.join(heavy)))
sys.exit(state.get('code', 6))
"""


def test_the_window_process_imports_no_framework_for_shapes_or_weights():
    """Shapes, FLOPs, statistics and previews of a PyTorch model leave torch and every model-file library out of
    the window's process: they run in the model runner."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    entry = zoo_or_skip("digits_cnn_torch")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", WINDOW_SCRIPT, str(entry.file)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2], env=env)
    assert done.returncode == 0, (done.stdout[-500:], done.stderr[-2000:])
    assert "HEAVY=\n" in done.stdout or done.stdout.strip().endswith("HEAVY="), done.stdout
    assert "FLOPS=1082880" in done.stdout  # conv 389,376 + fc1 692,224 + fc2 1,280
