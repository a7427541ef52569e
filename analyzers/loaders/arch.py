"""`--arch module:Class` / `--arch path/file.py:Class`: give a bare state_dict its module tree."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.errors import ArchitectureError
from analyzers.summary import TensorInfo

# Prefixes that wrappers add to every key: DataParallel, Lightning, torch.compile, common trainers.
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.", "network.")


@dataclass(frozen=True)
class ArchSpec:
    """A parsed architecture spec: where the class lives and how to construct it."""

    target: str  # dotted module or path to a .py file
    class_name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        """The spec as the user wrote it."""
        return f"{self.target}:{self.class_name}"


def parse_arch(spec: str, kwargs: Mapping[str, Any] | None = None, base: Path | None = None) -> ArchSpec:
    """Split `module:Class` or `path/file.py:Class`; relative file paths resolve against `base`."""
    target, sep, cls = spec.rpartition(":")
    if not sep or not target or not cls or not cls.isidentifier():
        raise ArchitectureError(f"--arch '{spec}' must look like 'package.module:Class' or 'path/to/file.py:Class'.")
    if target.endswith(".py") and base is not None and not Path(target).is_absolute():
        candidate = base / target
        if candidate.exists():
            target = str(candidate)
    return ArchSpec(target, cls, dict(kwargs or {}))


def load_class(spec: ArchSpec) -> type:
    """Import the module or file of `spec` and return its class (user code runs: the user asked for it)."""
    try:
        if spec.target.endswith(".py") or "/" in spec.target or "\\" in spec.target:
            path = Path(spec.target).expanduser().resolve()
            if not path.exists():
                raise ArchitectureError(f"--arch: the file {spec.target} does not exist.")
            mod_name = f"layerscope_arch_{abs(hash(str(path)))}"
            module = sys.modules.get(mod_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(mod_name, path)
                if loader_spec is None or loader_spec.loader is None:
                    raise ArchitectureError(f"--arch: {spec.target} is not an importable Python file.")
                module = importlib.util.module_from_spec(loader_spec)
                sys.path.insert(0, str(path.parent))
                try:
                    sys.modules[mod_name] = module
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(mod_name, None)
                    raise
                finally:
                    sys.path.remove(str(path.parent))
        else:
            module = importlib.import_module(spec.target)
    except ArchitectureError:
        raise
    except Exception as exc:  # user code: any error becomes one sentence
        raise ArchitectureError(f"--arch: importing {spec.target} failed ({type(exc).__name__}: {exc}).") from exc
    cls = getattr(module, spec.class_name, None)
    if not isinstance(cls, type):
        raise ArchitectureError(f"--arch: {spec.target} has no class named {spec.class_name}.")
    return cls


def instantiate(spec: ArchSpec, device: str = "meta") -> Any:
    """Construct the architecture on `device` ("meta" allocates nothing)."""
    import torch

    cls = load_class(spec)
    try:
        with torch.device(device):
            return cls(**dict(spec.kwargs))
    except Exception as exc:
        raise ArchitectureError(
            f"--arch: constructing {spec.class_name}(**{dict(spec.kwargs)!r}) failed ({type(exc).__name__}: {exc}); "
            "pass constructor arguments with --arch-kwargs '{\"name\": value}'."
        ) from exc


@dataclass(frozen=True)
class StateMatch:
    """How a checkpoint's names line up with a module's state_dict names."""

    renamed: dict[str, str]  # checkpoint name -> module name, for every key that matched
    missing: tuple[str, ...]  # in the module, not in the file
    unexpected: tuple[str, ...]  # in the file, not in the module
    mismatched: tuple[str, ...]  # same name, different shape
    prefix_change: str = ""  # e.g. "-module." or "+bert."

    def describe(self) -> list[str]:
        """Sentences for the notes panel."""
        notes = []
        if self.prefix_change:
            notes.append(f"Checkpoint names were matched after the prefix change '{self.prefix_change}'.")
        if self.missing:
            notes.append(f"{len(self.missing)} tensor(s) of the architecture are missing from the file "
                         f"(e.g. {', '.join(self.missing[:3])}); they would be freshly initialised.")
        if self.unexpected:
            notes.append(f"{len(self.unexpected)} tensor(s) in the file are not in the architecture "
                         f"(e.g. {', '.join(self.unexpected[:3])}); they are listed in metadata, not in the tree.")
        if self.mismatched:
            notes.append(f"{len(self.mismatched)} tensor(s) differ in shape from the architecture "
                         f"(e.g. {', '.join(self.mismatched[:3])}); the file's shapes are shown.")
        return notes


def match_names(module_names: Mapping[str, tuple[int, ...]], stored: Mapping[str, TensorInfo],
                extra_prefixes: tuple[str, ...] = ()) -> StateMatch:
    """Match checkpoint names to module names, trying wrapper prefixes when the plain names do not fit."""
    candidates: list[tuple[str, dict[str, str]]] = [("", {n: n for n in stored})]
    for prefix in (*WRAPPER_PREFIXES, *extra_prefixes):
        p = prefix if prefix.endswith(".") else prefix + "."
        if any(n.startswith(p) for n in stored):
            candidates.append((f"-{p}", {n: n[len(p):] if n.startswith(p) else n for n in stored}))
        candidates.append((f"+{p}", {n: p + n for n in stored}))
    best_change, best_map = max(candidates, key=lambda c: sum(1 for v in c[1].values() if v in module_names))
    renamed = {k: v for k, v in best_map.items() if v in module_names}
    hit = set(renamed.values())
    missing = tuple(n for n in module_names if n not in hit)
    unexpected = tuple(k for k in stored if k not in renamed)
    mismatched = tuple(v for k, v in renamed.items() if tuple(stored[k].shape) != tuple(module_names[v]))
    return StateMatch(renamed, missing, unexpected, mismatched, best_change)
