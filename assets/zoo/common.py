"""Paths and small helpers shared by the zoo's Keras and PyTorch builders."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent.parent
REPO = ASSETS.parent
MODELS = ASSETS / "models"
SAMPLES = ASSETS / "samples"
TEXT_VOCAB = SAMPLES / "text" / "vocab.txt"
TEXT_MAX_LEN = 64
ZOO_ARCH = "assets/zoo/torch_models.py"  # --arch file, relative to the repo root
_START = time.monotonic()


def rel(path: Path) -> str:
    """`path` relative to assets/, with forward slashes: how the manifest stores paths."""
    return Path(path).resolve().relative_to(ASSETS).as_posix()


def log(text: str) -> None:
    """One progress line with the seconds since the build started."""
    print(f"[{time.monotonic() - _START:6.1f}s] {text}", flush=True)


def write_bytes(path: Path, content: bytes) -> Path:
    """Write atomically, and not at all when the file already holds `content`.

    The Keras and PyTorch builders run in two processes and write some files (the text vocabulary,
    the digit PNGs) both; neither may ever see the other's half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == content:
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return path


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """A uint8 (H, W) array as a greyscale PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(buf, format="PNG", optimize=True)
    return write_bytes(path, buf.getvalue())


def save_npy(array: np.ndarray, path: Path) -> Path:
    """A numpy array as .npy (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def write_text_vocab(words: list[str]) -> list[str]:
    """The text models' vocabulary file: [PAD] (id 0), [UNK] (id 1), then the generator's words."""
    vocab = ["[PAD]", "[UNK]", *words]
    write_bytes(TEXT_VOCAB, ("\n".join(vocab) + "\n").encode("utf-8"))
    return vocab


def digit_sample_pngs(x_test: np.ndarray, y_test: np.ndarray) -> list[Path]:
    """One held-out digit per class as samples/digits/digit_<label>.png (light on dark, like MNIST)."""
    out = []
    for label in range(10):
        idx = int(np.flatnonzero(y_test == label)[0])
        out.append(save_png(x_test[idx], SAMPLES / "digits" / f"digit_{label}.png"))
    return out


def require(ok: bool, what: str) -> None:
    """Stop the build when a model misses its bar: a sample that is not trained must not ship."""
    if not ok:
        sys.exit(f"build_samples: {what}")
