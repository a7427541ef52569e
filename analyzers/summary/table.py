"""Text and Markdown renderings of a summary: a tree like torchinfo's, then totals and what-ifs."""

from __future__ import annotations

import json

from analyzers.summary import LayerNode, ModelSummary
from analyzers.summary.memory import MemoryReport, estimate_memory, human_bytes
from analyzers.summary.params import layer_rows

DEFAULT_TABLE_DEPTH = 3


def _label(node: LayerNode, root: bool) -> str:
    name = node.name if not root else "(model)"
    return f"{name} ({node.type})" if node.type else name


def tree_lines(summary: ModelSummary, max_depth: int | None) -> list[tuple[str, LayerNode]]:
    """(indented label, node) pairs with box-drawing branches, down to max_depth."""
    out: list[tuple[str, LayerNode]] = [(_label(summary.root, True), summary.root)]
    stack: list[tuple[LayerNode, str, bool, int]] = [
        (child, "", i == len(summary.root.children) - 1, 1) for i, child in enumerate(summary.root.children)
    ][::-1]
    while stack:
        node, prefix, last, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            continue
        out.append((f"{prefix}{'└─' if last else '├─'}{_label(node, False)}", node))
        child_prefix = prefix + ("  " if last else "│ ")
        kids = node.children
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], child_prefix, i == len(kids) - 1, depth + 1))
    return out


def _max_depth(summary: ModelSummary) -> int:
    return max(d for _, d in summary.walk())


def render_table(summary: ModelSummary, depth: int | None = DEFAULT_TABLE_DEPTH, batch: int = 1,
                 seq_len: int | None = None) -> str:
    """The `inspect --table` text."""
    total_params = summary.totals.params or 1
    lines = tree_lines(summary, depth)
    name_w = min(max(len(label) for label, _ in lines) + 2, 90)
    header = f"{'Layer (type)':<{name_w}}{'Own params':>16}{'Total params':>18}{'%':>9}{'Bytes':>13}"
    rule = "=" * len(header)
    out = [rule, header, rule]
    for label, node in lines:
        total = node.total
        if len(label) > name_w - 1:
            label = label[: name_w - 2] + "…"
        out.append(
            f"{label:<{name_w}}{node.own.params:>16,}{total.params:>18,}"
            f"{100.0 * total.params / total_params:>8.2f}%{human_bytes(total.total_bytes):>13}"
        )
    out.append(rule)
    deepest = _max_depth(summary)
    if depth is not None and deepest > depth:
        out.append(f"(showing depth {depth} of {deepest}; --depth N shows more)")
    out.extend(_totals_lines(summary))
    out.extend(_metadata_lines(summary))
    out.append("-" * len(header))
    out.extend(_memory_lines(estimate_memory(summary, batch=batch, seq_len=seq_len)))
    if summary.notes:
        out.append("-" * len(header))
        out.extend(f"Note: {n}" for n in summary.notes)
    return "\n".join(out) + "\n"


def _totals_lines(summary: ModelSummary) -> list[str]:
    t = summary.totals
    src = summary.source
    return [
        f"Source: {src.path}  [{src.format}{', ' + src.framework if src.framework else ''}]",
        f"Total params: {t.params:,}",
        f"Trainable params: {t.trainable_params:,}",
        f"Non-trainable params: {t.non_trainable_params:,}",
        f"Buffers: {t.buffers:,} elements ({human_bytes(t.buffer_bytes)})",
        f"Parameter bytes: {t.param_bytes:,} ({human_bytes(t.param_bytes)})",
        "Bytes by dtype: " + ", ".join(f"{d} {human_bytes(b)}" for d, b in sorted(t.bytes_by_dtype.items(),
                                                                                key=lambda kv: -kv[1])),
    ]


def _metadata_lines(summary: ModelSummary) -> list[str]:
    if not summary.metadata:
        return []
    out = ["Metadata:"]
    for key, value in summary.metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > 160:
            text = text[:159] + "…"
        out.append(f"  {key}: {text}")
    return out


def _memory_lines(report: MemoryReport) -> list[str]:
    head = "Memory what-ifs"
    if report.kv_cache is not None:
        head += f" (inference: batch {report.batch}, {report.seq_len} tokens)"
    rows = [head]
    rows.append(f"  {'weights as stored':<28}{human_bytes(report.as_stored.bytes):>12}")
    for line in report.weights.values():
        rows.append(f"  {line.label:<28}{human_bytes(line.bytes):>12}   {line.formula}")
    for line in report.inference.values():
        rows.append(f"  {line.label:<28}{human_bytes(line.bytes):>12}   {line.formula}")
    for line in report.training.values():
        rows.append(f"  {line.label:<28}{human_bytes(line.bytes):>12}   {line.formula}")
    rows.extend(f"  * {a}" for a in report.assumptions)
    return rows


def render_markdown(summary: ModelSummary, depth: int | None = DEFAULT_TABLE_DEPTH, batch: int = 1,
                    seq_len: int | None = None) -> str:
    """The `inspect --markdown` text: a layer table, totals and the what-if table."""
    t = summary.totals
    out = [f"# {summary.source.path}", "",
           f"Format **{summary.source.format}**, framework **{summary.source.framework or '—'}**, "
           f"**{t.params:,}** parameters ({t.trainable_params:,} trainable), "
           f"{human_bytes(t.total_bytes)} stored.", "",
           "| Layer | Type | Own params | Total params | % | Bytes | dtypes |",
           "|---|---|---:|---:|---:|---:|---|"]
    for row in layer_rows(summary, depth):
        name = ("&nbsp;&nbsp;" * row.depth) + (f"`{row.name}`" if row.path else "(model)")
        out.append(f"| {name} | {row.type} | {row.params:,} | {row.params_total:,} | {row.percent:.2f} | "
                   f"{human_bytes(row.bytes_total)} | {', '.join(row.dtypes)} |")
    report = estimate_memory(summary, batch=batch, seq_len=seq_len)
    out += ["", "| What-if | Bytes | Formula |", "|---|---:|---|"]
    for line in (report.as_stored, *report.weights.values(), *report.inference.values(),
                 *report.training.values()):
        out.append(f"| {line.label} | {human_bytes(line.bytes)} | {line.formula} |")
    out.append("")
    out.extend(f"- {a}" for a in report.assumptions)
    out.extend(f"- Note: {n}" for n in summary.notes)
    return "\n".join(out) + "\n"


def render_shapes(summary: ModelSummary, caption: str, depth: int | None = DEFAULT_TABLE_DEPTH,
                  markdown: bool = False, notes: tuple[str, ...] = ()) -> str:
    """`inspect --shapes --flops`: each layer's output shape and FLOPs (with what they are for), as text or
    Markdown; a layer without a figure says 'unknown'."""
    from analyzers.summary.shapes import human_flops, shape_text

    lines = tree_lines(summary, depth)
    if markdown:
        out = ["", "## Output shapes and FLOPs", "", caption, "", "| Layer | Output shape | FLOPs |", "|---|---|---:|"]
        for label, node in lines:
            flops = f"{node.flops:,}" if node.flops is not None else "unknown"
            out.append(f"| `{label.strip()}` | {shape_text(node.output_shape) or 'unknown'} | {flops} |")
    else:
        name_w = min(max(len(label) for label, _ in lines) + 2, 90)
        header = f"{'Layer (type)':<{name_w}}{'Output shape':>26}{'FLOPs':>22}"
        rule = "=" * len(header)
        out = [caption, rule, header, rule]
        for label, node in lines:
            if len(label) > name_w - 1:
                label = label[: name_w - 2] + "…"
            shape = shape_text(node.output_shape) or "unknown"
            flops = f"{node.flops:,}" if node.flops is not None else "unknown"
            out.append(f"{label:<{name_w}}{shape:>26}{flops:>22}")
        out.append(rule)
        out.append(f"Total: {human_flops(summary.root.flops)}")
    out.extend(f"Note: {n}" for n in notes)
    return "\n".join(out) + "\n"
