"""The sample zoo's Keras models (seed problems 1, 2 and 4) re-checked with Keras itself.

One module, so TensorFlow is imported once. Counts are compared with `count_params()` and with
LayerScope's summary; held-out sets regenerated from the zoo's seeds are re-scored.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzers import samples as S
from analyzers.loaders import open_model
from analyzers.tasks import drive

pytestmark = pytest.mark.slow  # imports TensorFlow

MODELS = {m.id: m for m in S.load_manifest()}
KERAS_IDS = ["digits_cnn_keras", "text_cnn_keras", "gan_generator_keras", "gan_discriminator_keras",
             "digits_cnn_finetuned_keras", "digits_cnn_pruned_keras", "digits_cnn_int8_keras"]


@pytest.fixture(scope="module")
def keras_models():
    """Every Keras sample loaded with keras.saving.load_model (safe mode, no compile)."""
    import keras

    return {i: keras.saving.load_model(MODELS[i].file, compile=False) for i in KERAS_IDS}


@pytest.fixture(scope="module")
def data():
    """The zoo's data generators."""
    return S.zoo_module("data")


@pytest.mark.parametrize("model_id", KERAS_IDS)
def test_keras_counts_equal_manifest_and_layerscope(keras_models, model_id):
    entry = MODELS[model_id]
    model = keras_models[model_id]
    count = model.count_params()
    assert count == entry.params
    summary = drive(open_model(entry.file))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    t = summary.totals
    assert (t.params, t.trainable_params, t.non_trainable_params) == (count, trainable, frozen)
    assert summary.source.framework == "keras"
    for layer in model.layers:  # every layer's own count and output shape, as Keras has them
        node = summary.node(layer.name)
        assert node.total.params == layer.count_params(), layer.name
        assert node.output_shape == tuple(layer.output.shape), layer.name


@pytest.mark.parametrize("model_id", KERAS_IDS)
def test_default_sample_runs_through_the_model(keras_models, model_id):
    entry = MODELS[model_id]
    x = S.prepare_input(entry)[None]
    out = np.asarray(keras_models[model_id].predict(x, verbose=0))
    assert np.isfinite(out).all()
    if entry.task == "generation":
        assert out.shape == (1, 28, 28, 1) and out.min() >= -1.0 and out.max() <= 1.0
    else:
        assert out.shape == (1, len(entry.labels))


def test_digits_cnn_heldout_and_samples(keras_models, data):
    entry = MODELS["digits_cnn_keras"]
    model = keras_models["digits_cnn_keras"]
    split = data.digits_split()
    pred = model.predict((split.x_test / 255.0).astype("float32")[..., None], verbose=0).argmax(1)
    acc = float((pred == split.y_test).mean())
    assert acc == pytest.approx(entry.heldout, abs=0.005) and acc >= entry.bar
    batch = np.stack([S.prepare_input(entry, s) for s in entry.samples])
    labels = [entry.labels[i] for i in model.predict(batch, verbose=0).argmax(1)]
    assert sum(a == b for a, b in zip(labels, entry.extras["sample_labels"])) >= len(labels) - 1


def test_text_cnn_heldout_samples_and_cue_words(keras_models, data):
    entry = MODELS["text_cnn_keras"]
    model = keras_models["text_cnn_keras"]
    texts, y = data.sentiment_dataset(entry.heldout_size, data.HELDOUT_SEED)
    ids = np.stack([S.encode_text(t, entry.input)[0] for t in texts])
    probs = model.predict(ids, verbose=0)
    acc = float((probs.argmax(1) == y).mean())
    assert acc == pytest.approx(entry.heldout, abs=0.005) and acc >= entry.bar
    samples = np.stack([S.prepare_input(entry, s) for s in entry.samples])
    labels = [entry.labels[i] for i in model.predict(samples, verbose=0).argmax(1)]
    assert labels == list(entry.extras["sample_labels"])
    # Hiding the cue words removes the evidence the label rests on.
    vocab = S.read_vocab(entry.input.vocab)
    cues = [vocab[w] for words in entry.cue_words.values() for w in words]
    sub = ids[:64].copy()
    sub[np.isin(sub, cues)] = entry.input.unk_id
    rows = np.arange(64)
    drop = probs[:64][rows, y[:64]] - model.predict(sub, verbose=0)[rows, y[:64]]
    assert drop.mean() > 0.3


def test_gan_generator_makes_digits(keras_models, data):
    entry = MODELS["gan_generator_keras"]
    generator, classifier = keras_models["gan_generator_keras"], keras_models["digits_cnn_keras"]
    images = generator.predict(data.gan_latents(entry.heldout_size), verbose=0)
    probs = classifier.predict(data.gan_pixels(images).astype("float32") / 255.0, verbose=0)
    confident = probs.max(1) >= entry.extras["confidence"]
    likeness = float(confident.mean())
    assert likeness == pytest.approx(entry.heldout, abs=0.02) and likeness >= entry.bar
    assert len(set(probs.argmax(1)[confident].tolist())) >= 8  # not one mode
    z = S.prepare_input(entry)
    sample = np.load(entry.default_sample)
    np.testing.assert_array_equal(z, sample)


def test_gan_discriminator_separates_real_from_generated(keras_models, data):
    entry = MODELS["gan_discriminator_keras"]
    generator, disc = keras_models["gan_generator_keras"], keras_models["gan_discriminator_keras"]
    split = data.digits_split()
    n = len(split.x_test)
    fake = generator.predict(data.gan_latents(n, entry.extras["eval_seed"]), verbose=0)
    p_real = disc.predict(split.x_test[..., None].astype("float32") / 127.5 - 1.0, verbose=0).ravel()
    p_fake = disc.predict(fake, verbose=0).ravel()
    auc = data.auc(p_real, p_fake)
    assert auc == pytest.approx(entry.heldout, abs=0.02) and auc >= entry.bar
    # The manifest's preprocessing of a real digit PNG gives the discriminator the same input.
    digit = S.prepare_input(entry, entry.samples[0])
    want = split.x_test[np.flatnonzero(split.y_test == 0)[0]][..., None] / 127.5 - 1.0
    np.testing.assert_allclose(digit, want, atol=1e-6)
