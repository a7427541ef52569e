"""`layerscope weights MODEL`: weight statistics, quantisation and pruning previews, and (for the bundled zoo)
the held-out score after each; `--json` prints schema layerscope.weights/1."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from analyzers.errors import LayerScopeError
from analyzers.loaders import open_model
from analyzers.tasks import drive
from app.cli.options import add_open_arguments, options_from
from app.progress import TerminalProgress


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `weights`."""
    p.add_argument("model", help="checkpoint file or model folder whose values are on disk")
    p.add_argument("--stats", action="store_true",
                   help="min, max, mean, std, exact zeros, NaN/Inf and a histogram per tensor and layer, with "
                        "findings (the default when nothing else is asked)")
    p.add_argument("--quant-preview", metavar="SCHEMES", default=None,
                   help="round-trip error (SNR dB, relative error) and size per layer: int8 (per-channel) and/or "
                        "int4 (group 128), comma-separated")
    p.add_argument("--prune", type=float, metavar="SPARSITY", default=None,
                   help="global magnitude pruning at this sparsity (0-1): what each layer loses, sizes in CSR/bitmap")
    p.add_argument("--accuracy", action="store_true",
                   help="bundled zoo models: the held-out score after int8, int4 and pruning at 30/50/70 %%")
    p.add_argument("--device", default="cpu", help="device for --accuracy (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON document (schema layerscope.weights/1)")
    p.add_argument("--top", type=int, default=20, metavar="N", help="text: rows per table (default 20)")
    add_open_arguments(p)


def _schemes(text: str | None) -> tuple[str, ...]:
    from analyzers.weights.quantize import SCHEMES

    if text is None:
        return ()
    schemes = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    bad = [s for s in schemes if s not in SCHEMES]
    if bad or not schemes:
        raise LayerScopeError(f"--quant-preview '{text}' names no known scheme; use {', '.join(SCHEMES)} "
                              "(comma-separated).")
    return schemes


def run(args: argparse.Namespace) -> int:
    """Open the model, stream its weights through the requested analyses, print them."""
    from analyzers.weights.report import WeightsRequest, analyze_weights, weights_to_json

    schemes = _schemes(args.quant_preview)
    if args.prune is not None and not (0.0 <= args.prune < 1.0) or (args.prune is not None and math.isnan(args.prune)):
        raise LayerScopeError(f"--prune {args.prune:g} is not a sparsity; give a fraction from 0 to below 1, e.g. 0.5.")
    if args.top < 1:
        raise LayerScopeError("--top must be 1 or more.")
    stats = args.stats or not (schemes or args.prune is not None or args.accuracy)
    request = WeightsRequest(stats, schemes, args.prune)
    progress = TerminalProgress()
    shrink = None
    try:
        from app.loading import bundled_options

        options = bundled_options(Path(args.model), options_from(args))
        summary = drive(open_model(args.model, options), progress)
        analysis = drive(analyze_weights(summary, request), progress)
        if args.accuracy:
            from analyzers.explain.live_jobs import LiveModels
            from analyzers.explain.requests import ModelRef
            from analyzers.weights.shrink import shrink_job

            models = LiveModels()
            try:
                ref = ModelRef(Path(args.model).expanduser().resolve(), options, args.device)
                shrink = drive(shrink_job(models, ref), progress)
            finally:
                models.forget()
    finally:
        progress.close()
    if args.json:
        doc = weights_to_json(summary, analysis, shrink)
        json.dump(doc, sys.stdout, indent=1 if sys.stdout.isatty() else None,
                  separators=None if sys.stdout.isatty() else (",", ":"), allow_nan=False)
        sys.stdout.write("\n")
    else:
        from analyzers.weights.text import render_weights

        sys.stdout.write(render_weights(summary, analysis, shrink, args.top))
    return 0

