"""`layerscope run MODEL --input ...`: the prediction, latency, peak memory and the device that ran it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.explain.inputs import ModelInput
from analyzers.tasks import drive
from app.cli.options import add_model_arguments, check_device, input_from_args, open_from_args
from app.progress import TerminalProgress

RUN_SCHEMA = "layerscope.run/1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `run`."""
    add_model_arguments(p)
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes to list (default 5)")
    p.add_argument("--runs", type=int, default=10, metavar="N", help="timed runs; the median is reported (default 10)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed warm-up runs (default 2)")
    p.add_argument("--json", action="store_true", help=f"print one JSON document (schema {RUN_SCHEMA})")


def run(args: argparse.Namespace) -> int:
    """Open, run, print."""
    if args.top_k < 1 or args.runs < 1 or args.warmup < 0:
        raise LayerScopeError("--top-k and --runs must be at least 1, --warmup at least 0.")
    check_device(args.device)
    progress = TerminalProgress()
    try:
        live = open_from_args(args, progress)
        inp = input_from_args(args, live)
        result = drive(live.run(inp, args.top_k, args.warmup, args.runs), progress)
    finally:
        progress.close()
    if args.json:
        doc = {"schema": RUN_SCHEMA, "model": live.describe(), "device": result.device, "framework": live.framework,
               "input": inp.describe(), "prediction": result.prediction.to_json(), "latency": result.timing.to_json()}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_run(live, inp, result))
    return 0


def format_prediction(prediction: Any) -> list[str]:
    """Lines describing a prediction: the answer span, the top-k table, or the raw output summary."""
    lines = []
    if prediction.answer is not None:
        a = prediction.answer
        lines.append(f"answer:   \"{a.text}\" (tokens {a.start}-{a.end}, score {a.score:.3f})")
    if prediction.kind == "raw":
        o = prediction.output
        lines.append(f"output:   shape {o.shape}, min {o.min:.4g}, max {o.max:.4g}, mean {o.mean:.4g}, std {o.std:.4g}")
        return lines
    header = "start positions" if prediction.kind == "qa" else "top classes"
    lines.append(f"{header} ({'probabilities from ' + prediction.probabilities}):")
    for c in prediction.top:
        lines.append(f"  {c.index:>5}  {c.label[:30]:<30} {100 * c.probability:6.2f}%   score {c.score:.4g}")
    return lines


def format_run(live: Any, inp: ModelInput, result: Any) -> str:
    """The human-readable report of `run`."""
    t = result.timing
    from analyzers.summary.memory import human_bytes

    lines = [f"model:    {live.path.name} ({live.framework}, {live.format})",
             f"input:    {inp.source} {list(inp.shape)} {inp.array.dtype}",
             *(f"note:     {note}" for note in inp.notes),
             f"device:   {result.device}",
             *format_prediction(result.prediction),
             f"latency:  {t.median_ms:.3f} ms median of {t.runs} runs after {t.warmup} warm-up "
             f"(min {t.min_ms:.3f}, max {t.max_ms:.3f})",
             f"memory:   {human_bytes(t.peak_bytes)} ({t.memory_kind})"]
    lines.extend(f"note:     {n}" for n in live.notes)
    return "\n".join(lines) + "\n"
