"""`layerscope compare A B`: two models aligned layer by layer, their weight drift (--weights), and the same
input through both with their attribution maps on one colour scale (--input / --method); printed as a
table, Markdown or one JSON document (schema layerscope.compare/1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.tasks import drive
from app.cli.options import add_open_arguments, check_device, options_from
from app.progress import TerminalProgress


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `compare`."""
    from app.cli.attribute import add_method_arguments

    p.add_argument("a", metavar="A", help="the first model (file or folder)")
    p.add_argument("b", metavar="B", help="the model to compare it with")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", dest="format", const="json",
                     help="print one JSON document (schema layerscope.compare/1)")
    fmt.add_argument("--table", action="store_const", dest="format", const="table", help="print tables (default)")
    fmt.add_argument("--markdown", action="store_const", dest="format", const="markdown", help="print Markdown")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="deepest layer level listed (root 0); default 3 for tables, all for JSON")
    p.add_argument("--weights", action="store_true",
                   help="also compare the weight values: relative change, cosine, max |B-A|, changed and zero shares")
    p.add_argument("--input", metavar="FILE|TEXT|ARRAY.npy",
                   help="run both models on this input (as `run --input` takes it; sample[:N] for a bundled model's "
                        "samples) and compare their outputs")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="device both models run on (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs and random draws (default 0)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes listed per model (default 5)")
    add_open_arguments(p)
    add_method_arguments(p)
    for action in p._actions:  # no maps unless a method is asked for
        if action.dest == "method":
            action.default = None
            action.help = "attribution method applied to both models; B explains A's target. " + \
                (action.help or "").split(": ", 1)[-1]
    p.add_argument("--target", type=int, metavar="K", help="class both maps explain (default: A's prediction)")
    p.add_argument("--layer", metavar="PATH", help="the layer a layer method hooks in A (B uses its own default)")
    p.add_argument("--batch", type=int, default=16, metavar="N", help="path points per forward pass (default 16)")
    p.add_argument("--qa-output", choices=("start", "end"), default="start", help=argparse.SUPPRESS)
    p.add_argument("--sign", default=None, help="which attributions the shared scale keeps (default: the method's)")
    p.add_argument("--outlier", type=float, default=2.0, metavar="P",
                   help="clip the top P%% of the pooled attribution mass (default 2)")
    p.add_argument("--png", metavar="MAPS.png", help="write A, B and B − A on the shared scale side by side")
    p.set_defaults(names_only=False)


def _check(args: argparse.Namespace) -> None:
    from analyzers.explain.display import SIGN_MODES

    if args.depth is not None and args.depth < 0:
        raise LayerScopeError("--depth must be 0 or more.")
    if args.top_k < 1:
        raise LayerScopeError("--top-k must be at least 1.")
    if args.sign is not None and args.sign not in SIGN_MODES:
        raise LayerScopeError(f"Unknown --sign '{args.sign}'; use one of {', '.join(SIGN_MODES)}.")
    if not 0 <= args.outlier < 100:
        raise LayerScopeError("--outlier must lie between 0 and 100.")
    if args.png is not None:
        path = Path(args.png).expanduser()
        if path.suffix.lower() != ".png":
            raise LayerScopeError("--png must name a .png file.")
        if not path.parent.exists():
            raise LayerScopeError(f"--png: the folder {path.parent} does not exist.")
        if args.method is None:
            raise LayerScopeError("--png draws attribution maps: give --method too (e.g. --method saliency).")
    for name in (args.a, args.b):
        if not Path(name).expanduser().exists():
            raise LayerScopeError(f"{Path(name).name}: no such file or folder.")


def input_choice(args: argparse.Namespace) -> Any:
    """--input as the InputChoice the window sends: each model's own bundled sample, or a value read by its form
    (each model preprocesses an image its own way)."""
    from analyzers.explain.requests import InputChoice

    value = args.input
    if value is None or value == "sample" or value.startswith("sample:"):
        return InputChoice("sample", value.split(":", 1)[1] if value and ":" in value else "", args.seed)
    return InputChoice("auto", value, args.seed)


def run(args: argparse.Namespace) -> int:
    """Open both, align, and (when asked) drift, run and attribute; print."""
    from analyzers.compare.document import compare_to_json, render
    from analyzers.compare.structure import align
    from analyzers.loaders import open_model
    from app.loading import bundled_options

    _check(args)
    request = None
    if args.method is not None:
        from app.cli.attribute import request_from

        request = request_from(args)
    options = options_from(args)
    progress = TerminalProgress()
    drift = outputs = maps = None
    run_info: dict[str, Any] = {}
    try:
        summaries = [drive(open_model(p, bundled_options(Path(p), options)), progress) for p in (args.a, args.b)]
        diff = align(*summaries)
        if args.weights:
            from analyzers.compare.drift import drift_steps

            drift = drive(drift_steps(*summaries, diff=diff), progress)
        if args.input is not None or request is not None:
            outputs, maps, run_info = _run_both(args, request, options, progress)
    finally:
        progress.close()
    fmt = args.format or "table"
    if fmt == "json":
        doc = compare_to_json(diff, drift, outputs, maps, args.depth, run=run_info)
        json.dump(doc, sys.stdout, indent=1 if sys.stdout.isatty() else None, default=_jsonable)
        sys.stdout.write("\n")
    else:
        depth = args.depth if args.depth is not None else 3
        sys.stdout.write(render(diff, drift, outputs, maps, depth, markdown=fmt == "markdown"))
        if args.png:
            sys.stdout.write(f"saved {args.png}\n")
    return 0


def _run_both(args: argparse.Namespace, request: Any, options: Any, progress: Any) -> tuple[Any, Any, dict]:
    from analyzers.compare.outputs import compare_predictions, shared_scale_maps
    from analyzers.explain.display import default_sign
    from analyzers.explain.live_jobs import LiveModels, compare_job
    from analyzers.explain.requests import CompareSettings, ModelRef, RunSettings
    from analyzers.tasks import CancelToken
    from app.loading import bundled_options

    check_device(args.device)
    refs = [ModelRef(Path(p).expanduser(), bundled_options(Path(p), options), args.device) for p in (args.a, args.b)]
    settings = CompareSettings(RunSettings(input_choice(args), args.device, args.top_k, runs=1, warmup=0), request)
    models = LiveModels()
    try:
        outcome = drive(compare_job(models, refs[0], refs[1], settings, CancelToken()), progress)
    finally:
        models.forget()
    pa, pb = outcome.a.result.prediction, outcome.b.result.prediction
    outputs = compare_predictions(pa, pb, outcome.probs_a, outcome.probs_b)
    info = {"input_a": outcome.a.input, "input_b": outcome.b.input, "prediction_a": pa.to_json(),
            "prediction_b": pb.to_json(), "notes": [*outcome.a.notes, *outcome.b.notes, *outcome.notes]}
    maps = None
    if outcome.attribution_a is not None and outcome.attribution_b is not None:
        ma, mb = outcome.attribution_a.attribution, outcome.attribution_b.attribution
        sign = args.sign or default_sign(ma.method, ma.parameters)
        maps = shared_scale_maps(ma.map, mb.map, ma.input.layout, mb.input.layout, sign, args.outlier)
        info.update({"method": ma.method, "target_a": ma.target, "target_b": mb.target})
        if args.png:
            write_maps_png(Path(args.png).expanduser(), ma, mb, maps)
    return outputs, maps, info


def write_maps_png(path: Path, ma: Any, mb: Any, maps: Any) -> Path:
    """A, B and B − A, each over its input where it has one, on the shared scale, side by side."""
    import numpy as np

    from analyzers.explain.display import colorize, default_colormap, overlay, save_png

    cmap = default_colormap(maps.sign)
    panels = [overlay(ma.input.display, colorize(maps.a, cmap, maps.sign)),
              overlay(mb.input.display, colorize(maps.b, cmap, maps.sign))]
    if maps.difference is not None:
        panels.append(overlay(None, colorize(maps.difference, "blue-red", "all"), 1.0))
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 2), (0, 0)), constant_values=255) for p in panels]
    return save_png(path, np.concatenate(padded, axis=1))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
