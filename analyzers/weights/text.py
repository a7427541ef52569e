"""`layerscope weights` as text: findings, per-layer statistics, the previews and the zoo's held-out scores."""

from __future__ import annotations

import math

from analyzers.summary import ModelSummary
from analyzers.summary.memory import human_bytes
from analyzers.weights.accuracy import ShrinkReport
from analyzers.weights.report import WeightsAnalysis


def _g(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


def _db(value: float) -> str:
    return "exact" if math.isinf(value) and value > 0 else "—" if math.isnan(value) else f"{value:.1f} dB"


def render_weights(summary: ModelSummary, analysis: WeightsAnalysis, shrink: ShrinkReport | None,
                   top: int = 20) -> str:
    """Every table of the analyses asked for, largest layers first."""
    out = [f"Weights of {summary.source.path}  [{summary.source.format}]"]
    s = analysis.stats
    if s is not None:
        model = s.subtree("")
        out.append("")
        out.append(f"Statistics of {len(s.tensors):,} tensors in {len(s.layers):,} layers "
                   f"({human_bytes(s.bytes_read)} read twice in {s.seconds:.1f} s)")
        if model is not None:
            out.append(f"  whole model: min {_g(model.min)}, max {_g(model.max)}, mean {_g(model.mean)}, "
                       f"std {_g(model.std)}, exact zeros {model.zero_fraction:.2%}, NaN {model.nans:,}, "
                       f"Inf {model.infs:,}")
        if s.findings:
            out.append("Findings:")
            out.extend(f"  [{f.severity}] {f.text}" for f in s.findings)
        else:
            out.append("Findings: none (no NaN/Inf, no dead layer, no extreme range)")
        rows = sorted(s.layers.items(), key=lambda kv: -kv[1].count)[:top]
        width = min(max((len(p or "(model)") for p, _ in rows), default=10) + 2, 60)
        out.append(f"{'Layer':<{width}}{'values':>12}{'min':>11}{'max':>11}{'mean':>11}{'std':>11}"
                   f"{'zeros':>8}{'NaN':>6}{'Inf':>6}")
        for path, v in rows:
            name = (path or "(model)")[-(width - 2):]
            out.append(f"{name:<{width}}{v.count:>12,}{_g(v.min):>11}{_g(v.max):>11}{_g(v.mean):>11}{_g(v.std):>11}"
                       f"{v.zero_fraction:>8.1%}{v.nans:>6}{v.infs:>6}")
        if len(s.layers) > top:
            out.append(f"(largest {top} of {len(s.layers):,} layers; --top N shows more, --json all)")
        out.extend(f"Note: {n}" for n in s.notes)
    q = analysis.quant
    if q is not None:
        out.append("")
        out.append("Quantisation preview (weights with 2+ dimensions; biases and norms stay as stored)")
        for sch in q.schemes:
            t = q.totals(sch)
            out.append(f"  {sch}: SNR {_db(t.snr_db)}, relative error {t.relative_error:.4f}, weights "
                       f"{human_bytes(t.bytes_before)} -> {human_bytes(t.bytes_after)}, model "
                       f"{human_bytes(q.model_bytes)} -> {human_bytes(q.model_bytes_after[sch])}")
        worst = sorted(q.layers.items(), key=lambda kv: min(e.snr_db for e in kv[1].values()))[:top]
        out.append("  layers with the lowest SNR:")
        for path, errs in worst:
            cells = ", ".join(f"{sch} {_db(e.snr_db)} (rel {e.relative_error:.4f})" for sch, e in errs.items())
            out.append(f"    {path or '(model)'}: {cells}")
    p = analysis.prune
    if p is not None:
        out.append("")
        out.append(f"Global magnitude pruning at {p.sparsity:.0%}: threshold |w| <= {_g(p.threshold, 6)}, "
                   f"{p.achieved:.2%} of the eligible weights zeroed; model {human_bytes(p.model_bytes)} -> "
                   f"{human_bytes(p.model_bytes_after)} (pruned tensors as CSR or bitmap, whichever is smaller)")
        rows = sorted(p.layers.items(), key=lambda kv: -kv[1].fraction)[:top]
        out.append("  layers losing the most:")
        for path, loss in rows:
            out.append(f"    {path or '(model)'}: {loss.fraction:.1%} of {loss.weights:,} weights, "
                       f"relative error {loss.relative_error:.4f}, {human_bytes(loss.bytes_before)} -> "
                       f"{human_bytes(loss.bytes_after)} ({loss.format})")
    if shrink is not None:
        out.append("")
        out.append(f"{shrink.title}: {shrink.metric} on {shrink.heldout_size} held-out examples "
                   f"(the zoo's build measured {_g(shrink.manifest_score)})")
        for row in shrink.rows:
            delta = "" if row.variant == "original" else f"  ({row.delta:+.4f})"
            out.append(f"  {row.label:<36}{row.score:>8.4f}{delta}   weights {human_bytes(row.weight_bytes)}")
        out.extend(f"Note: {n}" for n in shrink.notes)
    out.extend(f"Note: {n}" for n in analysis.notes)
    return "\n".join(out) + "\n"
