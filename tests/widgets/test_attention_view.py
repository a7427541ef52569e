"""The Attention panel on a synthetic 12-layer × 12-head capture at 128 tokens: the atlas grid, the matrix, the
token lines, the padding cut, the narrow layout; and the thumbnails and PNGs it shares with the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.explain.attention import AttentionCollector
from analyzers.explain.attention_display import (
    atlas,
    grid_cells,
    render_matrix,
    thumbnail,
    view_map,
    write_view_png,
)


def synthetic(layers: int = 12, heads: int = 12, tokens: int = 128, padding: int = 8):
    rng = np.random.default_rng(0)
    collector = AttentionCollector()
    valid = np.arange(tokens) < tokens - padding
    for i in range(layers):
        logits = rng.normal(size=(heads, tokens, tokens)) * 3
        w = np.exp(logits) * valid[None, None, :]
        collector.add(f"encoder.layers.{i}.self_attn", w / w.sum(-1, keepdims=True), key_valid=valid)
    return collector.finish("test", [f"w{i}" for i in range(tokens - padding)], kind="text")


def test_thumbnails_keep_the_strongest_weight_and_the_atlas_leaves_gaps():
    m = np.zeros((128, 128), np.float32)
    m[70, 3] = 1.0
    t = thumbnail(m, 32)
    assert t.shape == (32, 32) and t.max() == 1.0 and t[70 * 32 // 128, 0] == 1.0  # block maxima: still visible
    small = thumbnail(np.eye(4, dtype=np.float32), 8)
    np.testing.assert_array_equal(small, np.kron(np.eye(4), np.ones((2, 2))))
    picture = atlas([[m, None], [np.ones((5, 5))]], 10, gap=2)
    assert picture.shape == (24, 24, 4)
    assert picture[0:10, 12:22, 3].max() == 0  # the empty cell is transparent
    assert picture[12:22, 0:10, 3].min() == 255


def test_grid_and_views_of_a_capture():
    result = synthetic(layers=3, heads=2, tokens=10, padding=2)
    cells, rows, columns = grid_cells(result)
    assert rows == ["L0", "L1", "L2"] and columns == ["H0", "H1", "mean", "rollout"]
    assert cells[1][0].shape == (8, 8)  # padding cut
    np.testing.assert_allclose(cells[2][3], result.rollout()[2][:8, :8])
    view = view_map(result, 1, None, with_padding=True)
    assert view.map.shape == (10, 10) and view.query_labels[-1] == "[PAD]" and view.title.endswith("mean over heads")


def test_png_of_a_matrix_has_its_labels(tmp_path):
    rgb = render_matrix(np.eye(3, dtype=np.float32), ("a", "b", "c"), ("a", "b", "c"), "title")
    assert rgb.shape[2] == 3 and rgb.shape[0] > 3 * 24
    path = write_view_png(tmp_path / "m.png", synthetic(2, 2, 12, 2), layer=1, head=0)
    from PIL import Image

    assert Image.open(path).size[0] > 100


@pytest.fixture
def panel(qtbot):
    from widgets.attention_view import AttentionPanel

    p = AttentionPanel()
    qtbot.addWidget(p)
    p.resize(1500, 900)
    p.set_model("model.pt", "text", [("first", "0")])
    p.show()
    return p


def test_panel_shows_a_12_by_12_capture_and_follows_clicks(panel, qtbot, tmp_path):
    result = synthetic()
    panel.set_result(result, "caption")
    assert panel.grid.shape == (12, 14) and panel.layer.count() == 12 and panel.head_box.count() == 12
    assert panel.matrix.image.image.shape == (120, 120)  # the trailing padding is not drawn
    panel.padding_box.setChecked(True)
    assert panel.matrix.image.image.shape == (128, 128)
    panel.padding_box.setChecked(False)
    panel.select_cell(5, 12)  # the mean column
    assert panel.head is None and panel.mean_box.isChecked() and not panel.head_box.isEnabled()
    np.testing.assert_allclose(panel.matrix.image.image, result.layers[5].mean[:120, :120])
    panel.select_cell(7, 13)  # the rollout column
    assert panel.rollout_box.isChecked()
    np.testing.assert_allclose(panel.matrix.image.image, result.rollout()[7][:120, :120], rtol=1e-6)
    assert panel.matrix.read(0, 1).startswith("query 0 'w0' → key 1 'w1': ")
    panel.rollout_box.setChecked(False)
    panel.mean_box.setChecked(False)
    assert panel.head == 0 and panel.head_box.isEnabled()
    panel.lines.set_focus(4)
    assert {q for q, _, _ in panel.lines.lines()} == {4}
    assert panel.across.image.image.shape == (12, 120)
    saved = panel.save_npz(tmp_path / "a.npz")
    with np.load(saved, allow_pickle=False) as f:
        assert f["attention_11"].shape == (12, 128, 128) and f["attention_11"].dtype == np.float16


def test_panel_fits_a_narrow_tab(panel, qtbot):
    panel.set_result(synthetic(2, 2, 16, 0))
    panel.resize(560, 800)
    qtbot.waitUntil(lambda: panel.splitter.orientation().name == "Vertical", timeout=2000)
    assert panel.minimumSizeHint().width() <= 560


def test_token_lines_of_a_long_flat_map_keep_the_strongest(qtbot):
    from widgets.attention_tokens import MAX_LINES, TokenLines

    view = TokenLines()
    qtbot.addWidget(view)
    rng = np.random.default_rng(2)
    w = rng.random((200, 200)).astype(np.float32) + 1.0
    w /= w.sum(-1, keepdims=True)
    labels = [f"t{i}" for i in range(200)]
    view.set_weights(w, labels, labels)
    lines = view.lines()
    assert len(lines) == MAX_LINES
    assert min(a for _, _, a in lines) * w.max() >= np.sort(w.ravel())[-MAX_LINES] - 1e-9
    view.set_focus(7)
    assert sorted(j for _, j, _ in view.lines()) == list(range(200)) and {i for i, _, _ in view.lines()} == {7}
    view.resize(600, 400)
    view.grab()  # paints without error
