"""Normalisation matches Captum's visualize_image_attr; colour maps hide zero; Spearman matches scipy."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.attribution_display import (
    COLOR_MAPS,
    SIGN_MODES,
    colorize,
    normalize,
    overlay,
    render_overlay,
    render_tokens,
    save_png,
    shared_threshold,
    threshold_for,
    to_2d,
)
from analyzers.errors import LayerScopeError
from analyzers.sanity import rank, spearman


@pytest.mark.parametrize("sign", list(SIGN_MODES))
@pytest.mark.parametrize("outlier", [0.0, 2.0, 10.0])
def test_normalize_equals_captum(sign, outlier):
    from captum.attr._utils.visualization import _normalize_attr

    attr = np.random.default_rng(0).normal(size=(3, 16, 16))  # CHW
    hwc_sum = np.sum(np.transpose(attr, (1, 2, 0)), axis=2)  # what visualize_image_attr normalises
    theirs = _normalize_attr(hwc_sum, SIGN_MODES[sign], outlier)
    ours = normalize(to_2d(attr, "NCHW"), sign, outlier)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_to_2d_sums_channels_for_both_layouts_and_keeps_tokens_as_a_row():
    chw = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    np.testing.assert_array_equal(to_2d(chw, "NCHW"), chw.sum(0))
    np.testing.assert_array_equal(to_2d(np.transpose(chw, (1, 2, 0)), "NHWC"), chw.sum(0))
    assert to_2d(np.arange(5.0)).shape == (1, 5)


def test_shared_scale_uses_the_larger_threshold():
    a = np.random.default_rng(1).normal(size=(8, 8))
    b = 3 * a
    t = shared_threshold([a, b], "all", 2.0)
    assert t == pytest.approx(threshold_for(b, "all", 2.0))
    np.testing.assert_allclose(normalize(a, "all", 2.0, t), np.clip(a / t, -1, 1))
    assert np.all(normalize(np.zeros((4, 4)), "all") == 0)


def test_colour_maps_have_a_transparent_zero():
    norm = np.array([[-1.0, 0.0, 1.0]])
    rgba = colorize(norm, "blue-red", "all")
    assert rgba[0, 1, 3] == 0 and rgba[0, 0, 3] == 255 and rgba[0, 2, 3] == 255
    assert rgba[0, 0, 2] > rgba[0, 0, 0]  # negative is blue, positive red
    heat = colorize(np.array([[0.0, 1.0]]), "heat", "positive")
    assert heat[0, 0, 3] == 0 and heat[0, 1, 3] == 255
    assert set(COLOR_MAPS) >= {"blue-red", "heat"}
    with pytest.raises(LayerScopeError):
        colorize(norm, "jet")


def test_overlay_blends_by_alpha_and_opacity():
    display = np.full((2, 2), 0.5)
    heat = np.zeros((2, 2, 4), dtype=np.uint8)
    heat[0, 0] = (255, 0, 0, 255)
    out = overlay(display, heat, opacity=1.0)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (128, 128, 128)
    half = overlay(display, heat, opacity=0.5)
    assert tuple(half[0, 0]) == (191, 64, 64)


def test_png_outputs(tmp_path):
    from PIL import Image

    attr = np.random.default_rng(2).normal(size=(1, 28, 28))
    rgb = render_overlay(attr, np.random.default_rng(3).random((28, 28)), "NCHW", "all")
    path = save_png(tmp_path / "o.png", rgb)
    assert Image.open(path).size == (28 * 8, 28 * 8)
    tokens = render_tokens(["it", "was", "wonderful"], np.array([0.0, 0.1, 0.9]))
    assert tokens.ndim == 3 and tokens.shape[2] == 3


def test_rank_and_spearman_match_scipy():
    from scipy.stats import rankdata, spearmanr

    rng = np.random.default_rng(4)
    a = rng.integers(0, 5, 200).astype(float)  # many ties
    b = a + rng.normal(size=200)
    np.testing.assert_allclose(rank(a), rankdata(a))
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
