"""Guided Backprop and Guided Grad-CAM: the direct Captum calls; no hook left; Keras says why not."""

from __future__ import annotations

import numpy as np
import pytest
from captum.attr import GuidedBackprop, GuidedGradCam

from analyzers.errors import LayerScopeError
from analyzers.explain.attribution import AttributionRequest, compute
from analyzers.runtime.torch_runtime import hook_count
from tests.analyzers.methods.conftest import TARGET, image, x_of


def test_guided_backprop_equals_captum(cnn):
    model, live = cnn
    inp = image(4)
    ours = compute(live, inp, AttributionRequest("guidedbackprop", target=TARGET))
    theirs = GuidedBackprop(model).attribute(x_of(inp).requires_grad_(), target=TARGET)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    plain_grad = compute(live, inp, AttributionRequest("saliency", target=TARGET, abs=False))
    assert not np.allclose(ours.map, plain_grad.map)  # the ReLUs really were overridden
    assert hook_count(live.module) == 0


def test_guided_gradcam_equals_captum_at_the_chosen_layer(cnn):
    model, live = cnn
    inp = image(5)
    ours = compute(live, inp, AttributionRequest("guidedgradcam", target=TARGET, layer="features.0"))
    theirs = GuidedGradCam(model, model.features[0]).attribute(x_of(inp).requires_grad_(), target=TARGET)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    assert ours.parameters["layer"] == "features.0" and ours.map.shape == inp.shape
    default = compute(live, inp, AttributionRequest("guidedgradcam", target=TARGET))
    assert default.parameters["layer"] == live.default_layer()  # the last convolution, as Grad-CAM
    assert hook_count(live.module) == 0


@pytest.mark.parametrize("method", ["guidedbackprop", "guidedgradcam"])
def test_guided_methods_on_keras_are_one_sentence(tmp_path, method):
    import keras

    from analyzers.explain.inputs import ModelInput
    from analyzers.runtime import load_live_model

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    path = tmp_path / "cnn.keras"
    model.save(path)
    inp = ModelInput("image", np.ones((1, 8, 8, 1), np.float32), "x", layout="NHWC")
    with pytest.raises(LayerScopeError, match=r"PyTorch module's ReLU layers"):
        compute(load_live_model(path), inp, AttributionRequest(method))


@pytest.mark.parametrize("method", ["guidedbackprop", "deeplift"])
def test_functional_activations_get_a_note_and_no_library_warning(tmp_path, method):
    """Captum can only rewrite activation modules; a forward that calls torch.relu gets a note saying so, and
    Captum's own 'setting hooks' warnings never reach the user."""
    import warnings

    import torch

    from analyzers.loaders import LoadOptions
    from analyzers.runtime import load_live_model
    from tests.torch_fixtures import FunctionalReluNet

    torch.manual_seed(0)
    path = tmp_path / "functional.pt"
    torch.save(FunctionalReluNet().eval(), path)
    live = load_live_model(path, LoadOptions(trust=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute(live, image(6), AttributionRequest(method, target=1))
    assert any("applies its activations as functions" in n for n in result.notes), result.notes
    clean = compute(load_live_model(cnn_path(tmp_path), LoadOptions(trust=True)), image(6),
                    AttributionRequest(method, target=1))
    assert not any("as functions" in n for n in clean.notes)


def cnn_path(tmp_path):
    import torch

    from tests.torch_fixtures import TinyCNN

    path = tmp_path / "modules.pt"
    torch.save(TinyCNN().eval(), path)
    return path
