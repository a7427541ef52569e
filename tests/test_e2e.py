"""End to end: `python main.py --screenshot` with no path opens the bundled image CNN and saves the window."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageStat

from tests.cli_helpers import run_cli


def _private_config() -> dict[str, str]:
    """A config folder of the test's own: the window's QSettings never touch the user's."""
    import tempfile

    return {"XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="layerscope-config-")}


def _default_sample():
    try:
        from analyzers.samples import default_model

        model = default_model()
    except Exception as exc:  # the zoo is built by `make samples`; without it there is nothing to open
        pytest.skip(f"the sample zoo is not built here ({type(exc).__name__})")
    if not model.file.exists():
        pytest.skip(f"{model.file} is not built (run `make samples`)")
    return model


@pytest.mark.slow
def test_main_opens_the_bundled_cnn_and_saves_a_screenshot(tmp_path) -> None:
    model = _default_sample()
    out = tmp_path / "window.png"
    report = tmp_path / "paint.json"
    res = run_cli("--screenshot", str(out), "--first-paint-report", str(report), timeout=300, env=_private_config())
    assert res.returncode == 0, res.stderr
    with Image.open(out) as image:
        assert ImageStat.Stat(image.convert("L")).var[0] > 100
    assert json.loads(report.read_text())["heavy_at_first_paint"] == []
    inspected = run_cli("inspect", str(model.file), "--json", timeout=300, env=_private_config())
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["totals"]["params"] == model.params
