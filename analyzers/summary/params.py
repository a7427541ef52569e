"""Per-layer parameter rows and totals, as every view (table, JSON, tree) shows them."""

from __future__ import annotations

from dataclasses import dataclass

from analyzers.summary import Counts, LayerNode, ModelSummary


@dataclass(frozen=True)
class LayerRow:
    """One layer's numbers: own and subtree parameters, trainable split, buffers, bytes, share."""

    path: str
    name: str
    type: str
    depth: int
    params: int  # own
    params_total: int
    trainable_total: int
    non_trainable_total: int
    buffers_total: int
    bytes_total: int
    bytes_by_dtype: dict[str, int]
    percent: float  # params_total as % of the model's params
    dtypes: tuple[str, ...]
    children: int
    output_shape: tuple[int, ...] | None
    flops: int | None

    @property
    def trainable_label(self) -> str:
        """'yes', 'no', 'partly' or '' (no parameters)."""
        if self.params_total == 0:
            return ""
        if self.non_trainable_total == 0:
            return "yes"
        if self.trainable_total == 0:
            return "no"
        return "partly"


def row_for(node: LayerNode, depth: int, model_params: int) -> LayerRow:
    """The row of one node, with its share of `model_params`."""
    total: Counts = node.total
    return LayerRow(
        path=node.path,
        name=node.name,
        type=node.type,
        depth=depth,
        params=node.own.params,
        params_total=total.params,
        trainable_total=total.trainable_params,
        non_trainable_total=total.non_trainable_params,
        buffers_total=total.buffers,
        bytes_total=total.total_bytes,
        bytes_by_dtype=dict(total.bytes_by_dtype),
        percent=100.0 * total.params / model_params if model_params else 0.0,
        dtypes=node.dtypes,
        children=len(node.children),
        output_shape=node.output_shape,
        flops=node.flops,
    )


def layer_rows(summary: ModelSummary, max_depth: int | None = None) -> list[LayerRow]:
    """Rows for every node down to `max_depth` (root depth 0), pre-order."""
    model_params = summary.totals.params
    rows = []
    for node, depth in summary.walk():
        if max_depth is not None and depth > max_depth:
            continue
        rows.append(row_for(node, depth, model_params))
    return rows


def params_by_type(summary: ModelSummary, top: int = 12) -> list[tuple[str, int]]:
    """Own parameters summed by layer type, largest first; the tail folded into 'other'."""
    by: dict[str, int] = {}
    for node, _ in summary.walk():
        if node.own.params:
            key = node.type or "(untyped)"
            by[key] = by.get(key, 0) + node.own.params
    items = sorted(by.items(), key=lambda kv: -kv[1])
    if len(items) > top:
        rest = sum(v for _, v in items[top - 1 :])
        items = [*items[: top - 1], ("other", rest)]
    return items


def top_level_blocks(summary: ModelSummary, min_children: int = 2) -> list[LayerNode]:
    """The blocks a model is made of: descend through single-child wrappers (model -> layers)."""
    node = summary.root
    while len(node.children) == 1 and not node.own.params:
        node = node.children[0]
    blocks = list(node.children)
    # A wrapper like Llama's `model` (embed, layers, norm) beside `lm_head`: open the biggest
    # container when it holds most of the parameters, so repeated layers show as bars.
    return blocks if blocks else [node]
