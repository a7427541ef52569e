"""The bundled sample zoo's manifest (assets/samples.json): which models ship, what they take, their samples.

Light on purpose (json and dataclasses only, no numpy): the window asks it for the default model
before its first model opens. Paths in the JSON file are relative to assets/; everything here hands
out absolute paths.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from analyzers.errors import LayerScopeError, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "assets"
MANIFEST = ASSETS / "samples.json"
SCHEMA = "layerscope.samples/1"
DEFAULT_MODEL_ID = "digits_cnn_keras"
FILE_KINDS = ("image", "sequence", "latent")  # kinds whose samples are files; text and qa samples are literal


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
