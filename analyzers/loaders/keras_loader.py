"""Keras 3 `.keras` archives and legacy full-model `.h5` files, read with json and h5py alone.

The layer tree, classes and hyper-parameters come from the saved config (`config.json`, or the
`model_config` attribute of a legacy `.h5`); tensors from the HDF5 weights (shapes and dtypes, never
data). Keras and TensorFlow are imported only to run a model (analyzers/runtime), never here, so
opening a Keras file costs what reading its metadata costs. Trainability follows the config's frozen
layers and each built-in class (BatchNormalization moving statistics are non-trainable parameters),
so totals equal Keras's `count_params()`. Nothing is unpickled, unmarshalled or extracted: a Lambda
layer's bytecode is noted (running the model needs trust), assets are listed, not read.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from analyzers.errors import CorruptFile, printable, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import decorate_tree
from analyzers.loaders.h5_weights import (
    HDF5Guard,
    KerasWeights,
    has_model_config_hint,
    layout,
    model_config_of,
    open_h5_weights,
    open_hdf5,
)
from analyzers.loaders.keras_config import (
    ConfigLayer,
    PathNamer,
    config_paths,
    has_python_lambda,
    layer_attributes,
    model_io,
    parse_json_object,
    parse_layers,
    python_code_layers,
)
from analyzers.loaders.keras_shapes import output_shapes
from analyzers.loaders.safe_files import METADATA_LIMIT, GiB, MiB, SafeZip, regular_file, zip_names
from analyzers.summary import ModelSummary, SourceInfo
from analyzers.summary.nametree import TreeBuilder
from analyzers.tasks import Progress, Steps

__all__ = ["has_python_lambda", "open_keras", "sniff_keras"]

ZIP_CONFIG = "config.json"
ZIP_METADATA = "metadata.json"
ZIP_WEIGHTS = "model.weights.h5"
METADATA_JSON_LIMIT = MiB
IN_MEMORY_LIMIT = 512 * MiB  # a compressed weights member up to this size is inflated into memory
EXTRACT_LIMIT = 64 * GiB  # past this a compressed weights member is refused, not extracted
MAX_WEIGHTS_RATIO = 100  # float weights barely compress; a member inflating 100x its stored size is a bomb


def sniff_keras(path: Path) -> bool:
    """A zip with config.json and model.weights.h5, or HDF5 carrying a `model_config` attribute."""
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        names = set(zip_names(path) or ())
        return ZIP_CONFIG in names and ZIP_WEIGHTS in names
    return has_model_config_hint(path)


@contextlib.contextmanager
def _weights_source(path: Path, archive: SafeZip) -> Iterator[tuple[IO[bytes] | str, int]]:
    """The archive's HDF5 weights as something h5py opens (a window on a stored member, the bytes of a
    small compressed one, or a size-capped temporary copy of a large one) and its size in bytes."""
    info = archive.infos[ZIP_WEIGHTS]
    window = archive.window(ZIP_WEIGHTS)
    if window is not None:
        with window:
            yield window, info.file_size
        return
    if info.file_size <= IN_MEMORY_LIMIT:
        yield io.BytesIO(archive.read(ZIP_WEIGHTS, IN_MEMORY_LIMIT)), info.file_size
        return
    if info.file_size > EXTRACT_LIMIT or info.file_size > MAX_WEIGHTS_RATIO * max(info.compress_size, 1):
        raise CorruptFile(sentence(path, f"its member '{ZIP_WEIGHTS}' inflates to {info.file_size:,} bytes from "
                                         f"{info.compress_size:,}; model weights do not compress like that, so it is "
                                         "refused before inflating"))
    folder = tempfile.mkdtemp(prefix="layerscope-keras-")
    try:
        if shutil.disk_usage(folder).free < info.file_size + 256 * MiB:
            raise CorruptFile(sentence(path, f"its compressed weights need {info.file_size:,} bytes of temporary "
                                             "disk space, more than is free"))
        target = os.path.join(folder, ZIP_WEIGHTS)
        try:
            with archive.zipfile.open(info) as src, open(target, "wb") as dst:
                left = info.file_size
                while chunk := src.read(min(8 * MiB, left + 1)):
                    left -= len(chunk)
                    if left < 0:
                        raise CorruptFile(sentence(path, f"its member '{ZIP_WEIGHTS}' inflates past its declared "
                                                         "size"))
                    dst.write(chunk)
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise CorruptFile(sentence(path, f"its member '{ZIP_WEIGHTS}' cannot be read "
                                             f"({printable(exc, 100)})")) from None
        yield target, info.file_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _archive_notes(archive: SafeZip) -> list[str]:
    notes = list(archive.findings)
    others = [n for n in archive.names if n not in (ZIP_CONFIG, ZIP_METADATA, ZIP_WEIGHTS) and not n.endswith("/")]
    if others:
        notes.append(f"The archive holds {len(others)} other member(s) (e.g. '{printable(others[0], 80)}'; assets "
                     "such as vocabularies); LayerScope lists them but never reads or unpickles them.")
    return notes


def _tree(path: Path, f: Any, config: dict, file_size: int) -> tuple[Any, dict[str, object], list[str]]:
    """The layer tree of a model config over its HDF5 weights, the config's metadata, and notes."""
    root = parse_layers(config)
    namer = PathNamer()
    builder = TreeBuilder(root.cls)
    paths = config_paths(root, namer)
    layers: list[ConfigLayer] = root.walk()
    for layer in layers:
        if id(layer) in paths:
            builder.add_node(paths[id(layer)], layer.cls, layer_attributes(layer.config))
    reader = KerasWeights(HDF5Guard(path, file_size), builder, namer, root, paths)
    notes: list[str] = []
    kind = layout(f) if f is not None else "none"
    if kind == "keras3":
        notes += reader.keras3(f)
    elif kind == "legacy":
        reader.legacy(f)
    elif kind == "generic" and f is not None and len(f.keys()):
        notes.append("The weights file has no Keras layout; only the config's layers are shown.")
    notes += reader.notes()
    shapes = output_shapes(root)
    by_path = {paths[i]: s for i, s in shapes.items() if i in paths}
    mismatched = {where for where, _ in reader.mismatches}  # their config-derived shapes are not shown
    tree = decorate_tree(builder.build(), output_shapes={p: s for p, s in by_path.items() if p not in mismatched})
    return tree, model_io(root, shapes), notes


def _code_notes(config: dict) -> tuple[list[str], list[str]]:
    names = python_code_layers(config)
    if not names:
        return [], []
    listed = ", ".join(f"'{n}'" for n in names[:3]) + (" …" if len(names) > 3 else "")
    return names, [f"Layer(s) {listed} carry marshalled Python bytecode (a Lambda layer or lambda function). "
                   "LayerScope reads it as text and never runs it; running the model executes it, so Run and "
                   "Explain need trust (--trust)."]


def _summary(path: Path, fmt: str, config: dict, metadata: dict, notes: list[str], f: Any,
             file_size: int) -> ModelSummary:
    code_layers, code_notes = _code_notes(config)
    root, io_meta, tree_notes = _tree(path, f, config, file_size)
    meta = {**metadata, **io_meta}
    if code_layers:
        meta["python_code_layers"] = code_layers
    return ModelSummary(
        source=SourceInfo(str(path), fmt, "keras", (str(path),), path.stat().st_size),
        root=root,
        metadata=meta,
        notes=tuple(notes + code_notes + tree_notes),
    )


def _open_archive(path: Path) -> ModelSummary:
    with SafeZip(path) as archive:
        if ZIP_CONFIG not in archive.infos:
            raise CorruptFile(sentence(path, "the .keras archive has no config.json"))
        config = parse_json_object(path, archive.read(ZIP_CONFIG, METADATA_LIMIT), "config.json in the .keras archive")
        metadata: dict[str, object] = {}
        if ZIP_METADATA in archive.infos:
            raw = parse_json_object(path, archive.read(ZIP_METADATA, METADATA_JSON_LIMIT),
                                    "metadata.json in the .keras archive")
            metadata = {k: printable(v, 80) for k, v in raw.items()
                        if k in ("keras_version", "date_saved") and isinstance(v, str)}
        notes = _archive_notes(archive)
        if ZIP_WEIGHTS not in archive.infos:
            notes.append("The archive holds no model.weights.h5: the layers come from the config, with no tensors.")
            return _summary(path, "keras", config, metadata, notes, None, 0)
        with _weights_source(path, archive) as (source, size):
            f = open_hdf5(path, source)
            try:
                return _summary(path, "keras", config, metadata, notes, f, size)
            finally:
                f.close()


@loader(
    "keras",
    patterns=("*.keras", "*.h5", "*.hdf5"),
    priority=16,
    sniff=sniff_keras,
    description="Keras model",
    runs="keras",
    graph="keras",
    formats=("keras-h5",),
)
def open_keras(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Read the saved config and the HDF5 weights' metadata; no Keras, no TensorFlow, nothing run."""
    yield Progress(0, 2, f"Reading the config of {path.name}")
    regular_file(path)
    with path.open("rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    if is_zip:
        summary = _open_archive(path)
    else:
        f = open_hdf5(path)
        try:
            config = model_config_of(f, path)
            if config is None:  # weights only, despite the name
                f.close()
                return (yield from open_h5_weights(path, options))
            metadata = {k: printable(v.decode() if isinstance(v, bytes) else v, 80) for k, v in f.attrs.items()
                        if k in ("keras_version", "backend")}
            yield Progress(1, 2, "Reading the weights' shapes")
            summary = _summary(path, "keras-h5", config, metadata, [], f, path.stat().st_size)
        finally:
            f.close()
    yield Progress(2, 2, "Done")
    return summary
