"""Normalisation matches Captum's visualize_image_attr; colour maps hide zero; Spearman matches scipy."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.errors import LayerScopeError
from analyzers.explain.display import (
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
from analyzers.explain.sanity import rank, spearman


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


# --- a raw output read as a picture, a flat index in words --------------------------------------


def test_image_like_outputs_become_pictures_in_the_unit_range():
    from analyzers.explain.display import image_axes, output_picture

    rng = np.random.default_rng(7)
    tanh = np.tanh(rng.normal(size=(28, 28, 1)))  # a DCGAN generator's output
    np.testing.assert_allclose(output_picture(tanh), (tanh[:, :, 0] + 1) / 2, rtol=1e-6)
    chw = rng.random((3, 16, 12))  # an RGB image, channels first, already in [0, 1]
    np.testing.assert_allclose(output_picture(chw), np.moveaxis(chw, 0, -1), rtol=1e-6)
    pixels = rng.integers(0, 256, size=(10, 9)).astype(float)
    np.testing.assert_allclose(output_picture(pixels), pixels / 255, rtol=1e-6)
    wide = rng.normal(size=(12, 12)) * 40  # any other range: stretched from its minimum to its maximum
    pic = output_picture(wide)
    assert pic.min() == 0 and pic.max() == pytest.approx(1)
    assert image_axes((10,)) is None and image_axes((2, 50)) is None and image_axes((5, 28, 28)) is None
    assert output_picture(rng.normal(size=(100,))) is None and output_picture(None) is None


def test_a_flat_output_index_is_said_in_words():
    from analyzers.explain.display import output_pixel, output_position

    # 129 = 4 * 28 + 17: row 4, column 17 of a 28x28 single-channel image
    assert output_position(129, (28, 28, 1)) == "output pixel (4, 17)"
    assert output_pixel(129, (28, 28, 1)) == (4, 17)
    # channels first: index = c * H * W + r * W + col
    assert output_position(2 * 16 * 12 + 3 * 12 + 5, (3, 16, 12)) == "output pixel (3, 5), channel 2"
    assert output_position(7, (2, 5)) == "output element [1, 2]"
    assert output_position(7, (10,)) == "output element 7"
    assert output_pixel(7, (10,)) is None


def test_a_raw_prediction_carries_its_output_only_when_small():
    from analyzers.runtime import MAX_KEPT_OUTPUT, summarise_outputs

    image = np.tanh(np.random.default_rng(3).normal(size=(1, 28, 28, 1))).astype(np.float32)
    pred = summarise_outputs({"image": image}, (), 5, task="generation")
    assert pred.kind == "raw"
    np.testing.assert_array_equal(pred.values, image[0])
    assert pred.target == int(np.argmax(image))
    side = int(np.sqrt(MAX_KEPT_OUTPUT)) + 1  # one value past the limit
    big = summarise_outputs({"image": np.zeros((1, side, side), np.float32)}, (), 5, task="generation")
    assert big.values is None


@pytest.mark.slow
def test_the_bundled_gan_names_its_target_pixel_and_draws_its_image():
    """The GAN generator's attribution target read "129 (129)": it is now the pixel it points at."""
    from analyzers.explain.attribution import AttributionRequest, compute
    from analyzers.explain.display import output_picture, output_pixel
    from analyzers.explain.inputs import ModelInput
    from analyzers.runtime import load_live_model
    from tests.zoo_helpers import zoo_or_skip

    entry = zoo_or_skip("gan_generator_keras")
    live = load_live_model(entry.file, device="cpu")
    latent = np.load(entry.samples[0]).astype(np.float32)[None]
    inp = ModelInput("latent", latent, "latent_0.npy")
    out = np.asarray(live.outputs(inp)[next(iter(live.outputs(inp)))])[0]  # the framework's own answer
    result = compute(live, inp, AttributionRequest("saliency"))
    np.testing.assert_allclose(result.prediction.values, out, rtol=1e-5, atol=1e-6)
    row, col = output_pixel(result.target, out.shape)
    assert out[row, col].max() == pytest.approx(out.max())  # the default target: the brightest pixel
    assert result.target_label == f"output pixel ({row}, {col})"
    assert output_picture(result.prediction.values).shape == out.shape[:2]
    assert result.map.shape == (latent.shape[1],)  # one score per latent dimension
