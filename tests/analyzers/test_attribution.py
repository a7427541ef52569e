"""Our PyTorch attributions are the direct Captum call; cancel and errors leave no hook; display and sanity math."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import (
    GradientShap,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from analyzers.errors import LayerScopeError
from analyzers.explain.attribution import AttributionRequest, attribute, compute, path_points
from analyzers.explain.inputs import ModelInput, random_input
from analyzers.loaders import LoadOptions
from analyzers.methods.integrated_gradients import DEFAULT_IG_STEPS
from analyzers.runtime import load_live_model
from analyzers.runtime.torch_runtime import (
    HOOK_DICTS,
    calls_in_flight,
    hook_count,
    hook_snapshot,
    restore_hooks,
)
from analyzers.tasks import Cancelled, CancelToken, drive
from tests.analyzers.test_runtime import TinyTextClassifier
from tests.torch_fixtures import TinyCNN

TARGET = 3


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    path = tmp_path_factory.mktemp("attr") / "cnn.pt"
    torch.save(model, path)
    live = load_live_model(path, LoadOptions(trust=True), "cpu")
    return live.module, live


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("attr") / "text.pt"
    torch.save(TinyTextClassifier().eval(), path)
    live = load_live_model(path, LoadOptions(trust=True), "cpu")
    ids = np.array([[5, 7, 9, 11, 13, 0, 0, 0]], dtype=np.int64)
    inp = ModelInput("text", ids, "text", layout="tokens", tokens=("a", "b", "c", "d", "e"),
                     baseline_ids=np.zeros_like(ids))
    return live.module, live, inp


def image(seed: int = 0) -> ModelInput:
    return random_input((1, 28, 28), seed=seed, layout="NCHW", kind="image")


def x_of(inp: ModelInput) -> torch.Tensor:
    return torch.from_numpy(inp.array.copy())


def no_hooks_anywhere(module: torch.nn.Module) -> bool:
    return all(len(getattr(m, name)) == 0 for m in module.modules() for name in HOOK_DICTS
               if isinstance(getattr(m, name, None), dict))


# --- equality with Captum, method by method ---------------------------------------------------


def test_saliency_equals_captum(cnn):
    model, live = cnn
    inp = image()
    ours = compute(live, inp, AttributionRequest("saliency", target=TARGET))
    theirs = Saliency(model).attribute(x_of(inp), target=TARGET, abs=True)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    assert ours.map.shape == inp.shape and ours.target == TARGET
    signed = compute(live, inp, AttributionRequest("saliency", target=TARGET, abs=False))
    np.testing.assert_allclose(signed.map, Saliency(model).attribute(x_of(inp), target=TARGET, abs=False)[0]
                               .detach().numpy(), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_equals_captum_with_delta(cnn):
    model, live = cnn
    inp = image(1)
    ours = compute(live, inp, AttributionRequest("ig", target=TARGET, steps=32, internal_batch_size=8))
    attr, delta = IntegratedGradients(model).attribute(x_of(inp), baselines=torch.zeros_like(x_of(inp)), target=TARGET,
                                                        n_steps=32, method="gausslegendre", internal_batch_size=8,
                                                        return_convergence_delta=True)
    np.testing.assert_allclose(ours.map, attr[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert ours.delta == pytest.approx(float(delta[0]), abs=1e-5)
    c = ours.completeness
    with torch.no_grad():
        fx = float(model(x_of(inp))[0, TARGET])
        fb = float(model(torch.zeros_like(x_of(inp)))[0, TARGET])
    assert (c.f_input, c.f_baseline) == (pytest.approx(fx, abs=1e-5), pytest.approx(fb, abs=1e-5))
    assert c.total == pytest.approx(float(attr.sum()), rel=1e-4, abs=1e-5)


def test_integrated_gradients_default_steps_meet_completeness(cnn):
    _, live = cnn
    result = compute(live, image(2), AttributionRequest("ig"))
    assert result.parameters["steps"] == DEFAULT_IG_STEPS
    assert result.completeness.relative < 0.01


def test_gradientshap_equals_captum_with_fixed_seed_and_baselines(cnn):
    model, live = cnn
    inp = image(3)
    baselines = np.random.default_rng(5).normal(size=(4, 1, 28, 28)).astype(np.float32)
    req = AttributionRequest("gradshap", target=TARGET, samples=12, stdevs=0.1, seed=7, baselines=baselines)
    ours = compute(live, inp, req)
    torch.manual_seed(7)
    np.random.seed(7)  # Captum draws the baselines and path points with numpy
    theirs = GradientShap(model).attribute(x_of(inp), baselines=torch.from_numpy(baselines), n_samples=12,
                                           stdevs=0.1, target=TARGET)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_occlusion_equals_captum(cnn):
    model, live = cnn
    inp = image(4)
    ours = compute(live, inp, AttributionRequest("occlusion", target=TARGET, window=6, stride=3))
    theirs = Occlusion(model).attribute(x_of(inp), sliding_window_shapes=(1, 6, 6), strides=(1, 3, 3),
                                        baselines=torch.zeros_like(x_of(inp)), target=TARGET,
                                        perturbations_per_eval=16)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert ours.parameters["window_shape"] == [1, 6, 6] and ours.parameters["strides"] == [1, 3, 3]


def test_gradcam_equals_captum_at_the_layer_and_upsampled(cnn):
    model, live = cnn
    inp = image(5)
    ours = compute(live, inp, AttributionRequest("gradcam", target=TARGET))
    assert ours.parameters["layer"] == "features.0"  # the default: the last convolution
    layer_map = LayerGradCam(model, model.features[0]).attribute(x_of(inp), target=TARGET, relu_attributions=True)
    np.testing.assert_allclose(ours.layer_map, layer_map.detach().numpy(), rtol=1e-4, atol=1e-7)
    up = LayerAttribution.interpolate(layer_map, (28, 28), interpolate_mode="bilinear")
    np.testing.assert_allclose(ours.map, up[0].detach().numpy(), rtol=1e-4, atol=1e-7)
    other = compute(live, inp, AttributionRequest("gradcam", target=TARGET, layer="features.2", relu=False))
    raw = LayerGradCam(model, model.features[2]).attribute(x_of(inp), target=TARGET)
    np.testing.assert_allclose(other.layer_map, raw.detach().numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("base", ["saliency", "ig"])
def test_smoothgrad_equals_noise_tunnel_with_fixed_seed(cnn, base):
    model, live = cnn
    inp = image(6)
    req = AttributionRequest("smoothgrad", target=TARGET, smooth_base=base, smooth_samples=6, smooth_noise=0.1,
                             steps=8, internal_batch_size=None, seed=11)
    ours = compute(live, inp, req)
    x = x_of(inp)
    sigma = 0.1 * float(x.max() - x.min())
    assert ours.parameters["stdevs"] == pytest.approx(sigma)
    torch.manual_seed(11)
    np.random.seed(11)
    if base == "saliency":
        theirs = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=6, stdevs=sigma,
                                                        target=TARGET, abs=True)
    else:
        theirs = NoiseTunnel(IntegratedGradients(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=6, stdevs=sigma, target=TARGET, baselines=torch.zeros_like(x),
            n_steps=8, method="gausslegendre", internal_batch_size=None)
    np.testing.assert_allclose(ours.map, theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)


# --- text: through the embedding -------------------------------------------------------------


def test_text_ig_is_layer_integrated_gradients_summed_per_token(text):
    model, live, inp = text
    ours = compute(live, inp, AttributionRequest("ig", target=1, steps=40))
    ids = torch.from_numpy(inp.array)
    attr, delta = LayerIntegratedGradients(model, model.embedding).attribute(
        ids, baselines=torch.zeros_like(ids), target=1, n_steps=40, method="gausslegendre", internal_batch_size=16,
        return_convergence_delta=True)
    per_token = attr.sum(-1)[0].detach().numpy()
    np.testing.assert_allclose(ours.map, per_token[:5], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(per_token[5:], 0.0, atol=1e-7)  # padding == baseline carries nothing
    assert ours.tokens == ("a", "b", "c", "d", "e") and ours.delta == pytest.approx(float(delta[0]), abs=1e-5)
    assert ours.completeness.relative < 0.01


def test_text_saliency_and_occlusion_equal_captum(text):
    model, live, inp = text
    ids = torch.from_numpy(inp.array)
    sal = compute(live, inp, AttributionRequest("saliency", target=0))
    gx = LayerGradientXActivation(model, model.embedding).attribute(ids, target=0)
    np.testing.assert_allclose(sal.map, gx.sum(-1)[0, :5].detach().numpy(), rtol=1e-4, atol=1e-6)
    occ = compute(live, inp, AttributionRequest("occlusion", target=0))
    theirs = Occlusion(model).attribute(ids, sliding_window_shapes=(1,), strides=(1,), baselines=torch.zeros_like(ids),
                                        target=0, perturbations_per_eval=16)
    np.testing.assert_allclose(occ.map, theirs[0, :5].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_methods_that_need_continuous_inputs_refuse_text(text):
    _, live, inp = text
    for method in ("gradcam", "gradshap", "smoothgrad"):
        with pytest.raises(LayerScopeError, match="continuous inputs"):
            compute(live, inp, AttributionRequest(method))


def test_bad_requests_are_single_sentences(cnn):
    _, live = cnn
    with pytest.raises(LayerScopeError, match="Unknown attribution method"):
        compute(live, image(), AttributionRequest("lime"))
    with pytest.raises(LayerScopeError, match="out of range"):
        compute(live, image(), AttributionRequest("saliency", target=10))
    with pytest.raises(LayerScopeError, match="no layer"):
        compute(live, image(), AttributionRequest("gradcam", layer="nope"))


def test_path_points_are_captums():
    from captum.attr._utils.approximation_methods import approximation_parameters

    for method in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        step_sizes, alphas = approximation_parameters(method)
        ours_a, ours_w = path_points(method, 7)
        np.testing.assert_allclose(ours_a, alphas(7), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ours_w, step_sizes(7), rtol=1e-6, atol=1e-7)


# --- cancel and errors leave no hook ----------------------------------------------------------


def test_cancel_mid_ig_from_a_thread_leaves_no_hooks(cnn):
    model, live = cnn
    token = CancelToken()
    seen: list[float] = []
    outcome: dict[str, object] = {}

    def progress(p):
        seen.append(p.done)
        if p.done >= 3:
            token.cancel()

    def work():
        try:
            drive(attribute(live, image(), AttributionRequest("ig", steps=20000, ig_method="riemann_trapezoid", internal_batch_size=1), token),
                  progress, token)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), Cancelled)
    assert max(seen) < 20000  # it stopped early
    assert hook_count(model) == 0 and no_hooks_anywhere(model)
    assert calls_in_flight() == 0  # the Captum call itself stopped, not only the generator


def test_cancel_inside_a_layer_method_removes_captums_hooks_too(text):
    model, live, inp = text
    token = CancelToken()

    def progress(p):
        if p.done >= 2:
            token.cancel()

    with pytest.raises(Cancelled):
        drive(attribute(live, inp, AttributionRequest("ig", steps=20000, ig_method="riemann_trapezoid", internal_batch_size=1), token), progress, token)
    assert no_hooks_anywhere(model)


def test_an_error_mid_call_propagates_and_leaves_no_hooks(cnn):
    model, live = cnn
    calls = {"n": 0}

    def explode(_module, _args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("boom on the third pass")

    handle = model.features[0].register_forward_pre_hook(explode)
    try:
        before = hook_count(model)
        with pytest.raises(ValueError, match="boom"):
            compute(live, image(), AttributionRequest("ig", steps=64, internal_batch_size=4))
        assert hook_count(model) == before  # only the test's own hook is left
    finally:
        handle.remove()
    assert no_hooks_anywhere(model)


def test_restore_hooks_removes_whatever_was_added_since_the_snapshot(cnn):
    model, _ = cnn
    snap = hook_snapshot(model)
    model.head.register_forward_hook(lambda *a: None)
    model.features[0].register_full_backward_hook(lambda *a: None)
    assert hook_count(model) >= 2
    assert restore_hooks(model, snap) >= 2
    assert no_hooks_anywhere(model)


# --- the randomisation check ------------------------------------------------------------------


def test_randomization_check_leaves_the_model_untouched(cnn):
    from analyzers.explain.sanity import randomization_check

    model, live = cnn
    before = {k: v.clone() for k, v in model.state_dict().items()}
    original = compute(live, image(7), AttributionRequest("saliency"))
    check = drive(randomization_check(live, original, top_layers=2, seed=0))
    assert check.layers == ("features.1", "head")
    assert -1.0 <= check.spearman_abs <= 1.0 and -1.0 <= check.spearman_signed <= 1.0
    assert check.verdict
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("base", ["gradshap", "occlusion", "gradcam"])
def test_smoothgrad_runs_over_every_base_method(cnn, base):
    _, live = cnn
    result = compute(live, image(8), AttributionRequest("smoothgrad", smooth_base=base, smooth_samples=3))
    assert result.map.shape == (1, 28, 28) and np.isfinite(result.map).all()
    assert result.parameters["smooth_base"] == base and result.parameters["stdevs"] > 0


def test_smoothgrad_over_gradcam_equals_noise_tunnel(cnn):
    model, live = cnn
    inp = image(9)
    ours = compute(live, inp, AttributionRequest("smoothgrad", target=TARGET, smooth_base="gradcam", smooth_samples=4,
                                                 seed=3))
    torch.manual_seed(3)
    np.random.seed(3)
    x = x_of(inp)
    theirs = NoiseTunnel(LayerGradCam(model, model.features[0])).attribute(
        x, nt_type="smoothgrad", nt_samples=4, stdevs=0.15 * float(x.max() - x.min()), target=TARGET,
        relu_attributions=True)
    np.testing.assert_allclose(ours.layer_map, theirs.detach().numpy(), rtol=1e-4, atol=1e-7)


def test_gradcam_on_a_layer_without_spatial_axes_is_one_sentence(cnn) -> None:
    _, live = cnn
    with pytest.raises(LayerScopeError, match=r"Grad-CAM needs a layer whose output keeps the input's spatial axes.*"
                                              r"'head' gives a map of shape \(1,\)"):
        compute(live, image(), AttributionRequest("gradcam", target=TARGET, layer="head"))


def test_a_map_that_is_zero_everywhere_says_why(tmp_path) -> None:
    """Grad-CAM's ReLU on a layer whose every location lowers the score: the map is all zeros, and says so."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    head = torch.nn.Linear(28 * 28, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(1.0)
        head.weight.fill_(-1.0)  # the score of either class falls wherever the convolution fires
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), head).eval()
    torch.save(model, tmp_path / "neg.pt")
    live = load_live_model(tmp_path / "neg.pt", LoadOptions(trust=True), "cpu")
    inp = ModelInput("image", np.abs(image().array), "positive", layout="NCHW")
    zero = compute(live, inp, AttributionRequest("gradcam", target=0, layer="0"))
    assert not np.any(zero.map) and "zero everywhere" in zero.notes[0] and "--no-relu" in zero.notes[0]
    signed = compute(live, inp, AttributionRequest("gradcam", target=0, layer="0", relu=False))
    assert np.all(signed.map <= 0) and np.any(signed.map) and signed.notes == ()


def test_token_ids_outside_the_vocabulary_are_one_sentence(text) -> None:
    module, live, inp = text
    vocab = module.embedding.num_embeddings  # the framework's own answer
    assert live.vocab_size() == vocab
    for bad in (vocab, -1):
        ids = inp.array.copy()
        ids[0, 2] = bad
        wrong = ModelInput("text", ids, "ids.npy", layout="tokens")
        with pytest.raises(LayerScopeError, match=rf"^ids\.npy: token id {bad} is outside the vocabulary of this "
                                                  rf"model \(0 to {vocab - 1}\)\.$"):
            compute(live, wrong, AttributionRequest("ig"))
