"""Inspector, Overview, Memory view, charts and the trust dialog, fed plain data as the window feeds them."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPalette
from PySide6.QtTest import QTest

from analyzers.loaders.torch_modules import module_tree
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.memory import estimate_memory, human_bytes
from analyzers.summary.overview import block_of, overview_data, warm
from widgets.charts import BarChart, StackedBarChart
from widgets.inspector import Inspector
from widgets.memory_view import SEGMENTS, MemoryView, scenarios
from widgets.overview import OverviewView
from widgets.trust_dialog import TrustDialog


@pytest.fixture(scope="module")
def tied():
    from tests.torch_fixtures import TiedLM

    model = TiedLM()
    summary = ModelSummary(SourceInfo("/models/tied.pt", "pytorch-module", "torch"), module_tree(model),
                           metadata={"epoch": 3, "optimizer": {"lr": 0.001}}, notes=("A note.",))
    warm(summary)
    return model, summary


@pytest.fixture(scope="module")
def cnn():
    from tests.torch_fixtures import TinyCNN

    model = TinyCNN()
    summary = ModelSummary(SourceInfo("/models/cnn.pt", "pytorch-module", "torch"), module_tree(model))
    warm(summary)
    return model, summary


def test_inspector_lists_tensors_with_tied_and_buffers(qtbot, tied, cnn) -> None:
    model, summary = tied
    view = Inspector()
    qtbot.addWidget(view)
    view.set_layer(summary.node("lm_head"), summary.totals)
    assert view.title.text() == "lm_head" and view.subtitle.text() == "Linear"
    t = view.tensor_model
    assert t.rowCount() == 1
    assert t.cell(0, 0) == "weight" and t.cell(0, 7) == "embed.weight"  # tied to the embedding
    assert t.cell(0, 1) == f"({model.lm_head.weight.shape[0]}, {model.lm_head.weight.shape[1]})"
    assert view.attributes.rowCount() >= 2
    keys = {view.attributes.item(r, 0).text() for r in range(view.attributes.rowCount())}
    assert {"in_features", "out_features"} <= keys

    cnn_model, cnn_summary = cnn
    view.set_layer(cnn_summary.node("features.1"), cnn_summary.totals)
    kinds = {t.cell(r, 0): (t.cell(r, 5), t.cell(r, 6)) for r in range(t.rowCount())}
    assert kinds["running_mean"] == ("buffer", "no") and kinds["weight"] == ("param", "yes")
    assert kinds["num_batches_tracked"][0] == "buffer"
    own = sum(p.numel() for p in cnn_model.features[1].parameters())
    assert view.fields["Own params"].text() == f"{own:,}"


def test_inspector_subtree_tensors_and_empty_state(qtbot, tied) -> None:
    model, summary = tied
    view = Inspector()
    qtbot.addWidget(view)
    view.set_layer(summary.node("block"), summary.totals)
    assert view.subtree_box.isChecked()  # the block owns no tensors itself
    names = {view.tensor_model.cell(r, 0) for r in range(view.tensor_model.rowCount())}
    assert names == {n.removeprefix("block.") for n, _ in model.block.named_parameters()} | {
        n.removeprefix("block.") for n, _ in model.block.named_buffers()}
    view.subtree_box.setChecked(False)
    assert view.tensor_model.rowCount() == 0
    view.set_layer(None, None)
    assert view.title.text() == "No layer selected"


def test_overview_shows_totals_notes_metadata_and_charts(qtbot, cnn) -> None:
    model, summary = cnn
    data = overview_data(summary)
    view = OverviewView()
    qtbot.addWidget(view)
    view.set_model(None, None)
    assert view.stack.currentIndex() == 0
    view.set_model(summary, data)
    assert view.pending()  # charts are drawn one per event-loop turn
    qtbot.waitUntil(lambda: not view.pending(), timeout=2000)
    assert view.stack.currentIndex() == 1
    assert view.heading.text() == "cnn.pt"
    total = sum(p.numel() for p in model.parameters())
    texts = [w.text() for w in view.totals_box.findChildren(type(view.heading))]
    assert any(t.startswith(f"{total:,} (") for t in texts)
    by_type = dict(zip(view.type_chart.keys, view.type_chart.values))
    assert by_type["Conv2d"] == sum(p.numel() for p in model.features[0].parameters())
    assert by_type["Linear"] == sum(p.numel() for p in model.head.parameters())
    blocks = dict(zip(view.block_chart.keys, view.block_chart.values))
    assert blocks["head"] == by_type["Linear"]
    assert sum(view.dtype_chart.values) == summary.totals.total_bytes
    view.highlight(summary.node("features.0"))
    assert view.type_chart.highlighted == {"Conv2d"}
    assert view.block_chart.highlighted == {block_of("features.0", data.by_block)}
    assert view.dtype_chart.highlighted == {"float32"}


def test_overview_metadata_tree(qtbot, tied) -> None:
    _, summary = tied
    view = OverviewView()
    qtbot.addWidget(view)
    view.set_model(summary, overview_data(summary))
    top = {view.metadata.topLevelItem(i).text(0): view.metadata.topLevelItem(i)
           for i in range(view.metadata.topLevelItemCount())}
    assert top["epoch"].text(1) == "3"
    assert top["optimizer"].child(0).text(0) == "lr"
    assert "A note." in view.notes.text()


def test_bar_chart_click_and_theme(qtbot) -> None:
    chart = BarChart("Test")
    qtbot.addWidget(chart)
    chart.resize(500, 300)
    chart.show()
    qtbot.waitExposed(chart)
    chart.set_bars(["a", "b", "c"], [10, 40, 5], ["ka", "kb", "kc"])
    qtbot.wait(50)
    vb = chart.getPlotItem().getViewBox()
    point = chart.mapFromScene(vb.mapViewToScene(QPointF(20, 1)))
    with qtbot.waitSignal(chart.barClicked, timeout=2000) as blocker:
        QTest.mouseClick(chart.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)
    assert blocker.args == ["kb"]
    assert chart.bar_at(vb.mapViewToScene(QPointF(20, 1.5))) is None  # the gap between two bars
    assert chart.bar_at(vb.mapViewToScene(QPointF(30, 2))) == 2  # the row of 'c', right of its bar
    dark = QPalette(chart.palette())
    dark.setColor(QPalette.ColorRole.Base, Qt.GlobalColor.black)
    chart.setPalette(dark)
    assert chart.backgroundBrush().color().lightness() < 50


def test_stacked_chart_rows_add_up(qtbot) -> None:
    chart = StackedBarChart("Memory")
    qtbot.addWidget(chart)
    chart.set_data(["x", "y"], [("one", [1, 2]), ("two", [3, 0])])
    assert chart.totals() == [4, 2]


def _decoder_summary() -> ModelSummary:
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 32,
              "max_position_embeddings": 512}
    root = LayerNode("", "LlamaForCausalLM", (TensorInfo("w", (64, 32), "bfloat16"),))
    return ModelSummary(SourceInfo("/m/llama", "hf", "torch"), root, config=config)


def test_memory_scenarios_add_up_to_each_line() -> None:
    report = estimate_memory(_decoder_summary(), batch=2, seq_len=64)
    for row in scenarios(report):
        assert sum(row.parts) == pytest.approx(row.line.bytes), row.label
        assert len(row.parts) == len(SEGMENTS)


def test_memory_view_emits_on_change_and_shows_formulas(qtbot) -> None:
    summary = _decoder_summary()
    view = MemoryView()
    qtbot.addWidget(view)
    view.set_report(estimate_memory(summary))
    assert view.seq_spin.isVisibleTo(view) and view.seq_spin.value() == 512
    with qtbot.waitSignal(view.parametersChanged, timeout=1000) as blocker:
        view.batch_spin.setValue(4)
    assert blocker.args == [4, 512, 128]
    with qtbot.waitSignal(view.parametersChanged, timeout=1000) as blocker:
        view.group_combo.setCurrentIndex(0)
    assert blocker.args[2] == 32
    report = estimate_memory(summary, batch=4, seq_len=512, int4_group=32)
    view.set_report(report)
    assert view.table.rowCount() == len(scenarios(report))
    assert view.table.item(1, 4).text() == f"{report.inference['float32'].bytes:,}"
    assert view.table.item(1, 1).text() == human_bytes(report.weights["float32"].bytes)  # weights alone, fp32
    assert view.table.item(5, 1).text() == human_bytes(report.weights["int4"].bytes)  # and int4
    kv = report.inference["float32"].bytes - report.weights["float32"].bytes - report.buffer_bytes
    assert kv > 0 and view.table.item(1, 2).text() == human_bytes(kv) and not view.table.isColumnHidden(2)
    for line in report.assumptions:
        assert line.split(":")[0][:30].replace("&", "&amp;") in view.formulas.text()
    assert "KV cache" in view.kv_label.text()
    view.set_report(None)
    assert view.table.rowCount() == 0


def test_trust_dialog_defaults_to_no(qtbot, tmp_path) -> None:
    dialog = TrustDialog(tmp_path / "model.pt", "model.pt contains pickled Python code (objects of class X).")
    qtbot.addWidget(dialog)
    assert dialog.defaultButton() is dialog.no_button
    assert dialog.escapeButton() is dialog.no_button
    assert "permissions" in dialog.informativeText()
    dialog.open()
    QTest.keyClick(dialog, Qt.Key.Key_Return)
    assert not dialog.isVisible() and not dialog.trusted()
    dialog.open()
    QTest.keyClick(dialog, Qt.Key.Key_Escape)
    assert not dialog.trusted()
    dialog.open()
    qtbot.mouseClick(dialog.open_button, Qt.MouseButton.LeftButton)
    assert dialog.trusted()


def llama_like(layers: int) -> ModelSummary:
    """model.embed_tokens, model.layers.0..N-1 (two linears each), model.norm, lm_head: the HF decoder shape."""
    def linear(path: str) -> LayerNode:
        return LayerNode(path, "Linear", (TensorInfo(f"{path}.weight", (64, 64), "float32"),))

    stack = tuple(LayerNode(f"model.layers.{i}", "DecoderLayer", (), (linear(f"model.layers.{i}.q"),
                                                                      linear(f"model.layers.{i}.o")))
                  for i in range(layers))
    model = LayerNode("model", "Model", (), (
        LayerNode("model.embed_tokens", "Embedding", (TensorInfo("model.embed_tokens.weight", (100, 64), "float32"),)),
        LayerNode("model.layers", "ModuleList", (), stack),
        LayerNode("model.norm", "RMSNorm", (TensorInfo("model.norm.weight", (64,), "float32"),))))
    root = LayerNode("", "ForCausalLM", (), (model, linear("lm_head")))
    summary = ModelSummary(SourceInfo("llama", "hf", "torch", (), 0), root)
    warm(summary)
    return summary


def test_block_chart_keeps_a_long_stack_as_one_bar_and_opens_a_short_one() -> None:
    long = [bar.key for bar in overview_data(llama_like(32)).by_block]
    assert long == ["model.embed_tokens", "model.layers", "model.norm", "lm_head"]
    short = [bar.key for bar in overview_data(llama_like(6)).by_block]
    assert short == ["model.embed_tokens", *(f"model.layers.{i}" for i in range(6)), "model.norm", "lm_head"]


def test_the_memory_legend_never_covers_the_longest_bar(qtbot) -> None:
    from PySide6.QtGui import QFontMetrics

    chart = StackedBarChart("Memory by scenario")
    qtbot.addWidget(chart)
    chart.resize(900, 320)
    chart.show()
    qtbot.waitExposed(chart)
    rows = ["Weights", "Inference fp32", "Inference bf16", "Training"]
    chart.set_data(rows, [("Weights", [1.0, 1.0, 0.5, 1.0]), ("KV cache", [0.0, 200.0, 100.0, 0.0]),
                          ("Gradients", [0.0, 0.0, 0.0, 1.0]), ("Adam state (m, v)", [0.0, 0.0, 0.0, 2.0])])
    qtbot.wait(50)
    vb = chart.getPlotItem().getViewBox()
    caption = QFontMetrics(chart.font()).horizontalAdvance(chart.formatter(201.0))
    bar_end = vb.mapViewToScene(QPointF(201.0, 1)).x()
    legend = chart._legend.sceneBoundingRect()
    assert legend.width() > 50
    assert bar_end + caption <= legend.left(), (bar_end, caption, legend.left())


def test_the_kv_column_shows_only_for_decoder_language_models(qtbot, tied) -> None:
    view = MemoryView()
    qtbot.addWidget(view)
    report = estimate_memory(tied[1])
    view.set_report(report)
    assert view.table.isColumnHidden(2)
    assert view.table.item(3, 1).text() == human_bytes(report.weights["float16"].bytes)


def many_blocks(count: int = 89) -> ModelSummary:
    """A Keras-export-like model: `count` dense blocks side by side, a few large and many small."""
    children = []
    for i in range(count):
        rows = 64 if i % 4 == 0 else 12  # every fourth block is large
        cols = 48 if i % 4 == 0 else 36
        children.append(LayerNode(f"dense_{i}", "Dense", (TensorInfo(f"dense_{i}.kernel", (rows, cols), "float32"),)))
    summary = ModelSummary(SourceInfo("/m/exported", "savedmodel", "tensorflow"), LayerNode("", "Model", (), tuple(children)))
    warm(summary)
    return summary


def test_the_block_chart_of_many_blocks_adds_up_to_the_whole_model() -> None:
    from analyzers.summary.overview import MAX_BLOCKS, OTHER_KEY

    summary = many_blocks(89)
    total = 23 * 64 * 48 + 66 * 12 * 36  # 23 large blocks, 66 of 432 parameters
    assert summary.totals.params == total
    data = overview_data(summary)
    bars = data.by_block
    assert len(bars) == MAX_BLOCKS
    assert sum(bar.value for bar in bars) == total
    assert data.params_total == total
    other = bars[-1]
    assert other.key == OTHER_KEY and len(other.members) == 89 - (MAX_BLOCKS - 1)
    assert other.label == f"other {89 - (MAX_BLOCKS - 1)} blocks"
    assert [bar.key for bar in bars[:-1]] == [f"dense_{i}" for i in range(0, 89, 4)][: MAX_BLOCKS - 1]
    folded = other.members[0]
    assert block_of(folded, bars) == OTHER_KEY
    assert block_of("dense_4", bars) == "dense_4"


def test_a_root_with_own_tensors_keeps_them_in_the_block_chart() -> None:
    root = LayerNode("", "Net", (TensorInfo("scale", (10,), "float32"),), (
        LayerNode("a", "Linear", (TensorInfo("a.weight", (4, 4), "float32"),)),
        LayerNode("b", "Linear", (TensorInfo("b.weight", (4, 2), "float32"),))))
    summary = ModelSummary(SourceInfo("/m/net.pt", "pytorch", "torch"), root)
    warm(summary)
    bars = overview_data(summary).by_block
    assert sum(bar.value for bar in bars) == summary.totals.params == 10 + 16 + 8
    assert bars[0].label == "(model) (own tensors)" and bars[0].value == 10


def test_block_percentages_are_of_the_whole_model_and_labels_never_overlap(qtbot) -> None:
    from PySide6.QtGui import QFontMetrics

    from analyzers.summary.overview import OTHER_KEY

    summary = many_blocks(89)
    data = overview_data(summary)
    view = OverviewView()
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_model(summary, data)
    view.flush()
    qtbot.wait(50)
    chart = view.block_chart
    total = summary.totals.params
    assert chart.values == [bar.value for bar in data.by_block]
    for value, caption in zip(chart.values, chart.captions_shown):
        assert caption.endswith(f"{100 * value / total:.1f}%"), caption
    assert chart.keys[-1] == OTHER_KEY and chart.values[-1] == 66 * 432  # the 66 small blocks, folded
    # every row has its label, and two rows are at least a text line apart on screen
    assert chart.label_step() == 1
    vb = chart.getPlotItem().getViewBox()
    row = vb.mapViewToScene(QPointF(0, 1)).y() - vb.mapViewToScene(QPointF(0, 0)).y()
    assert row >= QFontMetrics(chart.font()).height(), row
    # "other N blocks" selects nothing when clicked
    emitted = []
    view.blockClicked.connect(emitted.append)
    chart.barClicked.emit(OTHER_KEY)
    chart.barClicked.emit("dense_0")
    assert emitted == ["dense_0"]


def test_a_narrow_chart_with_long_labels_keeps_bars_captions_and_title_inside(qtbot) -> None:
    """A 30-character type name widened the left axis, and the plot ran past the chart: '39.2' lost its '%'."""
    from PySide6.QtGui import QFontMetrics

    chart = BarChart("Parameters by layer type")
    qtbot.addWidget(chart)
    chart.resize(370, 220)
    chart.show()
    qtbot.waitExposed(chart)
    labels = ["Linear", "MultiheadAttention", "Embedding", "NonDynamicallyQuantizableLinear", "LayerNorm"]
    values = [33280, 24960, 17790, 8320, 512]
    chart.set_bars(labels, values, total=sum(values) + 2)
    qtbot.wait(50)
    vb = chart.getPlotItem().getViewBox()
    metrics = QFontMetrics(chart.font())
    assert vb.sceneBoundingRect().right() <= chart.viewport().width()
    for value, caption in zip(chart.values, chart.captions_shown):
        end = vb.mapViewToScene(QPointF(value, 0)).x() + 5 + metrics.horizontalAdvance(caption)
        assert end <= chart.viewport().width(), caption
    title = chart.getPlotItem().titleLabel
    assert title.sceneBoundingRect().right() <= chart.viewport().width()
