"""The report as one self-contained HTML page: inline CSS, charts as inline SVG, pictures as data URIs,
a small inline script to sort and filter the layer table; no request of any kind leaves the page.

Jinja2 with autoescaping renders it: every name from a checkpoint reaches the page as text (a layer
called `<script>` shows as those characters), in the table, the charts and the notes alike.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from analyzers.report.model import Chart, Report, layer_table, memory_rows
from analyzers.summary.memory import human_bytes, human_count

BAR_COLOURS = {"params": "#3b78c2", "bytes": "#2a9d74"}


def svg_bar_chart(chart: Chart, width: int = 640) -> str:
    """A horizontal bar chart as an inline SVG element (labels escaped, long ones shortened)."""
    from markupsafe import escape

    bars = chart.bars
    row, label_w, text_w = 22, 190, 150
    height = 30 + row * len(bars)
    top = max((v for _, v, _ in bars), default=0.0) or 1.0
    plot_w = width - label_w - text_w
    colour = BAR_COLOURS.get(chart.unit, "#666")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(chart.title)}">',
             f'<text x="0" y="16" class="chart-title">{escape(chart.title)}</text>']
    for i, (label, value, text) in enumerate(bars):
        y = 26 + i * row
        shown = label if len(label) <= 28 else label[:27] + "…"
        w = max(1.0, plot_w * value / top) if value > 0 else 0.0
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" class="bar-label">'
                     f'<title>{escape(label)}</title>{escape(shown)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 7}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" class="bar-text">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI (the page needs no file beside it)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>LayerScope report: {{ report.title }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid #d7dce3;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#5a6472}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}th,td{border-bottom:1px solid #e3e7ec;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8;font-weight:600;cursor:default}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.layers th{cursor:pointer}table.layers td.path{word-break:break-all}
.kv td:first-child{width:210px;color:#5a6472}.chart{display:block;margin:8px 0}.chart-title{font-weight:600;font-size:13px}
.bar-label,.bar-text{font-size:11px;fill:#1d2430}.pictures{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0}figure img{max-width:420px;image-rendering:pixelated;border:1px solid #d7dce3}figcaption{font-size:12px;color:#5a6472;max-width:420px}
.note{background:#fff8e1;border-left:3px solid #e0a800;padding:4px 8px;margin:4px 0}.filter{margin:4px 0;padding:3px 6px;width:260px}
@media print{body{max-width:none;margin:0}.filter{display:none}h2{break-after:avoid}table{break-inside:auto}tr{break-inside:avoid}}
</style></head><body>
<h1>{{ report.title }}</h1>
<div class="muted">LayerScope report · {{ report.created }}</div>
{% for m in report.models %}
<section class="model">
{% if report.models|length > 1 %}<h2>Model {{ "AB"[loop.index0] }}: {{ m.name }}</h2>{% endif %}
{% if report.includes("header") %}
<h2>Source</h2>
<table class="kv">
<tr><td>Model</td><td>{{ m.name }}</td></tr>
<tr><td>Path</td><td class="mono">{{ m.path }}</td></tr>
<tr><td>Format / framework</td><td>{{ m.format }} / {{ m.framework or "—" }}</td></tr>
<tr><td>Size on disk</td><td>{{ hb(m.size_bytes) }} ({{ "{:,}".format(m.size_bytes) }} bytes)</td></tr>
<tr><td>SHA-256</td><td class="mono">{{ m.combined_sha256 }}{% if m.files|length > 1 %} (of {{ m.files|length }} files' digests){% endif %}</td></tr>
{% if m.files|length > 1 %}<tr><td>Files</td><td class="mono">{% for f in m.files %}{{ f.path }} · {{ hb(f.size) }} · {{ f.sha256 }}<br>{% endfor %}</td></tr>{% endif %}
<tr><td>Report date</td><td>{{ report.created }}</td></tr>
<tr><td>Versions</td><td>{% for k, v in report.versions.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% if report.device %}<tr><td>Device</td><td>{{ report.device }}</td></tr>{% endif %}
<tr><td>Reproduce</td><td class="mono">{{ report.command }}</td></tr>
</table>
{% endif %}
{% if report.includes("totals") %}
{% set t = m.summary_doc.totals %}
<h2>Totals</h2>
<table class="kv">
<tr><td>Parameters</td><td>{{ "{:,}".format(t.params) }} ({{ hc(t.params) }})</td></tr>
<tr><td>Trainable / non-trainable</td><td>{{ "{:,}".format(t.trainable_params) }} / {{ "{:,}".format(t.non_trainable_params) }}</td></tr>
<tr><td>Buffers</td><td>{{ "{:,}".format(t.buffers) }} values</td></tr>
<tr><td>Parameter bytes</td><td>{{ hb(t.param_bytes) }}</td></tr>
<tr><td>Bytes by dtype</td><td>{% for d, b in t.bytes_by_dtype.items() %}{{ d }} {{ hb(b) }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
</table>
{% endif %}
{% if report.includes("notes") and m.notes %}
<h2>Notes</h2>{% for n in m.notes %}<div class="note">{{ n }}</div>{% endfor %}
{% endif %}
{% if report.includes("charts") %}
<h2>Charts</h2>{% for c in m.charts %}{{ svg(c) }}{% endfor %}
{% endif %}
{% if report.includes("layers") %}
{% set rows = layers(m) %}
<h2>Layers <span class="muted">(to depth {{ m.layer_depth }}; {{ rows|length }} rows)</span></h2>
<input class="filter" type="search" placeholder="Filter by name or type" aria-label="Filter layers">
<table class="layers"><thead><tr><th>Layer</th><th>Type</th><th class="num">Own params</th><th class="num">Total params</th><th class="num">% of model</th><th class="num">Bytes</th><th>Dtypes</th><th>Output shape</th><th class="num">FLOPs</th></tr></thead><tbody>
{% for r in rows %}<tr data-depth="{{ r.depth }}"><td class="path">{{ "\u00a0\u00a0" * r.depth }}{{ r.path or "(model)" }}</td><td>{{ r.type }}</td><td class="num">{{ "{:,}".format(r.params) }}</td><td class="num">{{ "{:,}".format(r.params_total) }}</td><td class="num">{{ "%.2f"|format(r.percent) }}</td><td class="num" data-v="{{ r.bytes_total }}">{{ hb(r.bytes_total) }}</td><td>{{ r.dtypes|join(", ") }}</td><td>{{ r.output_shape if r.output_shape is not none else "" }}</td><td class="num">{{ "{:,}".format(r.flops) if r.flops is not none else "" }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% if report.includes("memory") %}
<h2>Memory what-ifs</h2>
<table><thead><tr><th>What</th><th class="num">Bytes</th><th>Formula</th></tr></thead><tbody>
{% for label, b, formula in memory(m) %}<tr><td>{{ label }}</td><td class="num">{{ hb(b) }}</td><td class="muted">{{ formula }}</td></tr>{% endfor %}
</tbody></table>
{% if m.memory.assumptions %}<h3>Assumptions</h3><ul>{% for a in m.memory.assumptions %}<li>{{ a }}</li>{% endfor %}</ul>{% endif %}
{% endif %}
{% if report.includes("run") and m.run %}
<h2>Run</h2>
<table class="kv">
<tr><td>Input</td><td>{{ m.run.input.source }} {{ m.run.input.shape }}</td></tr>
<tr><td>Device</td><td>{{ m.run.device }}</td></tr>
{% if m.run.latency %}<tr><td>Latency</td><td>{{ "%.3f"|format(m.run.latency.median_ms) }} ms median of {{ m.run.latency.runs }} runs</td></tr>{% endif %}
{% if m.run.prediction.answer %}<tr><td>Answer</td><td>{{ m.run.prediction.answer.text }}</td></tr>{% endif %}
</table>
{% for n in m.run.input.notes %}<div class="note">{{ n }}</div>{% endfor %}
{% if m.run.prediction.top %}<table><thead><tr><th class="num">Index</th><th>Label</th><th class="num">Probability</th><th class="num">Score</th></tr></thead><tbody>
{% for c in m.run.prediction.top %}<tr><td class="num">{{ c.index }}</td><td>{{ c.label }}</td><td class="num">{{ pct(c.probability) }}</td><td class="num">{{ "%.4g"|format(c.score) }}</td></tr>{% endfor %}
</tbody></table>{% endif %}
{% endif %}
{% if report.includes("attribution") and m.attributions %}
<h2>Attribution</h2>
<div class="pictures">{% for p in m.pictures %}<figure><img alt="{{ p.caption }}" src="{{ uri(p.png) }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}</div>
{% for a in m.attributions %}
<h3>{{ a.method_title }}</h3>
<table class="kv">
<tr><td>Target</td><td>{{ a.target.index }} ({{ a.target.label }})</td></tr>
<tr><td>Parameters</td><td class="mono">{{ params(a.parameters) }}</td></tr>
<tr><td>Cost</td><td>{{ "%.3f"|format(a.seconds) }} s, {{ a.forward_passes }} forward passes on {{ a.device }}</td></tr>
{% if a.completeness_sentence %}<tr><td>Completeness</td><td>{{ a.completeness_sentence }}</td></tr>{% endif %}
{% if a.sanity %}<tr><td>Randomisation check</td><td>{{ a.sanity.verdict }} (Spearman {{ "%.3f"|format(a.sanity.spearman_abs) }})</td></tr>{% endif %}
</table>
{% for n in a.notes %}<div class="note">{{ n }}</div>{% endfor %}
{% endfor %}
{% endif %}
{% if report.includes("attention") and m.attention %}
{% set at = m.attention %}
<h2>Attention</h2>
<table class="kv">
<tr><td>Route</td><td>{{ at.route }} on {{ at.device }}</td></tr>
<tr><td>Layers × heads</td><td>{{ at.layers|length }} × {{ at.heads }}</td></tr>
<tr><td>Tokens</td><td>{{ at.tokens|length }}{% if at.padding %} ({{ at.padding }} padding, masked){% endif %}</td></tr>
</table>
{% for n in at.notes %}<div class="note">{{ n }}</div>{% endfor %}
<div class="pictures">{% for p in m.attention_pictures %}<figure><img alt="{{ p.caption }}" src="{{ uri(p.png) }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}</div>
{% endif %}
{% if report.includes("weights") and m.weights %}
<h2>Weights</h2><pre class="mono">{{ dumps(m.weights) }}</pre>
{% endif %}
</section>
{% endfor %}
{% if report.includes("compare") and report.compare %}
{% set c = report.compare %}
<h2>Comparison: A = {{ c.a.path }}, B = {{ c.b.path }}</h2>
<div class="muted">{% for k, v in c.alignment.items() %}{{ k.replace("_", " ") }} {{ v }}{% if not loop.last %} · {% endif %}{% endfor %}</div>
<h3>Totals</h3>
<table><thead><tr><th></th><th class="num">A</th><th class="num">B</th><th class="num">Δ</th><th class="num">Δ %</th></tr></thead><tbody>
{% for label, f in c.totals.items() %}<tr><td>{{ label }}</td><td class="num">{{ num(f.a) }}</td><td class="num">{{ num(f.b) }}</td><td class="num">{{ num(f.delta) }}</td><td class="num">{{ "%.2f"|format(f.delta_percent) if f.delta_percent is not none else "" }}</td></tr>{% endfor %}
</tbody></table>
<h3>Memory what-ifs</h3>
<table><thead><tr><th></th><th class="num">A</th><th class="num">B</th><th class="num">Δ</th></tr></thead><tbody>
{% for label, f in c.memory.items() %}<tr><td>{{ label }}</td><td class="num">{{ hb(f.a) }}</td><td class="num">{{ hb(f.b) }}</td><td class="num">{{ ("+" if f.delta > 0 else "") ~ hb(f.delta) if f.delta else "0" }}</td></tr>{% endfor %}
</tbody></table>
<h3>Aligned layers</h3>
<table class="layers"><thead><tr><th>Layer A</th><th>Layer B</th><th>Type</th><th class="num">Params A</th><th class="num">Params B</th><th class="num">Δ</th><th>What changed</th></tr></thead><tbody>
{% for r in c.layers %}<tr class="{{ r.status }}"><td class="path">{{ "\u00a0\u00a0" * r.depth }}{{ "(model)" if r.a == "" else (r.a if r.a is not none else "—") }}</td><td class="path">{{ "(model)" if r.b == "" else (r.b if r.b is not none else "—") }}</td><td>{{ r.type_a or r.type_b or "" }}{% if r.type_a and r.type_b and r.type_a != r.type_b %} → {{ r.type_b }}{% endif %}</td><td class="num">{{ num(r.params_total_a) }}</td><td class="num">{{ num(r.params_total_b) }}</td><td class="num">{{ num(r.delta) }}</td><td>{{ r.status if r.status in ("added", "removed") else "" }}{{ r.changes|join("; ") }}</td></tr>
{% endfor %}</tbody></table>
{% if c.only_a %}<p>Only in A: {{ c.only_a|join(", ") }}</p>{% endif %}
{% if c.only_b %}<p>Only in B: {{ c.only_b|join(", ") }}</p>{% endif %}
{% if c.drift %}
<h3>Weight drift</h3>
{% set dm = c.drift.model %}
<p>Whole model: relative change {{ "%.4g"|format(dm.relative_change) }}, cosine {{ "%.6f"|format(dm.cosine) }}, max |B − A| {{ "%.4g"|format(dm.max_abs_diff) }}, {{ pct(dm.changed_fraction) }} of elements changed.</p>
<table><thead><tr><th>Layer</th><th>Type</th><th class="num">Relative change</th><th class="num">Cosine</th><th class="num">Max |B − A|</th><th class="num">Changed</th><th class="num">Zeros A</th><th class="num">Zeros B</th></tr></thead><tbody>
{% for r in drift_rows(c.drift) %}{% set t = r.total %}<tr><td class="path">{{ r.a or r.b }}</td><td>{{ r.type }}</td><td class="num">{{ "%.4g"|format(t.relative_change) if t.relative_change is not none else "" }}</td><td class="num">{{ "%.6f"|format(t.cosine) if t.cosine is not none else "" }}</td><td class="num">{{ "%.4g"|format(t.max_abs_diff) if t.max_abs_diff is not none else "" }}</td><td class="num">{{ pct(t.changed_fraction) }}</td><td class="num">{{ pct(t.sparsity_a) }}</td><td class="num">{{ pct(t.sparsity_b) }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% if c.outputs %}<h3>The same input through both</h3><table class="kv">{% for k, v in scalars(c.outputs) %}<tr><td>{{ k.replace("_", " ") }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if report.compare_pictures %}<div class="pictures">{% for p in report.compare_pictures %}<figure><img alt="{{ p.caption }}" src="{{ uri(p.png) }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}</div>{% endif %}
{% endif %}
<script>
(function(){
  document.querySelectorAll("table.layers").forEach(function(table){
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows), state = {};
    table.querySelectorAll("th").forEach(function(th, col){
      th.addEventListener("click", function(){
        var dir = state[col] = state[col] === 1 ? -1 : 1;
        var key = function(tr){ var td = tr.cells[col]; var v = td.getAttribute("data-v") || td.textContent.replace(/,/g, "").trim(); var n = parseFloat(v); return isNaN(n) ? v.toLowerCase() : n; };
        rows.slice().sort(function(a, b){ var x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * dir; }).forEach(function(tr){ body.appendChild(tr); });
      });
    });
    var filter = table.previousElementSibling;
    if (filter && filter.classList.contains("filter")) filter.addEventListener("input", function(){
      var q = filter.value.toLowerCase();
      rows.forEach(function(tr){ tr.style.display = (tr.cells[0].textContent + " " + tr.cells[1].textContent).toLowerCase().indexOf(q) >= 0 ? "" : "none"; });
    });
  });
})();
</script>
</body></html>
"""


def _drift_rows(drift: dict[str, Any]) -> list[dict[str, Any]]:
    """The drift table's layers, most changed first (layers with no comparable values last)."""
    rows = list(drift.get("layers") or [])
    return sorted(rows, key=lambda r: -((r.get("total") or {}).get("relative_change") or -1.0))


def _scalars(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The plain (number or text) entries of a document, for a key-value table."""
    return [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in doc.items()
            if isinstance(v, str | int | float | bool) or v is None]


def _params(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameters.items())


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    """The compiled page template (compiling it costs more than rendering a 70B model's table)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(TEMPLATE)


def render_html(report: Report) -> str:
    """The report as one HTML page (a string)."""
    from markupsafe import Markup

    return _template().render(
        report=report, hb=human_bytes, hc=human_count, svg=lambda c: Markup(svg_bar_chart(c)),
        layers=layer_table, memory=memory_rows, uri=data_uri, params=_params,
        pct=lambda p: "" if p is None or p != p else f"{100 * p:.2f}%",
        dumps=lambda d: json.dumps(d, indent=1, default=str)[:200_000],
        num=lambda n: "" if n is None else f"{n:,}" if isinstance(n, int) else f"{n:.4g}",
        drift_rows=_drift_rows, scalars=_scalars)
