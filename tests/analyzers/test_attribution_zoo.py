"""The bundled PyTorch sample models: IG completeness at our default steps, cue words, and the QA span.
(The Keras samples are tested in test_runtime_keras.py, the one test module that imports TensorFlow.)

Skipped only where the sample zoo is not built (`make samples`); in the repository it is.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.attribution import DEFAULT_IG_STEPS, AttributionRequest, compute, token_mass
from analyzers.errors import LayerScopeError
from analyzers.inputs import sample_input
from analyzers.loaders import LoadOptions
from analyzers.runtime import load_live_model


def zoo(model_id: str):
    from analyzers import samples

    try:
        entry = samples.sample_model(model_id)
    except LayerScopeError as exc:
        pytest.skip(f"sample zoo not built: {exc}")
    if not entry.file.exists():
        pytest.skip(f"{entry.file.name} not built")
    return entry, load_live_model(entry.file, LoadOptions(), "cpu")


def test_zoo_torch_cnn_ig_completeness_within_one_percent_at_default_steps():
    entry, live = zoo("digits_cnn_torch")
    assert live.format == "state_dict" and live.labels == tuple(entry.labels)
    for sample in entry.samples[:4]:
        result = compute(live, sample_input(entry, sample), AttributionRequest("ig"))
        assert result.parameters["steps"] == DEFAULT_IG_STEPS
        assert result.completeness.relative < 0.01, (sample, result.completeness)


def test_zoo_torch_cnn_predicts_its_samples_and_gradcam_runs():
    entry, live = zoo("digits_cnn_torch")
    inp = sample_input(entry)
    pred = live.predict(inp, 3)
    assert pred.kind == "classes" and pred.top[0].probability > 0.5
    cam = compute(live, inp, AttributionRequest("gradcam"))
    assert cam.parameters["layer"] == live.default_layer() and cam.map.shape == inp.shape


@pytest.mark.slow
def test_zoo_transformer_text_attribution_picks_out_the_cue_words():
    """The encoder spreads IG mass over filler tokens too (attention mixes the cue into every position's
    state): the cue words, about a tenth of the tokens, carry more than their share on every review,
    a third or more of the absolute mass on a typical one, and the largest score on most."""
    entry, live = zoo("transformer_text_torch")
    words = {w for ws in entry.cue_words.values() for w in ws}
    masses, tops = [], []
    for sample in entry.samples:
        inp = sample_input(entry, sample)
        pred = live.predict(inp)
        cues = [t for t in inp.tokens if t in words]
        expected = {k for k, ws in entry.cue_words.items() if set(ws) & set(cues)}
        assert cues and entry.labels[pred.target] in expected, (sample, pred.top)
        result = compute(live, inp, AttributionRequest("ig"))
        assert result.completeness.relative < 0.01, result.completeness
        mass = token_mass(result.map, result.tokens, words)
        assert mass > len(cues) / len(result.tokens), list(zip(result.tokens, result.map))
        masses.append(mass)
        tops.append(result.tokens[int(np.argmax(result.map))] in words)
    assert np.median(masses) > 0.3 and np.mean(tops) >= 2 / 3, (masses, tops)


def test_zoo_attention_sequence_attribution_finds_the_marker_step():
    entry, live = zoo("attention_seq_torch")
    inp = sample_input(entry)
    result = compute(live, inp, AttributionRequest("ig"))
    assert result.map.shape == inp.shape
    spike = int(np.argmax(inp.array[0, :, 0]))  # the step where feature 0 spikes carries the class
    per_step = np.abs(result.map).sum(axis=1)
    assert int(np.argmax(per_step)) == spike


@pytest.mark.slow
def test_zoo_bert_qa_answers_and_attributes_per_token():
    entry, live = zoo("bert_qa")
    inp = sample_input(entry)
    pred = live.predict(inp)
    assert pred.kind == "qa" and pred.answer is not None and pred.answer.text
    result = compute(live, inp, AttributionRequest("ig", steps=16))
    assert result.map.shape == (len(inp.tokens),) and result.target == pred.answer.start
