"""`python main.py --screenshot ...` as a user (or the README build) runs it, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.app.model_files import full_module_file, safetensors_file
from tests.cli_helpers import run_cli


def _private_config() -> dict[str, str]:
    """A config folder of the test's own: the window's QSettings never touch the user's."""
    import tempfile

    return {"XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="layerscope-config-")}


def pixel_variance(path: Path) -> float:
    """Variance of the grey levels: a blank (one-colour) image gives 0."""
    with Image.open(path) as image:
        return float(ImageStat.Stat(image.convert("L")).var[0])


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return safetensors_file(tmp_path_factory.mktemp("gui"))


@pytest.mark.parametrize("tab", ["overview", "memory", pytest.param("graph", marks=pytest.mark.slow)])
def test_screenshot_of_each_tab_is_not_blank(cnn, tmp_path, tab) -> None:
    out = tmp_path / f"{tab}.png"
    report = tmp_path / "paint.json"
    res = run_cli("--screenshot", str(out), "--tab", tab, "--size", "1200x760", "--first-paint-report", str(report),
                  str(cnn.path), timeout=240, env=_private_config())
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr  # nothing fires after the grab (the Graph tab once did)
    with Image.open(out) as image:
        assert image.size == (1200, 760)
    assert pixel_variance(out) > 100
    painted = json.loads(report.read_text())
    assert painted["heavy_at_first_paint"] == []  # the window painted before any framework import


@pytest.mark.slow
def test_the_window_paints_and_loads_torch_files_without_importing_torch(tmp_path) -> None:
    from tests.app.model_files import state_dict_file

    fixture = state_dict_file(tmp_path)
    report = tmp_path / "paint.json"
    # Without the Explain feature, whose live models need torch in the window's process by design.
    res = run_cli("--screenshot", str(tmp_path / "shot.png"), "--first-paint-report", str(report), "--no-features",
                  str(fixture.path), timeout=240, env=_private_config())
    assert res.returncode == 0, res.stderr
    painted = json.loads(report.read_text())
    assert painted["heavy_at_first_paint"] == []
    assert painted["heavy_at_exit"] == []  # loading ran torch in the loader process, never in the window's


def test_screenshot_failures_are_one_sentence(tmp_path) -> None:
    res = run_cli("--screenshot", str(tmp_path / "x.png"), str(tmp_path / "missing.safetensors"), timeout=120, env=_private_config())
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.startswith("layerscope:")]
    assert lines == ["layerscope: error: missing.safetensors: no such file or folder."]
    assert not (tmp_path / "x.png").exists()
    res = run_cli("--screenshot", str(tmp_path / "x.png"), "--tab", "nope", str(tmp_path), timeout=120, env=_private_config())
    assert res.returncode == 2 and "there is no tab 'nope'" in res.stderr


@pytest.mark.slow
def test_the_failing_screenshot_path_exits_the_same_way_20_times(tmp_path) -> None:
    """The --tab error path exits while the helper thread may still import the chart modules: it crashed
    (exit -11) one run in three until the window waited for that thread. Two at a time, 20 runs."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from tests.cli_helpers import REPO

    env = {**__import__("os").environ, **_private_config(), "QT_QPA_PLATFORM": "offscreen"}

    def once(i: int) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "main.py", "--screenshot", str(tmp_path / f"x{i}.png"), "--tab",
                               "nope", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        return done.returncode, done.stderr

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(once, range(20)))
    codes = [code for code, _ in results]
    assert codes == [2] * 20, codes
    for _, err in results:  # one sentence and nothing else: no Qt notice, no "terminate called", no traceback
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("layerscope: error: there is no tab 'nope'"), err


@pytest.mark.slow
def test_screenshot_of_a_pickled_module_shows_it_and_runs_it_only_with_trust(tmp_path) -> None:
    """Inspecting a pickled module runs none of its code, so it needs no trust; running it (Explain) does."""
    fixture = full_module_file(tmp_path)
    out = tmp_path / "shot.png"
    res = run_cli("--screenshot", str(out), str(fixture.path), timeout=240, env=_private_config())
    assert res.returncode == 0, res.stderr
    assert pixel_variance(out) > 100
    explain = ("--screenshot", str(out), "--tab", "explain", "--attribute", "saliency", "--input", "random:1x28x28")
    res = run_cli(*explain, str(fixture.path), timeout=240, env=_private_config())
    assert res.returncode == 2 and "contains pickled Python code" in res.stderr and "--trust" in res.stderr
    res = run_cli(*explain, "--trust", str(fixture.path), timeout=240, env=_private_config())
    assert res.returncode == 0, res.stderr
    assert "terminate called" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_graph_screenshot_of_the_bundled_keras_cnn_ends_cleanly(tmp_path) -> None:
    """The Keras graph goes graph -> message while the window closes; that must not grab (and crash) again."""
    out = tmp_path / "graph.png"
    res = run_cli("--screenshot", str(out), "--tab", "graph", "assets/models/digits_cnn.keras", timeout=240,
                  env=_private_config())
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "already deleted" not in res.stderr, res.stderr
    assert pixel_variance(out) > 100
