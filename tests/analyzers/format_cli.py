"""Run several `layerscope` CLI invocations in one child process, so a heavy framework is imported once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli_helpers import REPO

_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    from app.cli import main
    results = {}
    for key, args in json.loads(sys.argv[1]).items():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
        results[key] = {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f)
""")


def run_cli_batch(calls: dict[str, list[str]], workdir: Path, timeout: float = 240) -> dict[str, dict]:
    """key -> {"rc", "stdout", "stderr"} for each argv in `calls`, run by app.cli.main in one subprocess."""
    result_file = workdir / "cli_results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("LAYERSCOPE_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(calls), str(result_file)],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(result_file.read_text(encoding="utf-8"))
