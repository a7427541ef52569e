"""Two summaries aligned layer by layer: what matches, what was renamed, added or removed, and what changed.

Alignment runs in two passes. By path first, after removing the wrapper prefix (`model.`, `bert.`) that
makes the most paths meet; then, for what is left, by order and signature (the layer kind both
frameworks share and the shapes of its own tensors, Keras kernels read in PyTorch's layout), so a
renamed layer still pairs and a Keras model pairs with its PyTorch port. Everything else is listed on
its side only. Numbers only, no tensors: the weight values are compared in drift.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from analyzers.compare.layouts import (
    Layout,
    canonical_tensor_name,
    canonical_type,
    flatten_input,
    kernel_layout,
)
from analyzers.summary import LayerNode, ModelSummary, TensorInfo
from analyzers.summary.memory import estimate_memory

MAX_PREFIX_CANDIDATES = 6  # wrapper prefixes tried per side (the largest top-level containers)
PREFIX_SAMPLE = 4000  # B paths the candidate prefixes are scored on


def local_name(tensor: TensorInfo, node: LayerNode) -> str:
    """A tensor's name inside its layer (`weight`, `kernel`)."""
    prefix = f"{node.path}." if node.path else ""
    return tensor.name[len(prefix):] if prefix and tensor.name.startswith(prefix) else tensor.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class TensorPair:
    """One tensor on each side (or on one side only) and how its layout is reconciled."""

    a: TensorInfo | None
    b: TensorInfo | None
    name: str  # the shared local name ("weight"), PyTorch's spelling
    layout: Layout | None = None

    @property
    def shape_a(self) -> tuple[int, ...] | None:
        """A's shape in the compared layout (B's when A is the Keras side of a cross-framework pair)."""
        if self.a is None:
            return None
        return self.layout.shape(self.a.shape) if self.layout is not None and self.layout.side == "a" else self.a.shape

    @property
    def shape_b(self) -> tuple[int, ...] | None:
        """B's shape in the compared layout."""
        if self.b is None:
            return None
        return self.layout.shape(self.b.shape) if self.layout is not None and self.layout.side == "b" else self.b.shape

    @property
    def shape_changed(self) -> bool:
        """True when both exist and their shapes differ after the layouts are reconciled."""
        return self.a is not None and self.b is not None and self.shape_a != self.shape_b

    @property
    def dtype_change(self) -> str:
        """'float32 → int8', or '' when the dtype stayed."""
        if self.a is None or self.b is None or self.a.dtype == self.b.dtype:
            return ""
        return f"{self.a.dtype} → {self.b.dtype}"

    @property
    def trainable_change(self) -> str:
        """'trainable → frozen' (or back), '' when unchanged."""
        if self.a is None or self.b is None or self.a.trainable == self.b.trainable:
            return ""
        word = {True: "trainable", False: "frozen"}
        return f"{word[self.a.trainable]} → {word[self.b.trainable]}"

    @property
    def status(self) -> str:
        """'same', 'changed', 'added' (B only) or 'removed' (A only)."""
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        if self.shape_changed or self.dtype_change or self.trainable_change or self.a.kind != self.b.kind:
            return "changed"
        return "same"


class LayerPair:
    """A layer of A and its counterpart in B (either may be None), with its paired tensors and children."""

    def __init__(self, a: LayerNode | None, b: LayerNode | None, how: str) -> None:
        self.a = a
        self.b = b
        self.how = how  # "root" | "path" | "signature" | "" (one side only) | "prefix" (a removed wrapper)
        self.tensors: tuple[TensorPair, ...] = ()
        self.children: list[LayerPair] = []
        self.parent: LayerPair | None = None
        self.index = 0  # position in StructureDiff.rows

    def __repr__(self) -> str:
        return f"LayerPair({self.path_a!r}, {self.path_b!r}, {self.status})"

    @property
    def path_a(self) -> str | None:
        """A's path, None when the layer exists in B only."""
        return self.a.path if self.a is not None else None

    @property
    def path_b(self) -> str | None:
        """B's path, None when the layer exists in A only."""
        return self.b.path if self.b is not None else None

    @property
    def key(self) -> tuple[str | None, str | None]:
        """(path_a, path_b): how drift and the views find this row again."""
        return (self.path_a, self.path_b)

    @property
    def renamed(self) -> bool:
        """True when paired by signature under another name."""
        return self.how == "signature" and self.a is not None and self.b is not None and self.a.name != self.b.name

    @cached_property
    def status(self) -> str:
        """'same', 'changed', 'added', 'removed' or 'prefix' (a wrapper whose name was removed to align)."""
        if self.how == "prefix":
            return "prefix"
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        if self.how != "root" and canonical_type(self.a.type) != canonical_type(self.b.type):
            return "changed"  # the model classes themselves (Sequential, DigitCNN) may differ freely
        if any(t.status != "same" for t in self.tensors):
            return "changed"
        return "same"

    @property
    def params_a(self) -> int:
        """A's parameters in this subtree (0 when absent)."""
        return self.a.total.params if self.a is not None else 0

    @property
    def params_b(self) -> int:
        """B's parameters in this subtree (0 when absent)."""
        return self.b.total.params if self.b is not None else 0

    @property
    def delta(self) -> int:
        """B − A parameters of the subtree."""
        return self.params_b - self.params_a

    @property
    def delta_percent(self) -> float | None:
        """Δ as % of A (None when A has none)."""
        return 100.0 * self.delta / self.params_a if self.params_a else None

    @property
    def bytes_a(self) -> int:
        """A's stored bytes in this subtree."""
        return self.a.total.total_bytes if self.a is not None else 0

    @property
    def bytes_b(self) -> int:
        """B's stored bytes in this subtree."""
        return self.b.total.total_bytes if self.b is not None else 0

    @property
    def dtype_change(self) -> str:
        """'float32 → int8' for the subtree's dtypes (most bytes first), '' when they are the same."""
        if self.a is None or self.b is None:
            return ""
        da, db = self.a.dtypes, self.b.dtypes
        if not da and not db or set(da) == set(db):
            return ""
        return f"{', '.join(da) or '-'} → {', '.join(db) or '-'}"

    def changes(self) -> list[str]:
        """Every difference of this layer in words (type, each tensor's shape, dtype, trainable, presence)."""
        out: list[str] = []
        if self.a is not None and self.b is not None and self.how != "root" and \
                canonical_type(self.a.type) != canonical_type(self.b.type):
            out.append(f"type {self.a.type or '?'} → {self.b.type or '?'}")
        for t in self.tensors:
            if t.a is None:
                out.append(f"{t.name} only in B {t.b.shape} {t.b.dtype}")
            elif t.b is None:
                out.append(f"{t.name} only in A {t.a.shape} {t.a.dtype}")
            else:
                if t.shape_changed:
                    out.append(f"{t.name} shape {t.shape_a} → {t.shape_b}")
                if t.dtype_change:
                    out.append(f"{t.name} {t.dtype_change}")
                if t.trainable_change:
                    out.append(f"{t.name} {t.trainable_change}")
        return out

    def walk(self, depth: int = 0) -> Iterator[tuple[LayerPair, int]]:
        """Pre-order (pair, depth) of this pair and everything below it."""
        stack: list[tuple[LayerPair, int]] = [(self, depth)]
        while stack:
            pair, d = stack.pop()
            yield pair, d
            stack.extend((c, d + 1) for c in reversed(pair.children))


@dataclass(frozen=True)
class SideBySide:
    """One figure for A and B (a total, a memory what-if)."""

    label: str
    a: int
    b: int

    @property
    def delta(self) -> int:
        """B − A."""
        return self.b - self.a

    @property
    def delta_percent(self) -> float | None:
        """Δ as % of A (None when A is 0)."""
        return 100.0 * self.delta / self.a if self.a else None


@dataclass(eq=False)
class StructureDiff:
    """A and B aligned: the merged tree of LayerPairs, the prefixes removed, the counts."""

    a: ModelSummary
    b: ModelSummary
    root: LayerPair
    prefix_a: str = ""
    prefix_b: str = ""
    rows: list[LayerPair] = field(default_factory=list)  # pre-order

    @property
    def cross_framework(self) -> bool:
        """True for a Keras model against a PyTorch one (layouts are reconciled)."""
        return _is_cross(self.a, self.b)

    def pairs(self) -> Iterator[tuple[LayerPair, int]]:
        """Every row, pre-order, with its depth (root 0)."""
        return self.root.walk()

    def find(self, path_a: str | None = None, path_b: str | None = None) -> LayerPair | None:
        """The row holding A's `path_a` (or B's `path_b`)."""
        for pair in self.rows:
            if (path_a is not None and pair.path_a == path_a) or (path_b is not None and pair.path_b == path_b):
                return pair
        return None

    @cached_property
    def counts(self) -> dict[str, int]:
        """Rows by outcome: matched (renamed included), renamed, only_a, only_b, changed, same."""
        out = {"matched": 0, "renamed": 0, "only_a": 0, "only_b": 0, "changed": 0, "same": 0}
        for pair in self.rows:
            if pair.how == "root":
                continue
            status = pair.status
            if status == "removed":
                out["only_a"] += 1
            elif status == "added":
                out["only_b"] += 1
            elif status != "prefix":
                out["matched"] += 1
                out["renamed"] += pair.renamed
                out[status] += 1
        return out

    def only_a(self) -> list[LayerPair]:
        """Layers that exist in A only."""
        return [p for p in self.rows if p.status == "removed"]

    def only_b(self) -> list[LayerPair]:
        """Layers that exist in B only."""
        return [p for p in self.rows if p.status == "added"]

    def totals(self) -> list[SideBySide]:
        """The models' totals side by side: parameters, trainable split, buffers, bytes (also per dtype), layers."""
        ta, tb = self.a.totals, self.b.totals
        rows = [SideBySide("parameters", ta.params, tb.params),
                SideBySide("trainable parameters", ta.trainable_params, tb.trainable_params),
                SideBySide("non-trainable parameters", ta.non_trainable_params, tb.non_trainable_params),
                SideBySide("buffer elements", ta.buffers, tb.buffers),
                SideBySide("parameter bytes", ta.param_bytes, tb.param_bytes),
                SideBySide("buffer bytes", ta.buffer_bytes, tb.buffer_bytes),
                SideBySide("tensors", ta.tensors, tb.tensors),
                SideBySide("layers", self.a.node_count, self.b.node_count)]
        for dtype in sorted(set(ta.bytes_by_dtype) | set(tb.bytes_by_dtype)):
            rows.append(SideBySide(f"bytes {dtype}", ta.bytes_by_dtype.get(dtype, 0), tb.bytes_by_dtype.get(dtype, 0)))
        return rows

    def memory(self, batch: int = 1, seq_len: int | None = None, int4_group: int = 128) -> list[SideBySide]:
        """Every memory what-if row of analyzers.summary.memory for A and B, in the Memory tab's order."""
        ma = estimate_memory(self.a, batch, seq_len, int4_group)
        mb = estimate_memory(self.b, batch, seq_len, int4_group)
        rows = [SideBySide(ma.as_stored.label, ma.as_stored.bytes, mb.as_stored.bytes)]
        for group_a, group_b in ((ma.weights, mb.weights), (ma.inference, mb.inference), (ma.training, mb.training)):
            rows.extend(SideBySide(line.label, line.bytes, group_b[key].bytes) for key, line in group_a.items())
        return rows


def _is_cross(a: ModelSummary, b: ModelSummary) -> bool:
    frameworks = {a.source.framework, b.source.framework}
    return "keras" in frameworks and len(frameworks) == 2


# --- alignment -------------------------------------------------------------------------------------------


def _prefix_candidates(summary: ModelSummary) -> list[str]:
    kids = [c for c in summary.root.children if c.children]
    kids.sort(key=lambda c: -c.total.params)
    return [""] + [f"{c.path}." for c in kids[:MAX_PREFIX_CANDIDATES]]


def _strip(path: str, prefix: str) -> str:
    return path[len(prefix):] if prefix and path.startswith(prefix) else path


def _sample(paths: list[str], limit: int = PREFIX_SAMPLE) -> list[str]:
    step = max(1, len(paths) // limit)
    return paths[::step]


def _choose_prefixes(a: ModelSummary, b: ModelSummary) -> tuple[str, str]:
    """The pair of wrapper prefixes whose removal makes the most paths of A and B meet (none on a tie); scored on
    an even sample of B's paths, so a 10^5-layer pair is not walked once per candidate pair."""
    paths_a = [n.path for n, _ in a.walk() if n.path]
    paths_b = _sample([n.path for n, _ in b.walk() if n.path])
    best, chosen = -1, ("", "")
    for pa in _prefix_candidates(a):
        keys_a = {p[len(pa):] if pa and p.startswith(pa) else p for p in paths_a}
        for pb in _prefix_candidates(b):
            hits = sum(1 for p in paths_b if (p[len(pb):] if pb and p.startswith(pb) else p) in keys_a)
            if hits > best:
                best, chosen = hits, (pa, pb)
    return chosen


def _preorder(summary: ModelSummary) -> tuple[list[LayerNode], dict[int, int], dict[int, LayerNode | None]]:
    nodes: list[LayerNode] = []
    parent: dict[int, LayerNode | None] = {id(summary.root): None}
    for node, _ in summary.walk():
        nodes.append(node)
        for child in node.children:
            parent[id(child)] = node
    return nodes, {id(n): i for i, n in enumerate(nodes)}, parent


class _Side:
    """One summary prepared for alignment: pre-order, parents, framework and Keras Flatten inputs."""

    def __init__(self, summary: ModelSummary, prefix: str, cross: bool) -> None:
        self.summary = summary
        self.prefix = prefix
        self.framework = summary.source.framework
        self.keras = cross and self.framework == "keras"
        self.nodes, self.order, self.parent = _preorder(summary)
        self.flatten: dict[int, tuple[int, ...]] = {}
        if self.keras:
            for node in self.nodes:
                for i, child in enumerate(node.children):
                    hwc = flatten_input(node.children, i)
                    if hwc is not None:
                        self.flatten[id(child)] = hwc

    def key(self, node: LayerNode) -> str:
        return _strip(node.path, self.prefix)

    def tensors(self, node: LayerNode, side: str) -> list[tuple[str, TensorInfo, Layout | None]]:
        """(canonical local name, tensor, layout) of a node's own tensors."""
        out = []
        for t in node.tensors:
            local = local_name(t, node)
            layout = None
            if self.keras:
                layout = kernel_layout(node.type, local, side, t.shape, self.flatten.get(id(node)))
                local = canonical_tensor_name(local, "keras")
            out.append((local, t, layout))
        return out

    def signature(self, node: LayerNode, side: str) -> tuple:
        shapes = []
        for _, t, layout in self.tensors(node, side):
            shapes.append(layout.shape(t.shape) if layout is not None else t.shape)
        return (canonical_type(node.type), tuple(sorted(shapes)), bool(node.children))


def _pair_tensors(pair: LayerPair, side_a: _Side, side_b: _Side) -> tuple[TensorPair, ...]:
    ta = side_a.tensors(pair.a, "a") if pair.a is not None else []
    tb = side_b.tensors(pair.b, "b") if pair.b is not None else []
    by_b: dict[str, tuple[str, TensorInfo, Layout | None]] = {}
    for item in tb:
        by_b.setdefault(item[0], item)
    out: list[TensorPair] = []
    left_a = []
    for name, t, layout in ta:
        match = by_b.pop(name, None)
        if match is None:
            left_a.append((name, t, layout))
            continue
        out.append(TensorPair(t, match[1], name, layout or match[2]))
    left_b = [item for item in tb if by_b.get(item[0]) is item]
    for name, t, layout in left_a:  # unnamed leftovers pair by shape, in order
        shape = layout.shape(t.shape) if layout is not None else t.shape
        match = next((m for m in left_b if (m[2].shape(m[1].shape) if m[2] is not None else m[1].shape) == shape),
                     None)
        if match is not None:
            left_b.remove(match)
            out.append(TensorPair(t, match[1], name, layout or match[2]))
        else:
            out.append(TensorPair(t, None, name, layout))
    out.extend(TensorPair(None, t, name, layout) for name, t, layout in left_b)
    return tuple(out)


def align(a: ModelSummary, b: ModelSummary) -> StructureDiff:
    """Pair the layers of A and B: by path (wrapper prefix removed), then by order and signature."""
    cross = _is_cross(a, b)
    prefix_a, prefix_b = _choose_prefixes(a, b)
    side_a, side_b = _Side(a, prefix_a, cross), _Side(b, prefix_b, cross)
    root = LayerPair(a.root, b.root, "root")
    of_a: dict[int, LayerPair] = {id(a.root): root}
    of_b: dict[int, LayerPair] = {id(b.root): root}

    by_key_b: dict[str, LayerNode] = {}
    for node in side_b.nodes[1:]:
        by_key_b.setdefault(side_b.key(node), node)
    for node in side_a.nodes[1:]:  # 1. by path, wrapper prefixes removed
        match = by_key_b.get(side_a.key(node))
        if match is not None and id(match) not in of_b:
            pair = LayerPair(node, match, "path")
            of_a[id(node)] = of_b[id(match)] = pair

    left_a = [n for n in side_a.nodes[1:] if id(n) not in of_a]
    left_b = [n for n in side_b.nodes[1:] if id(n) not in of_b]
    wrappers = {prefix_a[:-1]} if prefix_a else set()
    wrapper_b = prefix_b[:-1] if prefix_b else None
    queues: dict[tuple, list[LayerNode]] = {}
    for node in left_b:  # 2. what is left, by order within each signature
        if node.path != wrapper_b:
            queues.setdefault(side_b.signature(node, "b"), []).append(node)
    for node in left_a:
        if node.path in wrappers:
            continue
        queue = queues.get(side_a.signature(node, "a"))
        if queue:
            match = queue.pop(0)
            pair = LayerPair(node, match, "signature")
            of_a[id(node)] = of_b[id(match)] = pair
    for node in left_a:
        if id(node) not in of_a:
            of_a[id(node)] = LayerPair(node, None, "prefix" if node.path in wrappers else "")
    for node in left_b:
        if id(node) not in of_b:
            of_b[id(node)] = LayerPair(None, node, "prefix" if node.path == wrapper_b else "")

    _build_tree(root, side_a, side_b, of_a, of_b)
    diff = StructureDiff(a, b, root, prefix_a, prefix_b)
    for i, (pair, _) in enumerate(root.walk()):
        pair.index = i
        pair.tensors = _pair_tensors(pair, side_a, side_b)
        diff.rows.append(pair)
    return diff


def _build_tree(root: LayerPair, side_a: _Side, side_b: _Side, of_a: dict[int, LayerPair],
                of_b: dict[int, LayerPair]) -> None:
    """Hang every pair under its parent's pair (A's parent first) and order siblings: A's order, with B-only
    layers placed after the B sibling that precedes them."""
    under: dict[int, list[LayerPair]] = {}
    seen: set[int] = {id(root)}
    for pair in [*of_a.values(), *of_b.values()]:
        if id(pair) in seen:
            continue
        seen.add(id(pair))
        if pair.a is not None:
            parent = of_a[id(side_a.parent[id(pair.a)])]
        else:
            parent = of_b[id(side_b.parent[id(pair.b)])]
        pair.parent = parent
        under.setdefault(id(parent), []).append(pair)
    for kids in under.values():
        with_a = sorted((k for k in kids if k.a is not None), key=lambda k: side_a.order[id(k.a)])
        b_only = sorted((k for k in kids if k.a is None), key=lambda k: side_b.order[id(k.b)])
        merged: list[LayerPair] = []
        j = 0
        for kid in with_a:
            if kid.b is not None:
                at = side_b.order[id(kid.b)]
                while j < len(b_only) and side_b.order[id(b_only[j].b)] < at:
                    merged.append(b_only[j])
                    j += 1
            merged.append(kid)
        merged.extend(b_only[j:])
        kids[0].parent.children = merged  # every kid of this list shares one parent
