"""DeepLIFT: the direct Captum call, summation-to-delta checked, and one sentence for Keras."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLift

from analyzers.errors import LayerScopeError
from analyzers.explain.attribution import AttributionRequest, compute
from analyzers.runtime.torch_runtime import hook_count
from tests.analyzers.methods.conftest import TARGET, image, x_of


def test_deeplift_equals_captum_and_sums_to_the_score_difference(cnn):
    model, live = cnn
    inp = image(3)
    ours = compute(live, inp, AttributionRequest("deeplift", target=TARGET))
    x = x_of(inp).requires_grad_()
    theirs, delta = DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=TARGET,
                                              return_convergence_delta=True)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert ours.delta == pytest.approx(float(delta[0]), abs=1e-5)
    with torch.no_grad():
        gap = float(model(x)[0, TARGET] - model(torch.zeros_like(x))[0, TARGET])
    assert ours.completeness is not None and ours.completeness.f_input - ours.completeness.f_baseline == \
        pytest.approx(gap, rel=1e-5)
    assert float(ours.map.sum()) == pytest.approx(gap, rel=1e-3)  # summation-to-delta on a ReLU/max-pool CNN
    assert hook_count(live.module) == 0


def test_deeplift_with_a_black_baseline_uses_it(cnn):
    model, live = cnn
    from analyzers.explain.inputs import Preprocess, image_input

    pre = Preprocess(size=(28, 28), channels=1, mean=(0.5,), std=(0.5,))
    import PIL.Image

    path = __import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "grey.png"
    PIL.Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
    inp = image_input(path, pre)
    ours = compute(live, inp, AttributionRequest("deeplift", target=TARGET, baseline="black"))
    x = x_of(inp).requires_grad_()
    black = torch.full_like(x, -1.0)  # a black pixel after (0 * 1/255 - 0.5) / 0.5
    theirs = DeepLift(model).attribute(x, baselines=black, target=TARGET)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert ours.parameters["baseline"] == "black"


def test_deeplift_on_keras_is_one_sentence(tmp_path):
    import keras

    from analyzers.explain.inputs import ModelInput
    from analyzers.runtime import load_live_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "lin.keras"
    model.save(path)
    with pytest.raises(LayerScopeError, match=r"^DeepLIFT rewrites the gradients .*use Integrated Gradients"):
        compute(load_live_model(path), ModelInput("tensor", np.ones((1, 4), np.float32), "x"),
                AttributionRequest("deeplift"))
