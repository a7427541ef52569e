"""Weight statistics and the quantisation / pruning previews, checked against numpy on the same tensors.

Every figure is recomputed here the plain way (whole arrays, np.histogram, np.partition, a round trip
written out with numpy) and must match what the streamed, chunked code found.
"""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from analyzers.errors import LayerScopeError
from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import drive
from analyzers.weights.quantize import (
    INT4_GROUP,
    magnitude_threshold,
    prune_preview,
    quant_preview,
    sparse_bytes,
)
from analyzers.weights.source import open_weights
from analyzers.weights.stats import HIST_BINS, weight_stats
from tests.cli_helpers import run_cli
from tests.zoo_helpers import zoo_or_skip


def _check_against_numpy(stats, name: str, values: np.ndarray) -> None:
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    s = stats.tensors[name]
    assert s.count == v.size
    assert s.min == finite.min() and s.max == finite.max()
    assert s.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12)
    assert s.std == pytest.approx(finite.std(), rel=1e-6)
    assert s.zeros == v.size - np.count_nonzero(v)
    assert s.nans == int(np.isnan(v).sum()) and s.infs == int(np.isinf(v).sum())
    lo, hi = s.hist_lo, s.hist_hi
    expected = np.histogram(np.asarray(values, dtype=np.float32)[np.isfinite(values)], HIST_BINS, (lo, hi))[0]
    assert list(s.hist) == expected.tolist()


def _save_safetensors(path, tensors):
    from safetensors.numpy import save_file

    save_file(tensors, str(path))
    return path


@pytest.fixture
def planted(tmp_path):
    """A safetensors file with normal layers, a NaN, an Inf, a dead layer and a zero bias."""
    rng = np.random.default_rng(0)
    t = {
        "enc.weight": rng.standard_normal((300, 200)).astype(np.float32) * 0.02,
        "enc.bias": np.zeros(300, dtype=np.float32),
        "conv.weight": rng.standard_normal((64, 3, 5, 5)).astype(np.float32),
        "conv.bias": rng.standard_normal(64).astype(np.float32),
        "dead.weight": np.zeros((16, 16), dtype=np.float32),
        "dead.bias": np.zeros(16, dtype=np.float32),
        "sick.weight": rng.standard_normal((20, 30)).astype(np.float32),
    }
    t["sick.weight"][3, 4] = np.nan
    t["sick.weight"][7, 1] = -np.inf
    path = _save_safetensors(tmp_path / "planted.safetensors", t)
    return drive(open_model(path)), t


def test_statistics_equal_numpy_and_findings_flag_nan_and_dead(planted):
    summary, t = planted
    with open_weights(summary) as source:
        stats = drive(weight_stats(summary, source, chunk=1000))  # many chunks per tensor
    for name, values in t.items():
        _check_against_numpy(stats, name, values)
    # a layer's histogram spans its tensors' common range and is their sum
    layer = stats.layers["conv"]
    both = np.concatenate([t["conv.weight"].ravel(), t["conv.bias"]])
    assert list(layer.hist) == np.histogram(both, HIST_BINS, (layer.hist_lo, layer.hist_hi))[0].tolist()
    assert layer.std == pytest.approx(both.astype(np.float64).std(), rel=1e-6)
    texts = [(f.severity, f.path, f.tensor) for f in stats.findings]
    assert ("error", "sick", "sick.weight") in texts
    assert ("warning", "dead", "") in texts
    assert not any(p == "enc" for _, p, _ in texts)  # a zero bias beside a live matrix is normal
    whole = stats.subtree("")
    assert whole.count == sum(v.size for v in t.values())
    assert whole.nans == 1 and whole.infs == 1


def test_statistics_of_torch_views_bfloat16_and_onnx(tmp_path):
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(0)
    base = torch.randn(40, 30)
    state = {"view.weight": base.t(), "half.weight": torch.randn(50, 20).to(torch.bfloat16)}  # strided, bf16
    torch.save(state, tmp_path / "views.pt")
    summary = drive(open_model(tmp_path / "views.pt"))
    with open_weights(summary) as source:
        stats = drive(weight_stats(summary, source, chunk=64))
    _check_against_numpy(stats, "view.weight", base.t().numpy())
    _check_against_numpy(stats, "half.weight", state["half.weight"].float().numpy())

    w = np.random.default_rng(1).standard_normal((8, 5)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    summary = drive(open_model(tmp_path / "m.onnx"))
    with open_weights(summary) as source:
        stats = drive(weight_stats(summary, source))
    _check_against_numpy(stats, "w", w)


def test_statistics_run_in_bounded_memory(tmp_path):
    values = np.random.default_rng(2).standard_normal(16 << 20).astype(np.float32)  # 64 MB
    path = _save_safetensors(tmp_path / "big.safetensors", {"big.weight": values.reshape(4096, 4096)})
    del values
    summary = drive(open_model(path))
    tracemalloc.start()
    try:
        with open_weights(summary) as source:
            stats = drive(weight_stats(summary, source, chunk=256 << 10))
            quant = drive(quant_preview(summary, source, ("int8", "int4"), chunk=256 << 10))
            prune = drive(prune_preview(summary, source, 0.5, chunk=256 << 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.tensors["big.weight"].count == 16 << 20
    assert quant.tensors["big.weight"]["int8"].snr_db > 30 and prune.achieved == pytest.approx(0.5, abs=1e-6)
    assert peak < (64 << 20) / 4, f"peak {peak / 2**20:.1f} MiB for a 64 MiB tensor"


def _info(summary, name: str):
    return next(t for t in summary.tensors if t.name == name)


def _int8_by_hand(w: np.ndarray) -> np.ndarray:
    rows = w.reshape(w.shape[0], -1).astype(np.float32)
    scale = np.abs(rows).max(axis=1, keepdims=True) / np.float32(127)
    scale[scale == 0] = 1
    return (np.clip(np.rint(rows / scale), -127, 127) * scale).reshape(w.shape)


def _int4_by_hand(w: np.ndarray) -> np.ndarray:
    rows = w.reshape(w.shape[0], -1).astype(np.float32)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        for start in range(0, rows.shape[1], INT4_GROUP):
            g = rows[r, start:start + INT4_GROUP]
            s = np.float32(np.abs(g).max() / np.float32(7)) or np.float32(1)
            out[r, start:start + INT4_GROUP] = np.clip(np.rint(g / s), -7, 7) * s
    return out.reshape(w.shape)


def _snr(w: np.ndarray, q: np.ndarray) -> float:
    w64, q64 = w.astype(np.float64), q.astype(np.float64)
    return 10 * math.log10((w64 ** 2).sum() / ((w64 - q64) ** 2).sum())


def test_int8_and_int4_errors_equal_a_numpy_round_trip(planted):
    summary, t = planted
    with open_weights(summary) as source:
        preview = drive(quant_preview(summary, source, ("int8", "int4"), chunk=700))
    assert set(preview.tensors) == {"enc.weight", "conv.weight", "dead.weight", "sick.weight"}  # 2-D+ only
    for name in ("enc.weight", "conv.weight"):
        w = t[name]
        for scheme, by_hand in (("int8", _int8_by_hand), ("int4", _int4_by_hand)):
            q = by_hand(w)
            err = preview.tensors[name][scheme]
            assert err.snr_db == pytest.approx(_snr(w, q), abs=1e-6)
            rel = np.linalg.norm((w - q).astype(np.float64)) / np.linalg.norm(w.astype(np.float64))
            assert err.relative_error == pytest.approx(rel, rel=1e-6)
    conv = _info(summary, "conv.weight")
    assert preview.tensors["conv.weight"]["int8"].bytes_after == conv.numel + 2 * 64  # one fp16 scale per channel
    groups = 64 * math.ceil(75 / INT4_GROUP)
    assert preview.tensors["conv.weight"]["int4"].bytes_after == conv.numel // 2 + 2 * groups
    assert preview.tensors["dead.weight"]["int8"].noise == 0.0  # zeros round-trip exactly
    untouched = sum(v.nbytes for k, v in t.items() if v.ndim < 2)
    assert preview.model_bytes_after["int8"] == untouched + sum(e["int8"].bytes_after for e in preview.tensors.values())


def test_keras_kernels_quantise_per_output_channel():
    entry = zoo_or_skip("digits_cnn_keras")
    summary = drive(open_model(entry.file))
    with open_weights(summary) as source:
        preview = drive(quant_preview(summary, source, ("int8", "int4")))
        kernel = np.asarray(source.read("dense.kernel"))  # (5408 inputs, 64 outputs)
    assert preview.channel_axis == -1
    out_first = np.ascontiguousarray(kernel.T)
    err = preview.tensors["dense.kernel"]
    assert err["int8"].snr_db == pytest.approx(_snr(out_first, _int8_by_hand(out_first)), abs=1e-6)
    assert err["int4"].snr_db == pytest.approx(_snr(out_first, _int4_by_hand(out_first)), abs=1e-6)


def test_global_magnitude_pruning_equals_numpy(planted):
    summary, t = planted
    with open_weights(summary) as source:
        preview = drive(prune_preview(summary, source, 0.4, chunk=500))
        none = drive(prune_preview(summary, source, 0.0))
    eligible = ["enc.weight", "conv.weight", "dead.weight", "sick.weight"]
    finite = [np.where(np.isfinite(t[n]), t[n], np.float32(np.inf)) for n in eligible]
    mags = np.sort(np.concatenate([np.abs(f).ravel() for f in finite]))
    k = round(0.4 * mags.size)
    assert preview.threshold == mags[k - 1] == magnitude_threshold(finite, 0.4)
    for name in eligible:
        w = t[name]
        gone = np.abs(w) <= preview.threshold
        loss = preview.tensors[name]
        assert loss.pruned == int(gone.sum())
        energy = float((w[np.isfinite(w)].astype(np.float64) ** 2).sum())
        if np.isfinite(w).all():
            assert loss.energy_pruned == pytest.approx(float((w[gone].astype(np.float64) ** 2).sum()), rel=1e-6)
            assert loss.energy == pytest.approx(energy, rel=1e-6)
        kept = w.size - int(gone.sum())
        fmt, size = sparse_bytes(_info(summary, name), kept)
        rows = w.shape[0]
        csr, bitmap = kept * 4 + kept * 4 + (rows + 1) * 4, kept * 4 + math.ceil(w.size / 8)
        assert size == min(csr, bitmap, w.nbytes) and loss.bytes_after == size
        assert fmt == {csr: "CSR", bitmap: "bitmap", w.nbytes: "dense"}[size]
    assert preview.achieved == pytest.approx(k / mags.size, abs=1 / mags.size)
    assert none.threshold is None and all(loss.pruned == 0 for loss in none.tensors.values())
    assert none.model_bytes_after == none.model_bytes
    with pytest.raises(LayerScopeError, match="sparsity"):
        drive(prune_preview(summary, None, 1.5))  # type: ignore[arg-type]


def test_accuracy_after_shrinking_uses_the_real_heldout_set():
    import torch

    from analyzers import samples as S
    from analyzers.explain.live_jobs import LiveModels
    from analyzers.explain.requests import ModelRef
    from analyzers.loaders.arch import instantiate, parse_arch
    from analyzers.weights.shrink import shrink_job

    entry = zoo_or_skip("digits_cnn_torch")
    models = LiveModels()
    ref = ModelRef(entry.file, LoadOptions(arch=S.resolved_arch(entry), arch_kwargs=entry.arch_kwargs), "cpu")
    try:
        report = drive(shrink_job(models, ref, ("original", "prune0", "int8", "prune0.5")))
    finally:
        models.forget()
    rows = {r.variant: r for r in report.rows}
    assert report.heldout_size == entry.heldout_size
    assert rows["original"].score == pytest.approx(entry.heldout, abs=0.005)
    assert rows["prune0"].score == rows["original"].score and rows["prune0"].delta == 0.0  # exactly
    # the same transforms applied by hand to a fresh copy of the network, scored with torch directly
    data = S.zoo_module("data")
    split = data.digits_split()
    x = torch.from_numpy((split.x_test / 255.0).astype(np.float32)[:, None])

    def accuracy(state):
        model = instantiate(parse_arch(S.resolved_arch(entry)), "cpu")
        model.load_state_dict(state)
        with torch.no_grad():
            return float((model.eval()(x).argmax(1).numpy() == split.y_test).mean())

    state = torch.load(entry.file, map_location="cpu", weights_only=True)
    int8 = {k: torch.from_numpy(_int8_by_hand(v.numpy())) if v.ndim >= 2 else v for k, v in state.items()}
    assert rows["int8"].score == accuracy(int8)
    mats = [v.numpy() for v in state.values() if v.ndim >= 2]
    mags = np.sort(np.concatenate([np.abs(m).ravel() for m in mats]))
    cut = mags[round(0.5 * mags.size) - 1]
    pruned = {k: torch.where(v.abs() <= float(cut), torch.zeros_like(v), v) if v.ndim >= 2 else v
              for k, v in state.items()}
    assert rows["prune0.5"].score == accuracy(pruned)
    assert rows["int8"].weight_bytes < rows["original"].weight_bytes


def test_weights_cli_json_and_bad_requests(planted, tmp_path):
    summary, _ = planted
    path = summary.source.path
    result = run_cli("weights", path, "--stats", "--quant-preview", "int8,int4", "--prune", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "layerscope.weights/1"
    assert {f["tensor"] for f in doc["stats"]["findings"] if f["severity"] == "error"} == {"sick.weight"}
    assert set(doc["quantization"]["totals"]) == {"int8", "int4"}
    assert doc["pruning"]["sparsity"] == 0.5 and len(doc["pruning"]["layers"]) == 4
    text = run_cli("weights", path)
    assert text.returncode == 0 and "NaN" in text.stdout and "dead" in text.stdout
    for args in (["--quant-preview", "int3"], ["--prune", "1.5"], ["--top", "0"]):
        bad = run_cli("weights", path, *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, args


def test_gguf_statistics_are_of_the_dequantised_values(tmp_path):
    import gguf

    rng = np.random.default_rng(4)
    quant = rng.normal(size=(4, 64)).astype(np.float32)
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("plain.weight", rng.normal(size=(8, 32)).astype(np.float32))
    q8 = gguf.quants.quantize(quant, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("quant.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    summary = drive(open_model(path))
    with open_weights(summary) as source:
        stats = drive(weight_stats(summary, source))
    dequantised = gguf.quants.dequantize(q8, gguf.GGMLQuantizationType.Q8_0).reshape(quant.shape)
    _check_against_numpy(stats, "quant.weight", dequantised)


def test_cancel_stops_statistics_between_chunks(planted):
    from analyzers.tasks import Cancelled, CancelToken

    summary, _ = planted
    token = CancelToken()
    seen = []

    def on_progress(progress):
        seen.append(progress)
        if len(seen) == 2:
            token.cancel()

    with open_weights(summary) as source, pytest.raises(Cancelled):
        drive(weight_stats(summary, source, token, chunk=100), on_progress, token)
    assert 2 <= len(seen) < 6  # stopped at the next check, far before the ~14 steps of a full run


def test_histogram_counts_equal_numpy_at_the_edges():
    from analyzers.weights.stats import bin_counts

    rng = np.random.default_rng(5)
    for trial in range(40):
        x = rng.standard_normal(20_000).astype(np.float32) * rng.uniform(0.001, 100)
        if trial % 2 == 0:
            x[rng.random(x.size) < 0.5] = 0  # pruned: half the values exactly 0.0
        if trial % 4 == 0:
            x = np.concatenate([x, -x])  # a symmetric range puts 0.0 on the middle edge
        if trial % 3 == 0:
            x = np.round(x)  # integers land on edges
        if trial % 7 == 0:
            x = x.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        assert bin_counts(x, lo, hi).tolist() == np.histogram(x, HIST_BINS, (lo, hi))[0].tolist(), trial
