"""A checkpoint's tensor values, one tensor at a time, from every format whose data is on disk.

Statistics (issue 14) and weight drift (issue 12) stream through this: each `read(name)` returns one
tensor as numpy, memory-mapped where the format stores it raw (safetensors, torch.save zips, legacy
torch pickles, GGUF, ONNX external data), so a 7B checkpoint is walked in bounded memory. Nothing is
unpickled beyond the restricted reader; nothing from the file runs. Names are the summary's tensor
names (`ModelSummary.tensors`), so results roll up onto the layer tree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError, UnsupportedFile, sentence
from analyzers.summary import ModelSummary, TensorInfo

NUMPY_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32,
    "int16": np.int16, "int8": np.int8, "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16,
    "uint8": np.uint8, "bool": np.bool_,
}
SAFETENSORS_CODES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                     "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
                     "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
MAX_INMEMORY_BYTES = 4 << 30  # formats that cannot be memory-mapped (a compressed member, a legacy view)


class NotReadable(LayerScopeError):
    """This tensor's values cannot be read here (a quantisation with no dequantiser, a subclass tensor)."""


def numpy_view(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Bytes (uint8) of a tensor as numbers: numpy's own dtypes directly, bfloat16 and float8 through
    ml_dtypes when installed (TensorFlow brings it), else bfloat16 widened by hand."""
    if dtype in NUMPY_DTYPES:
        return raw.view(NUMPY_DTYPES[dtype])
    if dtype == "bfloat16":
        try:
            import ml_dtypes

            return raw.view(ml_dtypes.bfloat16)
        except ImportError:
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype.startswith("float8"):
        try:
            import ml_dtypes

            return raw.view(getattr(ml_dtypes, dtype))
        except (ImportError, AttributeError):
            pass
    raise NotReadable(f"{dtype} values cannot be read here")


def as_float(values: np.ndarray) -> np.ndarray:
    """Values as float32 (float64 stays float64): what statistics and drift compute on."""
    if values.dtype == np.float64:
        return values
    return np.asarray(values, dtype=np.float32)


@dataclass
class _Entry:
    """Where one tensor's values are: a file, a byte offset, dtype, shape, element strides (None: contiguous)."""

    info: TensorInfo
    file: Path
    offset: int
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    loader: Any = None  # a callable returning the array, for data that is not a plain byte span


class WeightSource:
    """The tensors of one checkpoint, read one at a time; use as a context manager."""

    def __init__(self, summary: ModelSummary, entries: dict[str, _Entry], notes: list[str] | None = None) -> None:
        self.summary = summary
        self.path = Path(summary.source.path)
        self._entries = entries
        self.notes = list(notes or [])
        self._closers: list[Any] = []

    def __enter__(self) -> WeightSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release open files."""
        for close in self._closers:
            close()
        self._closers.clear()

    def names(self) -> list[str]:
        """Every readable tensor, in the summary's order (tied duplicates once)."""
        return list(self._entries)

    def info(self, name: str) -> TensorInfo:
        """The summary's TensorInfo of `name`."""
        return self._entries[name].info

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def read(self, name: str) -> np.ndarray:
        """The values of `name` as a numpy array (memory-mapped where the file stores them raw)."""
        entry = self._entries.get(name)
        if entry is None:
            raise NotReadable(f"{self.path.name} has no readable tensor '{name}'")
        if entry.loader is not None:
            return entry.loader()
        itemsize = _itemsize(entry.dtype)
        count = _span_elements(entry.shape, entry.strides)
        raw = np.memmap(entry.file, dtype=np.uint8, mode="r", offset=entry.offset, shape=(count * itemsize,))
        values = numpy_view(raw, entry.dtype)
        if entry.strides is None:
            return values.reshape(entry.shape)
        byte_strides = tuple(s * values.itemsize for s in entry.strides)
        return np.lib.stride_tricks.as_strided(values, shape=entry.shape, strides=byte_strides, writeable=False)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, values) for every readable tensor, one at a time."""
        for name in self._entries:
            yield name, self.read(name)


def _itemsize(dtype: str) -> int:
    if dtype in NUMPY_DTYPES:
        return np.dtype(NUMPY_DTYPES[dtype]).itemsize
    if dtype == "bfloat16":
        return 2
    if dtype.startswith("float8"):
        return 1
    raise NotReadable(f"{dtype} values cannot be read here")


def _span_elements(shape: tuple[int, ...], strides: tuple[int, ...] | None) -> int:
    if strides is None:
        return math.prod(shape)
    if not shape or 0 in shape:
        return 0 if shape else 1
    return sum((s - 1) * st for s, st in zip(shape, strides)) + 1


def open_weights(summary: ModelSummary) -> WeightSource:
    """The WeightSource of a summarised checkpoint; one sentence when its format keeps no readable data."""
    from analyzers.loaders import spec_for_format

    fmt = summary.source.format
    spec = spec_for_format(fmt)
    name = spec.name if spec is not None else fmt
    readers = {"safetensors": _safetensors, "safetensors-index": _safetensors, "hf": _hf_folder,
               "pytorch": _pytorch, "keras": _keras, "h5-weights": _keras, "onnx": _onnx, "gguf": _gguf}
    reader = readers.get(name)
    if reader is None:
        raise UnsupportedFile(sentence(summary.source.path, f"LayerScope does not read the values of {fmt} files"))
    return reader(summary)


def _by_name(summary: ModelSummary) -> dict[str, TensorInfo]:
    """The summary's tensors by name, tied duplicates left out (they are read once, at their first owner)."""
    return {t.name: t for t in summary.tensors if t.counted}


# --- safetensors and Hugging Face folders ---------------------------------------------------------------


def _safetensors_files(files: list[Path], infos: dict[str, TensorInfo]) -> dict[str, _Entry]:
    from analyzers.loaders.safetensors_loader import read_header

    entries: dict[str, _Entry] = {}
    for file in files:
        header, data_start = read_header(file)
        for key, meta in header.items():
            if key == "__metadata__" or key not in infos or not isinstance(meta, dict):
                continue
            dtype = SAFETENSORS_CODES.get(str(meta.get("dtype")), infos[key].dtype)
            start = int(meta["data_offsets"][0])
            entries[key] = _Entry(infos[key], file, data_start + start, dtype, tuple(int(d) for d in meta["shape"]))
    return entries


def _safetensors(summary: ModelSummary) -> WeightSource:
    infos = _by_name(summary)
    files = [Path(f) for f in summary.source.files] or [Path(summary.source.path)]
    files = [f for f in files if f.name.endswith(".safetensors")]
    entries = _safetensors_files(files, infos)
    return WeightSource(summary, {n: entries[n] for n in infos if n in entries})


def _hf_folder(summary: ModelSummary) -> WeightSource:
    infos = _by_name(summary)
    files = [Path(f) for f in summary.source.files]
    entries = _safetensors_files([f for f in files if f.name.endswith(".safetensors")], infos)
    for file in files:
        if not file.name.endswith(".safetensors") and file.suffix in (".bin", ".pt", ".pth"):
            entries.update(_torch_entries(file, {k: v for k, v in infos.items() if k not in entries}))
    notes = [] if len(entries) == len(infos) else [f"{len(infos) - len(entries)} tensor(s) are not in the files."]
    return WeightSource(summary, {n: entries[n] for n in infos if n in entries}, notes)


# --- PyTorch --------------------------------------------------------------------------------------------


def _torch_stubs(obj: Any) -> dict[str, Any]:
    """name -> TensorStub of a state_dict, a training checkpoint or a pickled module (stand-ins walked)."""
    from analyzers.loaders.pytorch_loader import (
        flatten_tensors,
        is_module_standin,
        split_checkpoint,
        state_mapping,
    )
    from analyzers.loaders.torch_stubs import Opaque, TensorStub, key_text

    weights, _, _ = split_checkpoint(obj)
    if not is_module_standin(weights):
        mapping = state_mapping(weights) or state_mapping(obj) or {}
        return {k: v for k, v in flatten_tensors(mapping).items() if isinstance(v, TensorStub)}
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", weights)]
    seen: set[int] = set()
    while stack:
        path, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        state = module.state_dict() or {}
        prefix = f"{path}." if path else ""
        for group in ("_parameters", "_buffers"):
            tensors = state.get(group)
            for name, tensor in (tensors.items() if isinstance(tensors, dict) else ()):
                if isinstance(tensor, TensorStub):
                    out.setdefault(prefix + key_text(name), tensor)
        children = state.get("_modules")
        if isinstance(children, dict):
            stack.extend((prefix + key_text(n), m) for n, m in children.items() if isinstance(m, Opaque))
    return out


def _torch_entries(file: Path, infos: dict[str, TensorInfo]) -> dict[str, _Entry]:
    from analyzers.loaders.pytorch_loader import data_pickle_name, read_checkpoint
    from analyzers.loaders.safe_files import SafeZip

    checked = read_checkpoint(file)
    stubs = _torch_stubs(checked.obj)
    entries: dict[str, _Entry] = {}
    if checked.kind == "zip":
        with SafeZip(file) as zf:
            folder = data_pickle_name(file, zf.names)[: -len("data.pkl")] + "data/"
            spans = {n[len(folder):]: n for n in zf.names if n.startswith(folder)}
            for name, stub in stubs.items():
                info = infos.get(name)
                if info is None or stub.storage is None or stub.storage.key not in spans:
                    continue
                member = spans[stub.storage.key]
                span = zf.data_span(member)
                if span is None:
                    entries[name] = _Entry(info, file, 0, stub.dtype, stub.shape, None,
                                           _inflated(file, member, stub))
                    continue
                entries[name] = _Entry(info, file, span[0] + stub.offset * stub.itemsize, stub.dtype, stub.shape,
                                       tuple(stub.stride) if stub.stride else None)
    else:
        for name, stub in stubs.items():
            info = infos.get(name)
            if info is None or stub.storage is None or stub.storage.key not in checked.offsets:
                continue
            start = checked.offsets[stub.storage.key] + stub.offset * stub.itemsize
            entries[name] = _Entry(info, file, start, stub.dtype, stub.shape, tuple(stub.stride) if stub.stride else None)
    return entries


def _inflated(file: Path, member: str, stub: Any) -> Any:
    """A loader for a tensor whose storage record is compressed: the record is inflated (size-capped)."""

    def load() -> np.ndarray:
        from analyzers.loaders.safe_files import SafeZip

        with SafeZip(file) as zf:
            raw = np.frombuffer(zf.read(member, MAX_INMEMORY_BYTES), dtype=np.uint8)
        values = numpy_view(raw, stub.dtype)[stub.offset:]
        strides = tuple(s * values.itemsize for s in stub.stride) if stub.stride else None
        if strides is None:
            return values[: math.prod(stub.shape)].reshape(stub.shape)
        return np.lib.stride_tricks.as_strided(values, shape=stub.shape, strides=strides, writeable=False)

    return load


def _pytorch(summary: ModelSummary) -> WeightSource:
    infos = _by_name(summary)
    entries = _torch_entries(Path(summary.source.path), infos)
    missing = len(infos) - len(entries)
    notes = [f"{missing} tensor(s) have no readable values (quantised or subclass tensors)."] if missing else []
    return WeightSource(summary, {n: entries[n] for n in infos if n in entries}, notes)


# --- Keras (HDF5), ONNX, GGUF -----------------------------------------------------------------------------


def _keras(summary: ModelSummary) -> WeightSource:
    import h5py

    path = Path(summary.source.path)
    infos = {n: t for n, t in _by_name(summary).items() if t.location}
    source = WeightSource(summary, {})
    if path.suffix.lower() == ".keras":
        from analyzers.loaders.keras_loader import ZIP_WEIGHTS
        from analyzers.loaders.safe_files import SafeZip

        archive = SafeZip(path)
        stream = archive.window(ZIP_WEIGHTS)
        if stream is None:
            import io

            stream = io.BytesIO(archive.read(ZIP_WEIGHTS, MAX_INMEMORY_BYTES))
        handle = h5py.File(stream, "r")
        source._closers.extend([handle.close, archive.close])
    else:
        handle = h5py.File(path, "r")
        source._closers.append(handle.close)

    def loader(location: str) -> Any:
        return lambda: np.asarray(handle[location][()])

    source._entries = {n: _Entry(t, path, 0, t.dtype, t.shape, None, loader(t.location)) for n, t in infos.items()}
    return source


def _onnx(summary: ModelSummary) -> WeightSource:
    import onnx
    from onnx import numpy_helper

    path = Path(summary.source.path)
    model = onnx.load(str(path), load_external_data=False)
    inits: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for init in graph.initializer:
            inits.setdefault(init.name, init)
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        constants.setdefault(node.output[0], attr.t)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    graphs.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    graphs.extend(attr.graphs)
    entries: dict[str, _Entry] = {}
    for name, info in _by_name(summary).items():
        tensor = constants.get(info.location[len("constant:"):]) if info.location and \
            info.location.startswith("constant:") else inits.get(name)
        if tensor is None:
            continue
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            ext = {e.key: e.value for e in tensor.external_data}
            file = path.parent / ext.get("location", "")
            entries[name] = _Entry(info, file, int(ext.get("offset", 0)), info.dtype, info.shape)
        else:
            entries[name] = _Entry(info, path, 0, info.dtype, info.shape, None,
                                   (lambda t=tensor: numpy_helper.to_array(t)))
    return WeightSource(summary, entries)


def _gguf(summary: ModelSummary) -> WeightSource:
    import gguf

    from analyzers.graph.standin import gguf_data_offset
    from analyzers.loaders.gguf_loader import read_gguf_header

    path = Path(summary.source.path)
    _, _, tensors = read_gguf_header(path, gguf)
    start = gguf_data_offset(path)
    infos = _by_name(summary)
    entries: dict[str, _Entry] = {}
    for t in tensors:
        info = infos.get(t.name)
        if info is None:
            continue
        qtype = gguf.GGMLQuantizationType[t.type_name]
        shape = tuple(reversed(t.dims))

        def load(t: Any = t, qtype: Any = qtype, shape: tuple[int, ...] = shape) -> np.ndarray:
            raw = np.memmap(path, dtype=np.uint8, mode="r", offset=start + t.offset, shape=(t.n_bytes,))
            try:
                return np.asarray(gguf.quants.dequantize(raw, qtype)).reshape(shape)
            except (NotImplementedError, ValueError, KeyError) as exc:
                raise NotReadable(f"{qtype.name} cannot be dequantised here ({exc})") from None

        entries[t.name] = _Entry(info, path, 0, info.dtype, shape, None, load)
    return WeightSource(summary, entries)
