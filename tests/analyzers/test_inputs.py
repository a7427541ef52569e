"""--input VALUE: an existing file is read by its suffix; a path-looking string that names no file is an error."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.errors import LayerScopeError, UnsupportedFile
from analyzers.explain.inputs import InputHint, ModelInput, parse_input

TEXT = InputHint("text", (None,), "int64", "tokens")
IMAGE = InputHint("image", (1, 28, 28), "float32", "NCHW")


def echo(text: str) -> ModelInput:
    """A stand-in tokenizer: one id per word, the words kept, so a test can read what was encoded."""
    words = text.split()
    return ModelInput("text", np.arange(len(words))[None], "text", layout="tokens", tokens=tuple(words), text=text)


def test_an_existing_file_of_any_suffix_is_read_as_text(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "review.md").write_text("a brilliant film\n", encoding="utf-8")
    assert parse_input("review.md", TEXT, echo).tokens == ("a", "brilliant", "film")
    assert parse_input(str(tmp_path / "review.md"), TEXT, echo).tokens == ("a", "brilliant", "film")


def test_a_sentence_that_names_no_file_is_text(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_input("review.md", TEXT, echo).tokens == ("review.md",)


def test_a_missing_path_is_no_such_file_not_an_image(tmp_path) -> None:
    with pytest.raises(UnsupportedFile, match=r"review\.md: no such file"):
        parse_input(str(tmp_path / "review.md"), TEXT, echo)


def test_a_binary_file_is_not_text(tmp_path) -> None:
    blob = tmp_path / "weights.bin"
    blob.write_bytes(bytes(range(256)))
    with pytest.raises(LayerScopeError, match=r"weights\.bin: it is not a UTF-8 text file"):
        parse_input(str(blob), TEXT, echo)


def test_a_text_file_for_an_image_model_names_the_file(tmp_path) -> None:
    note = tmp_path / "note.md"
    note.write_text("hello", encoding="utf-8")
    with pytest.raises(LayerScopeError, match=r"note\.md: it is neither an image nor a \.npy array, and this "
                                              r"model takes images"):
        parse_input(str(note), IMAGE)


def test_a_text_longer_than_the_model_reads_says_so() -> None:
    from analyzers.explain.inputs import vocab_encoder
    from analyzers.samples import sample_model

    spec = sample_model("text_cnn_keras").input
    long = vocab_encoder(spec)(" ".join(["the film was brilliant"] * 20))  # 80 words
    assert len(long.tokens) == spec.max_len
    assert long.notes == (f"The text has 80 tokens; the model reads the first {spec.max_len}, the rest is left out.",)
    assert vocab_encoder(spec)("the film was brilliant").notes == ()


# --- hostile inputs: one sentence naming the file, never a library warning or a NaN answer -----------


def test_npy_with_nan_or_inf_is_refused_naming_the_file(tmp_path) -> None:
    from analyzers.explain.inputs import InputHint, npy_input

    path = tmp_path / "bad.npy"
    values = np.zeros((1, 4, 4), np.float32)
    values[0, 0, 0], values[0, 1, 1], values[0, 2, 2] = np.nan, np.inf, -np.inf
    np.save(path, values)
    with pytest.raises(LayerScopeError, match=r"^bad\.npy: it holds 1 NaN and 2 infinite values"):
        npy_input(path, InputHint("image", (1, 4, 4)))


def test_npy_values_beyond_the_models_dtype_are_refused(tmp_path) -> None:
    from analyzers.explain.inputs import InputHint, npy_input

    path = tmp_path / "huge.npy"
    np.save(path, np.full((3,), 1e300, np.float64))  # finite in float64, infinite as float32
    with pytest.raises(LayerScopeError, match=r"^huge\.npy: some of its values are beyond the range of float32"):
        npy_input(path, InputHint("tensor", (3,), "float32"))
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array([1.0, 3e19]))  # an integer beyond int64
    with pytest.raises(LayerScopeError, match=r"^ids\.npy: some of its values do not fit int64"):
        npy_input(ids, InputHint("text", (None,), "int64"))


def _png_header(path, width: int, height: int) -> None:
    """A PNG whose header declares width x height (the pixel data is a tiny, valid zlib stream)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 30_000])
def test_an_image_with_too_many_pixels_is_one_sentence_and_no_warning(tmp_path, side) -> None:
    import warnings

    from analyzers.explain.inputs import MAX_IMAGE_PIXELS, Preprocess, image_input

    path = tmp_path / f"bomb{side}.png"
    _png_header(path, side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        with pytest.raises(LayerScopeError, match=rf"^bomb{side}\.png: .*more than the {MAX_IMAGE_PIXELS:,}"):
            image_input(path, Preprocess(size=(28, 28), channels=1))


def test_a_named_pipe_as_input_is_refused_without_opening_it(tmp_path) -> None:
    import os

    from analyzers.explain.inputs import InputHint, Preprocess, image_input, npy_input

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(LayerScopeError, match=r"^pipe\.png: it is a named pipe"):
        image_input(fifo, Preprocess())
    with pytest.raises(LayerScopeError, match=r"^pipe\.png: it is a named pipe"):
        npy_input(fifo, InputHint())
