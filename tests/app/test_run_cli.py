"""`run` and `attribute` as a user types them: JSON, the .npy map, the PNG, and one-sentence errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.cli import main
from tests.cli_helpers import run_cli
from tests.torch_fixtures import TinyCNN

ARCH = "tests.torch_fixtures:TinyCNN"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    folder = tmp_path_factory.mktemp("runcli")
    torch.save(model.state_dict(), folder / "cnn.pt")
    x = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder, model, x


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_json_prediction_matches_the_module(files, capsys):
    folder, model, x = files
    code, out, err = cli(capsys, "run", str(folder / "cnn.pt"), "--arch", ARCH, "--input", str(folder / "x.npy"),
                         "--top-k", "3", "--runs", "3", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "layerscope.run/1" and doc["device"] == "cpu" and doc["framework"] == "torch"
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x[None])), 1)[0].numpy()
    top = doc["prediction"]["top"]
    assert [t["index"] for t in top] == list(np.argsort(-probs)[:3])
    assert top[0]["probability"] == pytest.approx(float(probs.max()), rel=1e-5)
    lat = doc["latency"]
    assert lat["runs"] == 3 and lat["median_ms"] > 0 and lat["peak_memory_kind"] == "process RSS growth"
    assert doc["input"]["shape"] == [1, 28, 28]


def test_attribute_writes_the_raw_map_and_an_overlay(files, capsys, tmp_path):
    from captum.attr import IntegratedGradients

    folder, model, x = files
    out_npy, out_png = tmp_path / "map.npy", tmp_path / "overlay.png"
    code, out, err = cli(capsys, "attribute", str(folder / "cnn.pt"), "--arch", ARCH, "--input", str(folder / "x.npy"),
                         "--method", "ig", "--target", "2", "--out", str(out_npy), "--png", str(out_png), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "layerscope.attribution/1"
    assert doc["method"] == "ig" and doc["target"]["index"] == 2 and doc["parameters"]["steps"] == 64
    assert doc["device"] == "cpu" and "median_ms" in doc["latency"] and doc["prediction"]["top"]
    saved = np.load(out_npy)
    assert saved.shape == x.shape  # shaped like the input, without the batch axis
    attr, delta = IntegratedGradients(model).attribute(torch.from_numpy(x[None]), target=2, n_steps=64,
                                                        internal_batch_size=16, return_convergence_delta=True)
    np.testing.assert_allclose(saved, attr[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert doc["convergence_delta"] == pytest.approx(float(delta[0]), abs=1e-5)
    assert doc["completeness"]["within_1_percent"] is True
    from PIL import Image

    assert Image.open(out_png).size[0] >= 224


def test_attribute_text_report_with_sanity(files, capsys):
    folder, _, x = files
    code, out, err = cli(capsys, "attribute", str(folder / "cnn.pt"), "--arch", ARCH, "--input", "random:1x28x28",
                         "--method", "gradcam", "--sanity")
    assert code == 0, err
    assert "Grad-CAM" in out and "layer=features.0" in out and "Spearman" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["--input", "missing.png"], "missing.png: no such file"),
    (["--input", "random:3x28x28"], "does not fit this model"),
    (["--input", "a wonderful evening"], "read as text"),
    (["--input", "random:1x28x28", "--method", "lime"], "Unknown attribution method 'lime'"),
    (["--input", "random:1x28x28", "--target", "12"], "out of range"),
    (["--input", "random:1x28x28", "--device", "tpu"], "not a device"),
    (["--input", "random"], "not fully known"),
])
def test_bad_input_is_one_sentence_and_exit_2(files, capsys, args, expected):
    folder, _, _ = files
    code, out, err = cli(capsys, "attribute", str(folder / "cnn.pt"), "--arch", ARCH, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


def test_wrong_npy_shape_and_missing_arch(files, capsys, tmp_path):
    folder, _, _ = files
    np.save(tmp_path / "bad.npy", np.zeros((28, 28), np.float32))
    code, _, err = cli(capsys, "run", str(folder / "cnn.pt"), "--arch", ARCH, "--input", str(tmp_path / "bad.npy"))
    assert code == 2 and "holds shape (28, 28)" in err
    code, _, err = cli(capsys, "run", str(folder / "cnn.pt"), "--input", "random:1x28x28")
    assert code == 2 and "--arch" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_cuda_is_one_sentence(files, capsys):
    folder, _, _ = files
    code, _, err = cli(capsys, "run", str(folder / "cnn.pt"), "--arch", ARCH, "--input", "random:1x28x28", "--device", "cuda")
    assert code == 2 and "no CUDA device" in err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_attribution_agrees_with_cpu(files, capsys, tmp_path):
    folder, _, x = files
    maps = {}
    for device in ("cpu", "cuda"):
        code, out, err = cli(capsys, "attribute", str(folder / "cnn.pt"), "--arch", ARCH, "--input",
                             str(folder / "x.npy"), "--device", device, "--out", str(tmp_path / f"{device}.npy"),
                             "--json")
        assert code == 0, err
        assert json.loads(out)["device"].startswith(device)
        maps[device] = np.load(tmp_path / f"{device}.npy")
    np.testing.assert_allclose(maps["cuda"], maps["cpu"], rtol=1e-3, atol=1e-5)


def test_run_as_a_user_runs_it(files):
    folder, _, _ = files
    res = run_cli("run", str(folder / "cnn.pt"), "--arch", ARCH, "--input", "random:1x28x28", "--runs", "2")
    assert res.returncode == 0, res.stderr
    assert "device:   cpu" in res.stdout and "latency:" in res.stdout and "top classes" in res.stdout


def test_sharded_safetensors_without_config_run_with_an_arch(files, capsys, tmp_path):
    """A folder of safetensors shards and their index (no config.json) runs with --arch, by folder or index."""
    from safetensors.torch import save_file

    folder, model, x = files
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in halves.items():
        save_file({k: state[k] for k in keys}, tmp_path / shard)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: shard for shard, keys in halves.items() for k in keys}}))
    with torch.no_grad():
        expected = int(model(torch.from_numpy(x[None])).argmax())
    for target in (tmp_path, index):
        code, out, err = cli(capsys, "run", str(target), "--arch", ARCH, "--input", str(folder / "x.npy"), "--json")
        assert code == 0, err
        assert json.loads(out)["prediction"]["top"][0]["index"] == expected


def test_a_truncated_safetensors_names_the_file(files, capsys, tmp_path):
    from safetensors.torch import save_file

    _, model, _ = files
    path = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    path.write_bytes(path.read_bytes()[:-100])
    code, out, err = cli(capsys, "run", str(path), "--arch", ARCH, "--input", "random:1x28x28")
    assert code == 2 and out == ""
    assert err.startswith("layerscope: error: cut.safetensors: ") and "unexpected" not in err and len(
        err.strip().splitlines()) == 1, err


def test_preprocessing_options_apply_to_a_bundled_sample(capsys):
    """--size on a bundled model's own sample is used, not silently dropped for the manifest's."""
    code, out, err = cli(capsys, "run", "assets/models/digits_cnn_torch.pt", "--size", "10x10")
    assert code == 2 and "digit_3.png: after preprocessing it has shape (1, 10, 10)" in err, err
    code, out, err = cli(capsys, "run", "assets/models/digits_cnn_torch.pt", "--size", "28x28", "--json")
    assert code == 0, err
    assert json.loads(out)["input"]["shape"] == [1, 28, 28]
