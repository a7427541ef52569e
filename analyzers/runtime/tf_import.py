"""Import TensorFlow and Keras without their start-up noise on the user's terminal.

TensorFlow's C++ runtime writes to file descriptor 2 before it reads `TF_CPP_MIN_LOG_LEVEL`
("All log messages before absl::InitializeLog() ...", "Could not find cuda drivers ..."), and a
CPU-only machine then gets an `E0000 ... failed call to cuInit` line on the first device query. To a
user these read as errors although nothing is wrong. The import runs with fd 2 captured, and every
captured line that is not one of those known notices is written back, so a real warning still shows.
`TF_CPP_MIN_LOG_LEVEL` defaults to 3 (fatal only); set it to 0 to see TensorFlow's own log.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

# Substrings of the start-up notices that say nothing the user needs (each seen on a CPU machine).
NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation_placer.cc",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "TF-TRT Warning",
)

_lock = threading.Lock()


def quiet_defaults() -> None:
    """TensorFlow's log level for LayerScope's processes, unless the user chose one."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def native_stderr_filtered(noise: tuple[str, ...] = NOISE) -> Iterator[None]:
    """Capture what native code writes to fd 2 while inside; write back the lines that are not noise."""
    with _lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True)
                    if not any(n.encode() in line for n in noise)]
            if kept:
                os.write(2, b"".join(kept))


def tensorflow() -> Any:
    """The `tensorflow` module, imported (once) without its start-up notices."""
    if "tensorflow" not in sys.modules:
        quiet_defaults()
        with native_stderr_filtered():
            import tensorflow  # noqa: F401 - the import is the point

            tensorflow.config.list_physical_devices("GPU")  # the cuInit notice comes here, not later
    return sys.modules["tensorflow"]


def keras() -> Any:
    """The `keras` module (Keras 3 on TensorFlow), imported after `tensorflow()`."""
    tensorflow()
    import keras as module

    return module
