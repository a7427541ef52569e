"""The main window as a user drives it: open every format, errors, trust, cancel, drop, recent, views."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMenu

from analyzers.errors import LayerScopeError
from analyzers.loaders import find_loader
from analyzers.summary.memory import estimate_memory
from tests.app import model_files, slow_loader
from tests.app.model_files import corrupted_safetensors, full_module_file, safetensors_file
from widgets.layer_tree import TOTAL

FORMATS = [
    pytest.param(model_files.safetensors_file, id="safetensors"),
    pytest.param(model_files.state_dict_file, id="pytorch-state-dict"),
    pytest.param(model_files.onnx_file, id="onnx"),
    pytest.param(model_files.gguf_file, id="gguf"),
    pytest.param(model_files.hf_llama_folder, id="hf-folder", marks=pytest.mark.slow),
    pytest.param(model_files.keras_file, id="keras", marks=pytest.mark.slow),
]


def _root_row(window):
    model = window.tree.model
    return model, model.index(0, 0)


def _variance(image: QImage) -> float:
    image = image.convertToFormat(QImage.Format.Format_Grayscale8)
    values = [image.pixelColor(x, y).value() for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)]
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


@pytest.mark.parametrize("build", FORMATS)
def test_each_format_shows_the_frameworks_numbers(window, open_and_wait, tmp_path, build) -> None:
    fixture = build(tmp_path)
    try:
        find_loader(fixture.path)
    except LayerScopeError as exc:
        pytest.skip(f"no loader for this format in this build: {exc}")
    ok, message = open_and_wait(window, fixture.path)
    assert ok, message
    model, root = _root_row(window)
    assert model.row_data(root).params_total == fixture.params
    assert model.data(root.siblingAtColumn(TOTAL)) == f"{fixture.params:,}"
    for path, params in fixture.rows.items():
        index = model.index_for_path(path)
        assert index.isValid(), path
        assert model.row_data(index).params_total == params, path
    assert window.session.path == fixture.path
    assert window.memory_view.report.params == fixture.params
    assert window.overview.heading.text() == fixture.path.name
    assert sum(window.overview.block_chart.values) == pytest.approx(
        sum(window.session.summary.node(k).total.params for k in window.overview.block_chart.keys))


def test_selecting_a_layer_fills_the_inspector_and_highlights_the_charts(window, open_and_wait, tmp_path) -> None:
    import torch

    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    assert not window.overview.block_chart.highlighted  # the model row is selected at first
    window.select_layer("head")
    assert window.tree.selected_path() == "head"
    assert window.inspector.title.text() == "head"
    tensors = window.inspector.tensor_model
    state = {k: v for k, v in torch.load(_as_pt(fixture.path, tmp_path)).items() if k.startswith("head.")}
    assert tensors.rowCount() == len(state)
    names = [tensors.cell(r, 0) for r in range(tensors.rowCount())]
    assert sorted(names) == sorted(k.removeprefix("head.") for k in state)
    row = names.index("weight")
    assert tensors.cell(row, 1) == "(" + ", ".join(str(d) for d in state["head.weight"].shape) + ")"
    assert tensors.cell(row, 3) == f"{state['head.weight'].numel():,}"
    assert window.overview.block_chart.highlighted == {"head"}
    share = 100 * sum(v.numel() for v in state.values()) / fixture.params
    assert window.inspector.fields["Share of model"].text().startswith(f"{share:.2f} % of parameters")


def _as_pt(path, tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "reloaded.pt"
    torch.save(load_file(path), out)
    return out


def test_clicking_a_block_bar_selects_it_in_the_tree(window, open_and_wait, tmp_path, qtbot) -> None:
    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    chart = window.overview.block_chart
    window.overview.stack.currentWidget().ensureWidgetVisible(chart)
    qtbot.wait(100)
    i = chart.keys.index("head")
    vb = chart.getPlotItem().getViewBox()
    scene_point = vb.mapViewToScene(QPointF(chart.values[i] / 2, i))
    point = chart.mapFromScene(scene_point)
    with qtbot.waitSignal(window.layerSelected, timeout=3000) as blocker:
        QTest.mouseClick(chart.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)
    assert blocker.args == ["head"]
    assert window.tree.selected_path() == "head"


def test_a_corrupted_file_shows_the_error_dialog_and_keeps_the_model(window, open_and_wait, tmp_path) -> None:
    good = safetensors_file(tmp_path)
    assert open_and_wait(window, good.path)[0]
    broken = corrupted_safetensors(tmp_path)
    ok, message = open_and_wait(window, broken)
    assert not ok
    assert message.startswith("broken.safetensors:") and message.endswith(".") and "\n" not in message
    dialog = window.error_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.text() == message
    assert window.session.path == good.path
    model, root = _root_row(window)
    assert model.data(root) == good.path.name


def test_an_unknown_file_is_one_sentence_too(window, open_and_wait, tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    ok, message = open_and_wait(window, path)
    assert not ok and message.startswith("notes.txt:") and "not a model format" in message
    assert window.error_dialog.text() == message


def test_a_full_pickled_module_opens_without_running_its_code(window, open_and_wait, tmp_path) -> None:
    """A whole pickled nn.Module opens with no question: it is read by a restricted unpickler that runs
    nothing, so its tree and totals show; the question comes only when the user runs it (Explain)."""
    fixture = full_module_file(tmp_path)
    ok, message = open_and_wait(window, fixture.path)
    assert ok, message
    from widgets.trust_dialog import TrustDialog

    assert not window.findChildren(TrustDialog) and not window.session.options.trust
    model, root = _root_row(window)
    assert model.row_data(root).params_total == fixture.params
    assert model.data(root.siblingAtColumn(1)) == "TinyCNN"
    for path, params in fixture.rows.items():
        assert model.row_data(model.index_for_path(path)).params_total == params


@pytest.fixture
def slow_registered():
    slow_loader.register()
    yield
    slow_loader.unregister()


@pytest.mark.parametrize("isolated", [True, False], ids=["loader-process", "in-process"])
def test_cancelling_a_slow_load_keeps_the_previous_model(make_window, open_and_wait, qtbot, tmp_path, isolated,
                                                         slow_registered) -> None:
    window = make_window(isolated_loading=isolated)
    first = safetensors_file(tmp_path)
    assert open_and_wait(window, first.path)[0]
    slow = slow_loader.write_slow(tmp_path / "huge.slowmodel", steps=600)  # 30 s unless cancelled
    with qtbot.waitSignal(window.jobs.progress, timeout=60_000,
                          check_params_cb=lambda job, p: getattr(p, "text", "").startswith("Slow step")):
        window.open_path(slow)
    assert window.is_loading()
    assert window.job_status.isVisibleTo(window)
    with qtbot.waitSignal(window.loadFinished, timeout=3000) as blocker:
        qtbot.mouseClick(window.job_status.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] is False
    assert not window.job_status.isVisibleTo(window)
    assert window.session.path == first.path
    assert window.session.summary.totals.params == first.params
    model, root = _root_row(window)
    assert model.data(root) == first.path.name
    qtbot.waitUntil(lambda: not window.jobs.is_busy(), timeout=5000)  # the worker really stopped
    assert window.session.path == first.path


def test_slow_load_completes_through_the_loader_process(window, open_and_wait, tmp_path, slow_registered) -> None:
    ok, message = open_and_wait(window, slow_loader.write_slow(tmp_path / "small.slowmodel", steps=3))
    assert ok, message
    assert window.session.summary.root.type == "Slow"


def test_drop_a_file_on_the_window(window, qtbot, tmp_path) -> None:
    fixture = safetensors_file(tmp_path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(fixture.path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.loadFinished, timeout=60_000) as blocker:
        window.dropEvent(event)
    assert blocker.args == [True, ""]
    assert window.session.path == fixture.path


def test_recent_files_menu(window, open_and_wait, tmp_path, qtbot) -> None:
    from app.actions import fill_recent

    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    assert window.settings.recent()[0] == str(fixture.path.resolve())
    menu = QMenu()
    fill_recent(window, menu)
    entries = [a for a in menu.actions() if a.statusTip() == str(fixture.path.resolve())]
    assert entries and entries[0].isEnabled()
    window.close_model()
    with qtbot.waitSignal(window.loadFinished, timeout=60_000):
        entries[0].trigger()
    assert window.session.path == fixture.path.resolve()


def test_shortcuts(window, open_and_wait, tmp_path, qtbot) -> None:
    acts = window.actions
    assert acts.open_file.shortcut() == QKeySequence("Ctrl+O")
    assert acts.close_model.shortcut() == QKeySequence("Ctrl+W")
    assert acts.focus_filter.shortcut() == QKeySequence("Ctrl+F")
    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)
    qtbot.wait(100)
    QTest.keySequence(window, QKeySequence("Ctrl+F"))
    qtbot.waitUntil(lambda: window.tree.filter_edit.hasFocus(), timeout=2000)
    QTest.keySequence(window, QKeySequence("Ctrl+W"))
    qtbot.waitUntil(lambda: window.session.summary is None, timeout=2000)
    assert window.tree.model.rowCount() == 0
    qtbot.waitUntil(lambda: not window.views_pending(), timeout=3000)
    assert window.overview.stack.currentIndex() == 0  # the welcome text


def test_ctrl_digit_selects_that_tab(window) -> None:
    """Ctrl+1…Ctrl+9: triggered(bool) used to fill the slot's index, so every shortcut showed the first tab."""
    from PySide6.QtWidgets import QWidget

    while window.tabs.count() < 9:
        window.add_tab(f"Extra {window.tabs.count()}", QWidget())
    acts = window.actions.tab_actions
    assert len(acts) == 9
    for i in reversed(range(9)):  # the last first: index 0 (the start) would hide a broken slot
        assert acts[i].shortcut() == QKeySequence(f"Ctrl+{i + 1}")
        acts[i].trigger()
        assert window.tabs.currentIndex() == i, f"Ctrl+{i + 1}"


def test_geometry_and_splitters_are_remembered(make_window, qtbot) -> None:
    screen = QApplication.primaryScreen().availableGeometry()
    width, height = min(1111, screen.width() - 40), min(777, screen.height() - 60)
    first = make_window()
    first.resize(width, height)
    first.show()
    qtbot.waitExposed(first)
    width, height = first.width(), first.height()  # the screen and the minimum sizes may have won
    first.splitter.setSizes([300, 400, 250])
    sizes = first.splitter.sizes()
    first.close()
    second = make_window()
    second.show()
    qtbot.waitExposed(second)
    assert (second.width(), second.height()) == (width, height)
    assert second.splitter.sizes() == sizes


def test_theme_switch_is_applied_and_remembered(window) -> None:
    try:
        window.set_theme("dark")
        assert QApplication.palette().color(QApplication.palette().ColorRole.Window).lightness() < 128
        assert window.settings.theme() == "dark"
        assert window.actions.themes["dark"].isChecked()
        window.set_theme("light")
        assert QApplication.palette().color(QApplication.palette().ColorRole.Window).lightness() > 128
    finally:
        window.set_theme("system")


def test_charts_follow_a_theme_switched_while_running(window, open_and_wait, tmp_path, qtbot) -> None:
    """View ▸ Theme ▸ Dark left the Memory legend black on dark: every chart takes the new palette."""
    import re

    from PySide6.QtGui import QPalette

    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    charts = [window.overview.block_chart, window.overview.dtype_chart, window.memory_view.chart]
    try:
        for choice in ("dark", "light"):
            window.set_theme(choice)
            qtbot.wait(20)
            palette = QApplication.palette()
            base, text = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.WindowText)
            for chart in charts:
                assert chart.backgroundBrush().color() == base, (choice, chart)
                assert chart.captions._color == text, (choice, chart)
            legend = [label for _, label in window.memory_view.chart._legend.items]
            assert legend
            for label in legend:
                colours = re.findall(r"color:\s*(#[0-9a-fA-F]{6})", label.item.toHtml())
                assert colours and colours[-1].lower() == text.name().lower(), (choice, label.text)
    finally:
        window.set_theme("system")


def test_system_theme_follows_a_scheme_change_while_running(window, monkeypatch) -> None:
    """The system switches to dark while the window is open: 'system' follows, a forced 'light' stays light."""
    from PySide6.QtCore import Qt

    from app import theme

    app = QApplication.instance()
    choice = ["system"]
    theme.follow_system(app, lambda: choice[0])
    lightness = lambda: QApplication.palette().color(QApplication.palette().ColorRole.Window).lightness()  # noqa: E731
    try:
        monkeypatch.setattr(theme, "system_is_dark", lambda _app: True)
        choice[0] = "light"
        window.set_theme("light")
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
        assert lightness() > 128
        choice[0] = "system"
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
        assert lightness() < 128
        monkeypatch.setattr(theme, "system_is_dark", lambda _app: False)
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert lightness() > 128
    finally:
        choice[0] = "off"
        window.set_theme("system")


def test_save_screenshot_of_each_tab(window, open_and_wait, tmp_path) -> None:
    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    window.resize(1300, 800)
    for title in ("Overview", "Memory"):
        window.tabs.setCurrentIndex(window.tab_index(title))
        out = tmp_path / f"{title}.png"
        assert window.save_tab_screenshot(out)
        image = QImage(str(out))
        assert image.width() > 200 and _variance(image) > 20


@pytest.mark.slow
def test_memory_controls_for_a_decoder_lm(window, open_and_wait, tmp_path, qtbot) -> None:
    fixture = model_files.hf_llama_folder(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    view = window.memory_view
    assert view.seq_spin.isVisibleTo(view) and view.batch_spin.isVisibleTo(view)
    config = window.session.summary.config
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    view.seq_spin.setValue(100)
    view.batch_spin.setValue(3)
    report = view.report
    assert (report.batch, report.seq_len) == (3, 100)
    assert report == estimate_memory(window.session.summary, batch=3, seq_len=100)
    kv = report.inference["bfloat16"].bytes - report.weights["bfloat16"].bytes - report.buffer_bytes
    assert kv == config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * 3 * 100 * 2 * 2
    assert view.chart.totals() == [float(view.table.item(r, 4).text().replace(",", ""))
                                   for r in range(view.table.rowCount())]


def test_memory_controls_hidden_for_a_cnn(window, open_and_wait, tmp_path) -> None:
    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    view = window.memory_view
    assert not view.seq_spin.isVisibleTo(view)
    assert view.report.params == fixture.params
    assert any("Activations are not included" in a for a in view.report.assumptions)
    assert "Activations are not included" in view.formulas.text()


def test_add_tab_and_close_model(window, open_and_wait, tmp_path) -> None:
    from PySide6.QtWidgets import QLabel

    index = window.add_tab("Explain", QLabel("x"))
    assert window.tabs.tabText(index) == "Explain" and window.tab_index("explain") == index
    changed = []
    window.session.changed.connect(lambda session: changed.append(session.summary))
    fixture = safetensors_file(tmp_path)
    assert open_and_wait(window, fixture.path)[0]
    window.close_model()
    assert changed[0].totals.params == fixture.params and changed[-1] is None


def test_the_tab_modules_are_imported_off_the_gui_thread(make_window, qtbot, tmp_path, monkeypatch) -> None:
    """pyqtgraph and QtWebEngine (~0.6 s) are imported by a helper thread after the first paint, so the window
    answers while they load; the tabs are built once they are in."""
    import sys
    import threading

    from app import main_window

    (tmp_path / "layerscope_probe_views.py").write_text(
        "import threading\nIMPORTED_IN = threading.current_thread().name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(main_window, "VIEW_MODULES", (*main_window.VIEW_MODULES, "layerscope_probe_views"))
    monkeypatch.delitem(sys.modules, "layerscope_probe_views", raising=False)
    window = make_window(defer_panes=True)
    window.show()
    qtbot.waitUntil(lambda: window.overview is not None, timeout=30_000)
    probe = sys.modules["layerscope_probe_views"]
    assert probe.IMPORTED_IN == "layerscope-views" != threading.main_thread().name
    assert window.memory_view is not None and window.graph_view is not None


def test_the_tree_pane_shows_total_params_and_share_at_the_default_size(make_window, open_and_wait, qtbot,
                                                                        tmp_path) -> None:
    """At 1500 x 900, a fresh window's tree shows every column up to '% of model' unclipped; a window built
    before it is shown (the second of `layerscope A B`) gets the same split, not a squeezed tree."""
    fixture = safetensors_file(tmp_path)
    for defer in (True, False):
        window = make_window(interactive=False, defer_panes=defer)
        window.resize(1500, 900)
        window.show()
        qtbot.waitUntil(lambda w=window: w.tree is not None, timeout=10_000)
        assert open_and_wait(window, fixture.path)[0]
        tree_width = window.splitter.sizes()[0]
        assert tree_width >= window.tree.width_to_show(), (defer, window.splitter.sizes())
        assert window.splitter.sizes()[1] >= 620
