"""Run `python main.py ...` in a subprocess the way a user would, with a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run main.py with `args`; never hangs longer than `timeout` seconds."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env.pop("LAYERSCOPE_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=str(REPO),
    )
