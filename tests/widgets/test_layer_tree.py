"""The layer tree: lazy on 10^5 nodes, numbers from the framework, filter with ancestors, sort, copy."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from analyzers.loaders.torch_modules import module_tree
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.overview import warm
from widgets.layer_tree import BYTES, DTYPES, FETCH_BATCH, NAME, OWN, SHARE, TOTAL, TRAINABLE, TYPE, LayerTree


def summary_of(root: LayerNode, name: str = "model.pt") -> ModelSummary:
    """A summary with its counts computed up front, as the loading job does off the GUI thread."""
    summary = ModelSummary(SourceInfo(f"/models/{name}", "pytorch", "torch"), root)
    warm(summary)
    return summary


@pytest.fixture(scope="module")
def torch_summary():
    from tests.torch_fixtures import TiedLM

    model = TiedLM()
    return model, summary_of(module_tree(model))


@pytest.fixture
def tree(qtbot):
    widget = LayerTree()
    qtbot.addWidget(widget)
    widget.resize(1000, 600)
    return widget


def wide_summary(blocks: int, per_block: int) -> ModelSummary:
    """blocks × per_block leaf layers of 4 parameters each (built directly: no name parsing)."""
    kids = []
    for b in range(blocks):
        leaves = tuple(LayerNode(f"b{b}.l{i}", "Leaf", (TensorInfo(f"b{b}.l{i}.w", (4,), "float32"),))
                       for i in range(per_block))
        kids.append(LayerNode(f"b{b}", "Block", (), leaves))
    return summary_of(LayerNode("", "Wide", (), tuple(kids)), "wide.safetensors")


def test_numbers_match_torch(tree, torch_summary) -> None:
    model, summary = torch_summary
    tree.set_summary(summary)
    m = tree.model
    root = m.index(0, 0)
    total = sum(p.numel() for p in model.parameters())  # tied weights once
    assert m.row_data(root).params_total == total
    assert m.data(root.siblingAtColumn(TOTAL)) == f"{total:,}"
    assert m.data(root.siblingAtColumn(SHARE)) == "100.00 %"
    assert m.data(root.siblingAtColumn(TYPE)) == "TiedLM"
    assert m.data(root) == "model.pt"
    norm = m.index_for_path("norm")
    assert m.data(norm.siblingAtColumn(OWN)) == f"{sum(p.numel() for p in model.norm.parameters()):,}"
    assert m.data(norm.siblingAtColumn(TYPE)) == "LayerNorm"
    assert m.data(norm.siblingAtColumn(DTYPES)) == "float32"
    assert m.data(norm.siblingAtColumn(TRAINABLE)) == "yes"
    assert m.data(norm.siblingAtColumn(BYTES)).endswith("B")
    share = 100 * sum(p.numel() for p in model.norm.parameters()) / total
    assert m.data(norm.siblingAtColumn(SHARE)) == f"{share:.2f} %"
    # lm_head shares the embedding: it owns no counted parameters
    head = m.index_for_path("lm_head")
    assert m.row_data(head).params_total == 0


@pytest.mark.slow
def test_a_hundred_thousand_nodes_stay_lazy(tree) -> None:
    summary = wide_summary(100, 1000)
    assert summary.node_count == 100_101
    tree.set_summary(summary)
    m = tree.model
    root = m.index(0, 0)
    assert m.rowCount(root) == 100  # the root is expanded: its 100 blocks have rows
    assert m.materialised <= 101
    block = m.index(3, 0, root)
    assert m.hasChildren(block) and m.rowCount(block) == 0 and m.canFetchMore(block)
    m.fetchMore(block)
    assert m.rowCount(block) == FETCH_BATCH and m.canFetchMore(block)
    m.fetchMore(block)
    assert m.rowCount(block) == min(1000, 2 * FETCH_BATCH)
    assert m.materialised <= 101 + 1000
    tree.view.expand(m.index(7, 0, root))  # the view fetches what it shows, not the whole block
    assert m.materialised < 3000
    assert m.row_data(root).params_total == 100_000 * 4


def test_a_flat_model_fetches_in_batches(tree) -> None:
    leaves = tuple(LayerNode(f"t{i}", "", (TensorInfo(f"t{i}.w", (2,), "float16"),)) for i in range(20_000))
    tree.set_summary(summary_of(LayerNode("", "", (), leaves)))
    m = tree.model
    root = m.index(0, 0)
    assert 0 < m.rowCount(root) < 20_000 and m.rowCount(root) % FETCH_BATCH == 0
    assert m.canFetchMore(root)
    far = 3 * FETCH_BATCH + 7
    assert tree.select_path(f"t{far}")  # reaching a far row fetches up to it, not everything
    assert tree.selected_path() == f"t{far}"
    assert far < m.rowCount(root) < 20_000


def test_filter_keeps_ancestors_and_matches_type(tree, torch_summary) -> None:
    _, summary = torch_summary
    tree.set_summary(summary)
    m = tree.model
    tree.set_filter("LINEAR1")  # any case, matches the path of block.linear1
    assert m.matched_paths() == ["block.linear1"]
    root = m.index(0, 0)
    assert [m.data(m.index(r, 0, root)) for r in range(m.rowCount(root))] == ["block"]
    block = m.index(0, 0, root)
    assert tree.view.isExpanded(block)
    assert [m.data(m.index(r, 0, block)) for r in range(m.rowCount(block))] == ["linear1"]
    assert "1 of" in tree.count_label.text()
    tree.set_filter("LayerNorm")  # a type
    assert set(m.matched_paths()) == {p for p, mod in
                                      ((n.path, n) for n, _ in summary.walk()) if mod.type == "LayerNorm"}
    tree.set_filter("no such layer")
    assert m.rowCount() == 0
    tree.set_filter("")
    assert m.rowCount() == 1 and m.rowCount(m.index(0, 0)) == len(summary.root.children)


def test_a_matching_block_keeps_all_its_children(tree, torch_summary) -> None:
    _, summary = torch_summary
    tree.set_summary(summary)
    tree.set_filter("TransformerEncoderLayer")
    m = tree.model
    block = m.index_for_path("block")
    m.fetch_until(block, 100)
    assert m.rowCount(block) == len(summary.node("block").children)


def test_the_filter_box_is_debounced(tree, qtbot, torch_summary) -> None:
    tree.set_summary(torch_summary[1])
    tree.filter_edit.setText("norm")
    assert tree.model.filter_text == ""
    qtbot.waitUntil(lambda: tree.model.filter_text == "norm", timeout=2000)


def test_sort_by_column_and_back_to_file_order(tree) -> None:
    blocks = tuple(LayerNode(f"layer{i}", "Leaf", (TensorInfo(f"layer{i}.w", (n,), "float32"),))
                   for i, n in enumerate([5, 50, 1, 20, 3, 7, 9, 11, 2, 4, 6]))
    tree.set_summary(summary_of(LayerNode("", "M", (), blocks)))
    m = tree.model
    root = m.index(0, 0)
    names = lambda: [m.data(m.index(r, 0, root)) for r in range(m.rowCount(root))]  # noqa: E731
    file_order = names()
    assert file_order[:3] == ["layer0", "layer1", "layer2"]
    tree.view.setCurrentIndex(m.index_for_path("layer3"))
    tree.view.sortByColumn(TOTAL, Qt.SortOrder.DescendingOrder)
    assert names()[:3] == ["layer1", "layer3", "layer7"]
    assert tree.selected_path() == "layer3"  # the selection follows its row
    tree.view.sortByColumn(NAME, Qt.SortOrder.AscendingOrder)
    assert names()[:3] == ["layer0", "layer1", "layer2"] and names()[-1] == "layer10"  # natural order
    tree.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
    assert names() == file_order


def test_copy_path_and_row(tree, torch_summary) -> None:
    model, summary = torch_summary
    tree.set_summary(summary)
    index = tree.model.index_for_path("block.linear2")
    assert tree.copy_path(index) == "block.linear2"
    assert QApplication.clipboard().text() == "block.linear2"
    row = tree.copy_row(index).split("\t")
    assert row[0] == "block.linear2" and row[1] == "Linear"
    assert row[3] == f"{sum(p.numel() for p in model.block.linear2.parameters()):,}"


def test_expand_to_depth(tree, torch_summary) -> None:
    tree.set_summary(torch_summary[1])
    m = tree.model
    tree.depth_spin.setValue(2)
    block = m.index_for_path("block")
    assert tree.view.isExpanded(block)
    tree.depth_spin.setValue(1)
    assert not tree.view.isExpanded(m.index_for_path("block"))
    assert tree.view.isExpanded(m.index(0, 0))


def test_share_bars_paint(tree, torch_summary, qtbot) -> None:
    tree.set_summary(torch_summary[1])
    tree.show()
    qtbot.waitExposed(tree)
    image = tree.view.viewport().grab().toImage()
    assert not image.isNull() and image.width() > 100


def test_headers_of_the_number_columns_are_not_clipped(tree, torch_summary) -> None:
    tree.set_summary(torch_summary[1])
    header = tree.view.header()
    for col in (OWN, TOTAL, BYTES, DTYPES):
        title = tree.model.headerData(col, Qt.Orientation.Horizontal)
        assert header.sectionSize(col) > header.fontMetrics().horizontalAdvance(title) + 8, title


def test_expand_to_depth_opens_exactly_the_levels_above_it(tree) -> None:
    """Three levels under the model row: depth 3 opens the blocks and their layers, never the leaves."""
    from bench.tree_expand import deep_summary

    summary = deep_summary(30)
    tree.set_summary(summary)
    m = tree.model
    tree.depth_spin.setValue(3)
    for b in (0, 17, 29):
        assert tree.view.isExpanded(m.index_for_path(f"b{b}"))
        assert tree.view.isExpanded(m.index_for_path(f"b{b}.l4"))
        assert not m.hasChildren(m.index_for_path(f"b{b}.l4.p1"))
    visible, index = 0, m.index(0, 0)
    while index.isValid():
        visible += 1
        index = tree.view.indexBelow(index)
    assert visible == 1 + 30 * (1 + 5 + 10)  # every row down to the leaves is shown
    tree.depth_spin.setValue(2)
    assert tree.view.isExpanded(m.index_for_path("b3")) and not tree.view.isExpanded(m.index_for_path("b3.l0"))
