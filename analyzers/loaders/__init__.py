"""Format registry: one file per format; pick by extension, confirm by sniffing, then open.

A format's entry holds everything LayerScope knows about it (Netron's readers): how to recognise it,
how to read it, which runtime runs it (or the sentence saying why it cannot run), and how the Graph tab
draws it (its stand-in recipe). Sniffing reads a few bytes and imports no framework. Every loader is a
generator that yields `Progress` and returns a `ModelSummary`; a loader that cannot read a file raises
`UnsupportedFile` / `CorruptFile` with one sentence a user understands.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from analyzers.errors import CorruptFile, LayerScopeError, UnsupportedFile, sentence
from analyzers.loaders.safe_files import regular_file
from analyzers.summary import ModelSummary
from analyzers.summary.nametree import TreeTooLarge
from analyzers.tasks import Steps


@dataclass(frozen=True)
class LoadOptions:
    """What the user said about how to open a file."""

    trust: bool = False  # allow unpickling code (full nn.Module, Keras Lambda layers)
    arch: str | None = None  # "module:Class" or "path/file.py:Class" for a bare state_dict
    arch_kwargs: dict = field(default_factory=dict, compare=False, hash=False)
    names_only: bool = False  # HF folders: name tree from headers, no framework import


OpenFunc = Callable[[Path, LoadOptions], Steps[ModelSummary]]
SniffFunc = Callable[[Path], bool]


RUNTIMES = ("torch", "keras")
GRAPH_RECIPES = ("original", "weights-header", "onnx", "keras", "h5", "gguf", "torchscript", "torch-export",
                 "savedmodel", "none")


@dataclass(frozen=True)
class LoaderSpec:
    """A registered format: how to recognise it, open it, run it (or why not) and draw its graph."""

    name: str
    open: OpenFunc
    patterns: tuple[str, ...]
    priority: int
    sniff: SniffFunc | None
    folder: bool
    description: str
    runs: str | None = None  # "torch" | "keras": the runtime that runs it; None: inspect only
    why_not_run: str = ""  # the sentence the Explain tab and `run` show when `runs` is None
    graph: str = "original"  # the Graph tab's recipe (analyzers.graph.standin): what Netron is handed
    formats: tuple[str, ...] = ()  # the summary formats it writes (source.format), besides its name

    def matches_name(self, path: Path) -> bool:
        """True when the file name matches one of the loader's glob patterns."""
        name = path.name.lower()
        return any(fnmatch.fnmatch(name, p.lower()) for p in self.patterns)

    def sniffs(self, path: Path) -> bool:
        """Run the content sniffer; a sniffer that fails to read counts as no."""
        if self.sniff is None:
            return True
        try:
            return bool(self.sniff(path))
        except (OSError, ValueError, EOFError):
            return False


_REGISTRY: list[LoaderSpec] = []


def loader(
    name: str,
    *,
    patterns: tuple[str, ...] = (),
    priority: int = 0,
    sniff: SniffFunc | None = None,
    folder: bool = False,
    description: str = "",
    runs: str | None = None,
    why_not_run: str = "",
    graph: str = "original",
    formats: tuple[str, ...] = (),
) -> Callable[[OpenFunc], OpenFunc]:
    """Register `func` as the opener of format `name` (decorator), with how it runs and how it is drawn."""
    if runs is not None and runs not in RUNTIMES:
        raise ValueError(f"format {name}: runs must be one of {RUNTIMES}, not {runs!r}")
    if graph not in GRAPH_RECIPES:
        raise ValueError(f"format {name}: graph must be one of {GRAPH_RECIPES}, not {graph!r}")

    def register(func: OpenFunc) -> OpenFunc:
        _REGISTRY[:] = [s for s in _REGISTRY if s.name != name]
        reason = why_not_run or f"{description or name} files can be inspected here but not run"
        _REGISTRY.append(LoaderSpec(name, func, patterns, priority, sniff, folder, description or name, runs,
                                    reason if runs is None else "", graph, (name, *formats)))
        _REGISTRY.sort(key=lambda s: -s.priority)
        return func

    return register


def registered() -> list[LoaderSpec]:
    """All loaders, highest priority first."""
    _import_all()
    return list(_REGISTRY)


def find_loader(path: Path) -> LoaderSpec:
    """The loader for `path`: extension match confirmed by sniffing, then content sniffing alone."""
    _import_all()
    path = Path(path)
    if path.is_dir():
        for spec in _REGISTRY:
            if spec.folder and spec.sniffs(path):
                return spec
        raise UnsupportedFile(
            sentence(path, "this folder holds no model LayerScope can read "
                           "(expected a Hugging Face folder with config.json and weights, or a SavedModel)")
        )
    # Before any sniffer opens it: a named pipe would block the open, a device never ends, and a
    # symlink to itself is named as such rather than "no such file".
    regular_file(path)
    by_name = [s for s in _REGISTRY if not s.folder and s.matches_name(path)]
    for spec in by_name:
        if spec.sniffs(path):
            return spec
    others = [s for s in _REGISTRY if not s.folder and s not in by_name and s.sniff is not None]
    for spec in others:
        if spec.sniffs(path):
            return spec
    if path.stat().st_size == 0:
        raise CorruptFile(sentence(path, "the file is empty"))
    if by_name:
        raise CorruptFile(
            sentence(path, f"the name says {by_name[0].description} but the content is not; "
                           "the file is corrupted or truncated")
        )
    raise UnsupportedFile(sentence(path, f"'{path.suffix or path.name}' is not a model format LayerScope reads"))


def spec_for_format(fmt: str) -> LoaderSpec | None:
    """The registered format that writes summaries of format `fmt` (source.format), or None."""
    _import_all()
    return next((s for s in _REGISTRY if fmt in s.formats), None)


def runtime_for(path: Path) -> tuple[str, LoaderSpec]:
    """(runtime, format) that runs `path`; one sentence naming the file when its format cannot run."""
    spec = find_loader(Path(path))
    if spec.runs is None:
        raise UnsupportedFile(sentence(path, spec.why_not_run))
    return spec.runs, spec


def open_model(path: Path | str, options: LoadOptions | None = None) -> Steps[ModelSummary]:
    """Steps that open any supported file or folder into a ModelSummary."""
    path = Path(path).expanduser()
    spec = find_loader(path)
    return _guarded(spec, path, options or LoadOptions())


def read_summary(path: Path | str, options: LoadOptions | None = None) -> ModelSummary:
    """open_model run to completion, without progress (scripts and tests)."""
    from analyzers.tasks import drive

    return drive(open_model(path, options))


def _guarded(spec: LoaderSpec, path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Run a loader, turning any stray library error into one sentence about the file."""
    try:
        return (yield from spec.open(path, options))
    except LayerScopeError:
        raise
    except MemoryError:
        raise CorruptFile(sentence(path, "reading it ran out of memory; the header is probably corrupted")) from None
    except RecursionError:
        raise CorruptFile(sentence(path, "it nests deeper than LayerScope follows; the file is corrupted or "
                                         "built to exhaust a reader")) from None
    except TreeTooLarge as exc:
        raise CorruptFile(sentence(path, str(exc))) from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError, EOFError, AttributeError,
            UnicodeDecodeError, ImportError, ArithmeticError, AssertionError, LookupError) as exc:
        raise CorruptFile(sentence(path, f"could not read it as {spec.description} ({_brief(exc)})")) from exc


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200].rstrip(".")


def file_dialog_filter() -> str:
    """A Qt file-dialog filter string built from the registered patterns."""
    _import_all()
    parts = []
    all_patterns: list[str] = []
    for spec in _REGISTRY:
        if spec.folder or not spec.patterns:
            continue
        pats = [p for p in spec.patterns if "*" in p]
        all_patterns.extend(pats)
        parts.append(f"{spec.description} ({' '.join(pats)})")
    head = f"All models ({' '.join(dict.fromkeys(all_patterns))})"
    return ";;".join([head, *parts, "All files (*)"])


_imported = False


def _import_all() -> None:
    global _imported
    if _imported:
        return
    _imported = True
    # Every module of this package, found by looking: a new format is one new file. None imports a framework
    # at module level, so this stays cheap (~50 ms); helper modules register nothing.
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
