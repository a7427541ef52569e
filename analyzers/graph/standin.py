"""Weights-free stand-ins that Netron can draw, so the Graph tab never hands it a large checkpoint.

Netron's server reads whole files and its viewer fetches them whole (a 7B safetensors folder:
13.4 GB RSS, no graph after 150 s). Each format gets the cheapest file Netron draws the same
graph from, checked by loading each one in Netron 9.3:

- safetensors (file, sharded index, HF folder): the headers merged into one, every tensor zero
  bytes long; Netron draws one box per module with its tensors' shapes and dtypes.
- PyTorch state_dicts (.pt zip or legacy pickle, HF .bin shards, trusted modules): the same
  safetensors header written from the summary's names, shapes and dtypes.
- ONNX: the model with every tensor's data cleared (dims and type kept): the real graph.
- Keras .keras / .h5: the config and an HDF5 file whose datasets keep shape and dtype but were
  never written (HDF5 allocates no space for them): the real layer graph with weight shapes.
- GGUF: the header and tensor table only (Netron draws the architecture from the metadata).
- TorchScript: the archive with every storage declared zero elements long: the traced graph.
- torch.export .pt2: the archive with the weight files emptied: the exported graph.
- SavedModel: the serving signature's function as a SavedModel of its own (Netron opened the
  original on `__saved_model_init_op` and laid out the variables' bookkeeping for 15-30 s).

A small single file (under `SMALL_FILE_BYTES`) is handed over as it is: Netron then shows weight
values too. Everything here reads headers or metadata only and runs in a worker thread.
"""

from __future__ import annotations

import json
import os
import pickletools
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from analyzers.errors import LayerScopeError, printable, sentence
from analyzers.summary import ModelSummary
from analyzers.summary.nametree import natural_key
from analyzers.tasks import Progress, Steps, drive

ROOT = Path(__file__).resolve().parents[2]
SMALL_FILE_BYTES = 64 * 1024 * 1024
KEEP_DATA_BYTES = 1024  # tensors this small keep their data (scalars, counters) where a format allows it

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GGUF_MAGIC = b"GGUF"

# Canonical dtype -> safetensors header code (the codes Netron's safetensors reader accepts).
SAFETENSORS_CODES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
}


@dataclass(frozen=True)
class StandIn:
    """What the Graph tab hands Netron for a model: a file to serve, or the reason there is none."""

    path: Path | None
    reason: str  # why there is no graph (path None), or what Netron is shown (path set)
    kind: str = "none"  # "original" | "standin" | "none"
    extra_files: Mapping[str, Path] = field(default_factory=dict)  # URL path -> file Netron may also fetch
    display_name: str = ""
    show_names: bool = False  # Netron draws these as boxes titled "Module": show each box's name


def make_standin(summary: ModelSummary, out_dir: Path | str, max_original_bytes: int = SMALL_FILE_BYTES) -> StandIn:
    """Build (or pick) the file Netron draws for `summary`, writing stand-ins into `out_dir`."""
    return drive(standin_steps(summary, out_dir, max_original_bytes))


def standin_steps(summary: ModelSummary, out_dir: Path | str,
                  max_original_bytes: int = SMALL_FILE_BYTES) -> Steps[StandIn]:
    """Steps of make_standin; yields Progress per file read, so a worker can show it and cancel."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(summary.source.path)
    if not source.exists():
        return StandIn(None, sentence(source, "the file is no longer there, so there is no graph to draw"))
    recipe = graph_format(summary)
    name = source.name
    yield Progress(0, 1, f"Preparing the graph of {name}")
    try:
        if recipe == "savedmodel":
            return (yield from _savedmodel(source, out, max_original_bytes))
        if recipe == "weights-header":
            return (yield from _weights_header(summary, source, out, max_original_bytes))
        if recipe == "none" or not source.is_file():
            return StandIn(None, sentence(source, "Netron has no viewer for this kind of model"))
        if source.stat().st_size <= max_original_bytes:
            return _original(source)
        kind = "h5" if recipe == "keras" and _is_hdf5(source) else recipe  # a legacy .h5 Keras model
        yield Progress(0, 1, f"Writing a weights-free copy of {name}")
        writer = WRITERS.get(kind)
        if writer is None:
            return StandIn(None, sentence(source, f"it is {_size(source.stat().st_size)} and LayerScope has no "
                                                  "weights-free stand-in for this format; Netron would read all of "
                                                  "it into memory, so the graph is not drawn"))
        target = out / _standin_name(source, source.suffix)
        if kind in CHILD_WRITERS:
            yield from _write_in_child(kind, source, target)
        else:
            writer(source, target)
        yield Progress(1, 1, "Stand-in written")
        return StandIn(target, f"Netron is shown a weights-free copy of {name}: {STANDIN_TEXT[kind]}", "standin",
                       display_name=name)
    except LayerScopeError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, struct.error, UnicodeDecodeError, ImportError) as exc:
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return StandIn(None, sentence(source, f"no graph: a weights-free copy for Netron could not be written ({text})"))


STANDIN_TEXT = {
    "onnx": "the same graph with every initializer's data cleared (dims and types kept).",
    "keras": "the same config with an HDF5 weights file whose datasets keep shape and dtype but hold no data.",
    "h5": "the same model config and datasets with shape and dtype but no data.",
    "gguf": "the header and tensor table only.",
    "torchscript": "the same code and graph with every storage declared empty.",
    "torch-export": "the same exported graph with the weight files emptied.",
}


# onnx and h5py parse in C and hold the GIL for seconds on a large file: a child process writes
# those stand-ins, so the window keeps painting (and Cancel kills the child at once).
CHILD_WRITERS = frozenset({"onnx", "keras", "h5", "savedmodel"})


def _write_in_child(kind: str, source: Path, target: Path) -> Steps[None]:
    """Run a stand-in writer in a child Python; yields while it works so the job stays cancellable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "analyzers.graph.standin", kind, str(source.resolve()),
                             str(target.resolve())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=str(ROOT), env=env)
    err = b""
    try:
        while True:
            try:
                _, err = proc.communicate(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                yield Progress(0, None, f"Writing a weights-free copy of {source.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(lines[-1] if lines else f"the writer exited with status {proc.returncode}")


def graph_format(summary: ModelSummary) -> str:
    """The Graph tab's recipe for `summary`: what its format's registry entry says (analyzers.loaders)."""
    from analyzers.loaders import spec_for_format

    spec = spec_for_format(summary.source.format)
    return spec.graph if spec is not None else "original"


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(8) == HDF5_MAGIC


def _weights_header(summary: ModelSummary, source: Path, out: Path, max_original_bytes: int) -> Steps[StandIn]:
    """Formats that store weights, not a graph (safetensors, state_dicts, HF folders): a safetensors header.

    Safetensors files (one or many shards) have their own headers merged; anything else gets a header
    written from the summary's tensors. A small single file is handed to Netron as it is."""
    name = source.name
    files = [Path(f) for f in summary.source.files] or [source]
    if all(f.name.endswith(".safetensors") for f in files):
        if len(files) == 1 and files[0].stat().st_size <= max_original_bytes:
            return _original(files[0], display_name=name, show_names=True)
        target = out / _standin_name(source, ".safetensors")
        count = yield from write_merged_safetensors(files, target, _tree_order(summary))
        shards = f"the headers of {len(files)} shards merged into one, " if len(files) > 1 else "its header, "
        return StandIn(target, f"Netron is shown a weights-free stand-in: {shards}every one of {count:,} "
                               "tensors zero bytes long (names, shapes and dtypes as stored).", "standin",
                       display_name=name, show_names=True)
    if source.is_file() and source.stat().st_size <= max_original_bytes:
        return _original(source, show_names=True)
    target = out / _standin_name(source, ".safetensors")
    count, odd = write_summary_safetensors(summary, target)
    note = f" {odd} tensors of a dtype safetensors cannot name are shown as uint8." if odd else ""
    return StandIn(target, "Netron is shown a weights-free stand-in: a safetensors header written from the "
                           f"{count:,} tensors' names, shapes and dtypes; the file stores no module graph, so "
                           f"Netron draws one box per module.{note}", "standin", display_name=name,
                   show_names=True)


def _original(source: Path, display_name: str = "", show_names: bool = False) -> StandIn:
    return StandIn(source, f"Netron reads {source.name} itself ({_size(source.stat().st_size)}).", "original",
                   display_name=display_name or source.name, show_names=show_names)


def _tree_order(summary: ModelSummary) -> dict[str, int]:
    """Tensor name -> position in the summary's layer tree (module order for typed trees)."""
    return {t.name: i for i, t in enumerate(summary.tensors)}


def _standin_name(source: Path, suffix: str) -> str:
    name = source.name
    if name.lower().endswith(".safetensors.index.json"):
        return name[: -len(".index.json")]
    stem = name.split(".")[0] if source.is_dir() else source.stem
    return f"{stem or 'model'}{suffix}"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# --- safetensors ------------------------------------------------------------------------------


def _write_safetensors_header(entries: Mapping[str, dict], metadata: Mapping[str, str], target: Path,
                              order: Mapping[str, int] | None = None) -> None:
    """Netron draws the boxes in header order: the model's own order where known, else natural order."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    order = order or {}
    last = len(order)
    for key in sorted(entries, key=lambda k: (order.get(k, last), natural_key(k))):
        header[key] = {"dtype": entries[key]["dtype"], "shape": list(entries[key]["shape"]), "data_offsets": [0, 0]}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with target.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)


def write_merged_safetensors(files: Iterable[Path], target: Path, order: Mapping[str, int] | None = None) -> Steps[int]:
    """One safetensors file holding every shard's header with zero-length data; returns the tensor count."""
    from analyzers.loaders.safetensors_loader import read_header

    files = list(files)
    entries: dict[str, dict] = {}
    metadata: dict[str, str] = {}
    for i, path in enumerate(files):
        yield Progress(i, len(files), f"Reading header of {path.name}")
        header, _ = read_header(path)
        for key, value in header.items():
            if key == "__metadata__":
                metadata.update(value or {})
            elif isinstance(value, dict) and "dtype" in value and "shape" in value:
                entries[key] = value
    _write_safetensors_header(entries, metadata, target, order)
    yield Progress(len(files), len(files), "Stand-in written")
    return len(entries)


def write_summary_safetensors(summary: ModelSummary, target: Path) -> tuple[int, int]:
    """A zero-data safetensors header from the summary's tensors; returns (tensors, tensors shown as uint8)."""
    entries: dict[str, dict] = {}
    odd = 0
    for tensor in summary.tensors:
        code = SAFETENSORS_CODES.get(tensor.dtype)
        if code is None:
            odd += 1
            code = "U8"
        entries[tensor.name] = {"dtype": code, "shape": tensor.shape}
    _write_safetensors_header(entries, {"format": "pt", "layerscope": "weights-free stand-in"}, target,
                              _tree_order(summary))
    return len(entries), odd


# --- ONNX -------------------------------------------------------------------------------------

_TENSOR_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data",
                       "uint64_data")


def _strip_tensor(tensor, keep_small: bool = False) -> None:
    if keep_small and tensor.ByteSize() <= KEEP_DATA_BYTES and not tensor.external_data:
        return
    for name in _TENSOR_DATA_FIELDS:
        tensor.ClearField(name)
    tensor.ClearField("external_data")
    tensor.data_location = 0  # DEFAULT


def _strip_graph(graph) -> None:
    for tensor in graph.initializer:
        _strip_tensor(tensor)
    for sparse in graph.sparse_initializer:
        _strip_tensor(sparse.values)
        _strip_tensor(sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                _strip_tensor(attr.t, keep_small=True)  # Constant nodes: small ones are shapes and axes
            for tensor in attr.tensors:
                _strip_tensor(tensor, keep_small=True)
            if attr.HasField("g"):
                _strip_graph(attr.g)
            for sub in attr.graphs:
                _strip_graph(sub)


def write_onnx_standin(source: Path, target: Path) -> None:
    """The ONNX model with tensor data cleared (dims, types and every node kept); external data never read."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    _strip_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    _strip_tensor(attr.t, keep_small=True)
    onnx.save(model, str(target))


# --- HDF5 / Keras -----------------------------------------------------------------------------


def _copy_h5_empty(src, dst) -> None:
    """Copy groups, attributes and datasets' shape/dtype; dataset data is never written (no space allocated)."""
    import h5py

    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            _copy_h5_empty(item, dst.create_group(name))
        elif isinstance(item, h5py.Dataset):
            if item.nbytes <= KEEP_DATA_BYTES:
                ds = dst.create_dataset(name, data=item[()], dtype=item.dtype)
            else:
                ds = dst.create_dataset(name, shape=item.shape, dtype=item.dtype)
            for key, value in item.attrs.items():
                ds.attrs[key] = value


def write_h5_standin(source: Path, target: Path) -> None:
    """A legacy Keras .h5 (or weights-only HDF5) with every large dataset empty."""
    import h5py

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        _copy_h5_empty(src, dst)


def write_keras_standin(source: Path, target: Path) -> None:
    """A .keras archive with its config and metadata, and a weights file of empty datasets."""
    import h5py

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename.endswith(".h5"):
                empty = target.with_name(target.name + ".weights.tmp")
                try:
                    with zin.open(info) as member, h5py.File(member, "r") as src, h5py.File(empty, "w") as dst:
                        _copy_h5_empty(src, dst)
                    zout.write(empty, info.filename)
                finally:
                    empty.unlink(missing_ok=True)
            elif info.file_size <= SMALL_FILE_BYTES and not info.filename.endswith(".npz"):
                zout.writestr(info, zin.read(info))


# --- GGUF -------------------------------------------------------------------------------------

_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_data_offset(path: Path) -> int:
    """Byte offset where a GGUF file's tensor data starts (after the KV metadata and the tensor table)."""
    with path.open("rb") as f:

        def read(n: int) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise ValueError("the GGUF header is truncated")
            return data

        def u32() -> int:
            return struct.unpack("<I", read(4))[0]

        def u64() -> int:
            return struct.unpack("<Q", read(8))[0]

        def string() -> bytes:
            return read(u64())

        def skip_value(vtype: int) -> object:
            if vtype in _GGUF_SCALAR:
                raw = read(_GGUF_SCALAR[vtype])
                return int.from_bytes(raw, "little") if vtype in (4, 10) else None
            if vtype == _GGUF_STRING:
                string()
                return None
            if vtype == _GGUF_ARRAY:
                etype, count = u32(), u64()
                if etype in _GGUF_SCALAR:
                    f.seek(_GGUF_SCALAR[etype] * count, 1)
                else:
                    for _ in range(count):
                        skip_value(etype)
                return None
            raise ValueError(f"unknown GGUF value type {vtype}")

        if read(4) != GGUF_MAGIC:
            raise ValueError("not a GGUF file")
        version = u32()
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        n_tensors, n_kv = u64(), u64()
        alignment = 32
        for _ in range(n_kv):
            key = string()
            value = skip_value(u32())
            if key == b"general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        for _ in range(n_tensors):
            string()
            n_dims = u32()
            f.seek(8 * n_dims + 4 + 8, 1)
        pos = f.tell()
    return pos + (-pos % alignment)


def write_gguf_standin(source: Path, target: Path) -> None:
    """The GGUF header and tensor table, without the tensor data that follows them."""
    end = gguf_data_offset(source)
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(_Limited(src, end), dst, 1024 * 1024)


class _Limited:
    """A read-only view of the first `limit` bytes of a binary file."""

    def __init__(self, f, limit: int) -> None:
        self._f, self._left = f, limit

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


# --- TorchScript and torch.export archives ----------------------------------------------------

_INT_OPS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"}


def zero_storage_sizes(pickle_bytes: bytes) -> tuple[bytes, int]:
    """Rewrite a torch pickle so every persistent storage id declares 0 elements; returns (bytes, storages)."""
    ops = list(pickletools.genops(pickle_bytes))
    edits: set[int] = set()
    for i, (op, _, _) in enumerate(ops):
        if op.name != "BINPERSID":
            continue
        j = i - 1
        while j >= 0 and ops[j][0].name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
            j -= 1
        if j < 1 or ops[j][0].name != "TUPLE" or ops[j - 1][0].name not in _INT_OPS:
            raise ValueError("the archive's pickle does not store tensors the way torch.save does")
        edits.add(j - 1)
    ends = [pos for _, _, pos in ops[1:]] + [len(pickle_bytes)]
    out = bytearray()
    for i, (_, _, pos) in enumerate(ops):
        out += b"K\x00" if i in edits else pickle_bytes[pos:ends[i]]
    return bytes(out), len(edits)


def write_torchscript_standin(source: Path, target: Path) -> None:
    """The TorchScript archive with its tensors' storages declared empty and their records emptied.

    Each pickle `X.pkl` (data, constants, traced inputs) keeps its tensors in records `X/<n>`;
    a pickle whose records are larger than KEEP_DATA_BYTES in all gets every storage zeroed.
    """
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        infos = zin.infolist()
        record_bytes: dict[str, int] = {}
        for info in infos:
            folder, _, leaf = info.filename.rpartition("/")
            if leaf.isdigit():
                record_bytes[folder] = record_bytes.get(folder, 0) + info.file_size
        emptied = {folder for folder, size in record_bytes.items() if size > KEEP_DATA_BYTES}
        for info in infos:
            folder, _, leaf = info.filename.rpartition("/")
            if leaf.isdigit() and folder in emptied:
                zout.writestr(info.filename, b"")
            elif info.filename.endswith(".pkl") and info.filename[: -len(".pkl")] in emptied:
                data, _ = zero_storage_sizes(zin.read(info))
                zout.writestr(info.filename, data)
            elif info.file_size <= SMALL_FILE_BYTES:
                zout.writestr(info.filename, zin.read(info))
            else:
                raise ValueError(f"the archive entry {info.filename} is {_size(info.file_size)}")


def write_torch_export_standin(source: Path, target: Path) -> None:
    """The torch.export archive with its weight, constant and sample-input files emptied."""
    heavy = re.compile(r"/data/(weights|constants|sample_inputs)/[^/]+$")
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            keep = info.filename.endswith(".json") or info.file_size <= KEEP_DATA_BYTES
            if heavy.search(info.filename) and not keep:
                zout.writestr(info.filename, b"")
            elif info.file_size <= SMALL_FILE_BYTES:
                zout.writestr(info.filename, zin.read(info))
            else:
                zout.writestr(info.filename, b"")


# --- SavedModel -------------------------------------------------------------------------------


def _savedmodel(folder: Path, out: Path, max_original_bytes: int) -> Steps[StandIn]:
    """The serving function as a SavedModel of its own (analyzers.graph.savedmodel), written in a child."""
    pb = folder / "saved_model.pb"
    if not pb.is_file():
        pb = folder / "saved_model.pbtxt"
    size = pb.stat().st_size
    if size > max(max_original_bytes, SMALL_FILE_BYTES):
        return StandIn(None, sentence(pb, f"the graph file is {_size(size)}, so it holds the weights as constants; "
                                          "Netron would read all of it, so the graph is not drawn"))
    target = out / (folder.name or "savedmodel") / "saved_model.pb"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield from _write_in_child("savedmodel", folder, target)
    except ValueError as exc:  # the serving function could not be isolated: Netron reads the file itself
        extra: dict[str, Path] = {}
        index = folder / "variables" / "variables.index"
        if index.is_file() and index.stat().st_size <= SMALL_FILE_BYTES:
            extra["variables/variables.index"] = index
        return StandIn(pb, f"Netron reads saved_model.pb itself (the serving function could not be isolated: "
                           f"{printable(exc, 160).rstrip('.')}); the variables' data is never served.", "original", extra,
                       display_name=folder.name)
    return StandIn(target, "Netron is shown the serving signature's function (its ops, and the variables' shapes as "
                           "weights) in a SavedModel of its own; the variables' data is never read.", "standin",
                   display_name=folder.name)


def _write_savedmodel(source: Path, target: Path) -> None:
    from analyzers.graph.savedmodel import write_savedmodel_standin  # protobuf modules only, no TensorFlow

    write_savedmodel_standin(source, target)


WRITERS = {"onnx": write_onnx_standin, "keras": write_keras_standin, "h5": write_h5_standin,
           "gguf": write_gguf_standin, "torchscript": write_torchscript_standin,
           "torch-export": write_torch_export_standin, "savedmodel": _write_savedmodel}


def main(argv: list[str] | None = None) -> int:
    """`python -m analyzers.graph.standin KIND SOURCE TARGET`: the child process of _write_in_child."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in WRITERS:
        print(f"usage: python -m analyzers.graph.standin {{{','.join(WRITERS)}}} SOURCE TARGET", file=sys.stderr)
        return 2
    try:
        WRITERS[args[0]](Path(args[1]), Path(args[2]))
    except Exception as exc:  # the parent shows this line as the reason there is no graph
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        print(f"{type(exc).__name__}: {text}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
