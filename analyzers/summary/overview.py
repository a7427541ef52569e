"""Plain numbers the views draw, computed once per model off the GUI thread (no Qt, no numpy).

A 10^5-node summary takes a while to walk; doing it here, in the loading job, keeps the window
painting. Every cached count of the summary is warmed at the same time, so the tree and the
inspector only read finished numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzers.summary import LayerNode, ModelSummary
from analyzers.summary.params import params_by_type, top_level_blocks

MAX_BLOCKS = 24  # bars the block chart draws; past it, the smallest blocks share one "other N blocks" bar
SPLIT_SHARE = 0.6  # a block holding more than this share of the model is shown as its children
OTHER_KEY = "\x00other"  # the key of the folded bar: no layer path can be it, so clicking it selects nothing


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: what it says, how big it is, and what it stands for (a path or a key)."""

    label: str
    value: float
    key: str
    members: tuple[str, ...] = ()  # paths folded into this bar (the "other N blocks" bar)


@dataclass(frozen=True)
class OverviewData:
    """The Overview tab's charts: parameters by layer type and by block, bytes by dtype."""

    by_type: tuple[Bar, ...]
    by_block: tuple[Bar, ...]
    by_dtype: tuple[Bar, ...]
    params_by_dtype: tuple[Bar, ...]
    params_total: float = 0.0  # the whole model's parameters: every percentage is a share of this
    bytes_total: float = 0.0  # the whole model's parameter and buffer bytes


def chart_blocks(summary: ModelSummary, limit: int = MAX_BLOCKS) -> list[LayerNode]:
    """Blocks worth a bar each: top-level blocks, opening any that holds most of the model (may exceed `limit`)."""
    blocks = list(top_level_blocks(summary))
    total = summary.totals.params or 1
    changed = True
    while changed:
        changed = False
        for i, block in enumerate(blocks):
            kids = [c for c in block.children if c.total.params or c.total.buffers]
            if len(kids) >= 2 and block.total.params / total > SPLIT_SHARE and len(blocks) - 1 + len(kids) <= limit:
                own = [block] if block.own.params else []
                blocks[i:i + 1] = own + kids
                changed = True
                break
    return blocks


def block_label(node: LayerNode) -> str:
    """A block's label: its path ("(model)" for the root's own tensors)."""
    return node.path or "(model)"


def block_bars(summary: ModelSummary, limit: int = MAX_BLOCKS) -> tuple[Bar, ...]:
    """One bar per block, in model order; past `limit` the smallest fold into one "other N blocks" bar.

    The bars add up to the model's parameters: a block opened into its children keeps a bar for its
    own tensors only, and the tensors of the node the blocks hang from get a bar of their own."""
    blocks = [b for b in chart_blocks(summary, limit) if b.total.params or b.total.buffers] or chart_blocks(summary, limit)
    paths = [b.path for b in blocks]
    bars = []
    for b in blocks:
        opened = any(p != b.path and p.startswith(b.path + ".") for p in paths)
        bars.append(Bar(f"{block_label(b)} (own tensors)", float(b.own.params), b.path) if opened
                    else Bar(block_label(b), float(b.total.params), b.path))
    rest = summary.totals.params - sum(bar.value for bar in bars)
    if rest > 0 and all(paths):  # tensors of the node the blocks hang from (a root block would hold them)
        parent = _blocks_parent(summary)
        bars.insert(0, Bar(f"{block_label(parent)} (own tensors)", float(rest), parent.path))
    if len(bars) <= limit:
        return tuple(bars)
    keep = set(sorted(range(len(bars)), key=lambda i: (-bars[i].value, i))[: limit - 1])
    folded = [bars[i] for i in range(len(bars)) if i not in keep]
    other = Bar(f"other {len(folded)} blocks", sum(b.value for b in folded), OTHER_KEY, tuple(b.key for b in folded))
    return (*(bars[i] for i in sorted(keep)), other)


def _blocks_parent(summary: ModelSummary) -> LayerNode:
    """The node top_level_blocks hangs the blocks from (single-child wrappers skipped)."""
    node = summary.root
    while len(node.children) == 1 and not node.own.params:
        node = node.children[0]
    return node


def overview_data(summary: ModelSummary) -> OverviewData:
    """Everything the Overview charts need, in one walk-heavy call meant for a worker thread."""
    totals = summary.totals
    by_type = tuple(Bar(name, float(n), name) for name, n in params_by_type(summary, top=12))
    by_dtype = tuple(Bar(d, float(b), d) for d, b in sorted(totals.bytes_by_dtype.items(), key=lambda kv: -kv[1]))
    params_by_dtype = tuple(Bar(d, float(n), d)
                            for d, n in sorted(totals.params_by_dtype.items(), key=lambda kv: -kv[1]))
    return OverviewData(by_type, block_bars(summary), by_dtype, params_by_dtype, float(totals.params),
                        float(sum(totals.bytes_by_dtype.values())))


def warm(summary: ModelSummary) -> None:
    """Compute every cached count (totals per node, dtypes, the path index) before the GUI reads them."""
    summary.totals  # noqa: B018 - fills root.total and, recursively, every node's .total
    summary.node_count  # noqa: B018 - builds the path index
    for node, _ in summary.walk():
        node.dtypes  # noqa: B018


def block_of(path: str, blocks: tuple[Bar, ...]) -> str | None:
    """The key of the block bar that contains `path` (the longest matching prefix), if any."""
    best: str | None = None
    best_len = -1
    for bar in blocks:
        for key in bar.members or (bar.key,):
            if key == path or not key or path.startswith(key + ".") or path.startswith(key + "/"):
                if len(key) > best_len:
                    best, best_len = bar.key, len(key)
    return best
