"""Keras weights in HDF5 (`.weights.h5`, the weights inside a `.keras`, legacy `.h5`) read with h5py alone.

h5py reads the metadata only: groups, shapes, dtypes, how many bytes a dataset occupies; never
tensor data, never an attribute as a pickle. Keras 3 files store each layer's variables as numbered
datasets under `<object>/vars` (the layer's name in the group's `name` attribute); legacy files list
`layer_names` and per-layer `weight_names`. With a model config (`KerasWeights.config`), layers,
classes and frozen flags come from it; without one, classes are guessed from group names.

Hostile files: soft and external links are not followed (an external link can name a FIFO), hard-link
cycles are walked once, and a dataset that declares more bytes than the file stores for it is noted,
or refused when such datasets add up to far more than the file could ever hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, UnsupportedFile, printable, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import first_line
from analyzers.loaders.keras_config import (
    NAME_LIMIT,
    ConfigLayer,
    PathNamer,
    layer_attributes,
    parse_json_object,
)
from analyzers.loaders.keras_vars import (
    CHILD_CLASSES,
    CONFIG_ALIASES,
    class_from_snake,
    config_mismatch,
    is_known,
    legacy_trainable,
    looks_like_batch_norm,
    snake_case,
    variable_names,
)
from analyzers.loaders.safe_files import GiB, MiB
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.dtypes import canonical_dtype
from analyzers.summary.nametree import TreeBuilder
from analyzers.tasks import Progress, Steps

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MODEL_CONFIG_HINT = b"model_config"
HINT_WINDOW = 1 << 20  # legacy Keras writes model_config before the weights, near the start
# Top-level Keras 3 groups that hold training state, not model weights.
STATE_GROUPS = ("optimizer", "compile_metrics", "metrics", "loss")
MAX_DEFLATE_RATIO = 1100  # zlib cannot shrink data more than ~1032:1; a dataset claiming more is not backed
UNBACKED_REFUSE = GiB  # declared-but-unstored bytes past this (and 64x the file) refuse the file
CONFIG_ATTR_LIMIT = 64 * MiB


def hdf5_offset(path: Path) -> int | None:
    """Where the HDF5 superblock starts (0, or after a 512·2^n-byte user block), None when not HDF5."""
    size = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        while offset + len(HDF5_MAGIC) <= size and offset <= 64 * 1024 * 1024:
            f.seek(offset)
            if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                return offset
            offset = 512 if offset == 0 else offset * 2
    return None


def sniff_hdf5(path: Path) -> bool:
    """HDF5 signature at offset 0 or after a user block."""
    return hdf5_offset(path) is not None


def has_model_config_hint(path: Path) -> bool:
    """HDF5 whose first MiB names a `model_config` attribute: a legacy full-model Keras file."""
    offset = hdf5_offset(path)
    if offset is None:
        return False
    with path.open("rb") as f:
        f.seek(offset)
        return MODEL_CONFIG_HINT in f.read(HINT_WINDOW)


def open_hdf5(path: Path, source: Any = None) -> Any:
    """h5py.File for reading (`source`: a path or a seekable stream); a broken file becomes one sentence."""
    import h5py

    try:
        return h5py.File(source if source is not None else path, "r")
    except (OSError, ValueError) as exc:
        raise CorruptFile(sentence(path, f"HDF5 could not open it ({first_line(exc)}); the file is truncated "
                                         "or corrupted")) from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _names(attr: Any) -> list[str]:
    try:
        return [_text(v) for v in list(attr)]
    except TypeError:  # a scalar where a list belongs
        return [_text(attr)]


class HDF5Guard:
    """Walks an HDF5 file the safe way and audits what its datasets declare against what it stores."""

    def __init__(self, path: Path, file_size: int) -> None:
        self.path = path
        self.file_size = file_size
        self.seen: set[Any] = set()
        self.skipped_links = 0
        self.unbacked: list[tuple[str, tuple[int, ...], str, int, int]] = []

    def members(self, group: Any) -> Iterator[tuple[str, Any]]:
        """(key, group or dataset) below `group` through hard links only, each object once."""
        import h5py

        for key in group.keys():
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                self.skipped_links += 1
                continue
            obj = group[key]
            if not isinstance(obj, h5py.Group | h5py.Dataset) or obj.id in self.seen:
                continue
            self.seen.add(obj.id)
            yield key, obj

    def child(self, group: Any, key: str) -> Any:
        """`group[key]` when it is a hard-linked group or dataset (never following soft/external links)."""
        import h5py

        obj: Any = group
        for part in [p for p in key.split("/") if p]:
            if not isinstance(obj, h5py.Group) or part not in obj:
                return None
            if not isinstance(obj.get(part, getlink=True), h5py.HardLink):
                self.skipped_links += 1
                return None
            obj = obj[part]
        return obj if isinstance(obj, h5py.Group | h5py.Dataset) else None

    def is_group(self, obj: Any) -> bool:
        """True for an h5py Group."""
        import h5py

        return isinstance(obj, h5py.Group)

    def is_dataset(self, obj: Any) -> bool:
        """True for an h5py Dataset."""
        import h5py

        return isinstance(obj, h5py.Dataset)

    def tensor(self, name: str, ds: Any, *, trainable: bool = True, kind: str = "param") -> TensorInfo | None:
        """The TensorInfo of a numeric dataset (None for strings and opaque blobs), its storage audited."""
        shape = ds.shape
        if shape is None or ds.dtype.kind not in "biufc":
            return None
        shape = tuple(int(d) for d in shape)
        declared = math.prod(shape) * ds.dtype.itemsize
        if declared:
            stored = int(ds.id.get_storage_size())
            if stored == 0 or declared > stored * MAX_DEFLATE_RATIO:
                self.unbacked.append((name, shape, canonical_dtype(ds.dtype.name), declared, stored))
        return TensorInfo(name=name, shape=shape, dtype=canonical_dtype(ds.dtype.name), kind=kind,
                          trainable=trainable and kind == "param", location=ds.name)

    def notes(self) -> list[str]:
        """Notes on what the walk did not trust; refuses the file when its datasets cannot be real."""
        out: list[str] = []
        if self.unbacked:
            total = sum(d for *_, d, _ in self.unbacked)
            name, shape, dtype, declared, stored = max(self.unbacked, key=lambda u: u[3])
            what = (f"'{printable(name, 80)}' declares {shape} {dtype} ({declared:,} bytes) but the file stores "
                    f"{stored:,} bytes of it")
            if total > UNBACKED_REFUSE and total > 64 * self.file_size:
                raise CorruptFile(sentence(self.path, f"tensor {what}; a header that claims data the file cannot "
                                                      "hold is refused"))
            out.append(f"{len(self.unbacked)} tensor(s) declare data the file does not store (e.g. {what}); "
                       "their shapes come from the header alone.")
        if self.skipped_links:
            out.append(f"{self.skipped_links} soft or external HDF5 link(s) were not followed; LayerScope reads "
                       "only what the file itself holds.")
        return out


@dataclass
class _Owner:
    path: str
    layer: ConfigLayer | None
    cls: str
    trainable: bool


@dataclass
class KerasWeights:
    """Builds the layer tree of a Keras weights file, using the model config when there is one."""

    guard: HDF5Guard
    builder: TreeBuilder
    namer: PathNamer = field(default_factory=PathNamer)
    config: ConfigLayer | None = None
    paths: dict[int, str] = field(default_factory=dict)  # config layer id -> tree path (pre-placed nodes)
    unknown: dict[str, None] = field(default_factory=dict)
    guessed: list[str] = field(default_factory=list)
    mismatches: list[tuple[str, str]] = field(default_factory=list)  # (layer path, what disagrees)
    _used: dict[tuple[int, str], set[int]] = field(default_factory=dict)
    _nodes: dict[tuple[str, str], str] = field(default_factory=dict)

    def _top(self) -> _Owner:
        root = self.config
        return _Owner("", root, root.cls if root else "", root.trainable if root else True)

    # --- Keras 3 layout ---------------------------------------------------------------------

    def keras3(self, f: Any) -> list[str]:
        """Read a Keras 3 weights file: one node per saved object, its numbered variables named."""
        g = self.guard
        top = self._top()
        if self.config is None:
            root_vars = g.child(f, "vars")
            name = _text(root_vars.attrs.get("name", "")) if root_vars is not None else ""
            top.cls = class_from_snake(name) if is_known(class_from_snake(name)) else ""
            self.builder.add_node("", top.cls)
        state_seen = False
        stack: list[tuple[str, _Owner, Any, str, str | None]] = [("object", top, f, "", None)]
        while stack:
            kind, owner, group, key, container = stack.pop()
            if kind == "state":
                self._state(owner.path, group, key)
                continue
            if kind == "object":
                owner = owner if group is f else self._resolve(owner, key, group, container)
                vars_group = g.child(group, "vars")
                if vars_group is not None and g.is_group(vars_group):
                    self._add_vars(owner, vars_group)
                container = None
            todo = []
            for k, obj in g.members(group):
                if k == "vars" or not g.is_group(obj):
                    continue
                if group is f and k in STATE_GROUPS:
                    state_seen = True
                    todo.append(("state", owner, obj, k, None))
                elif g.child(obj, "vars") is not None:
                    todo.append(("object", owner, obj, k, container if kind == "container" else None))
                else:
                    todo.append(("container", owner, obj, k, container if kind == "container" else k))
            stack.extend(reversed(todo))
        notes = []
        if state_seen:
            notes.append("Optimizer and metric state in the file is shown as buffers, not parameters.")
        return notes

    def _match(self, parent: ConfigLayer, container: str, key: str, name: str) -> ConfigLayer | None:
        kids = parent.containers.get(container, [])
        used = self._used.setdefault((id(parent), container), set())
        found = next((k for k in kids if name and k.name == name and id(k) not in used), None)
        if found is None:  # files without name attributes: Keras names groups after classes, in list order
            counts: dict[str, int] = {}
            for kid in kids:
                base = snake_case(kid.cls)
                expected = base if base not in counts else f"{base}_{counts[base] + 1}"
                counts[base] = counts.get(base, -1) + 1
                if expected == key and id(kid) not in used:
                    found = kid
                    break
        if found is not None:
            used.add(id(found))
        return found

    def _resolve(self, owner: _Owner, key: str, group: Any, container: str | None) -> _Owner:
        vars_group = self.guard.child(group, "vars")
        name = printable(_text(vars_group.attrs.get("name", "")), NAME_LIMIT) if vars_group is not None else ""
        layer: ConfigLayer | None = None
        if owner.layer is not None:
            if container is not None:
                layer = self._match(owner.layer, container, key, name)
            else:
                layer = owner.layer.subs.get(key) or owner.layer.subs.get(CONFIG_ALIASES.get(key, ""))
        if layer is not None:
            cls = layer.cls
        elif container is not None:  # Keras names a listed object's group after its class
            cls = class_from_snake(key)
        else:
            guess = class_from_snake(name)
            cls = CHILD_CLASSES.get(owner.cls, {}).get(key.lstrip("_")) or (guess if is_known(guess) else "")
        path = self.paths.get(id(layer)) if layer is not None else None
        if path is None:
            path = self.namer.child(owner.path, name or (layer.name if layer else "") or key)
            self.builder.add_node(path, cls, layer_attributes(layer.config) if layer is not None else None)
        trainable = owner.trainable and (layer.trainable if layer is not None else True)
        return _Owner(path, layer, cls, trainable)

    def _add_vars(self, owner: _Owner, group: Any) -> None:
        g = self.guard
        items = [(k, ds) for k, ds in g.members(group) if g.is_dataset(ds)]
        items.sort(key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
        if not items:
            return
        shapes = [tuple(int(d) for d in ds.shape or ()) for _, ds in items]
        cfg = owner.layer.config if owner.layer is not None else None
        spec = variable_names(owner.cls, cfg, len(items))
        if spec is None and not owner.cls and owner.layer is None and looks_like_batch_norm(shapes):
            spec = variable_names("BatchNormalization", None, 4)
            self.guessed.append(owner.path)
            self.builder.add_node(owner.path, "BatchNormalization")
        if spec is None:
            self.unknown[owner.cls or f"'{printable(owner.path, 80)}'"] = None
        stored: dict[str, tuple[int, ...]] = {}
        for i, (key, ds) in enumerate(items):
            label, trainable = spec[i] if spec else (f"var_{key}" if key.isdigit() else key, True)
            t = g.tensor(self.namer.child(owner.path, label), ds, trainable=trainable and owner.trainable)
            if t is not None:
                self.builder.add_tensor(owner.path, t)
                stored[label] = t.shape
        said = config_mismatch(owner.cls, cfg, stored)
        if said:
            self.mismatches.append((owner.path, said))

    def _state(self, parent: str, group: Any, key: str) -> None:
        """Optimizer / metric state: every dataset below as a buffer, grouped by its HDF5 path."""
        g = self.guard
        stack = [(self.namer.child(parent, key), group)]
        while stack:
            path, grp = stack.pop()
            self.builder.add_node(path)
            kids = []
            for k, obj in g.members(grp):
                if g.is_dataset(obj):
                    t = g.tensor(self.namer.child(path, k), obj, kind="buffer")
                    if t is not None:
                        self.builder.add_tensor(path, t)
                elif k == "vars":
                    kids.append((path, obj))
                else:
                    kids.append((self.namer.child(path, k), obj))
            stack.extend(reversed(kids))

    # --- legacy layout ------------------------------------------------------------------------

    def legacy(self, f: Any) -> None:
        """Read a legacy Keras weights group: `layer_names`, then each layer's `weight_names`."""
        g = self.guard
        group = f if "layer_names" in f.attrs else g.child(f, "model_weights")
        if group is None or "layer_names" not in group.attrs:
            raise CorruptFile(sentence(self.guard.path, "its model_weights group lists no layer_names"))
        top = self._top()
        if self.config is None:
            self.builder.add_node("")
        by_name = {k.name: k for k in (self.config.containers.get("layers", []) if self.config else [])}
        made: dict[tuple[str, str], _Owner] = {}
        for raw in _names(group.attrs["layer_names"]):
            layer_name = printable(raw, NAME_LIMIT)
            layer = g.child(group, raw)
            if layer is None:
                raise CorruptFile(sentence(self.guard.path, f"layer '{printable(raw, 80)}' listed in layer_names "
                                                            "is missing"))
            owner = self._legacy_child(top, layer_name, by_name.get(layer_name), made)
            weight_names = _names(layer.attrs.get("weight_names", []))
            if not weight_names:  # some writers omit the attribute: take every dataset below the layer
                weight_names = [n for n, _ in self._datasets(layer)]
            for wname in weight_names:
                ds = g.child(layer, wname)
                if ds is None or not g.is_dataset(ds):
                    raise CorruptFile(sentence(self.guard.path, f"weight '{printable(wname, 80)}' of layer "
                                                                f"'{printable(raw, 80)}' is missing"))
                parts = [p.split(":")[0] for p in wname.split("/") if p]
                if len(parts) > 1 and parts[0] == raw:
                    parts = parts[1:]
                at = owner
                for part in parts[:-1]:
                    at = self._legacy_child(at, printable(part, NAME_LIMIT), None, made)
                label = printable(parts[-1], NAME_LIMIT) if parts else "weight"
                t = g.tensor(self.namer.child(at.path, label), ds,
                             trainable=at.trainable and legacy_trainable(at.cls, label))
                if t is not None:
                    self.builder.add_tensor(at.path, t)

    def _legacy_child(self, owner: _Owner, name: str, layer: ConfigLayer | None,
                      made: dict[tuple[str, str], _Owner]) -> _Owner:
        if (owner.path, name) in made:
            return made[(owner.path, name)]
        if layer is None and owner.layer is not None:
            nested = [k for kids in owner.layer.containers.values() for k in kids] + list(owner.layer.subs.values())
            layer = next((k for k in nested if k.name == name), None)
        if layer is not None:
            cls = layer.cls
        else:
            cls = CHILD_CLASSES.get(owner.cls, {}).get(name, "")
            guess = class_from_snake(name)
            cls = cls or (guess if is_known(guess) else "")
        path = self.paths.get(id(layer)) if layer is not None else None
        if path is None:
            path = self.namer.child(owner.path, name)
            self.builder.add_node(path, cls, layer_attributes(layer.config) if layer is not None else None)
        child = _Owner(path, layer, cls, owner.trainable and (layer.trainable if layer is not None else True))
        made[(owner.path, name)] = child
        return child

    def _datasets(self, group: Any) -> Iterator[tuple[str, Any]]:
        stack = [("", group)]
        while stack:
            base, grp = stack.pop()
            kids = []
            for key, obj in self.guard.members(grp):
                name = f"{base}/{key}" if base else key
                if self.guard.is_dataset(obj):
                    yield name, obj
                else:
                    kids.append((name, obj))
            stack.extend(reversed(kids))

    # --- anything else --------------------------------------------------------------------------

    def generic(self, f: Any) -> None:
        """Every numeric dataset of an HDF5 file as a tensor, grouped by its HDF5 path."""
        self.builder.add_node("")
        for name, ds in sorted(self._datasets(f)):
            parts = [printable(p.split(":")[0], NAME_LIMIT) for p in name.split("/") if p]
            owner = ""
            for part in parts[:-1]:
                owner = self._generic_node(owner, part)
            t = self.guard.tensor(self.namer.child(owner, parts[-1] if parts else "data"), ds)
            if t is not None:
                self.builder.add_tensor(owner, t)

    def _generic_node(self, parent: str, part: str) -> str:
        path = self._nodes.get((parent, part))
        if path is None:
            path = self._nodes[(parent, part)] = self.namer.child(parent, part)
            self.builder.add_node(path)
        return path

    def notes(self) -> list[str]:
        """What the reader inferred or could not tell, one note each."""
        out = []
        if self.unknown:
            listed = ", ".join(printable(c, 80) for c in list(self.unknown)[:5])
            out.append(f"Variables of layers whose class LayerScope does not know or the config does not describe "
                       f"({listed}{', …' if len(self.unknown) > 5 else ''}) keep numbered names (var_0, var_1 …) "
                       "and count as trainable unless the config freezes the layer.")
        if self.guessed:
            out.append(f"{len(self.guessed)} sub-layer(s) that the config does not describe (e.g. "
                       f"'{printable(self.guessed[0], 80)}') hold four equal-length vectors, the layout of "
                       "BatchNormalization: their moving statistics count as non-trainable.")
        if self.mismatches:
            where, said = self.mismatches[0]
            out.append(f"The config and the stored weights disagree for {len(self.mismatches)} layer(s) (e.g. "
                       f"'{printable(where, 80)}': {said}); the tree shows the stored shapes.")
        return out + self.guard.notes()


def layout(f: Any) -> str:
    """'keras3', 'legacy' or 'generic': how the weights in an open HDF5 file are organised."""
    import h5py

    if "layer_names" in f.attrs:
        return "legacy"
    mw = f.get("model_weights", getlink=True)
    if isinstance(mw, h5py.HardLink) and isinstance(f["model_weights"], h5py.Group) \
            and "layer_names" in f["model_weights"].attrs:
        return "legacy"
    for key in ("vars", "layers"):
        link = f.get(key, getlink=True)
        if isinstance(link, h5py.HardLink) and isinstance(f[key], h5py.Group):
            return "keras3"
    return "generic"


def model_config_of(f: Any, path: Path) -> dict | None:
    """The parsed `model_config` attribute of a legacy full-model file (None when absent); one sentence when
    it is not a JSON object (or nests too deep)."""
    if "model_config" not in f.attrs:
        return None
    raw = f.attrs["model_config"]
    text = _text(raw.item() if hasattr(raw, "item") and getattr(raw, "shape", None) == () else raw)
    if len(text) > CONFIG_ATTR_LIMIT:
        raise CorruptFile(sentence(path, f"its model_config attribute is {len(text):,} characters, more than the "
                                         f"{CONFIG_ATTR_LIMIT:,} LayerScope reads"))
    return parse_json_object(path, text, "its model_config attribute")


def weights_summary(path: Path, f: Any, fmt: str, file_size: int) -> ModelSummary:
    """Summary of a weights-only HDF5 file, whatever its layout (no config: classes guessed from names)."""
    kind = layout(f)
    metadata: dict[str, object] = {"hdf5_layout": kind}
    for key in ("keras_version", "backend"):
        if key in f.attrs:
            metadata[key] = printable(_text(f.attrs[key]), 80)
    reader = KerasWeights(HDF5Guard(path, file_size), TreeBuilder())
    notes: list[str] = []
    if kind == "keras3":
        notes += reader.keras3(f)
        notes.append("Keras 3 weights files number each layer's variables; names and trainability of common "
                     "layers are inferred (BatchNormalization moving statistics count as non-trainable).")
    elif kind == "legacy":
        reader.legacy(f)
        notes.append("Legacy Keras weights file: trainability is not stored; BatchNormalization moving "
                     "statistics count as non-trainable, every other weight as trainable.")
    else:
        reader.generic(f)
        notes.append("Not a Keras weights layout: every numeric dataset is shown as a tensor.")
    notes += reader.notes()
    root = reader.builder.build()
    if root.total.tensors == 0 and kind == "generic":
        raise UnsupportedFile(sentence(path, "this HDF5 file holds no numeric datasets, so no weights"))
    notes.append("A weights-only file stores no layer classes: types are guessed from group names where Keras "
                 "derived them from the class.")
    return ModelSummary(
        source=SourceInfo(str(path), fmt, "keras" if kind != "generic" else "", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=tuple(notes),
    )


@loader(
    "h5-weights",
    patterns=("*.weights.h5", "*.h5", "*.hdf5", "*.hdf", "*.he5"),
    priority=14,
    sniff=sniff_hdf5,
    description="HDF5 weights",
    why_not_run="a weights-only HDF5 file holds no architecture, so it cannot be run; open the full .keras model",
    graph="h5",
    formats=("keras-weights",),
)
def open_h5_weights(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """A weights-only HDF5 file as a tensor tree, without TensorFlow; full Keras models go to the Keras loader."""
    yield Progress(0, 2, f"Reading HDF5 groups of {path.name}")
    f = open_hdf5(path)
    try:
        if "model_config" in f.attrs:
            f.close()
            from analyzers.loaders.keras_loader import open_keras

            return (yield from open_keras(path, options))
        summary = weights_summary(path, f, "keras-weights", path.stat().st_size)
    finally:
        f.close()
    yield Progress(2, 2, "Done")
    return summary
