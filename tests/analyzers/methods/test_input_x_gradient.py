"""Input × Gradient: the direct Captum call on PyTorch, x·∂F/∂x from a GradientTape on Keras, tokens for text."""

from __future__ import annotations

import numpy as np
from captum.attr import InputXGradient

from analyzers.explain.attribution import AttributionRequest, compute
from analyzers.explain.display import default_sign
from analyzers.methods import method_class
from tests.analyzers.methods.conftest import TARGET, image, x_of


def test_input_x_gradient_equals_captum(cnn):
    model, live = cnn
    inp = image(2)
    ours = compute(live, inp, AttributionRequest("inputxgradient", target=TARGET))
    theirs = InputXGradient(model).attribute(x_of(inp).requires_grad_(), target=TARGET)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    assert ours.map.shape == inp.shape and ours.forwards >= 1
    assert default_sign("inputxgradient", ours.parameters) == "all"
    assert method_class("inputxgradient").text


def test_input_x_gradient_on_keras_is_x_times_the_tape_gradient(tmp_path):
    import keras
    import tensorflow as tf

    from analyzers.explain.inputs import ModelInput
    from analyzers.runtime import load_live_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3)])
    path = tmp_path / "mlp.keras"
    model.save(path)
    live = load_live_model(path)
    x = np.random.default_rng(0).normal(size=(1, 6)).astype(np.float32)
    ours = compute(live, ModelInput("tensor", x, "x"), AttributionRequest("inputxgradient", target=1))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt)[:, 1]
    expected = (x * tape.gradient(score, xt).numpy())[0]
    np.testing.assert_allclose(ours.map, expected, rtol=1e-5, atol=1e-7)
