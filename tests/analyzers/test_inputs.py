"""--input VALUE: an existing file is read by its suffix; a path-looking string that names no file is an error."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.errors import LayerScopeError, UnsupportedFile
from analyzers.inputs import InputHint, ModelInput, parse_input

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
    from analyzers.inputs import vocab_encoder
    from analyzers.samples import sample_model

    spec = sample_model("text_cnn_keras").input
    long = vocab_encoder(spec)(" ".join(["the film was brilliant"] * 20))  # 80 words
    assert len(long.tokens) == spec.max_len
    assert long.notes == (f"The text has 80 tokens; the model reads the first {spec.max_len}, the rest is left out.",)
    assert vocab_encoder(spec)("the film was brilliant").notes == ()
