"""Compare mode as a user drives it: two models in one window, trees aligned and moving together, swap, close a
side, the drift job, the same input through both, the modifier drop, and `main.py A B --screenshot`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageStat
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from tests.cli_helpers import run_cli
from tests.zoo_helpers import zoo_or_skip
from widgets.compare_tree import A_NAME, B_NAME, DELTA, STATUS_ROLE


@pytest.fixture
def compare_window(window):
    """A window with every feature installed (compare mode among them)."""
    from app.features import install_features

    window.resize(1500, 900)
    window.show()
    window.features = install_features(window)
    return window


def _open_pair(qtbot, window, open_and_wait, a: Path, b: Path) -> None:
    assert open_and_wait(window, a)[0]
    with qtbot.waitSignal(window.compare.ready, timeout=120_000):
        window.compare.open_b(b)
    qtbot.waitUntil(lambda: not window.compare.pending(), timeout=30_000)


def _rows(view, model, parent=None):
    """Every visible index of column 0 (A's name) under `parent`, depth first."""
    from PySide6.QtCore import QModelIndex

    parent = parent or QModelIndex()
    out = []
    for r in range(model.rowCount(parent)):
        index = model.index(r, A_NAME, parent)
        out.append(index)
        if view.isExpanded(index):
            out.extend(_rows(view, model, index))
    return out


def test_keras_cnn_and_its_torch_port_open_side_by_side_with_rows_aligned(qtbot, compare_window, open_and_wait):
    keras, port = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_torch")
    w = compare_window
    _open_pair(qtbot, w, open_and_wait, keras.file, port.file)
    view = w.compare.view
    assert w.centralWidget().currentWidget() is view and w.session_b.path == port.file
    trees = view.trees
    model = trees.model
    rows = _rows(trees.view_a, model)
    assert len(rows) == 7  # the model row and its six layers (Keras's InputLayer has no PyTorch twin)
    for index in rows:  # matched rows sit on the same line of both trees
        rect_a = trees.view_a.visualRect(index)
        rect_b = trees.view_b.visualRect(index.siblingAtColumn(B_NAME))
        assert rect_a.top() == rect_b.top() and rect_a.height() == rect_b.height()
    by_a = {model.text(i.internalPointer(), A_NAME): i for i in rows[1:]}
    assert model.text(by_a["dense ↔"].internalPointer(), B_NAME) == "fc1"  # renamed, paired by signature
    assert by_a["image"].data(STATUS_ROLE) == "removed" and model.text(by_a["image"].internalPointer(), B_NAME) == ""
    assert by_a["conv"].siblingAtColumn(DELTA).data() == "0"
    assert "1 only in A" in view.overview_label.text() and "2 renamed" in view.overview_label.text()
    memory = {view.memory_table.item(r, 0).text(): view.memory_table.item(r, 3).text()
              for r in range(view.memory_table.rowCount())}
    assert memory["weights as stored"] == "0" and len(memory) == 14


def test_trees_expand_and_scroll_together(qtbot, compare_window, open_and_wait, tmp_path):
    import torch

    state = {f"blocks.{i}.fc.weight": torch.zeros(4, 4) for i in range(60)}
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(state, a)
    torch.save({**state, "blocks.7.extra.weight": torch.zeros(2, 2)}, b)
    w = compare_window
    w.resize(900, 500)
    _open_pair(qtbot, w, open_and_wait, a, b)
    trees = w.compare.view.trees
    model = trees.model
    root = model.index(0, 0)
    blocks = model.index(0, 0, root)
    trees.view_a.collapse(blocks)
    assert not trees.view_b.isExpanded(blocks)
    trees.view_a.expand(blocks)
    assert trees.view_b.isExpanded(blocks)
    block7 = model.index(7, 0, blocks)
    trees.view_b.expand(block7)  # B's tree drives A's too
    assert trees.view_a.isExpanded(block7)
    statuses = [model.index(r, 0, block7).data(STATUS_ROLE) for r in range(model.rowCount(block7))]
    assert statuses == ["same", "added"]
    bar = trees.view_b.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum() // 2)
    assert trees.view_a.verticalScrollBar().value() == bar.value()
    top_a = trees.view_a.indexAt(trees.view_a.viewport().rect().topLeft())
    top_b = trees.view_b.indexAt(trees.view_b.viewport().rect().topLeft())
    assert top_a.internalPointer() is top_b.internalPointer()


def test_swap_and_closing_each_side(qtbot, compare_window, open_and_wait):
    base, pruned = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_pruned_keras")
    w = compare_window
    _open_pair(qtbot, w, open_and_wait, base.file, pruned.file)
    with qtbot.waitSignal(w.compare.ready, timeout=30_000):
        w.compare.swap()
    assert w.session.path == pruned.file and w.session_b.path == base.file
    assert w.compare.view.trees.title_a.text().endswith(pruned.file.name)
    assert w.tree.model.summary is w.session.summary  # the window's own tree follows A
    w.compare.close_side("A")  # the pruned copy goes; the original stays, alone
    assert not w.compare.active and w.centralWidget().currentIndex() == 0
    assert w.session.path == base.file and not w.session_b.is_open
    with qtbot.waitSignal(w.compare.ready, timeout=60_000):
        w.compare.open_b(pruned.file)
    w.compare.close_side("B")
    assert not w.compare.active and w.session.path == base.file and not w.session_b.is_open


def test_drift_runs_in_the_runner_and_fills_the_table_and_the_tree(qtbot, compare_window, open_and_wait,
                                                                  monkeypatch):
    base, pruned = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_pruned_keras")
    w = compare_window

    def not_here(*args, **kwargs):
        raise AssertionError("the window's process read the weights")

    monkeypatch.setattr("analyzers.compare.drift.drift_steps", not_here)  # the runner child is not patched
    _open_pair(qtbot, w, open_and_wait, base.file, pruned.file)
    view = w.compare.view
    with qtbot.waitSignal(w.compare.driftFinished, timeout=120_000) as blocker:
        view.drift_button.click()
    report = blocker.args[0]
    assert report is not None
    table = view.drift_table
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert set(rows) == {"conv", "dense", "classes", "(whole model)"}
    zeros_b = table.item(rows["dense"], 7).text()
    assert zeros_b.startswith("49.9") or zeros_b.startswith("50.0")  # half of the kernel pruned (bias kept)
    table.sortItems(2, Qt.SortOrder.DescendingOrder)
    values = [float(table.item(r, 2).text()) for r in range(table.rowCount())]
    assert values == sorted(values, reverse=True)
    dense = view.trees.model.index(4, 0, view.trees.model.index(0, 0))
    assert dense.siblingAtColumn(10).data() == f"{report.layer(('dense', 'dense')).total.relative_change:.3g}"


def test_cancelling_the_drift_leaves_the_page_usable(qtbot, compare_window, open_and_wait):
    base, tuned = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_finetuned_keras")
    w = compare_window
    _open_pair(qtbot, w, open_and_wait, base.file, tuned.file)
    view = w.compare.view
    view.drift_button.click()
    assert view.drift_cancel.isEnabled() and not view.drift_button.isEnabled()
    with qtbot.waitSignal(w.compare.driftFinished, timeout=10_000) as blocker:
        view.drift_cancel.click()
    assert blocker.args == [None] and view.drift_button.isEnabled() and view.drift_status.text() == "Cancelled."
    qtbot.wait(1500)  # long enough for the runner to have answered the cancelled request
    assert view.drift_table.rowCount() == 0  # a cancelled job's late answer is not painted
    with qtbot.waitSignal(w.compare.driftFinished, timeout=120_000) as blocker:  # the runner still answers
        view.drift_button.click()
    assert blocker.args[0] is not None and view.drift_table.rowCount() == 4


@pytest.mark.slow
def test_the_same_sample_through_both_with_maps_on_one_scale(qtbot, compare_window, open_and_wait):
    keras, port = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_torch")
    w = compare_window
    _open_pair(qtbot, w, open_and_wait, keras.file, port.file)
    panel = w.compare.view.explain
    panel.method.setCurrentIndex(panel.method.findData("saliency"))
    with qtbot.waitSignal(w.compare.explainFinished, timeout=300_000) as blocker:
        panel.attribute_button.click()
    outcome = blocker.args[0]
    assert outcome is not None
    assert outcome.attribution_b.attribution.target == outcome.attribution_a.attribution.target
    assert "agrees" in panel.summary.text() and "KL(A‖B)" in panel.summary.text()
    assert all(not p.pixmap().isNull() for p in panel.pictures)
    assert "One colour scale" in panel.scale_label.text()
    from analyzers.tasks import CancelToken, drive

    status = drive(w.compare.runner.request("status", CancelToken()))  # both models live in the runner process
    assert {str(keras.file), str(port.file)} <= set(status["open_models"])
    assert {"torch", "tensorflow"} <= set(status["frameworks"])


def test_dropping_a_file_with_ctrl_opens_it_as_b(qtbot, compare_window, open_and_wait):
    base, int8 = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_int8_keras")
    w = compare_window
    assert open_and_wait(w, base.file)[0]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(int8.file))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.ControlModifier)
    with qtbot.waitSignal(w.compare.ready, timeout=120_000):
        w.dropEvent(event)
    assert w.session.path == base.file and w.session_b.path == int8.file
    plain = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    assert not w.compare.wants_drop(plain.modifiers())  # without a key held a drop replaces A, as before
    changed = [p for p in w.compare.diff.rows if p.status == "changed"]
    assert {p.path_a for p in changed} == {"dense", "classes"}


@pytest.mark.slow
def test_main_with_two_paths_saves_one_window_with_both_trees(tmp_path):
    base, tuned = zoo_or_skip("digits_cnn_keras"), zoo_or_skip("digits_cnn_finetuned_keras")
    out = tmp_path / "compare.png"
    res = run_cli("--screenshot", str(out), "--tab", "drift", "--size", "1500x900", str(base.file), str(tuned.file),
                  timeout=300, env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert res.returncode == 0, res.stderr
    with Image.open(out) as image:
        assert image.size == (1500, 900)
        grey = image.convert("L")
        for box in ((0, 80, 370, 400), (370, 80, 830, 400), (830, 80, 1500, 400)):  # tree A, tree B, the page
            assert ImageStat.Stat(grey.crop(box)).var[0] > 50, box
    bad = run_cli("--screenshot", str(out), "--tab", "graph", str(base.file), str(tuned.file))
    assert bad.returncode == 2 and "no compare page 'graph'" in bad.stderr and "Traceback" not in bad.stderr


def test_running_two_files_with_code_asks_about_each_before_it_runs(qtbot, compare_window, open_and_wait, tmp_path):
    import shutil

    import torch

    from tests.torch_fixtures import TinyCNN

    torch.manual_seed(0)
    a = tmp_path / "module_a.pt"
    torch.save(TinyCNN().eval(), a)
    b = tmp_path / "module_b.pt"
    shutil.copy(a, b)
    w = compare_window
    _open_pair(qtbot, w, open_and_wait, a, b)
    compare = w.compare
    assert not w.session.options.trust and not w.session_b.options.trust
    finished = []
    compare.explainFinished.connect(finished.append)
    compare.run_both({"kind": "auto", "value": "random:1x28x28", "method": None, "sign": None})
    asked = []
    for session in (w.session, w.session_b):  # A is refused first; after yes, B is
        qtbot.waitUntil(lambda: compare._trust_question is not None and compare._trust_question.dialog is not None,
                        timeout=120_000)
        question = compare._trust_question
        asked.append(question.session)
        with qtbot.waitSignal(question.answered, timeout=10_000):
            qtbot.mouseClick(question.dialog.open_button, Qt.MouseButton.LeftButton)
        assert session.options.trust
    assert asked == [w.session, w.session_b]
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    outcome = finished[0]
    assert outcome is not None and outcome.a.result.prediction.top[0].index == outcome.b.result.prediction.top[0].index
