"""`layerscope.compare/1`: the JSON document `compare --json` prints, and the same content as a text table or
Markdown. Built from a StructureDiff and, when they were computed, the drift report, the two predictions
and the shared-scale maps."""

from __future__ import annotations

import math
from typing import Any

from analyzers.compare.measures import DriftReport, DriftStats
from analyzers.compare.outputs import OutputComparison, SharedMaps
from analyzers.compare.structure import LayerPair, SideBySide, StructureDiff
from analyzers.errors import printable
from analyzers.summary.memory import human_bytes

SCHEMA = "layerscope.compare/1"
STATUS_MARK = {"same": " ", "changed": "~", "added": "+", "removed": "-", "prefix": " "}


def _side(summary: Any) -> dict[str, Any]:
    s = summary.source
    return {"path": s.path, "format": s.format, "framework": s.framework, "params": summary.totals.params}


def _figure(row: SideBySide) -> dict[str, Any]:
    pct = row.delta_percent
    return {"a": row.a, "b": row.b, "delta": row.delta, "delta_percent": None if pct is None else round(pct, 4)}


def pair_json(pair: LayerPair, depth: int) -> dict[str, Any]:
    """One aligned row: both paths and types, counts A / B / Δ, bytes, dtypes and every change in words."""
    pct = pair.delta_percent
    return {
        "a": pair.path_a, "b": pair.path_b, "depth": depth, "status": pair.status, "paired_by": pair.how or None,
        "renamed": pair.renamed, "type_a": pair.a.type if pair.a else None, "type_b": pair.b.type if pair.b else None,
        "params_a": pair.a.own.params if pair.a else None, "params_b": pair.b.own.params if pair.b else None,
        "params_total_a": pair.params_a, "params_total_b": pair.params_b, "delta": pair.delta,
        "delta_percent": None if pct is None else round(pct, 4), "bytes_a": pair.bytes_a, "bytes_b": pair.bytes_b,
        "dtypes_a": list(pair.a.dtypes) if pair.a else [], "dtypes_b": list(pair.b.dtypes) if pair.b else [],
        "dtype_change": pair.dtype_change or None, "changes": pair.changes(),
        "tensors": [{"name": t.name, "a": t.a.name if t.a else None, "b": t.b.name if t.b else None,
                     "shape_a": list(t.shape_a) if t.shape_a is not None else None,
                     "shape_b": list(t.shape_b) if t.shape_b is not None else None,
                     "dtype_a": t.a.dtype if t.a else None, "dtype_b": t.b.dtype if t.b else None,
                     "trainable_a": t.a.trainable if t.a else None, "trainable_b": t.b.trainable if t.b else None,
                     "layout": t.layout.label if t.layout else None, "status": t.status} for t in pair.tensors],
    }


def compare_to_json(diff: StructureDiff, drift: DriftReport | None = None, outputs: OutputComparison | None = None,
                    maps: SharedMaps | None = None, depth: int | None = None, batch: int = 1,
                    seq_len: int | None = None, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole document as plain JSON-able data (`depth` limits the layer rows; None: all)."""
    layers = [pair_json(p, d) for p, d in diff.pairs() if depth is None or d <= depth]
    return {
        "schema": SCHEMA,
        "a": _side(diff.a),
        "b": _side(diff.b),
        "alignment": {"prefix_a": diff.prefix_a, "prefix_b": diff.prefix_b, "cross_framework": diff.cross_framework,
                      **diff.counts},
        "totals": {row.label: _figure(row) for row in diff.totals()},
        "memory": {row.label: _figure(row) for row in diff.memory(batch, seq_len)},
        "layers": layers,
        "only_a": [p.path_a for p in diff.only_a()],
        "only_b": [p.path_b for p in diff.only_b()],
        "drift": drift.to_json() if drift is not None else None,
        "outputs": None if outputs is None else {**(run or {}), **outputs.to_json()},
        "attribution": maps.to_json() if maps is not None else None,
    }


# --- text ------------------------------------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n:,}"


def _delta(n: int, pct: float | None) -> str:
    if n == 0:
        return "0"
    text = f"{n:+,}"
    return text + (f" ({pct:+.1f}%)" if pct is not None else "")


def _measure(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if value == math.inf:
        return "inf"
    return f"{value:.{digits}g}"


def _label(pair: LayerPair) -> str:
    if pair.how == "root":
        return "(model)"
    a, b = pair.path_a, pair.path_b
    if a is None or b is None:
        return printable(a if b is None else b, 60)
    return printable(a, 60) if a == b else f"{printable(a, 40)} ↔ {printable(b, 40)}"


def structure_lines(diff: StructureDiff, depth: int | None = 3) -> list[list[str]]:
    """Rows of the aligned layer table: mark, layer (A ↔ B when renamed), types, params A, B, Δ, dtype change."""
    rows = []
    for pair, d in diff.pairs():
        if depth is not None and d > depth:
            continue
        types = pair.a.type if pair.a is not None else ""
        if pair.b is not None and pair.b.type != types:
            types = f"{types or '-'} → {pair.b.type or '-'}" if pair.a is not None else pair.b.type
        rows.append([STATUS_MARK.get(pair.status, " "), "  " * d + _label(pair), printable(types, 40),
                     _count(pair.params_a) if pair.a else "-", _count(pair.params_b) if pair.b else "-",
                     _delta(pair.delta, pair.delta_percent), "; ".join(pair.changes())[:80]])
    return rows


def drift_lines(drift: DriftReport, limit: int = 30) -> list[list[str]]:
    """The layers ranked by relative change: layer, rel. change, cosine, max |Δ|, changed %, sparsity A / B."""
    rows = []
    for d in drift.ranked()[:limit]:
        rows.append(_drift_row(d.label, d.type, d.own))
    rows.append(_drift_row("(model)", "", drift.model))
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _drift_row(label: str, layer_type: str, s: DriftStats) -> list[str]:
    pct = _pct
    return [printable(label, 60), layer_type, _measure(s.relative_change), _measure(s.cosine, 6),
            _measure(s.max_abs), pct(s.changed_fraction), pct(s.sparsity_a), pct(s.sparsity_b)]


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(fmt(header))
    return [fmt(header), rule, *(fmt(r) for r in rows)]


def _md(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|") or " "

    align = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(esc(c) for c in r) + " |" for r in rows)]


STRUCTURE_HEADER = ["", "Layer (A ↔ B)", "Type", "Params A", "Params B", "Δ", "Changes"]
DRIFT_HEADER = ["Layer", "Type", "Rel. change", "Cosine", "Max |Δ|", "Changed", "Zeros A", "Zeros B"]
TOTALS_HEADER = ["", "A", "B", "Δ"]


def render(diff: StructureDiff, drift: DriftReport | None = None, outputs: OutputComparison | None = None,
           maps: SharedMaps | None = None, depth: int | None = 3, markdown: bool = False,
           batch: int = 1, seq_len: int | None = None) -> str:
    """The comparison as a terminal table (or Markdown): sources, alignment, totals, memory, layers, drift,
    outputs and maps."""
    table = _md if markdown else _table

    def head(text: str) -> str:
        return f"## {text}\n" if markdown else f"{text}\n{'=' * len(text)}"

    c = diff.counts
    lines = [head("LayerScope compare"),
             f"A: {printable(diff.a.source.path)}  [{diff.a.source.format}, {diff.a.source.framework}]",
             f"B: {printable(diff.b.source.path)}  [{diff.b.source.format}, {diff.b.source.framework}]",
             f"Aligned: {c['matched']} matched ({c['renamed']} renamed, {c['changed']} changed), "
             f"{c['only_a']} only in A, {c['only_b']} only in B"
             + (f"; prefixes removed: A '{diff.prefix_a}', B '{diff.prefix_b}'" if diff.prefix_a or diff.prefix_b
                else "")
             + ("; Keras layouts read as PyTorch's" if diff.cross_framework else ""), ""]
    totals = [[r.label, _count(r.a), _count(r.b), _delta(r.delta, r.delta_percent)] for r in diff.totals()]
    lines += [head("Totals"), *table(TOTALS_HEADER, totals, {1, 2, 3}), ""]
    memory = [[r.label, human_bytes(r.a), human_bytes(r.b), ("+" if r.delta > 0 else "-" if r.delta < 0 else "")
               + human_bytes(abs(r.delta))] for r in diff.memory(batch, seq_len)]
    lines += [head("Memory what-ifs"), *table(TOTALS_HEADER, memory, {1, 2, 3}), ""]
    lines += [head("Layers (~ changed, + only in B, - only in A)"),
              *table(STRUCTURE_HEADER, structure_lines(diff, depth), {3, 4, 5}), ""]
    if drift is not None:
        lines += [head("Weight drift (layers by relative change ‖B − A‖ / ‖A‖)"),
                  *table(DRIFT_HEADER, drift_lines(drift), {2, 3, 4, 5, 6, 7})]
        for t in drift.not_comparable():
            lines.append(f"not comparable: {printable(t.name_a, 80)} / {printable(t.name_b, 80)}: {t.reason}")
        if drift.only_a or drift.only_b:
            lines.append(f"tensors only in A: {len(drift.only_a)}, only in B: {len(drift.only_b)}")
        lines.append(f"read {human_bytes(drift.bytes_read)} in {drift.seconds:.2f} s")
        lines.append("")
    if outputs is not None:
        lines += [head("Same input through both"), *output_lines(outputs), ""]
    if maps is not None:
        lines.append(f"Attribution maps on one scale: 1.0 = {maps.scale:.4g} ({maps.sign}); own scales A "
                     f"{maps.own_scales[0]:.4g}, B {maps.own_scales[1]:.4g}")
        if maps.difference is not None:
            info = maps.to_json()["difference"]
            corr = info["correlation"]
            lines.append(f"difference B − A: mean |Δ| {info['mean_abs']:.4f}, max |Δ| {info['max_abs']:.4f}, "
                         f"correlation {'-' if corr is None else f'{corr:.4f}'}")
        elif maps.note:
            lines.append(maps.note)
        lines.append("")
    return "\n".join(lines).lstrip("\n") + "\n"


def output_lines(o: OutputComparison) -> list[str]:
    """Top-k side by side, then agreement and divergences."""
    rows = []
    for i in range(max(len(o.top_a), len(o.top_b))):
        cells = []
        for top in (o.top_a, o.top_b):
            if i < len(top):
                c = top[i]
                prob = "" if c.probability != c.probability else f" {100 * c.probability:6.2f}%"
                cells.append(f"{c.index:>4} {printable(c.label, 20)}{prob}")
            else:
                cells.append("")
        rows.append(f"  {cells[0]:<36} {cells[1]}")
    lines = [f"  {'A':<36} B", *rows]
    if o.agreement is not None:
        lines.append(f"top-1 agreement: {'yes' if o.agreement else 'no'}; top-k overlap {100 * (o.top_k_overlap or 0):.0f}%")
    if o.kl_ab is not None:
        lines.append(f"KL(A‖B) {o.kl_ab:.4g} nats, KL(B‖A) {o.kl_ba:.4g}, JS {o.js:.4g}, "
                     f"largest probability gap {o.max_probability_gap:.4g}")
    if o.note:
        lines.append(o.note)
    return lines
