"""Model inputs from what a user has: an image file, a sentence, a random tensor, a .npy array, a bundled sample.

Everything here is numpy (PIL for images); a text is encoded by the model's own tokenizer or vocabulary,
which the live model hands in as a `TextEncoder`. Each input keeps what the views need beside the
tensor: the picture the heat map is drawn over, or the tokens a text map colours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError, UnsupportedFile, sentence

MAX_IMAGE_PIXELS = 50_000_000  # a 7000 x 7000 photo; past this an input image is refused before decoding
MAX_NPY_BYTES = 1 << 30  # one input tensor
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
INPUT_KINDS = ("image", "text", "qa", "sequence", "latent", "tensor")
_SHAPE_SPLIT = re.compile(r"[x×,\s]+")


@dataclass(frozen=True)
class InputHint:
    """What a model takes, as far as it is known: kind, shape without the batch axis (None = free), dtype."""

    kind: str = "unknown"  # "image" | "text" | "qa" | "sequence" | "latent" | "tensor" | "unknown"
    shape: tuple[int | None, ...] | None = None
    dtype: str = "float32"
    layout: str = ""  # "NCHW" | "NHWC" for images

    def fits(self, shape: tuple[int, ...]) -> bool:
        """True when `shape` (no batch axis) matches the known dimensions."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(w is None or w == s for w, s in zip(self.shape, shape))

    def describe(self) -> str:
        """The shape as a user reads it, e.g. (1, 28, 28) or (any, 10)."""
        if self.shape is None:
            return "unknown"
        return "(" + ", ".join("any" if d is None else str(d) for d in self.shape) + ")"


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes the model's tensor; from the sample manifest or the user's panel.

    x = ((255 - p if invert else p) * scale - mean) / std, per channel when mean/std have one value each.
    """

    size: tuple[int, int] | None = None  # (H, W); None keeps the file's size
    channels: int = 3  # 1 (grey) or 3 (RGB)
    layout: str = "NCHW"  # "NCHW" (PyTorch) | "NHWC" (Keras)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    invert: bool = False
    auto_invert: bool = False  # invert when the border is light (dark strokes on white paper)
    dtype: str = "float32"

    @classmethod
    def from_spec(cls, spec: Any) -> Preprocess:
        """The preprocessing of a sample manifest's InputSpec (analyzers.samples)."""
        channels = spec.channels or (spec.shape[-1] if spec.layout == "NHWC" else spec.shape[0])
        return cls(size=tuple(spec.size) if spec.size else None, channels=int(channels),
                   layout=spec.layout or "NCHW", scale=float(spec.scale), mean=_floats(spec.mean),
                   std=_floats(spec.std), invert=bool(spec.invert), auto_invert=bool(getattr(spec, "auto_invert", False)),
                   dtype=spec.dtype)

    @classmethod
    def for_hint(cls, hint: InputHint) -> Preprocess:
        """A plain [0, 1] preprocessing sized to what the model takes (its size, channels and layout)."""
        layout = hint.layout or "NCHW"
        size = None
        channels = 3
        if hint.shape is not None and len(hint.shape) == 3:
            if layout == "NHWC":
                h, w, c = hint.shape
            else:
                c, h, w = hint.shape
            channels = c if c in (1, 3) else 3
            size = (h, w) if h and w else None
        return cls(size=size, channels=channels, layout=layout)

    def with_changes(self, **changes: Any) -> Preprocess:
        """A copy with some fields changed (the GUI's preprocessing panel)."""
        return replace(self, **changes)


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(float(v) for v in value)
    return (float(value),)


@dataclass(frozen=True, eq=False)
class ModelInput:
    """One model input (batch of one) and what the views need to draw it."""

    kind: str  # one of INPUT_KINDS
    array: np.ndarray  # the model's main input, batch axis included
    source: str  # what the user picked, for reports ("digit.png", "text", "random (1, 28, 28), seed 0")
    display: np.ndarray | None = None  # (H, W) or (H, W, 3) in [0, 1]: the picture a heat map is drawn over
    layout: str = ""  # "NCHW" | "NHWC" for images, "tokens" for text
    tokens: tuple[str, ...] = ()  # text: the token shown for each kept position
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)  # further inputs by name, batched
    baseline_ids: np.ndarray | None = None  # text: the reference sequence for IG (pads, special tokens kept)
    text: str = ""
    context: str = ""  # qa: the passage answers are cut from
    offsets: tuple[tuple[int, int], ...] = ()  # qa: character span of each token
    context_mask: np.ndarray | None = None  # qa: True where an answer may start
    preprocess: Preprocess | None = None
    notes: tuple[str, ...] = ()  # what the user should know about how the input was prepared (e.g. truncated)

    @property
    def shape(self) -> tuple[int, ...]:
        """The input's shape without the batch axis."""
        return tuple(int(d) for d in self.array.shape[1:])

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the input for reports."""
        out: dict[str, Any] = {"kind": self.kind, "source": self.source, "shape": list(self.shape),
                               "dtype": str(self.array.dtype)}
        if self.tokens:
            out["tokens"] = list(self.tokens)
        out["notes"] = list(self.notes)
        return out


# A callable that turns a text into a ModelInput (the model's tokenizer or vocabulary).
TextEncoder = Callable[[str], ModelInput]


# ---------------------------------------------------------------------------------------------
# Images


def read_image_pixels(path: Path, pre: Preprocess) -> np.ndarray:
    """(H, W, C) float32 pixels 0..255 after channel conversion, resize and inversion."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from analyzers.loaders.safe_files import regular_file

    path = Path(path)
    regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow's warning becomes our sentence
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _too_many_pixels(path, width, height)
                img = img.convert("L" if pre.channels == 1 else "RGB")
            if pre.size is not None and img.size != (pre.size[1], pre.size[0]):
                img = img.resize((pre.size[1], pre.size[0]), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "no such image file")) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UnsupportedFile(sentence(path, "the image declares more pixels than Pillow decodes safely, "
                                             f"more than the {MAX_IMAGE_PIXELS:,} LayerScope decodes; scale it down first")) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnsupportedFile(sentence(path, f"it is not an image PIL can read ({exc})")) from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pre.invert or (pre.auto_invert and _light_border(pixels)):
        pixels = 255.0 - pixels
    return pixels


def _too_many_pixels(path: Path, width: int, height: int) -> UnsupportedFile:
    return UnsupportedFile(sentence(path, f"the image is {width:,} x {height:,} pixels, more than the "
                                          f"{MAX_IMAGE_PIXELS:,} LayerScope decodes; scale it down first"))


def _light_border(pixels: np.ndarray) -> bool:
    ring = np.concatenate([pixels[0].ravel(), pixels[-1].ravel(), pixels[:, 0].ravel(), pixels[:, -1].ravel()])
    return float(ring.mean()) > 127.5


def image_input(path: Path | str, pre: Preprocess) -> ModelInput:
    """An image file through `pre`: the model tensor (batched) and the picture the map is drawn over."""
    path = Path(path)
    pixels = read_image_pixels(path, pre)
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    if np.any(std == 0):
        raise LayerScopeError("Preprocessing: std must not be 0.")
    x = (pixels * np.float32(pre.scale) - mean) / std
    if pre.layout == "NCHW":
        x = np.transpose(x, (2, 0, 1))
    display = pixels[:, :, 0] / 255.0 if pixels.shape[2] == 1 else pixels / 255.0
    return ModelInput("image", np.ascontiguousarray(x[None], dtype=pre.dtype), path.name,
                      display=np.clip(display, 0.0, 1.0).astype(np.float32), layout=pre.layout, preprocess=pre)


def display_for(array: np.ndarray, layout: str) -> np.ndarray | None:
    """A [0, 1] picture of an image-shaped tensor without its batch axis (min-max scaled), else None."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3:
        if layout == "NHWC" or (layout != "NCHW" and a.shape[-1] in (1, 3) and a.shape[0] not in (1, 3)):
            hwc = a
        else:
            hwc = np.transpose(a, (1, 2, 0))
        if hwc.shape[2] == 1:
            hwc = hwc[:, :, 0]
        elif hwc.shape[2] != 3:
            hwc = hwc.mean(axis=2)
        a = hwc
    elif a.ndim != 2:
        return None
    lo, hi = float(np.min(a)), float(np.max(a))
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------------
# Arrays


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x28x28', '1,28,28' or '(1, 28, 28)' as a tuple; one sentence when it is not a shape."""
    parts = [p for p in _SHAPE_SPLIT.split(text.strip().strip("()[]")) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise LayerScopeError(f"'{text}' is not a shape; write it like 1x28x28.") from None
    if not shape or any(d <= 0 for d in shape):
        raise LayerScopeError(f"'{text}' is not a shape of positive sizes; write it like 1x28x28.")
    if math.prod(shape) > 512 * 1024 * 1024:
        raise LayerScopeError(f"The shape {shape} is too large for one input.")
    return shape


def random_input(shape: tuple[int, ...], dtype: str = "float32", seed: int = 0, layout: str = "",
                 kind: str = "tensor", high: int | None = None) -> ModelInput:
    """A random tensor of `shape` (no batch axis): standard normal, or integers below `high` for ids."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        array = rng.integers(0, max(1, high or 2), size=(1, *shape)).astype(dtype)
    else:
        array = rng.standard_normal((1, *shape)).astype(dtype)
    display = display_for(array[0], layout) if kind in ("image", "tensor") else None
    return ModelInput(kind, array, f"random {tuple(shape)}, seed {seed}", display=display, layout=layout)


def npy_input(path: Path | str, hint: InputHint | None = None) -> ModelInput:
    """A .npy array used as the input tensor as it is, with the batch axis added."""
    from analyzers.loaders.safe_files import regular_file

    path = Path(path)
    if regular_file(path).st_size > MAX_NPY_BYTES:
        raise UnsupportedFile(sentence(path, f"it is larger than the {MAX_NPY_BYTES:,} bytes one input may take"))
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "no such file")) from None
    except (OSError, ValueError) as exc:
        raise UnsupportedFile(sentence(path, f"it is not a numpy .npy array ({exc})")) from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise UnsupportedFile(sentence(path, f"it holds {array.dtype} values, not numbers"))
    hint = hint or InputHint()
    if not hint.fits(tuple(array.shape)):
        raise LayerScopeError(sentence(path, f"it holds shape {tuple(array.shape)}, but the model takes "
                                             f"{hint.describe()} (without the batch axis)"))
    dtype = hint.dtype if hint.kind != "unknown" else str(array.dtype)
    if np.issubdtype(np.dtype(dtype), np.integer) and array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise LayerScopeError(sentence(path, "it holds fractions, but the model takes integer token ids"))
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise LayerScopeError(sentence(path, f"it holds {nan:,} NaN and {inf:,} infinite values; a model's answer "
                                             "on them means nothing, so it is not run"))
    with np.errstate(over="ignore", invalid="ignore"):
        batched = np.ascontiguousarray(array[None]).astype(dtype, copy=False)
    if batched.dtype.kind == "f" and not np.isfinite(batched).all():
        raise LayerScopeError(sentence(path, f"some of its values are beyond the range of {dtype}, which the model "
                                             "takes; they would become infinite"))
    if batched.dtype.kind in "iu" and array.dtype.kind in "iuf" and not np.array_equal(batched[0], array):
        raise LayerScopeError(sentence(path, f"some of its values do not fit {dtype}, which the model takes"))
    kind = hint.kind if hint.kind in INPUT_KINDS else "tensor"
    display = display_for(array, hint.layout) if kind in ("image", "tensor") else None
    return ModelInput(kind if kind != "qa" else "tensor", batched, path.name, display=display, layout=hint.layout)


# ---------------------------------------------------------------------------------------------
# Text


def truncation_notes(total: int, kept: int) -> tuple[str, ...]:
    """A note when a text had more tokens than the model reads."""
    if total <= kept:
        return ()
    return (f"The text has {total} tokens; the model reads the first {kept}, the rest is left out.",)


def vocab_encoder(spec: Any) -> TextEncoder:
    """A TextEncoder for a sample model with a one-word-per-line vocabulary (analyzers.samples)."""
    from analyzers import samples

    def encode(text: str) -> ModelInput:
        if not text.strip():
            raise LayerScopeError("The text is empty.")
        ids, tokens = samples.encode_text(text, spec)
        ids = np.asarray(ids)
        baseline = np.full_like(ids, spec.pad_id)
        total = len(samples.tokenize(text, spec.lowercase))
        return ModelInput("text", ids[None], "text", layout="tokens", tokens=tuple(tokens), baseline_ids=baseline[None],
                          text=text, notes=truncation_notes(total, len(tokens)))

    return encode


def split_question(text: str) -> tuple[str, str]:
    """(question, context) from 'question || context', a JSON sample, or 'question? context'."""
    stripped = text.strip()
    if stripped.startswith("{"):
        from analyzers.samples import parse_qa_sample

        return parse_qa_sample(stripped)
    for sep in ("||", "\n"):
        if sep in stripped:
            q, c = stripped.split(sep, 1)
            if q.strip() and c.strip():
                return q.strip(), c.strip()
    if "?" in stripped:
        q, c = stripped.split("?", 1)
        if c.strip():
            return q.strip() + "?", c.strip()
    raise LayerScopeError("A question-answering model needs a question and a context: "
                          "write 'question || context'.")


def qa_encoder(spec: Any) -> TextEncoder:
    """A TextEncoder for the bundled BERT QA sample: question and context through its fast tokenizer."""
    from analyzers import samples

    def encode(text: str) -> ModelInput:
        question, context = split_question(text)
        enc = samples.encode_qa(question, context, spec)
        return qa_input(text, context, enc.input_ids, enc.attention_mask, enc.token_type_ids, enc.tokens,
                         enc.offsets, enc.context_mask, spec.pad_id)

    return encode


def qa_input(text: str, context: str, ids: np.ndarray, mask: np.ndarray, types: np.ndarray, tokens: list[str],
             offsets: list[tuple[int, int]], context_mask: np.ndarray, pad_id: int) -> ModelInput:
    """A question/context pair already tokenised, as a ModelInput (IG's baseline keeps [CLS]/[SEP], pads the rest)."""
    special = np.zeros(ids.shape[0], dtype=bool)
    special[: len(tokens)] = [t in ("[CLS]", "[SEP]", "<s>", "</s>") for t in tokens]
    baseline = np.where(special | (mask == 0), ids, pad_id).astype(ids.dtype)
    return ModelInput("qa", ids[None], "text", layout="tokens", tokens=tuple(tokens),
                      extras={"attention_mask": mask[None], "token_type_ids": types[None]},
                      baseline_ids=baseline[None], text=text, context=context,
                      offsets=tuple(tuple(o) for o in offsets), context_mask=context_mask)


# ---------------------------------------------------------------------------------------------
# What the user typed: --input VALUE


def looks_like_path(value: str) -> bool:
    """True when `value` names a file rather than being a sentence (a known suffix, or a path separator)."""
    v = value.strip()
    if "\n" in v or len(v) > 400:
        return False
    suffix = Path(v).suffix.lower()
    return suffix in (*IMAGE_SUFFIXES, ".npy", ".txt") or (("/" in v or "\\" in v) and " " not in v)


def _existing_file(value: str) -> Path | None:
    """The file `value` names, when it is one (a sentence that happens to name no file gives None)."""
    if "\n" in value or len(value) > 400:
        return None
    try:
        path = Path(value).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):  # a name too long for the file system, an embedded NUL
        return None


def parse_input(value: str, hint: InputHint, encoder: TextEncoder | None = None,
                preprocess: Preprocess | None = None, seed: int = 0, vocab_size: int | None = None) -> ModelInput:
    """The input named by `--input VALUE`: an image, a .npy, 'random[:SHAPE]', a text file or a sentence.

    An existing file is read by its suffix: .npy as the tensor, an image suffix as an image, any other
    suffix as text (for a text or QA model). A string that only looks like a path is a missing file."""
    v = value.strip()
    if not v:
        raise LayerScopeError("--input is empty; give an image, a .npy array, a text or random:SHAPE.")
    if v == "random" or v.startswith("random:"):
        return random_for(hint, v.partition(":")[2] or None, seed, vocab_size)
    path = _existing_file(v)
    if path is None:
        if looks_like_path(v):
            raise UnsupportedFile(sentence(Path(v).expanduser(), "no such file"))
        return text_for(v, hint, encoder)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return npy_input(path, hint)
    if suffix in IMAGE_SUFFIXES:
        if hint.kind not in ("image", "unknown", "tensor"):
            raise LayerScopeError(sentence(path, f"it is an image, but this model takes {_kind_words(hint.kind)}; "
                                                 f"give {_what_to_give(hint.kind)}"))
        pre = preprocess or Preprocess.for_hint(hint)
        result = image_input(path, pre)
        if not hint.fits(result.shape):
            raise LayerScopeError(sentence(path, f"after preprocessing it has shape {result.shape}, but the model "
                                                 f"takes {hint.describe()}; adjust the size or channels"))
        return result
    if hint.kind not in ("text", "qa", "unknown"):
        raise LayerScopeError(sentence(path, f"it is neither an image nor a .npy array, and this model takes "
                                             f"{_kind_words(hint.kind)}; give {_what_to_give(hint.kind)}"))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise LayerScopeError(sentence(path, "it is not a UTF-8 text file, an image or a .npy array")) from None
    except OSError as exc:
        raise UnsupportedFile(sentence(path, f"it cannot be read ({exc.strerror or exc})")) from None
    return text_for(text, hint, encoder)


def text_for(text: str, hint: InputHint, encoder: TextEncoder | None) -> ModelInput:
    """Encode a text, or say in one sentence why this model cannot take one."""
    if hint.kind not in ("text", "qa", "unknown") or (encoder is None and hint.kind == "unknown"):
        raise LayerScopeError(f"The input is neither a file nor random:SHAPE, so it was read as text, but this "
                              f"model takes {_kind_words(hint.kind)}; give {_what_to_give(hint.kind)}.")
    if encoder is None:
        raise LayerScopeError("This model has no tokenizer or vocabulary LayerScope can find; give the token ids "
                              "as a .npy array instead of a text.")
    return encoder(text)


def random_for(hint: InputHint, shape_text: str | None, seed: int = 0, vocab_size: int | None = None) -> ModelInput:
    """A random input shaped by `shape_text` or, when None, by what the model takes."""
    if shape_text:
        shape = parse_shape(shape_text)
        if not hint.fits(shape):
            raise LayerScopeError(f"random:{shape_text} does not fit this model, which takes {hint.describe()}.")
    elif hint.shape is not None and all(d is not None for d in hint.shape):
        shape = tuple(int(d) for d in hint.shape if d is not None)
    else:
        example = "random:16 (16 token ids)" if hint.kind in ("text", "qa") or "int" in hint.dtype else "random:1x28x28"
        raise LayerScopeError(f"The model's input shape is not fully known ({hint.describe()}); "
                              f"give one, e.g. {example}.")
    kind = hint.kind if hint.kind in ("image", "sequence", "latent", "text") else "tensor"
    return random_input(shape, hint.dtype, seed, hint.layout, kind, high=vocab_size)


def _kind_words(kind: str) -> str:
    return {"image": "images", "text": "text", "qa": "a question and a context", "sequence": "sequences of numbers",
            "latent": "latent vectors", "tensor": "tensors"}.get(kind, "tensors")


def _what_to_give(kind: str) -> str:
    """What a user can pass as --input to a model that takes `kind`."""
    any_tensor = "an image file, a .npy array or random:SHAPE"
    return {"image": any_tensor, "unknown": any_tensor, "tensor": any_tensor, "text": "a text or a text file",
            "qa": "'question || context' or a text file"}.get(kind, "a .npy array or random:SHAPE")


def sample_input(entry: Any, sample: str | None = None) -> ModelInput:
    """A bundled sample of a zoo model (its default when `sample` is None) as a ModelInput."""
    spec = entry.input
    sample = entry.default_sample if sample is None else sample
    if spec.kind == "image":
        return image_input(Path(sample), Preprocess.from_spec(spec))
    if spec.kind in ("sequence", "latent"):
        hint = InputHint(spec.kind, tuple(spec.shape), spec.dtype, spec.layout or "")
        return replace(npy_input(Path(sample), hint), kind=spec.kind)
    if spec.kind == "text":
        return vocab_encoder(spec)(sample)
    if spec.kind == "qa":
        return qa_encoder(spec)(sample)
    raise LayerScopeError(f"Sample model {entry.id} has an input kind '{spec.kind}' LayerScope cannot prepare.")


def sample_label(entry: Any, sample: str) -> str:
    """A short name for a bundled sample in the picker: the file name, or the start of the text."""
    if entry.input.kind in ("image", "sequence", "latent"):
        return Path(sample).name
    text = sample
    if entry.input.kind == "qa":
        try:
            text = split_question(sample)[0]
        except LayerScopeError:
            pass
    return text if len(text) <= 60 else text[:57] + "…"


def check_input_fits(hint: InputHint, inp: ModelInput, vocab_size: int | None = None) -> None:
    """One sentence when an input cannot go into a model that takes `hint` (wrong kind or shape, or token ids
    outside a vocabulary of `vocab_size`: an embedding would fail with an IndexError, or read another row)."""
    ids = np.asarray(inp.array)
    if vocab_size and ids.dtype.kind in "iu" and ids.size and (inp.kind in ("text", "qa") or hint.kind in ("text", "qa")):
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise LayerScopeError(f"{inp.source}: token id {low if low < 0 else high} is outside the vocabulary "
                                  f"of this model (0 to {vocab_size - 1}).")
    if hint.kind == "image" and inp.kind in ("text", "qa"):
        raise LayerScopeError("This model takes images, but the input is text.")
    if hint.kind in ("text", "qa") and inp.kind == "image":
        raise LayerScopeError("This model takes text, but the input is an image.")
    if not hint.fits(inp.shape) and inp.kind not in ("text", "qa"):
        raise LayerScopeError(f"The input has shape {inp.shape}, but the model takes {hint.describe()} "
                              "(without the batch axis).")
