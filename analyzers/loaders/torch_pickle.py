"""A restricted unpickler for PyTorch pickles: nothing a file names is imported, and nothing it names runs.

`torch.save` pickles; a pickle is a program that may import and call anything. This unpickler
(`pickle._Unpickler`, the pure-Python one, so its memo is a dict and every opcode passes through
here) calls only an allow-list of inert functions: tensor rebuild functions become `TensorStub`s
(shape, dtype, storage key, offset, stride; no data read), storages become `StorageRef`s, dtypes
and storage classes become descriptors, and a few builtin containers are built as they are. Every
other class becomes a `GlobalRef`, and calling or building one makes an `Opaque` that records its
arguments, state and items. A pickled `nn.Module` therefore comes back as a tree of `Opaque`s whose
state holds `_modules`, `_parameters` and `_buffers`: its structure and sizes without its code.

Bounds: the stream is capped; a length field larger than what is left is refused before anything is
allocated; opcodes are counted and resident memory is watched, so a pickle bomb is one sentence.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from struct import unpack
from typing import IO, Any

from analyzers.errors import CorruptFile, sentence
from analyzers.loaders.safe_files import MAX_NAME_CHARS, MiB, display_name
from analyzers.loaders.torch_stubs import (
    QUANTIZED_STORAGE,
    STORAGE_DTYPES,
    TORCH_DTYPES,
    DtypeRef,
    GlobalRef,
    Opaque,
    StorageRef,
    StorageType,
    TensorStub,
)

MAX_PICKLE_OPS = 30_000_000  # ~1 min of pure-Python unpickling; a real data.pkl needs a few million
MAX_RSS_GROWTH = 768 * MiB  # resident memory the unpickler may add before it stops
MAX_GLOBALS = 20_000  # distinct classes / functions one pickle may name
MAX_LINE = 1 * MiB  # a text-protocol line (GLOBAL names, protocol-0 strings)
MAX_DIMS = 64


class PickleRefused(Exception):
    """The pickle is malformed or hostile; the text is the problem, without the file name."""


def _plain_dict(*_: Any) -> dict:
    return {}


def _bytes_like(kind: type) -> Callable[..., Any]:
    def build(data: Any = b"", *rest: Any) -> Any:
        if isinstance(data, int) or rest and not isinstance(data, str):
            raise PickleRefused(f"a pickled {kind.__name__} asks for a size instead of data")
        return kind(_encode(data, *rest)) if rest else kind(data)
    return build


def _encode(text: Any, encoding: Any = "utf-8", *_: Any) -> bytes:
    # Only these names: any other would make Python's codec registry import an `encodings` module.
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "utf8", "ascii"):
        raise PickleRefused("a pickled bytes object uses an unexpected encoding")
    return text.encode(encoding)


def _device(spec: Any = "cpu", index: Any = None) -> str:
    if not isinstance(spec, str | int) or not isinstance(index, int | None):
        raise PickleRefused("its pickle names a device that is not a name")
    return str(spec)[:40] if index is None else f"{str(spec)[:40]}:{index}"


def _layout(name: Any) -> str:
    if not isinstance(name, str):
        raise PickleRefused("its pickle names a tensor layout that is not a name")
    return name[:40]


SAFE_CALLABLES: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): _plain_dict,
    ("collections", "Counter"): Counter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "dict"): dict,
    ("builtins", "bytearray"): _bytes_like(bytearray),
    ("builtins", "bytes"): _bytes_like(bytes),
    ("_codecs", "encode"): _encode,
    ("torch", "Size"): tuple,
    ("torch", "device"): _device,
    ("torch.serialization", "_get_layout"): _layout,
}
HASHING = (set, frozenset, dict, OrderedDict, Counter)
# Containers NEWOBJ may build directly (cls.__new__ of a builtin runs no file code).
SAFE_TYPES = (OrderedDict, set, frozenset, list, tuple, dict)
# Names whose call the unpickler itself answers (they need its checks).
TENSOR_FUNCS = frozenset({
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"), ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("copyreg", "_reconstructor"),
})


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class CappedReader(io.RawIOBase):
    """A raw read-only view of a stream that never yields more than `limit` bytes (a pickle bomb's cap)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        super().__init__()
        self._raw = raw
        self.left = limit
        self.position = 0

    def readable(self) -> bool:
        """Always: a read-only stream."""
        return True

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        """Fill `buffer` from the raw stream, never past the cap."""
        n = min(len(buffer), self.left)
        data = self._raw.read(n) if n else b""
        buffer[: len(data)] = data
        self.left -= len(data)
        self.position += len(data)
        return len(data)


class PickleStream:
    """What the unpickler reads: a C-buffered view of a capped stream whose lines are bounded and whose
    long reads are refused before a buffer of the declared length is allocated."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.capped = CappedReader(raw, limit)
        self.buffered = io.BufferedReader(self.capped, 1 << 20)
        self._read = self.buffered.read
        self.before_large_read: Callable[[int], None] = lambda n: None

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes; a length past what is left in the stream is refused, not allocated."""
        if n > 65536:
            if n > self.available():
                raise PickleRefused(f"its pickle declares an object of {n:,} bytes, more than the rest of the file")
            self.before_large_read(n)
        return self._read(n)

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` (a bytearray the unpickler allocated after checking its length)."""
        return self.buffered.readinto(buffer)

    def readline(self) -> bytes:
        """One text line of at most MAX_LINE bytes."""
        line = self.buffered.readline(MAX_LINE)
        if len(line) >= MAX_LINE and not line.endswith(b"\n"):
            raise PickleRefused(f"a text line in its pickle is longer than {MAX_LINE:,} bytes")
        return line

    def available(self) -> int:
        """Bytes left: buffered plus not yet read."""
        buffered = len(self.buffered.peek(1))  # first: peeking may read from the raw stream
        return self.capped.left + buffered

    @property
    def consumed(self) -> int:
        """Bytes the unpickler has taken from the stream (read ahead excluded)."""
        buffered = len(self.buffered.peek(1))
        return self.capped.position - buffered


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Unpickles without importing or calling anything outside an allow-list (see the module docstring).

    `on_storage(pid)` answers each persistent id (a torch storage); it may return a StorageRef or
    another value, or raise PickleRefused."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: PickleStream, on_storage: Callable[[tuple], Any]) -> None:
        super().__init__(file, encoding="utf-8")
        self._source = file
        self._start_rss: int | None = None
        file.before_large_read = lambda n: self._check_memory(n)
        self._on_storage = on_storage
        self._globals: dict[tuple[str, str], Any] = {}
        self.classes: Counter[GlobalRef] = Counter()

    # --- what names resolve to ---------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        """A descriptor for `module.name`: an allow-listed inert callable, a dtype, a storage class, or a GlobalRef."""
        if len(module) + len(name) > 1000:
            raise PickleRefused("its pickle names a class whose name is longer than 1,000 characters")
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (module, name)
        found = self._globals.get(key)
        if found is not None:
            return found
        if len(self._globals) >= MAX_GLOBALS:
            raise PickleRefused(f"its pickle names more than {MAX_GLOBALS:,} classes")
        if key in SAFE_CALLABLES:
            found = SAFE_CALLABLES[key]
        elif module == "torch" and name in TORCH_DTYPES:
            found = DtypeRef(*TORCH_DTYPES[name])
        elif (module == "torch" or module.startswith(("torch.cuda", "torch.storage"))) and name in STORAGE_DTYPES:
            found = StorageType(*STORAGE_DTYPES[name])
        else:
            found = GlobalRef(module, name)
        self._globals[key] = found
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Storages are described, never read: `on_storage` turns the id into a StorageRef."""
        if not isinstance(pid, tuple) or not pid:
            raise PickleRefused("its pickle refers to an external object LayerScope does not know")
        return self._on_storage(pid)

    # --- calls ---------------------------------------------------------------------------------------

    def call(self, func: Any, args: Any, kwargs: dict | None = None) -> Any:
        """REDUCE / INST / OBJ: allow-listed functions run, a GlobalRef becomes an Opaque, anything else is refused."""
        if not isinstance(args, tuple):
            raise PickleRefused("its pickle calls a function with arguments that are not a tuple")
        if isinstance(func, GlobalRef):
            key = (func.module, func.name)
            if key in TENSOR_FUNCS:
                return self._tensor_call(func.name, args, kwargs or {})
            if key == ("builtins", "getattr") and len(args) == 2 and isinstance(args[0], GlobalRef) \
                    and isinstance(args[1], str):  # protocol < 4 names a nested class as getattr(Outer, "Inner")
                return self.find_class(args[0].module, f"{args[0].name}.{args[1]}")
            self.classes[func] += 1
            return Opaque(func, args)
        if any(func is f for f in SAFE_CALLABLES.values()):
            if func in HASHING and args and isinstance(args[0], list | tuple):  # they hash what they are given
                pairs = func in (dict, OrderedDict)
                _check_keys([p[0] for p in args[0] if isinstance(p, tuple | list) and p] if pairs else args[0])
            return func(*args, **(kwargs or {}))
        shown = f"an object of class {display_name(func.cls.short, 60)}" if isinstance(func, Opaque) else \
            f"a {type(func).__name__} value"
        raise PickleRefused(f"its pickle calls {shown} it built itself, which no torch.save pickle does")

    def _tensor_call(self, name: str, args: tuple, kwargs: dict) -> Any:
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            storage, offset, size, stride = args[:4]
            if not isinstance(storage, StorageRef):
                raise PickleRefused("a tensor in its pickle has no storage")
            grad = bool(args[4]) if len(args) > 4 else False
            return self._stub(storage, storage.dtype, storage.itemsize, offset, size, stride, grad)
        if name == "_rebuild_tensor_v3":
            storage, offset, size, stride, grad, _hooks, dtype = args[:7]
            if not isinstance(storage, StorageRef) or not isinstance(dtype, DtypeRef):
                raise PickleRefused("a tensor in its pickle has no storage or no dtype")
            return self._stub(storage, dtype.name, dtype.itemsize, offset, size, stride, bool(grad))
        if name == "_rebuild_qtensor":
            storage, offset, size, stride = args[:4]
            if not isinstance(storage, StorageRef):
                raise PickleRefused("a quantized tensor in its pickle has no storage")
            stub = self._stub(storage, storage.dtype, storage.itemsize, offset, size, stride, False)
            return replace(stub, dtype=QUANTIZED_STORAGE.get(stub.dtype, stub.dtype), quantized=True)
        if name == "_rebuild_meta_tensor_no_storage":
            dtype, size, stride, grad = (*args, False)[:4]
            if not isinstance(dtype, DtypeRef):
                raise PickleRefused("a tensor in its pickle has no dtype")
            shape, strides = _dims(size), _dims(stride)
            return TensorStub(shape, dtype.name, dtype.itemsize, None, 0, strides, bool(grad))
        if name == "_rebuild_device_tensor_from_cpu_tensor":
            data, dtype, _device, grad = args[:4]
            if not isinstance(data, TensorStub):
                return Opaque(GlobalRef("torch", "Tensor"), ())
            return replace(data, requires_grad=bool(grad))
        if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            data, grad = args[0], bool(args[1]) if len(args) > 1 else True
            if isinstance(data, TensorStub):
                return replace(data, parameter=True, requires_grad=grad)
            return Opaque(GlobalRef("torch.nn.parameter", "Parameter"), (data,))
        if name == "_rebuild_from_type_v2":
            func, new_type, inner_args = args[:3]
            result = self.call(func, inner_args)
            if isinstance(result, TensorStub) and isinstance(new_type, GlobalRef):
                if new_type.short == "Parameter":
                    return replace(result, parameter=True)
                if new_type.qualname not in ("torch.Tensor", "torch._tensor.Tensor"):
                    return replace(result, subclass=new_type.short)
            return result
        if name == "_reconstructor":  # protocol 0/1 objects: copyreg._reconstructor(cls, base, state)
            cls = args[0] if args else None
            if isinstance(cls, GlobalRef):
                self.classes[cls] += 1
                return Opaque(cls, ())
            if isinstance(cls, type) and cls in SAFE_TYPES:
                return cls()
            raise PickleRefused("its pickle rebuilds an object of a type LayerScope does not know")
        raise PickleRefused(f"its pickle calls torch's {name}, which LayerScope does not read")

    def _stub(self, storage: StorageRef, dtype: str, itemsize: int, offset: Any, size: Any, stride: Any,
              grad: bool) -> TensorStub:
        shape, strides = _dims(size), _dims(stride)
        if len(strides) != len(shape) or not isinstance(offset, int) or offset < 0:
            raise PickleRefused(f"a tensor on storage '{display_name(storage.key, 40)}' has an invalid layout")
        stub = TensorStub(shape, dtype, itemsize, storage, offset, strides, grad)
        if stub.extent_bytes() > storage.nbytes:
            raise PickleRefused(f"a tensor of shape {list(shape)} reaches {stub.extent_bytes():,} bytes of storage "
                                f"'{display_name(storage.key, 40)}', which holds only {storage.nbytes:,}; the file is "
                                "truncated or corrupted")
        return stub

    # --- opcodes that would call or allocate -----------------------------------------------------------

    def load_reduce(self) -> None:
        """REDUCE: a call, answered by `call` (nothing the file names runs)."""
        stack = self.stack
        args = stack.pop()
        stack[-1] = self.call(stack[-1], args)

    def load_newobj(self) -> None:
        """NEWOBJ: `cls.__new__(cls, *args)` for a builtin container, an Opaque for anything else."""
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def load_newobj_ex(self) -> None:
        """NEWOBJ_EX: as NEWOBJ, keyword arguments ignored."""
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(cls, GlobalRef):
            self.classes[cls] += 1
            return Opaque(cls, tuple(args) if isinstance(args, tuple) else ())
        if isinstance(cls, type) and cls in SAFE_TYPES and isinstance(args, tuple):
            return cls.__new__(cls, *args)
        raise PickleRefused("its pickle creates an object of a type LayerScope does not know")

    def _instantiate(self, klass: Any, args: list) -> None:
        self.append(self.call(klass, tuple(args)))

    def load_build(self) -> None:
        """BUILD: an Opaque records the state; nothing else takes attributes from the file."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Opaque):
            inst.state = state
        # Anything else (an OrderedDict's `_metadata`, a tensor's Python attributes) is ignored: a
        # builtin container or a stub never takes attributes from the file.

    def _available(self) -> int:
        frame = self._unframer.current_frame
        if frame is None:
            return self._source.available()
        with frame.getbuffer() as view:
            return self._source.available() + view.nbytes - frame.tell()

    def load_bytearray8(self) -> None:
        """BYTEARRAY8: the length is checked against the rest of the stream before it is allocated."""
        (length,) = unpack("<Q", self.read(8))
        if length > self._available():
            raise PickleRefused("its pickle declares a byte array longer than the rest of the file")
        data = bytearray(length)
        self.readinto(data)
        self.append(data)

    def load_frame(self) -> None:
        """FRAME: the frame length is checked against the rest of the stream before it is read."""
        (length,) = unpack("<Q", self.read(8))
        if length > self._source.available():
            raise PickleRefused("its pickle declares a frame longer than the rest of the file")
        self._unframer.load_frame(length)

    def load_setitem(self) -> None:
        """SETITEM, its key checked to hash cheaply."""
        _check_keys((self.stack[-2],))
        super().load_setitem()

    def load_setitems(self) -> None:
        """SETITEMS, keys checked to hash cheaply."""
        _check_keys(self.stack[0::2])  # after MARK, the stack holds just the items: key, value, key ...
        super().load_setitems()

    def load_additems(self) -> None:
        """ADDITEMS, items checked to hash cheaply."""
        _check_keys(self.stack)
        super().load_additems()

    def load_frozenset(self) -> None:
        """FROZENSET, items checked to hash cheaply."""
        _check_keys(self.stack)
        super().load_frozenset()

    def load_dict(self) -> None:
        """DICT (protocol 0/1), keys checked to hash cheaply."""
        _check_keys(self.stack[0::2])
        super().load_dict()

    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
    dispatch[pickle.FRAME[0]] = load_frame

    def load(self) -> Any:
        """The loop of pickle._Unpickler.load, counting opcodes and watching resident memory."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch = self.read, self.dispatch
        self._start_rss = _rss()
        ops = 0
        try:
            while True:
                key = read(1)
                if not key:
                    raise PickleRefused("its pickle ends before its STOP opcode; the file is truncated")
                handler = dispatch.get(key[0])
                if handler is None:
                    raise PickleRefused(f"its pickle holds an unknown opcode 0x{key[0]:02x}")
                handler(self)
                ops += 1
                if not ops & 0xFFFF:
                    if ops > MAX_PICKLE_OPS:
                        raise PickleRefused(f"its pickle runs more than {MAX_PICKLE_OPS:,} opcodes, more than any "
                                            "model's")
                    self._check_memory(0)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def _check_memory(self, coming: int) -> None:
        """Refuse when resident memory grew (or is about to grow by `coming` bytes) past MAX_RSS_GROWTH."""
        now = _rss()
        if self._start_rss is not None and now is not None and now + coming - self._start_rss > MAX_RSS_GROWTH:
            raise PickleRefused(f"unpickling it grew memory by more than {MAX_RSS_GROWTH // MiB:,} MiB; it "
                                "is a pickle bomb or not a model checkpoint")


MAX_KEY_NODES = 10_000


def _check_keys(keys: Any) -> None:
    """Refuse a dict key or set item whose hash would walk more than MAX_KEY_NODES tuple items: tuples
    built from one shared tuple 60 levels deep hash 2**60 items (hashes of tuples are not cached)."""
    for key in keys:
        if type(key) is str or type(key) is int:
            continue
        stack, seen = [key], 0
        while stack:
            item = stack.pop()
            seen += 1
            if seen > MAX_KEY_NODES:
                raise PickleRefused(f"its pickle uses a dictionary key of more than {MAX_KEY_NODES:,} nested items")
            if isinstance(item, tuple):
                stack.extend(item)


def _dims(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or len(value) > MAX_DIMS:
        raise PickleRefused("a tensor in its pickle has an invalid shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 62 for d in value):
        raise PickleRefused("a tensor in its pickle has a negative or non-integer size")
    return tuple(value)


def run_unpickler(path: Path, stream: IO[bytes], limit: int, on_storage: Callable[[tuple], Any],
                  what: str = "its pickle") -> tuple[Any, RestrictedUnpickler, int]:
    """Unpickle `stream` (at most `limit` bytes) restrictedly: (object, unpickler, bytes consumed).
    Every failure is one CorruptFile sentence."""
    reader = PickleStream(stream, limit)
    unpickler = RestrictedUnpickler(reader, on_storage)
    try:
        return unpickler.load(), unpickler, reader.consumed
    except PickleRefused as exc:
        raise CorruptFile(sentence(path, str(exc))) from None
    except CorruptFile:
        raise
    except RecursionError:
        raise CorruptFile(sentence(path, f"{what} nests deeper than LayerScope follows")) from None
    except MemoryError:
        raise CorruptFile(sentence(path, f"{what} asks for more memory than a model checkpoint needs")) from None
    except Exception as exc:  # a malformed stream: struct, index, type, unicode, zip CRC errors ...
        detail = display_name(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__, 120)
        raise CorruptFile(sentence(path, f"{what} is malformed ({detail}); the file is corrupted or truncated")) \
            from None


def check_name(path: Path, name: object, what: str = "tensor name") -> str:
    """`name` as a string when it is a plausible name; one sentence when it is longer than MAX_NAME_CHARS."""
    text = str(name)
    if len(text) > MAX_NAME_CHARS:
        raise CorruptFile(sentence(path, f"a {what} of {len(text):,} characters ('{display_name(text, 40)}') is "
                                         f"longer than the {MAX_NAME_CHARS:,} any real model uses"))
    return text
