"""Keras live models: predictions, and GradientTape attributions that equal Captum's on the same network.

The only test module of the runtime that imports TensorFlow (it costs seconds to import).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from analyzers.errors import CorruptFile, LayerScopeError  # noqa: E402
from analyzers.explain.attribution import AttributionRequest, attribute, compute  # noqa: E402
from analyzers.explain.inputs import ModelInput  # noqa: E402
from analyzers.loaders import LoadOptions  # noqa: E402
from analyzers.methods.integrated_gradients import DEFAULT_IG_STEPS  # noqa: E402
from analyzers.runtime import load_live_model  # noqa: E402
from analyzers.tasks import Cancelled, CancelToken, drive  # noqa: E402
from tests.zoo_helpers import zoo_or_skip  # noqa: E402

TARGET = 1


class TwinTorch(torch.nn.Module):
    """The torch twin of the Keras CNN below (Keras flattens channels-last, hence the permute)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.head = torch.nn.Linear(4 * 10 * 10, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.head(h.permute(0, 2, 3, 1).flatten(1))


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same CNN in Keras (.keras file, live) and PyTorch (module), and an input for each layout."""
    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                           keras.layers.ReLU(name="relu"), keras.layers.Flatten(name="flatten"),
                           keras.layers.Dense(3, name="head")])
    path = tmp_path_factory.mktemp("keras") / "cnn.keras"
    km.save(path)
    tm = TwinTorch().eval()
    kernel, bias = km.get_layer("conv").get_weights()
    w, b = km.get_layer("head").get_weights()
    with torch.no_grad():
        tm.conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))
        tm.conv.bias.copy_(torch.from_numpy(bias))
        tm.head.weight.copy_(torch.from_numpy(w.T))
        tm.head.bias.copy_(torch.from_numpy(b))
    live = load_live_model(path, LoadOptions(), "cpu")
    x = np.random.default_rng(0).random((1, 12, 12, 1)).astype(np.float32)
    k_in = ModelInput("image", x, "x", layout="NHWC")
    t_in = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    return live, km, tm, k_in, t_in


def chw(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (2, 0, 1))


def test_keras_model_opens_and_predicts_like_keras(twins):
    live, km, _, k_in, _ = twins
    assert (live.framework, live.format) == ("keras", "keras")
    assert live.hint.kind == "image" and live.hint.layout == "NHWC" and live.hint.shape == (12, 12, 1)
    assert [layer.path for layer in live.layers()] == ["conv", "relu", "flatten", "head"]
    assert live.default_layer() == "conv"
    np.testing.assert_allclose(live.outputs(k_in)["logits"], np.asarray(km(k_in.array)), rtol=1e-5, atol=1e-6)
    timing = drive(live.benchmark(k_in, 1, 3))
    assert timing.runs == 3 and timing.median_ms > 0


def test_keras_saliency_ig_occlusion_gradcam_equal_captum_on_the_twin(twins):
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    live, _, tm, k_in, t_in = twins
    sal = compute(live, k_in, AttributionRequest("saliency", target=TARGET))
    np.testing.assert_allclose(chw(sal.map), Saliency(tm).attribute(t_in, target=TARGET)[0].detach().numpy(),
                               rtol=1e-4, atol=1e-6)
    ig = compute(live, k_in, AttributionRequest("ig", target=TARGET, steps=32))
    attr, delta = IntegratedGradients(tm).attribute(t_in, target=TARGET, n_steps=32, return_convergence_delta=True)
    np.testing.assert_allclose(chw(ig.map), attr[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert ig.delta == pytest.approx(float(delta[0]), abs=1e-5) and ig.completeness.relative < 0.01
    occ = compute(live, k_in, AttributionRequest("occlusion", target=TARGET, window=4, stride=2))
    theirs = Occlusion(tm).attribute(t_in, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2), target=TARGET)
    np.testing.assert_allclose(chw(occ.map), theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    cam = compute(live, k_in, AttributionRequest("gradcam", target=TARGET))
    layer_map = LayerGradCam(tm, tm.conv).attribute(t_in, target=TARGET, relu_attributions=True)
    np.testing.assert_allclose(cam.layer_map[0, :, :, 0], layer_map[0, 0].detach().numpy(), rtol=1e-4, atol=1e-7)
    up = LayerAttribution.interpolate(layer_map, (12, 12), interpolate_mode="bilinear")
    np.testing.assert_allclose(cam.map[:, :, 0], up[0, 0].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_keras_gradshap_and_smoothgrad_on_a_linear_model(tmp_path):
    keras.utils.set_random_seed(1)
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    km.save(tmp_path / "lin.keras")
    live = load_live_model(tmp_path / "lin.keras", LoadOptions(), "cpu")
    x = np.random.default_rng(1).normal(size=(1, 6)).astype(np.float32)
    inp = ModelInput("tensor", x, "x")
    w = km.get_weights()[0][:, 0]
    zero = np.zeros((1, 6), np.float32)
    shap = compute(live, inp, AttributionRequest("gradshap", target=0, samples=8, baselines=zero))
    np.testing.assert_allclose(shap.map, w * x[0], rtol=1e-5, atol=1e-6)  # a linear model: exactly w * (x - 0)
    smooth = compute(live, inp, AttributionRequest("smoothgrad", target=0, smooth_base="saliency", smooth_samples=5))
    np.testing.assert_allclose(smooth.map, np.abs(w), rtol=1e-5, atol=1e-6)  # the gradient does not depend on x


@pytest.fixture(scope="module")
def keras_text(tmp_path_factory):
    keras.utils.set_random_seed(2)
    km = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(40, 8, name="embed"),
                           keras.layers.Conv1D(6, 3, activation="relu"), keras.layers.GlobalMaxPooling1D(),
                           keras.layers.Dense(2, activation="softmax")])
    path = tmp_path_factory.mktemp("keras") / "text.keras"
    km.save(path)
    live = load_live_model(path, LoadOptions(), "cpu")
    ids = np.array([[4, 9, 17, 23, 30, 0, 0, 0, 0, 0]], dtype=np.int32)
    inp = ModelInput("text", ids, "text", layout="tokens", tokens=("w", "x", "y", "z", "v"),
                     baseline_ids=np.zeros_like(ids))
    return live, km, inp


def test_keras_text_ig_is_complete_and_occlusion_is_the_score_drop(keras_text):
    live, km, inp = keras_text
    assert live.hint.kind == "text" and live.embedding_layer() == "embed" and live.vocab_size() == 40
    ig = compute(live, inp, AttributionRequest("ig", target=1))
    assert ig.map.shape == (5,) and ig.tokens == inp.tokens
    # an untrained model has a tiny F(x) - F(baseline) (~0.01), so IG's error is a few percent of it here
    assert abs(ig.completeness.delta) < 1e-3 and ig.completeness.relative < 0.05
    occ = compute(live, inp, AttributionRequest("occlusion", target=1))
    assert occ.parameters["output"] == "logits (the final softmax is bypassed)"
    pooled = keras.Model(km.inputs, km.layers[-2].output)
    w, b = km.layers[-1].get_weights()

    def logit(ids):  # the model's pre-softmax score for class 1, computed by hand
        return float((np.asarray(pooled(ids)) @ w + b)[0, 1])

    full = logit(inp.array)
    for i in range(5):
        ids = inp.array.copy()
        ids[0, i] = 0
        assert occ.map[i] == pytest.approx(full - logit(ids), abs=1e-5)
    assert "call" not in vars(km.get_layer("embed"))  # the tap is gone


def test_keras_cancel_mid_ig_stops_and_untaps(keras_text):
    live, km, inp = keras_text
    token = CancelToken()

    def progress(p):
        if p.done >= 4:
            token.cancel()

    req = AttributionRequest("ig", steps=5000, ig_method="riemann_trapezoid", internal_batch_size=2)
    with pytest.raises(Cancelled):
        drive(attribute(live, inp, req, token), progress, token)
    assert all("call" not in vars(layer) for layer in live.all_layers())


def test_keras_randomization_check_keeps_the_original(twins):
    from analyzers.explain.sanity import randomization_check

    live, km, _, k_in, _ = twins
    before = [w.copy() for w in km.get_weights()]
    original = compute(live, k_in, AttributionRequest("saliency"))
    check = drive(randomization_check(live, original, top_layers=1, seed=3))
    assert check.layers == ("head",) and -1 <= check.spearman_abs <= 1
    for a, b in zip(before, live.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_cuda_request_without_gpu_is_one_sentence(twins):
    from analyzers.runtime.devices import resolve_tf_device, tf_gpus

    if tf_gpus():
        pytest.skip("TensorFlow sees a GPU here")
    with pytest.raises(LayerScopeError, match="no GPU"):
        resolve_tf_device("cuda")


def test_a_truncated_keras_file_is_one_sentence_naming_it(twins, tmp_path):
    live = twins[0]
    cut = tmp_path / "cut.keras"
    cut.write_bytes(live.path.read_bytes()[:200])
    with pytest.raises(CorruptFile, match=r"^cut\.keras: .*(corrupted or truncated|not a \.keras archive)"):
        load_live_model(cut, LoadOptions(), "cpu")


# --- the bundled zoo models --------------------------------------------------------------------


def test_zoo_keras_cnn_ig_completeness_within_one_percent_at_default_steps():
    from analyzers.explain.inputs import sample_input

    entry = zoo_or_skip("digits_cnn_keras")
    live = load_live_model(entry.file, LoadOptions(), "cpu")
    for sample in entry.samples[:3]:
        result = compute(live, sample_input(entry, sample), AttributionRequest("ig"))
        assert result.parameters["steps"] == DEFAULT_IG_STEPS
        assert result.completeness.relative < 0.01, (sample, result.completeness)


def test_zoo_gan_pair_raw_output_and_discriminator_score():
    from analyzers.explain.inputs import sample_input

    gen_entry = zoo_or_skip("gan_generator_keras")
    gen = load_live_model(gen_entry.file, LoadOptions(), "cpu")
    pred = gen.predict(sample_input(gen_entry))
    assert pred.kind == "raw" and len(pred.output.shape) >= 2
    dis_entry = zoo_or_skip("gan_discriminator_keras")
    dis = load_live_model(dis_entry.file, LoadOptions(), "cpu")
    dis_pred = dis.predict(sample_input(dis_entry))
    assert dis_pred.kind == "classes" and 0.0 <= dis_pred.top[0].probability <= 1.0
    saliency = compute(dis, sample_input(dis_entry), AttributionRequest("saliency"))
    assert saliency.map.shape == tuple(dis_entry.input.shape)


def test_keras_cli_run_and_attribute(twins, tmp_path, capsys):
    import json

    from app.cli import main

    live, km, _, k_in, _ = twins
    np.save(tmp_path / "x.npy", k_in.array[0])
    code = main(["run", str(live.path), "--input", str(tmp_path / "x.npy"), "--json", "--runs", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["framework"] == "keras" and doc["device"] in ("CPU:0", "GPU:0")
    expected = np.asarray(km(k_in.array))[0]
    assert doc["prediction"]["top"][0]["index"] == int(np.argmax(expected))
    code = main(["attribute", str(live.path), "--input", str(tmp_path / "x.npy"), "--method", "gradcam",
                 "--out", str(tmp_path / "m.npy"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert np.load(tmp_path / "m.npy").shape == (12, 12, 1)  # like the NHWC input, without the batch axis
    assert json.loads(out)["parameters"]["layer"] == "conv"
    code = main(["run", str(live.path), "--input", "random", "--device", "mps"])
    assert code == 2 and "applies to PyTorch models" in capsys.readouterr().err


def test_generator_output_is_raw_and_a_sigmoid_discriminator_is_attributed_on_its_logit(tmp_path):
    keras.utils.set_random_seed(4)
    gen = keras.Sequential([keras.Input((8,)), keras.layers.Dense(36, activation="tanh"),
                            keras.layers.Reshape((6, 6, 1))])
    gen.save(tmp_path / "gen.keras")
    dis = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    dis.save(tmp_path / "dis.keras")
    g = load_live_model(tmp_path / "gen.keras", LoadOptions(), "cpu")
    z = ModelInput("latent", np.random.default_rng(0).normal(size=(1, 8)).astype(np.float32), "z")
    pred = g.predict(z)
    image = np.asarray(gen(z.array))
    assert pred.kind == "raw" and pred.output.shape == (6, 6, 1) and pred.output.max == pytest.approx(image.max())
    ig = compute(g, z, AttributionRequest("ig", target=7))  # pixel 7 of the flattened image
    assert ig.map.shape == (8,) and ig.completeness.relative < 0.01
    d = load_live_model(tmp_path / "dis.keras", LoadOptions(), "cpu")
    x = ModelInput("image", image, "generated", layout="NHWC")
    p = float(np.asarray(dis(image))[0, 0])
    top = d.predict(x, 2).top
    assert [c.index for c in top] == [0] and top[0].probability == pytest.approx(p)  # P(positive), listed once
    sal = compute(d, x, AttributionRequest("saliency", target=0, abs=False))
    w = dis.layers[-1].get_weights()[0][:, 0].reshape(6, 6, 1)
    np.testing.assert_allclose(sal.map, w, rtol=1e-5, atol=1e-6)  # d(logit)/dx of a linear logit is its weights
    assert sal.parameters["output"] == "logits (the final sigmoid is bypassed)"


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the test's own zipfile writes the duplicate
def test_running_a_keras_archive_with_a_zip_slip_member_is_a_note_not_a_warning(twins, tmp_path, capfd):
    """Keras warned 'Skipping invalid path during archive extraction' on stderr (exit 0); the member is a
    finding beside the result, and a duplicated member is refused before Keras extracts anything."""
    import shutil
    import zipfile

    keras_path = twins[0].path
    slip = tmp_path / "slip.keras"
    shutil.copy(keras_path, slip)
    with zipfile.ZipFile(slip, "a") as zf:
        zf.writestr("../../escaped.txt", "x")
    live = load_live_model(slip)
    assert any("outside its folder" in n for n in live.notes), live.notes
    err = capfd.readouterr().err
    assert "Skipping invalid path" not in err and "archive extraction" not in err
    dup = tmp_path / "dup.keras"
    with zipfile.ZipFile(keras_path) as src, zipfile.ZipFile(dup, "w") as out:
        config = src.read("config.json")
        out.writestr("config.json", b'{"class_name": "Evil"}')
        for info in src.infolist():
            out.writestr(info, src.read(info))
    with pytest.raises(CorruptFile, match=r"^dup\.keras: the archive holds 2 members named 'config\.json'"):
        load_live_model(dup)
    assert config
