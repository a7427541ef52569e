"""The bundled sample zoo: read assets/samples.json and turn its sample inputs into model inputs.

Headless and light: numpy and PIL only (the QA tokenizer's `tokenizers` library inside a function).
Paths in the JSON file are relative to assets/; everything here hands out absolute paths.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
MANIFEST = ASSETS / "samples.json"
SCHEMA = "layerscope.samples/1"
DEFAULT_MODEL_ID = "digits_cnn_keras"
FILE_KINDS = ("image", "sequence", "latent")  # kinds whose samples are files; text and qa samples are literal
TOKEN_PATTERN = re.compile(r"[\w']+|[^\w\s]")


@dataclass(frozen=True)
class InputSpec:
    """What a sample model takes and how to make it from a PNG, a .npy file or a sentence."""

    kind: str  # "image" | "text" | "sequence" | "latent" | "qa"
    shape: tuple[int, ...]  # model input shape without the batch axis
    dtype: str  # "float32" | "int64" | "int32"
    layout: str | None = None  # "NHWC" | "NCHW" for images
    size: tuple[int, int] | None = None  # (H, W) for images
    channels: int | None = None
    scale: float = 1 / 255  # x = (pixel * scale - mean) / std
    mean: float = 0.0
    std: float = 1.0
    invert: bool = False  # always invert pixels (255 - p) before scaling
    vocab: Path | None = None  # one token per line; line index = id
    max_len: int | None = None
    lowercase: bool = True
    pad_id: int = 0
    unk_id: int = 1
    tokenizer: Path | None = None  # HF folder with tokenizer files (BERT QA)
    auto_invert: bool = False  # invert when the image's border is light (dark strokes on white paper)


@dataclass(frozen=True)
class SampleModel:
    """One bundled model: its file, what it does, the input it expects and what the build measured."""

    id: str
    title: str
    seed_problem: int
    file: Path
    framework: str  # "keras" | "torch"
    task: str
    labels: tuple[str, ...]
    input: InputSpec
    samples: tuple[str, ...]  # absolute paths (image, sequence, latent) or literal text / QA JSON
    default_sample: str
    arch: str | None  # --arch spec for torch state_dicts, relative to the repo root
    arch_kwargs: dict
    metric: str
    heldout: float | None
    params: int
    bar: float | None = None  # the least held-out score the build accepts
    heldout_size: int = 0  # examples the held-out score was measured on
    cue_words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # label -> words carrying it
    notes: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)  # task facts tests and views rely on


def _rel(value: str | None) -> Path | None:
    return None if value is None else (ASSETS / value).resolve()


def _spec_from_json(d: Mapping[str, Any]) -> InputSpec:
    size = d.get("size")
    return InputSpec(
        kind=d["kind"], shape=tuple(int(s) for s in d["shape"]), dtype=d["dtype"], layout=d.get("layout"),
        size=tuple(size) if size else None, channels=d.get("channels"), scale=float(d.get("scale", 1 / 255)),
        mean=float(d.get("mean", 0.0)), std=float(d.get("std", 1.0)), invert=bool(d.get("invert", False)),
        vocab=_rel(d.get("vocab")), max_len=d.get("max_len"), lowercase=bool(d.get("lowercase", True)),
        pad_id=int(d.get("pad_id", 0)), unk_id=int(d.get("unk_id", 1)), tokenizer=_rel(d.get("tokenizer")),
        auto_invert=bool(d.get("auto_invert", False)),
    )


def _model_from_json(d: Mapping[str, Any]) -> SampleModel:
    spec = _spec_from_json(d["input"])

    def sample(s: str) -> str:
        return str(_rel(s)) if spec.kind in FILE_KINDS else s

    return SampleModel(
        id=d["id"], title=d["title"], seed_problem=int(d["seed_problem"]), file=_rel(d["file"]),
        framework=d["framework"], task=d["task"], labels=tuple(d.get("labels", ())), input=spec,
        samples=tuple(sample(s) for s in d.get("samples", ())), default_sample=sample(d["default_sample"]),
        arch=d.get("arch"), arch_kwargs=dict(d.get("arch_kwargs") or {}), metric=d["metric"],
        heldout=d.get("heldout"), params=int(d["params"]), bar=d.get("bar"),
        heldout_size=int(d.get("heldout_size", 0)),
        cue_words={k: tuple(v) for k, v in (d.get("cue_words") or {}).items()},
        notes=d.get("notes", ""), extras=dict(d.get("extras") or {}),
    )


def load_manifest(path: Path | None = None) -> list[SampleModel]:
    """Every bundled sample model, in manifest order (default: <repo>/assets/samples.json)."""
    path = Path(path) if path is not None else MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "the sample manifest is missing; run `make samples`")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsupportedFile(sentence(path, f"the sample manifest is not valid JSON ({exc})")) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UnsupportedFile(sentence(path, f"the sample manifest does not declare schema {SCHEMA}"))
    return [_model_from_json(m) for m in doc.get("models", ())]


def find_sample_model(model_path: Path) -> SampleModel | None:
    """The manifest entry whose file is `model_path` (resolved), or None for a user's own model."""
    try:
        target = Path(model_path).expanduser().resolve()
        models = load_manifest()
    except (OSError, LayerScopeError):
        return None
    return next((m for m in models if m.file == target), None)


def sample_model(model_id: str) -> SampleModel:
    """The manifest entry called `model_id`."""
    for m in load_manifest():
        if m.id == model_id:
            return m
    raise LayerScopeError(f"There is no bundled sample model called '{model_id}'.")


def resolved_arch(entry: SampleModel) -> str | None:
    """The entry's --arch spec with its .py file made absolute, so it works from any working directory."""
    if not entry.arch:
        return None
    target, _, cls = entry.arch.rpartition(":")
    if target.endswith(".py") and not Path(target).is_absolute():
        target = str((REPO / target).resolve())
    return f"{target}:{cls}"


def default_model() -> SampleModel:
    """The model the app opens when started without a file: the Keras digits CNN."""
    return sample_model(DEFAULT_MODEL_ID)


# ---------------------------------------------------------------------------------------------
# Inputs


def prepare_image(path: Path, spec: InputSpec) -> np.ndarray:
    """A PNG/JPEG as the model's float32 input, shaped spec.shape (grey/RGB, resized, scaled, laid out)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    channels = spec.channels or (spec.shape[-1] if spec.layout == "NHWC" else spec.shape[0])
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if spec.size is not None and img.size != (spec.size[1], spec.size[0]):
                img = img.resize((spec.size[1], spec.size[0]), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "no such image")) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UnsupportedFile(sentence(path, f"it is not an image PIL can read ({exc})")) from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.invert or (spec.auto_invert and _light_border(pixels)):
        pixels = 255.0 - pixels
    x = (pixels * spec.scale - spec.mean) / spec.std
    if spec.layout == "NCHW":
        x = np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x.reshape(spec.shape), dtype=spec.dtype)


def _light_border(pixels: np.ndarray) -> bool:
    """True when the image's outer ring is mostly light: dark strokes on a light ground."""
    ring = np.concatenate([pixels[0].ravel(), pixels[-1].ravel(), pixels[:, 0].ravel(), pixels[:, -1].ravel()])
    return float(ring.mean()) > 127.5


_VOCABS: dict[Path, dict[str, int]] = {}


def read_vocab(path: Path) -> dict[str, int]:
    """token -> id from a one-token-per-line file (cached)."""
    path = Path(path)
    if path not in _VOCABS:
        lines = path.read_text(encoding="utf-8").splitlines()
        _VOCABS[path] = {tok: i for i, tok in enumerate(lines)}
    return _VOCABS[path]


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks: the tokenizer the text samples were trained with."""
    return TOKEN_PATTERN.findall(text.lower() if lowercase else text)


def encode_text(text: str, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
    """Token ids shaped spec.shape (padded with pad_id / truncated) and the kept tokens, for display."""
    if spec.vocab is None or spec.max_len is None:
        raise LayerScopeError("This model's input spec has no vocabulary or maximum length for text.")
    vocab = read_vocab(spec.vocab)
    tokens = tokenize(text, spec.lowercase)[: spec.max_len]
    ids = np.full(spec.max_len, spec.pad_id, dtype=spec.dtype)
    ids[: len(tokens)] = [vocab.get(t, spec.unk_id) for t in tokens]
    return ids.reshape(spec.shape), tokens


@dataclass(frozen=True)
class QAInputs:
    """A question/context pair as BERT inputs (each shaped (max_len,) int64) plus token texts and offsets."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: list[str]
    offsets: list[tuple[int, int]]  # character span of each token in its own text
    context_mask: np.ndarray  # True where a token belongs to the context (answers may only start there)


_TOKENIZERS: dict[tuple[Path, int], Any] = {}


def _qa_tokenizer(path: Path) -> Any:
    """The fast tokenizer saved in a model folder, cached until the file changes."""
    from tokenizers import Tokenizer

    try:
        key = (path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "the model folder has no tokenizer.json")) from None
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = Tokenizer.from_file(str(path))
    return _TOKENIZERS[key]


def encode_qa(question: str, context: str, spec: InputSpec) -> QAInputs:
    """Question and context through the model folder's fast tokenizer, padded/truncated to max_len."""
    if spec.tokenizer is None or spec.max_len is None:
        raise LayerScopeError("This model's input spec has no tokenizer folder or maximum length.")
    tok = _qa_tokenizer(Path(spec.tokenizer) / "tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(spec.max_len, strategy="only_second")
    enc = tok.encode(question, context)
    n = len(enc.ids)

    def padded(values: list[int]) -> np.ndarray:
        out = np.full(spec.max_len, 0, dtype=np.int64)
        out[:n] = values
        return out

    ids = np.full(spec.max_len, spec.pad_id, dtype=np.int64)
    ids[:n] = enc.ids
    seq_ids = enc.sequence_ids
    context_mask = np.zeros(spec.max_len, dtype=bool)
    context_mask[:n] = [s == 1 for s in seq_ids]
    return QAInputs(ids, padded(enc.type_ids), padded(enc.attention_mask), list(enc.tokens),
                    [tuple(o) for o in enc.offsets], context_mask)


def qa_answer(start_logits: np.ndarray, end_logits: np.ndarray, inputs: QAInputs, context: str,
              max_answer_tokens: int = 8) -> str:
    """The best context span (start <= end, at most max_answer_tokens) as text cut from `context`."""
    s = np.where(inputs.context_mask, np.asarray(start_logits, dtype=np.float64), -np.inf)
    e = np.where(inputs.context_mask, np.asarray(end_logits, dtype=np.float64), -np.inf)
    score = s[:, None] + e[None, :]
    i, j = np.indices(score.shape)
    score[(j < i) | (j - i >= max_answer_tokens)] = -np.inf
    start, end = np.unravel_index(int(np.argmax(score)), score.shape)
    return context[inputs.offsets[start][0]: inputs.offsets[end][1]]


def parse_qa_sample(sample: str) -> tuple[str, str]:
    """(question, context) from a QA sample: JSON {"question": ..., "context": ...}."""
    try:
        d = json.loads(sample)
        return str(d["question"]), str(d["context"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise LayerScopeError('A question-answering sample must be JSON: {"question": "...", "context": "..."}.') \
            from None


def prepare_input(entry: SampleModel, sample: str | None = None) -> np.ndarray:
    """One model input (no batch axis) from a sample path or text; the entry's default sample when None."""
    spec = entry.input
    sample = entry.default_sample if sample is None else sample
    if spec.kind == "image":
        return prepare_image(Path(sample), spec)
    if spec.kind in ("sequence", "latent"):
        path = Path(sample)
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UnsupportedFile(sentence(path, f"it is not a numpy .npy array ({exc})")) from None
        if tuple(x.shape) != spec.shape:
            raise LayerScopeError(sentence(path, f"it holds shape {tuple(x.shape)}, the model takes {spec.shape}"))
        return x.astype(spec.dtype)
    if spec.kind == "text":
        return encode_text(sample, spec)[0]
    if spec.kind == "qa":
        question, context = parse_qa_sample(sample)
        return encode_qa(question, context, spec).input_ids
    raise LayerScopeError(f"Sample model {entry.id} has an input kind '{spec.kind}' LayerScope cannot prepare.")


# ---------------------------------------------------------------------------------------------
# The zoo's own code and the README table


def zoo_module(name: str) -> ModuleType:
    """assets/zoo/<name>.py imported by path (data generators, model classes), cached."""
    mod_name = f"layerscope_zoo_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    path = ASSETS / "zoo" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None or not path.exists():
        raise LayerScopeError(f"The sample zoo has no module {path.name}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


# The seed document's "算法编程题库" (algorithm programming problems) the samples come from.
SEED_PROBLEMS = {
    1: "neural-network image classifier",
    2: "CNN text classifier",
    3: "self-attention sequence classifier",
    4: "GAN digit generator",
    5: "Transformer text classifier",
    6: "BERT question answering",
}


def _count(n: int) -> str:
    return f"{n:,}" if n < 10_000 else f"{n:,} ({n / 1e6:.2f} M)" if n >= 1_000_000 else f"{n:,} ({n / 1e3:.0f} k)"


def _score(metric: str, value: float) -> str:
    return f"{value:.3f}" if "auc" in metric.lower() else f"{value:.1%}"


def samples_markdown(models: list[SampleModel] | None = None) -> str:
    """The README table of the bundled samples, made from the manifest so it never goes stale."""
    models = load_manifest() if models is None else models
    rows = [
        "| Sample | Seed problem | Framework | Task | File | Parameters | Held-out score |",
        "|---|---|---|---|---|---:|---|",
    ]
    for m in models:
        rel = m.file.relative_to(REPO).as_posix() if m.file.is_relative_to(REPO) else m.file.name
        score = "—" if m.heldout is None else f"{m.metric} {_score(m.metric, m.heldout)}"
        framework = {"keras": "Keras", "torch": "PyTorch"}.get(m.framework, m.framework)
        seed = f"{m.seed_problem}. {SEED_PROBLEMS.get(m.seed_problem, '')}".rstrip(". ")
        rows.append(f"| {m.title} | {seed} | {framework} | {m.task} | `{rel}` | "
                    f"{_count(m.params)} | {score} |")
    return "\n".join(rows) + "\n"


def with_sample_arch(path: Path, options: LoadOptions) -> LoadOptions:
    """`options` plus the manifest's --arch when `path` is a bundled state_dict and none was given.

    A bundled PyTorch sample then opens as a typed tree (DigitCNN > conv, fc1 ...) without the user
    having to know where its class lives.
    """
    if options.arch or options.names_only:
        return options
    entry = find_sample_model(path)
    arch = resolved_arch(entry) if entry is not None else None
    if not arch:
        return options
    return replace(options, arch=arch, arch_kwargs=dict(entry.arch_kwargs or {}))


README_BEGIN = "<!-- samples:begin -->"
README_END = "<!-- samples:end -->"


def readme_with_samples(readme: str, table: str) -> str:
    """`readme` with the text between the samples markers replaced by `table` (unchanged without markers)."""
    if README_BEGIN not in readme or README_END not in readme:
        return readme
    head, rest = readme.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{table.rstrip()}\n{README_END}{tail}"
