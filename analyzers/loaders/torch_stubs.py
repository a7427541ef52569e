"""What the restricted unpickler builds instead of torch objects: inert descriptors, never code or data.

A tensor becomes a `TensorStub` (shape, dtype, storage key, offset, stride), a storage a
`StorageRef`, a dtype or storage class a `DtypeRef` / `StorageType`, any other class the file
names a `GlobalRef`, and an object of such a class an `Opaque` holding what unpickling recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from analyzers.loaders.safe_files import display_name

# torch storage classes -> (canonical dtype, bytes per element)
STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "DoubleStorage": ("float64", 8), "FloatStorage": ("float32", 4), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1), "ComplexFloatStorage": ("complex64", 8), "ComplexDoubleStorage": ("complex128", 16),
    "QInt8Storage": ("qint8", 1), "QUInt8Storage": ("quint8", 1), "QInt32Storage": ("qint32", 4),
    "QUInt4x2Storage": ("quint4x2", 1), "QUInt2x4Storage": ("quint2x4", 1), "UntypedStorage": ("uint8", 1),
}
# torch dtype attribute names -> (canonical dtype, bytes per element as torch stores it)
TORCH_DTYPES: dict[str, tuple[str, int]] = {
    "float64": ("float64", 8), "double": ("float64", 8), "float32": ("float32", 4), "float": ("float32", 4),
    "float16": ("float16", 2), "half": ("float16", 2), "bfloat16": ("bfloat16", 2),
    "int64": ("int64", 8), "long": ("int64", 8), "int32": ("int32", 4), "int": ("int32", 4),
    "int16": ("int16", 2), "short": ("int16", 2), "int8": ("int8", 1), "uint8": ("uint8", 1),
    "uint16": ("uint16", 2), "uint32": ("uint32", 4), "uint64": ("uint64", 8), "bool": ("bool", 1),
    "complex32": ("complex32", 4), "chalf": ("complex32", 4), "complex64": ("complex64", 8),
    "cfloat": ("complex64", 8), "complex128": ("complex128", 16), "cdouble": ("complex128", 16),
    "float8_e4m3fn": ("float8_e4m3fn", 1), "float8_e5m2": ("float8_e5m2", 1),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", 1), "float8_e5m2fnuz": ("float8_e5m2fnuz", 1),
    "float8_e8m0fnu": ("float8_e8m0fnu", 1), "float4_e2m1fn_x2": ("float4_e2m1fn_x2", 1),
    "qint8": ("qint8", 1), "quint8": ("quint8", 1), "qint32": ("qint32", 4),
    "quint4x2": ("quint4x2", 1), "quint2x4": ("quint2x4", 1),
    **{f"int{b}": (f"int{b}", 1) for b in range(1, 8)}, **{f"uint{b}": (f"uint{b}", 1) for b in range(1, 8)},
}
# What a quantised torch dtype holds per element, for byte counts (TensorInfo knows no q-types).
QUANTIZED_STORAGE = {"qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": "uint8", "quint2x4": "uint8"}


@dataclass(frozen=True)
class StorageRef:
    """A storage the pickle refers to by key: its element dtype and declared size, no data."""

    key: str
    dtype: str
    itemsize: int
    numel: int
    location: str = "cpu"

    @property
    def nbytes(self) -> int:
        """Bytes the storage declares."""
        return self.numel * self.itemsize


@dataclass(frozen=True)
class TensorStub:
    """A tensor as the pickle describes it: shape, dtype and where it sits in a storage, never its data."""

    shape: tuple[int, ...]
    dtype: str
    itemsize: int
    storage: StorageRef | None
    offset: int = 0
    stride: tuple[int, ...] = ()
    requires_grad: bool = False
    parameter: bool = False
    quantized: bool = False
    subclass: str = ""

    @property
    def numel(self) -> int:
        """Element count."""
        return math.prod(self.shape)

    def extent_bytes(self) -> int:
        """Bytes of its storage the tensor reaches (offset included), 0 for an empty tensor."""
        if self.numel == 0:
            return 0
        last = self.offset + sum((s - 1) * st for s, st in zip(self.shape, self.stride, strict=True))
        return (last + 1) * self.itemsize

    def alias_key(self) -> tuple | None:
        """Storage key plus view: two stubs with one key are the same tensor (tied weights)."""
        if self.storage is None:
            return None
        return (self.storage.key, self.offset, self.shape, self.stride, self.dtype)


@dataclass(frozen=True)
class GlobalRef:
    """A class or function the pickle names; never imported."""

    module: str
    name: str

    @property
    def short(self) -> str:
        """The class name alone (`Linear` for torch.nn.modules.linear.Linear)."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def qualname(self) -> str:
        """module.name, as the pickle spells it."""
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class DtypeRef:
    """A torch dtype the pickle names (`torch.float32`)."""

    name: str
    itemsize: int


@dataclass(frozen=True)
class StorageType:
    """A torch storage class the pickle names (`torch.FloatStorage`)."""

    dtype: str
    itemsize: int


class Opaque:
    """An object of a class that was not imported: what unpickling it recorded (args, state, items)."""

    __slots__ = ("cls", "args", "state", "dict_items", "list_items")

    def __init__(self, cls: GlobalRef, args: tuple = ()) -> None:
        self.cls = cls
        self.args = args
        self.state: Any = None
        self.dict_items: dict | None = None
        self.list_items: list | None = None

    def __setitem__(self, key: Any, value: Any) -> None:
        if self.dict_items is None:
            self.dict_items = {}
        self.dict_items[key] = value

    def append(self, value: Any) -> None:
        """Record an item pickled with APPEND (list subclasses)."""
        if self.list_items is None:
            self.list_items = []
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        """Record items pickled with APPENDS."""
        for value in values:
            self.append(value)

    def state_dict(self) -> dict | None:
        """The instance `__dict__` it was pickled with (a module's `_modules`, `_parameters` ...), if any."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | None):
            state = state[0]
        return state if isinstance(state, dict) else None

    def __repr__(self) -> str:
        return f"<{display_name(self.cls.short, 80)} object>"


def key_text(key: object, limit: int = 1000) -> str:
    """A dict key from a pickle as text, without calling str() on a container (a tuple of shared tuples
    nested 40 deep would print 2**40 items)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool | int | float):
        return str(key)[:limit]
    return f"<{type(key).__name__}>"
