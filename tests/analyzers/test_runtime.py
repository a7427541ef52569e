"""Live PyTorch models: every runnable kind opens, predicts what the module itself computes, and is timed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analyzers.errors import ArchitectureError, LayerScopeError, TrustRequired, UnsupportedFile
from analyzers.explain.inputs import (
    InputHint,
    ModelInput,
    Preprocess,
    image_input,
    npy_input,
    parse_input,
    random_input,
)
from analyzers.loaders import LoadOptions
from analyzers.runtime import load_live_model, softmax, summarise_outputs
from analyzers.runtime.devices import resolve_torch_device
from analyzers.tasks import drive
from tests.torch_fixtures import TinyCNN


class TinyTextClassifier(nn.Module):
    """Embedding -> Conv1d -> max over time -> 2 classes."""

    def __init__(self, vocab: int = 30, dim: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.embedding(ids).transpose(1, 2)))
        return self.fc(h.max(dim=-1).values)


@pytest.fixture()
def cnn(tmp_path):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    path = tmp_path / "cnn_full.pt"
    torch.save(model, path)
    return model, path


def image_like(seed: int = 0) -> ModelInput:
    return random_input((1, 28, 28), seed=seed, layout="NCHW", kind="image")


def test_auto_device_is_cpu_without_cuda_and_cuda_request_fails():
    if torch.cuda.is_available():
        assert resolve_torch_device("auto").startswith("cuda")
    else:
        assert resolve_torch_device("auto") in ("cpu", "mps")
        with pytest.raises(LayerScopeError, match="no CUDA device"):
            resolve_torch_device("cuda")
    with pytest.raises(LayerScopeError, match="not a device"):
        resolve_torch_device("tpu")


def test_full_module_needs_trust_then_predicts_like_the_module(cnn):
    model, path = cnn
    with pytest.raises(TrustRequired):
        load_live_model(path, LoadOptions(), "cpu")
    live = load_live_model(path, LoadOptions(trust=True), "cpu")
    assert (live.framework, live.format, live.device) == ("torch", "module", "cpu")
    assert live.hint.kind == "image" and live.hint.layout == "NCHW"
    inp = image_like()
    with torch.no_grad():
        logits = model(torch.from_numpy(inp.array)).numpy()
    np.testing.assert_allclose(live.outputs(inp)["logits"], logits, rtol=1e-5, atol=1e-6)
    pred = live.predict(inp, top_k=3)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()[0]
    assert [c.index for c in pred.top] == list(np.argsort(-probs)[:3])
    np.testing.assert_allclose([c.probability for c in pred.top], np.sort(probs)[::-1][:3], rtol=1e-5)
    assert pred.target == int(np.argmax(logits))
    assert live.default_layer() == "features.0"  # the last (only) convolution


def test_state_dict_needs_arch_and_then_matches(tmp_path, cnn):
    model, _ = cnn
    sd = tmp_path / "cnn_sd.pt"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 3}, sd)
    with pytest.raises(ArchitectureError, match="--arch"):
        load_live_model(sd, LoadOptions(), "cpu")
    live = load_live_model(sd, LoadOptions(arch="tests.torch_fixtures:TinyCNN"), "cpu")
    assert live.format == "state_dict"
    inp = image_like(1)
    with torch.no_grad():
        expected = model(torch.from_numpy(inp.array)).numpy()
    np.testing.assert_allclose(live.outputs(inp)["logits"], expected, rtol=1e-5, atol=1e-6)


def test_state_dict_reports_missing_and_unexpected_keys(tmp_path, cnn):
    model, _ = cnn
    state = dict(model.state_dict())
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    live = load_live_model(path, LoadOptions(arch="tests.torch_fixtures:TinyCNN"), "cpu")
    notes = " ".join(live.notes)
    assert "missing" in notes and "head.bias" in notes
    assert "not in the architecture" in notes and "extra.weight" in notes


def test_state_dict_with_wrong_shapes_is_one_sentence(tmp_path):
    torch.save(TinyCNN(width=4).state_dict(), tmp_path / "w4.pt")
    with pytest.raises(ArchitectureError, match="differ in shape"):
        load_live_model(tmp_path / "w4.pt", LoadOptions(arch="tests.torch_fixtures:TinyCNN"), "cpu")


def test_torchscript_runs_like_the_module(tmp_path, cnn):
    model, _ = cnn
    path = tmp_path / "cnn_script.pt"
    torch.jit.script(model).save(str(path))
    live = load_live_model(path, LoadOptions(), "cpu")
    assert live.format == "torchscript"
    inp = image_like(2)
    with torch.no_grad():
        expected = model(torch.from_numpy(inp.array)).numpy()
    np.testing.assert_allclose(live.outputs(inp)["logits"], expected, rtol=1e-5, atol=1e-6)


def test_text_module_hint_and_vocab(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "text.pt"
    torch.save(TinyTextClassifier(), path)
    live = load_live_model(path, LoadOptions(trust=True), "cpu")
    assert live.hint.kind == "text" and live.embedding_layer() == "embedding" and live.vocab_size() == 30
    with pytest.raises(LayerScopeError, match="no tokenizer"):
        parse_input("a sentence", live.hint, live.encoder)


def test_benchmark_reports_median_of_runs_and_rss_growth(cnn):
    _, path = cnn
    live = load_live_model(path, LoadOptions(trust=True), "cpu")
    result = drive(live.run(image_like(), top_k=2, warmup=1, runs=4))
    t = result.timing
    assert t.runs == 4 and t.warmup == 1 and t.min_ms <= t.median_ms <= t.max_ms and t.min_ms > 0
    assert t.memory_kind == "process RSS growth" and t.peak_bytes >= 0
    assert result.device == "cpu" and len(result.prediction.top) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_matches_cpu_and_reports_allocator_peak(cnn):
    _, path = cnn
    cpu = load_live_model(path, LoadOptions(trust=True), "cpu")
    gpu = load_live_model(path, LoadOptions(trust=True), "cuda")
    inp = image_like()
    np.testing.assert_allclose(gpu.outputs(inp)["logits"], cpu.outputs(inp)["logits"], rtol=1e-3, atol=1e-4)
    timing = drive(gpu.benchmark(inp, 1, 3))
    assert timing.memory_kind == "CUDA allocator peak" and timing.peak_bytes > 0


# --- outputs into predictions ------------------------------------------------------------------


def test_summarise_softmax_model_probabilities_and_binary():
    logits = np.array([[1.0, 3.0, 0.5]])
    pred = summarise_outputs({"logits": logits}, ("a", "b", "c"), 2)
    assert [c.label for c in pred.top] == ["b", "a"] and pred.probabilities == "softmax"
    np.testing.assert_allclose(pred.top[0].probability, softmax(logits)[0, 1])
    probs = np.array([[0.2, 0.7, 0.1]])
    assert summarise_outputs({"logits": probs}, (), 1).probabilities == "model"
    binary = summarise_outputs({"logits": np.array([[2.0]])}, ("fake", "real"), 2)  # one logit, two labels
    assert [(c.index, c.label) for c in binary.top] == [(0, "real")]
    assert binary.top[0].probability == pytest.approx(1 / (1 + np.exp(-2.0))) and binary.probabilities == "sigmoid"
    single = summarise_outputs({"logits": np.array([[0.2]])}, ("real",), 2)  # a sigmoid output, one label
    assert [(c.index, c.label, c.probability) for c in single.top] == [(0, "real", 0.2)]
    assert single.probabilities == "model"


def test_summarise_raw_output_without_labels():
    image = np.linspace(-1, 1, 28 * 28).reshape(1, 28, 28, 1)
    pred = summarise_outputs({"logits": image}, (), 3)
    assert pred.kind == "raw" and pred.output.shape == (28, 28, 1)
    assert pred.output.min == pytest.approx(-1.0) and pred.output.max == pytest.approx(1.0)


# --- inputs ------------------------------------------------------------------------------------


def test_image_input_applies_resize_channels_and_normalisation(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    pre = Preprocess(size=(20, 10), channels=3, layout="NCHW", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    inp = image_input(tmp_path / "x.png", pre)
    resized = np.asarray(Image.fromarray(pixels).resize((10, 20), Image.BILINEAR), dtype=np.float32)
    expected = ((resized / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.3])).transpose(2, 0, 1)
    assert inp.array.shape == (1, 3, 20, 10)
    np.testing.assert_allclose(inp.array[0], expected, rtol=1e-5, atol=1e-5)
    assert inp.display.shape == (20, 10, 3)


def test_image_input_matches_the_sample_zoo_preprocessing(tmp_path):
    from PIL import Image

    from analyzers.samples import InputSpec, prepare_image

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(tmp_path / "d.png")
    for layout, shape in (("NHWC", (28, 28, 1)), ("NCHW", (1, 28, 28))):
        spec = InputSpec("image", shape, "float32", layout, (28, 28), 1, 1 / 255, 0.1307, 0.3081, True)
        ours = image_input(tmp_path / "d.png", Preprocess.from_spec(spec)).array[0]
        np.testing.assert_allclose(ours, prepare_image(tmp_path / "d.png", spec), rtol=1e-6, atol=1e-6)


def test_npy_input_adds_the_batch_axis_and_checks_shape(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", arr)
    inp = npy_input(tmp_path / "a.npy", InputHint("tensor", (3, None)))
    assert inp.array.shape == (1, 3, 4) and np.array_equal(inp.array[0], arr)
    with pytest.raises(LayerScopeError, match=r"shape \(3, 4\)"):
        npy_input(tmp_path / "a.npy", InputHint("tensor", (4, 3)))


def test_parse_input_errors_are_single_sentences(tmp_path):
    hint = InputHint("image", (1, 28, 28), "float32", "NCHW")
    with pytest.raises(UnsupportedFile, match="no such file"):
        parse_input(str(tmp_path / "missing.png"), hint)
    with pytest.raises(LayerScopeError, match="read as text"):
        parse_input("the movie was wonderful", hint)
    with pytest.raises(LayerScopeError, match="not a shape"):
        parse_input("random:axb", hint)
    assert parse_input("random", hint).array.shape == (1, 1, 28, 28)
    ids = parse_input("random:12", InputHint("text", (None,), "int64", "tokens"), vocab_size=30).array
    assert ids.dtype == np.int64 and ids.max() < 30
