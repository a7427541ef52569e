"""Plain numbers the views draw, computed once per model off the GUI thread (no Qt, no numpy).

A 10^5-node summary takes a while to walk; doing it here, in the loading job, keeps the window
painting. Every cached count of the summary is warmed at the same time, so the tree and the
inspector only read finished numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzers.params import params_by_type, top_level_blocks
from analyzers.summary import LayerNode, ModelSummary

MAX_BLOCKS = 16  # more bars than the chart can label legibly: a repeated stack stays one bar
SPLIT_SHARE = 0.6  # a block holding more than this share of the model is shown as its children


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: what it says, how big it is, and what it stands for (a path or a key)."""

    label: str
    value: float
    key: str


@dataclass(frozen=True)
class OverviewData:
    """The Overview tab's charts: parameters by layer type and by block, bytes by dtype."""

    by_type: tuple[Bar, ...]
    by_block: tuple[Bar, ...]
    by_dtype: tuple[Bar, ...]
    params_by_dtype: tuple[Bar, ...]


def chart_blocks(summary: ModelSummary, limit: int = MAX_BLOCKS) -> list[LayerNode]:
    """Blocks worth a bar each: top-level blocks, opening any that holds most of the model."""
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
    return blocks[:limit] if len(blocks) > limit else blocks


def block_label(node: LayerNode) -> str:
    """A block's label: its path ("(model)" for the root's own tensors)."""
    return node.path or "(model)"


def overview_data(summary: ModelSummary) -> OverviewData:
    """Everything the Overview charts need, in one walk-heavy call meant for a worker thread."""
    totals = summary.totals
    by_type = tuple(Bar(name, float(n), name) for name, n in params_by_type(summary, top=12))
    blocks = [b for b in chart_blocks(summary) if b.total.params or b.total.buffers] or chart_blocks(summary)
    by_block = tuple(Bar(block_label(b), float(b.total.params), b.path) for b in blocks)
    by_dtype = tuple(Bar(d, float(b), d) for d, b in sorted(totals.bytes_by_dtype.items(), key=lambda kv: -kv[1]))
    params_by_dtype = tuple(Bar(d, float(n), d)
                            for d, n in sorted(totals.params_by_dtype.items(), key=lambda kv: -kv[1]))
    return OverviewData(by_type, by_block, by_dtype, params_by_dtype)


def warm(summary: ModelSummary) -> None:
    """Compute every cached count (totals per node, dtypes, the path index) before the GUI reads them."""
    summary.totals  # noqa: B018 - fills root.total and, recursively, every node's .total
    summary.node_count  # noqa: B018 - builds the path index
    for node, _ in summary.walk():
        node.dtypes  # noqa: B018


def block_of(path: str, blocks: tuple[Bar, ...]) -> str | None:
    """The key of the block bar that contains `path` (the longest matching prefix), if any."""
    best: str | None = None
    for bar in blocks:
        key = bar.key
        if key == path or not key or path.startswith(key + ".") or path.startswith(key + "/"):
            if best is None or len(key) > len(best):
                best = key
    return best
