"""Build a layer tree from dotted tensor names, for formats that store no module structure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from analyzers.summary import LayerNode, TensorInfo

_DIGITS = re.compile(r"(\d+)")

# Bounds on a tree built from names a file chose. No real model nests 64 deep (pickling a LayerNode
# chain, or any view that recurses, fails near a few hundred); deeper components fold into one node.
# A file whose names would need more nodes or path text than these is refused: a 100,000-character
# name of dots made 2.4 GB of prefixes.
MAX_TREE_DEPTH = 64
MAX_TREE_NODES = 2_000_000
MAX_PATH_CHARS = 200_000_000

# Tensor names that are buffers, not parameters, whatever the file says (BatchNorm statistics,
# position-id tables, rotary frequencies, causal masks).
BUFFER_SUFFIXES = (
    "running_mean",
    "running_var",
    "num_batches_tracked",
    "position_ids",
    "inv_freq",
    "masked_bias",
)


def is_buffer_name(name: str) -> bool:
    """True for names that PyTorch modules keep as buffers (BatchNorm statistics and the like)."""
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


def natural_key(name: str) -> tuple:
    """Sort key that puts `layers.2` before `layers.10`."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name) if part)


def owner_of(name: str, sep: str = ".") -> str:
    """The layer path that owns tensor `name` (everything before the last separator)."""
    return name.rsplit(sep, 1)[0] if sep in name else ""


def clamp_depth(path: str, depth: int = MAX_TREE_DEPTH) -> str:
    """`path` with every component past `depth` folded into the last one (`a.b.c.d` -> `a.b.c_d` at depth 3)."""
    if path.count(".") < depth:
        return path
    parts = path.split(".", depth - 1)
    parts[-1] = parts[-1].replace(".", "_")
    return ".".join(parts)


class TreeTooLarge(ValueError):
    """The names of a file would make a tree larger than any real model's (refused, not built)."""


class TreeBuilder:
    """Collects nodes and tensors by path, then freezes them into an immutable LayerNode tree."""

    def __init__(self, root_type: str = "") -> None:
        self._type: dict[str, str] = {"": root_type}
        self._attrs: dict[str, dict[str, object]] = {}
        self._own: dict[str, list[TensorInfo]] = {}
        self._children: dict[str, list[str]] = {"": []}
        self._path_chars = 0

    def __contains__(self, path: str) -> bool:
        return path in self._children

    def add_node(self, path: str, type: str = "", attributes: Mapping[str, object] | None = None) -> None:
        """Declare a node (and its missing ancestors); a later call may set its type."""
        path = self._ensure(path)
        if type:
            self._type[path] = type
        if attributes:
            self._attrs.setdefault(path, {}).update(attributes)

    def add_tensor(self, owner: str, tensor: TensorInfo) -> None:
        """Attach a tensor to the node at `owner`, creating the node when needed."""
        owner = self._ensure(owner)
        self._own.setdefault(owner, []).append(tensor)

    def _ensure(self, path: str) -> str:
        """Create `path` (depth-clamped) and its missing ancestors; the path as stored."""
        if path in self._children:
            return path
        path = clamp_depth(path)
        top = path
        chain: list[str] = []
        while path not in self._children:
            chain.append(path)
            path = owner_of(path)
        self._path_chars += sum(len(p) for p in chain)
        if len(self._children) + len(chain) > MAX_TREE_NODES or self._path_chars > MAX_PATH_CHARS:
            raise TreeTooLarge(f"its names make a tree of more than {MAX_TREE_NODES:,} layers or "
                               f"{MAX_PATH_CHARS:,} characters of layer paths, more than any real model has")
        parent = path
        for p in reversed(chain):
            self._children[parent].append(p)
            self._children[p] = []
            parent = p
        return top

    def build(self, sort: bool = False, output_shapes: Mapping[str, tuple] | None = None) -> LayerNode:
        """Freeze into LayerNodes, bottom-up and without recursion (10^5 nodes are fine); `output_shapes`
        by path, when the format records them."""
        output_shapes = output_shapes or {}
        if sort:
            for kids in self._children.values():
                kids.sort(key=natural_key)
        order: list[str] = []
        stack = [""]
        while stack:
            p = stack.pop()
            order.append(p)
            stack.extend(self._children[p])
        built: dict[str, LayerNode] = {}
        for p in reversed(order):
            built[p] = LayerNode(
                path=p,
                type=self._type.get(p, ""),
                tensors=tuple(self._own.get(p, ())),
                children=tuple(built[c] for c in self._children[p]),
                attributes=self._attrs.get(p, {}),
                output_shape=output_shapes.get(p),
            )
        return built[""]


def build_name_tree(
    tensors: Iterable[TensorInfo],
    *,
    types: Mapping[str, str] | None = None,
    attributes: Mapping[str, Mapping[str, object]] | None = None,
    owner: Callable[[str], str] = owner_of,
    sort: bool = True,
    root_type: str = "",
) -> LayerNode:
    """Group tensors by their owner path into a tree; intermediate paths become untyped nodes.

    `types` and `attributes` decorate nodes by path (a Keras or ONNX loader knows them).
    """
    builder = TreeBuilder(root_type)
    items = list(tensors)
    if sort:
        items.sort(key=lambda t: natural_key(t.name))
    for path in dict.fromkeys([*(types or {}), *(attributes or {})]):
        builder.add_node(path, (types or {}).get(path, ""), (attributes or {}).get(path))
    for t in items:
        builder.add_tensor(owner(t.name), t)
    return builder.build(sort=sort)
