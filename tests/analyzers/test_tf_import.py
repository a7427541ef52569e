"""TensorFlow's start-up notices stay off the user's terminal; anything else written meanwhile stays."""

from __future__ import annotations

import os
import subprocess
import sys

from analyzers.runtime.tf_import import native_stderr_filtered
from tests.cli_helpers import REPO


def test_known_notices_are_dropped_and_other_lines_kept(capfd) -> None:
    with native_stderr_filtered():
        os.write(2, b"I0000 00:00:1 123 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n")
        os.write(2, b"a real warning from native code\n")
    err = capfd.readouterr().err
    assert "cudart_stub" not in err
    assert "a real warning from native code" in err


def test_a_keras_command_prints_nothing_on_stderr(tmp_path) -> None:
    """`attribute` on the bundled Keras CNN, TF_CPP_MIN_LOG_LEVEL unset as on a user's shell."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = ["attribute", "assets/models/digits_cnn.keras", "--input", "assets/samples/digits/digit_3.png",
            "--method", "saliency", "--out", str(tmp_path / "map.npy")]
    done = subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "map.npy").is_file()
