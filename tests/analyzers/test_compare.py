"""Comparing two models: alignment, weight drift against numpy, the Keras/PyTorch digits pair, shared-scale maps.

Every fixture is written in tmp_path with torch or numpy; references are numpy (float64), Captum's own
threshold function and scipy's entropy, never numbers copied from LayerScope's output.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from analyzers.compare.drift import drift_steps
from analyzers.compare.outputs import (
    compare_predictions,
    distribution,
    kl_divergence,
    pooled_threshold,
    shared_scale_maps,
)
from analyzers.compare.structure import align
from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import Cancelled, CancelToken, Progress, run_steps
from tests.zoo_helpers import zoo_or_skip as zoo_entry

REPO = Path(__file__).resolve().parents[2]
DIGITS_ARCH = str(REPO / "assets" / "zoo" / "torch_models.py") + ":DigitCNN"


def _summary(path: Path, options: LoadOptions | None = None):
    return run_steps(open_model(path, options or LoadOptions()))


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def _mlp_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- drift -----------------------------------------------------------------------------------------


def test_drift_of_a_file_against_itself_is_exactly_zero(tmp_path):
    a = _save(_mlp_state(), tmp_path / "a.pt")
    b = tmp_path / "b.pt"
    shutil.copy(a, b)  # another file with the same values: the numbers, not the path, make the zero
    report = run_steps(drift_steps(_summary(a), _summary(b)))
    assert report.model.relative_change == 0.0
    assert report.model.cosine == 1.0
    assert report.model.max_abs == 0.0 and report.model.changed == 0
    assert report.model.numel == sum(v.numel() for v in _mlp_state().values())
    assert all(t.stats is not None and t.stats.relative_change == 0.0 for t in report.tensors)
    assert not report.not_comparable()


def test_a_known_change_gives_numpys_relative_change_cosine_and_counts(tmp_path):
    state_a = _mlp_state(1)
    state_b = {k: v.clone() for k, v in state_a.items()}
    w = state_b["0.weight"]
    w[:10] += 0.25  # a known shift on the first ten rows
    w[20:30] = 0.0  # and planted zeros
    a = _save(state_a, tmp_path / "a.pt")
    b = _save(state_b, tmp_path / "b.pt")
    report = run_steps(drift_steps(_summary(a), _summary(b)))
    drift = next(t for t in report.tensors if t.name_a == "0.weight")
    x = state_a["0.weight"].numpy().astype(np.float64).ravel()
    y = state_b["0.weight"].numpy().astype(np.float64).ravel()
    s = drift.stats
    assert s.relative_change == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x), rel=1e-6)
    assert s.cosine == pytest.approx(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)), rel=1e-6)
    assert s.max_abs == pytest.approx(np.max(np.abs(y - x)), rel=1e-6)
    assert s.changed == int(np.count_nonzero(x != y))
    assert s.zeros_a == int(np.count_nonzero(x == 0)) and s.zeros_b == int(np.count_nonzero(y == 0))
    untouched = next(t for t in report.tensors if t.name_a == "2.weight")
    assert untouched.stats.relative_change == 0.0
    # The layer roll-up is the drift of all its own tensors together (weight and bias).
    layer = report.layer(("0", "0"))
    xb = np.concatenate([x, state_a["0.bias"].numpy().astype(np.float64)])
    yb = np.concatenate([y, state_b["0.bias"].numpy().astype(np.float64)])
    assert layer.own.relative_change == pytest.approx(np.linalg.norm(yb - xb) / np.linalg.norm(xb), rel=1e-6)
    assert [d.label for d in report.ranked()][0] == "0"  # sorted by drift: the changed layer first


def test_small_blocks_and_strided_views_give_the_same_measures(tmp_path):
    """A tensor streamed in 1,000-value blocks (and a transposed, non-contiguous view) sums to the same numbers."""
    rng = np.random.default_rng(3)
    big = torch.from_numpy(rng.standard_normal((300, 257)).astype(np.float32))
    a = _save({"layer.weight": big}, tmp_path / "a.pt")
    b = _save({"layer.weight": big * 1.5 + 0.01}, tmp_path / "b.pt")
    sa, sb = _summary(a), _summary(b)
    whole = run_steps(drift_steps(sa, sb, chunk=1 << 22)).model
    blocks = run_steps(drift_steps(sa, sb, chunk=1000)).model
    for name in ("relative_change", "cosine", "changed_fraction", "sparsity_b"):
        assert getattr(blocks, name) == pytest.approx(getattr(whole, name), rel=1e-6)
    from analyzers.compare.drift import _blocks

    shape = (7, 300, 9)
    covered = sum(np.ones(shape)[index].size for index in _blocks(shape, 1000))
    assert covered == math.prod(shape)
    assert max(np.ones(shape)[index].size for index in _blocks(shape, 1000)) <= 1000


def test_drift_is_cancelled_between_blocks(tmp_path):
    big = torch.zeros((512, 512))
    a = _save({"w": big}, tmp_path / "a.pt")
    b = _save({"w": big + 1}, tmp_path / "b.pt")
    token = CancelToken()
    steps = drift_steps(_summary(a), _summary(b), token, chunk=1024)
    assert isinstance(next(steps), Progress)
    token.cancel()
    with pytest.raises(Cancelled):
        for _ in steps:
            pass


def test_integer_tensor_without_a_scale_is_listed_as_not_comparable(tmp_path):
    a = _save({"fc.weight": torch.randn(8, 4)}, tmp_path / "a.pt")
    b = _save({"fc.weight": torch.randint(-127, 127, (8, 4), dtype=torch.int8)}, tmp_path / "b.pt")
    report = run_steps(drift_steps(_summary(a), _summary(b)))
    [t] = report.not_comparable()
    assert t.stats is None and "int8" in t.reason and "scale" in t.reason
    assert report.model.numel == 0


# --- structure ----------------------------------------------------------------------------------------


def test_a_renamed_layer_pairs_and_an_added_layer_is_listed_on_one_side(tmp_path):
    torch.manual_seed(0)
    a_state = {"encoder.fc1.weight": torch.randn(32, 16), "encoder.fc1.bias": torch.randn(32),
               "encoder.fc2.weight": torch.randn(8, 32), "encoder.fc2.bias": torch.randn(8)}
    b_state = {"encoder.dense_in.weight": a_state["encoder.fc1.weight"].clone(),
               "encoder.dense_in.bias": a_state["encoder.fc1.bias"].clone(),
               "encoder.fc2.weight": a_state["encoder.fc2.weight"].clone(),
               "encoder.fc2.bias": a_state["encoder.fc2.bias"].clone(),
               "head.weight": torch.randn(3, 8), "head.bias": torch.randn(3)}
    a = _summary(_save(a_state, tmp_path / "a.pt"))
    b = _summary(_save(b_state, tmp_path / "b.pt"))
    diff = align(a, b)
    renamed = diff.find(path_a="encoder.fc1")
    assert renamed.path_b == "encoder.dense_in" and renamed.renamed and renamed.how == "signature"
    assert renamed.status == "same"
    assert diff.find(path_a="encoder.fc2").path_b == "encoder.fc2"
    added = diff.find(path_b="head")
    assert added.a is None and added.status == "added" and [p.path_b for p in diff.only_b()] == ["head"]
    assert added.delta == 3 * 8 + 3
    assert diff.root.delta == b.totals.params - a.totals.params == 27
    assert diff.counts["only_b"] == 1 and diff.counts["renamed"] == 1
    report = run_steps(drift_steps(a, b, diff=diff))  # the renamed layer's weights are the same values
    assert report.layer(renamed.key).own.relative_change == 0.0
    assert set(report.only_b) == {"head.weight", "head.bias"}


def test_a_wrapper_prefix_is_removed_before_paths_are_matched(tmp_path):
    torch.manual_seed(1)
    inner = {f"layers.{i}.weight": torch.randn(4, 4) for i in range(3)}
    a = _summary(_save({f"model.{k}": v for k, v in inner.items()}, tmp_path / "a.pt"))
    b = _summary(_save(inner, tmp_path / "b.pt"))
    diff = align(a, b)
    assert (diff.prefix_a, diff.prefix_b) == ("model.", "")
    for i in range(3):
        pair = diff.find(path_a=f"model.layers.{i}")
        assert pair.path_b == f"layers.{i}" and pair.how == "path"
    assert diff.find(path_a="model").status == "prefix"
    assert diff.counts["only_a"] == diff.counts["only_b"] == 0


def test_shape_dtype_and_trainable_changes_are_reported(tmp_path):
    a = _summary(_save({"fc.weight": torch.randn(8, 4), "fc.bias": torch.randn(8)}, tmp_path / "a.pt"))
    b = _summary(_save({"fc.weight": torch.randn(16, 4).half(), "fc.bias": torch.randn(8)}, tmp_path / "b.pt"))
    diff = align(a, b)
    pair = diff.find(path_a="fc")
    assert pair.status == "changed"
    weight = next(t for t in pair.tensors if t.name == "weight")
    assert weight.shape_changed and weight.dtype_change == "float32 → float16"
    assert "weight shape (8, 4) → (16, 4)" in pair.changes()
    report = run_steps(drift_steps(a, b, diff=diff))
    assert "shapes differ" in next(t for t in report.tensors if t.name_a == "fc.weight").reason
    rows = {r.label: r for r in diff.memory()}
    assert rows["weights as stored"].a == 8 * 4 * 4 + 8 * 4 and rows["weights as stored"].b == 16 * 4 * 2 + 8 * 4


# --- the Keras digits CNN and its PyTorch port -------------------------------------------------------------


def _port_keras_digits(keras_summary, out: Path) -> Path:
    """Write the PyTorch DigitCNN state_dict holding the Keras model's own trained weights, laid out as PyTorch
    computes: OIHW convolution, (out, in) Linear weights, and fc1's inputs in NCHW-flatten order."""
    from analyzers.weights.source import open_weights

    with open_weights(keras_summary) as src:
        w = {name: np.array(src.read(name)) for name in src.names()}
    conv = w["conv.kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
    dense = w["dense.kernel"].reshape(13, 13, 32, 64).transpose(3, 2, 0, 1).reshape(64, -1)  # HWC rows -> CHW
    state = {"conv.weight": conv, "conv.bias": w["conv.bias"], "fc1.weight": dense, "fc1.bias": w["dense.bias"],
             "fc2.weight": w["classes.kernel"].T, "fc2.bias": w["classes.bias"]}
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, out)
    return out


def test_keras_digits_and_a_torch_port_of_its_weights_match_layer_by_layer_with_zero_drift(tmp_path):
    entry = zoo_entry("digits_cnn_keras")
    keras = _summary(entry.file)
    port = _port_keras_digits(keras, tmp_path / "port.pt")
    torch_summary = _summary(port, LoadOptions(arch=DIGITS_ARCH))
    diff = align(keras, torch_summary)
    assert diff.cross_framework
    pairs = {p.path_a: p.path_b for p in diff.rows if p.a is not None and p.b is not None}
    assert pairs == {"": "", "conv": "conv", "pool": "pool", "flatten": "flatten", "dense": "fc1", "classes": "fc2"}
    assert [p.path_a for p in diff.only_a()] == ["image"] and not diff.only_b()  # Keras's InputLayer
    assert all(p.status in ("same", "removed") for p in diff.rows)
    layouts = {p.path_b: [t.layout.kind for t in p.tensors if t.layout] for p in diff.rows if p.tensors}
    assert layouts == {"conv": ["conv"], "fc1": ["dense_flatten"], "fc2": ["dense"]}  # biases need none
    report = run_steps(drift_steps(keras, torch_summary, diff=diff))
    assert not report.not_comparable()
    assert {d.label for d in report.ranked()} == {"conv", "dense ↔ fc1", "classes ↔ fc2"}
    for d in report.ranked():
        assert d.own.relative_change < 1e-6 and d.own.cosine > 1 - 1e-6, d.label
    # The bundled port was trained on its own: the same structure, entirely different weights.
    trained = run_steps(drift_steps(keras, _summary(zoo_entry("digits_cnn_torch").file, LoadOptions(arch=DIGITS_ARCH))))
    assert trained.model.relative_change > 0.5


@pytest.mark.slow
def test_the_written_port_computes_what_keras_computes(tmp_path):
    """The reconciliation is the functional one: the port of Keras's weights gives Keras's probabilities."""
    import keras as keras_lib

    from analyzers.samples import prepare_input, zoo_module

    entry = zoo_entry("digits_cnn_keras")
    port = _port_keras_digits(_summary(entry.file), tmp_path / "port.pt")
    model = zoo_module("torch_models").DigitCNN()
    model.load_state_dict(torch.load(port, weights_only=True))
    x = np.stack([prepare_input(entry, s) for s in entry.samples])  # NHWC
    expected = keras_lib.saving.load_model(entry.file, compile=False).predict(x, verbose=0)
    with torch.no_grad():
        got = torch.softmax(model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_keras_int8_kernels_are_dequantised_with_their_scale(tmp_path):
    import h5py

    base, int8 = zoo_entry("digits_cnn_keras"), zoo_entry("digits_cnn_int8_keras")
    a, b = _summary(base.file), _summary(int8.file)
    diff = align(a, b)
    dense = diff.find(path_a="dense")
    kernel = next(t for t in dense.tensors if t.name == "kernel")
    assert kernel.dtype_change == "float32 → int8" and kernel.trainable_change == "trainable → frozen"
    assert [t.name for t in dense.tensors if t.a is None] == ["kernel_scale"]
    report = run_steps(drift_steps(a, b, diff=diff))
    drift = next(t for t in report.tensors if t.name_a == "dense.kernel")
    assert "kernel_scale" in drift.dequantized
    import zipfile

    def weights(path: Path, tmp: str) -> dict:
        with zipfile.ZipFile(path) as zf, open(tmp, "wb") as f:
            f.write(zf.read("model.weights.h5"))
        with h5py.File(tmp, "r") as h5:
            return {k: np.array(h5[f"layers/dense/vars/{k}"]) for k in h5["layers/dense/vars"]}

    fa = weights(base.file, str(tmp_path / "a.h5"))["0"].astype(np.float64)
    q = weights(int8.file, str(tmp_path / "b.h5"))
    fb = q["0"].astype(np.float64) / q["2"].astype(np.float64)  # Keras: float kernel = int8 / kernel_scale
    assert drift.stats.relative_change == pytest.approx(np.linalg.norm(fb - fa) / np.linalg.norm(fa), rel=1e-5)
    assert 0 < drift.stats.relative_change < 0.05  # int8 keeps the kernel within a few per cent


def test_the_bundled_pruned_copy_has_half_of_each_kernel_zero():
    a, b = _summary(zoo_entry("digits_cnn_keras").file), _summary(zoo_entry("digits_cnn_pruned_keras").file)
    report = run_steps(drift_steps(a, b))
    for t in report.tensors:
        if t.name_a.endswith(".kernel"):
            assert t.stats.sparsity_b == pytest.approx(0.5, abs=0.002), t.name_a
            assert t.stats.sparsity_a < 0.01
        else:
            assert t.stats.relative_change == 0.0  # biases kept


def test_the_bundled_fine_tune_moved_the_last_layers_most():
    a, b = _summary(zoo_entry("digits_cnn_keras").file), _summary(zoo_entry("digits_cnn_finetuned_keras").file)
    report = run_steps(drift_steps(a, b))
    kernels = {t.name_a: t.stats.relative_change for t in report.tensors if t.name_a.endswith(".kernel")}
    assert kernels["conv.kernel"] < kernels["dense.kernel"] < kernels["classes.kernel"]


# --- outputs and shared-scale maps ------------------------------------------------------------------------


def test_shared_scale_maps_use_one_normalisation_constant():
    from captum.attr._utils.visualization import _cumulative_sum_threshold

    rng = np.random.default_rng(5)
    map_a = rng.standard_normal((1, 12, 12))  # NCHW without the batch axis
    map_b = 3.0 * rng.standard_normal((12, 12, 1))  # NHWC: a brighter map
    shared = shared_scale_maps(map_a, map_b, "NCHW", "NHWC", sign="all", outlier_percent=2.0)
    a2, b2 = map_a[0], map_b[..., 0]
    expected = _cumulative_sum_threshold(np.abs(np.concatenate([a2.ravel(), b2.ravel()])), 98.0)
    assert shared.scale == pytest.approx(float(expected))
    for raw, norm in ((a2, shared.a), (b2, shared.b)):
        inside = np.abs(raw) < shared.scale
        np.testing.assert_allclose(norm[inside], raw[inside] / shared.scale)  # the same constant on both sides
        assert np.all(np.abs(norm[~inside]) == 1.0)
    own_a = _cumulative_sum_threshold(np.abs(a2.ravel()), 98.0)
    assert shared.own_scales[0] == pytest.approx(float(own_a)) and shared.scale > own_a
    np.testing.assert_allclose(shared.difference, np.clip(shared.b - shared.a, -1, 1))
    assert pooled_threshold([a2, b2]) == pytest.approx(shared.scale)


def test_predictions_compare_as_distributions():
    from scipy.stats import entropy

    from analyzers.runtime.outputs import summarise_outputs

    logits_a = np.array([[2.0, 1.0, 0.1, -1.0]])
    logits_b = np.array([[1.5, 1.8, 0.0, -0.5]])
    pa = summarise_outputs({"logits": logits_a}, ("w", "x", "y", "z"), 3)
    pb = summarise_outputs({"logits": logits_b}, ("w", "x", "y", "z"), 3)
    qa, qb = distribution(logits_a[0]), distribution(logits_b[0])
    c = compare_predictions(pa, pb, qa, qb)
    assert c.agreement is False and c.top_k_overlap == 1.0
    assert c.kl_ab == pytest.approx(entropy(qa, qb)) and c.kl_ba == pytest.approx(entropy(qb, qa))
    assert kl_divergence(qa, qa) == 0.0
    probs = np.array([0.7, 0.2, 0.1])
    np.testing.assert_allclose(distribution(probs), probs)  # a softmax output stays as it is
    from scipy.special import expit

    np.testing.assert_allclose(distribution(np.array([2.0])), [1 - expit(2.0), expit(2.0)])  # one logit: a sigmoid
    np.testing.assert_allclose(distribution(np.array([0.0]), "sigmoid"), [0.5, 0.5])
    np.testing.assert_allclose(distribution(np.array([0.8]), "model"), [0.2, 0.8])  # one probability


def test_gguf_blocks_are_dequantised_before_they_are_compared(tmp_path):
    import gguf

    rng = np.random.default_rng(4)
    values = rng.normal(size=(4, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
    paths = []
    for name, tensor, raw in (("a.gguf", values, None), ("b.gguf", q8, gguf.GGMLQuantizationType.Q8_0)):
        writer = gguf.GGUFWriter(str(tmp_path / name), "llama")
        writer.add_tensor("blk.0.ffn_up.weight", tensor, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        paths.append(tmp_path / name)
    a, b = _summary(paths[0]), _summary(paths[1])
    pair = next(p for p in align(a, b).rows if p.tensors)
    assert pair.tensors[0].dtype_change.startswith("float32 → ")
    [drift] = run_steps(drift_steps(a, b)).tensors
    x = values.astype(np.float64).ravel()
    y = gguf.quants.dequantize(q8, gguf.GGMLQuantizationType.Q8_0).astype(np.float64).ravel()  # gguf's own numbers
    assert drift.stats.relative_change == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x), rel=1e-6)
    assert 0 < drift.stats.relative_change < 0.02


def test_nan_and_inf_elements_are_counted_apart_from_the_sums(tmp_path):
    base = torch.arange(1, 13, dtype=torch.float32).reshape(3, 4)
    other = base.clone()
    other[0, 0] = float("nan")
    other[1, 1] = float("inf")
    other[2, 2] += 1.0
    report = run_steps(drift_steps(_summary(_save({"w": base}, tmp_path / "a.pt")),
                                   _summary(_save({"w": other}, tmp_path / "b.pt"))))
    s = report.model
    keep = np.ones(12, bool)
    keep[[0, 5]] = False
    x, y = base.numpy().ravel()[keep].astype(np.float64), other.numpy().ravel()[keep].astype(np.float64)
    assert s.nonfinite == 2 and s.changed == 3 and s.numel == 12
    assert s.relative_change == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x))
    assert s.max_abs == 1.0
