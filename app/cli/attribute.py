"""`layerscope attribute MODEL --input ... --method ...`: an attribution map to .npy (and an overlay PNG).

The .npy holds the raw map shaped like the input without the batch axis (one score per token for
text); `--json` prints the prediction, device, latency, method, parameters and, for Integrated
Gradients, the convergence delta and the completeness check (schema layerscope.attribution/1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.explain.attribution import AttributionRequest
from analyzers.explain.display import COLOR_MAPS, SIGN_MODES
from analyzers.tasks import drive
from app.cli.options import add_model_arguments, check_device, input_from_args, open_from_args
from app.cli.run import format_prediction
from app.progress import TerminalProgress

ATTRIBUTION_SCHEMA = "layerscope.attribution/1"


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """--method and one flag per method parameter, generated from analyzers/methods/ (a new method's flags
    appear here without an edit); each defaults to None, so only what the user gave reaches the request."""
    from analyzers.methods import all_params, methods

    known = methods()
    p.add_argument("--method", default="ig", metavar="|".join(known),
                   help="attribution method (default ig): " + "; ".join(f"{k}: {m.title}" for k, m in known.items()))
    group = p.add_argument_group("method parameters (each applies to the methods that take it)")
    for name, param in all_params().items():
        users = ", ".join(k for k, m in known.items() if name in m.params)
        if param.kind == "bool":
            if param.default:
                group.add_argument(param.off_flag or f"--no-{name.replace('_', '-')}", dest=name,
                                   action="store_const", const=False, default=None,
                                   help=f"turn off: {param.help} ({users})")
            else:
                group.add_argument(param.cli_flag, dest=name, action="store_const", const=True, default=None,
                                   help=f"{param.help} ({users})")
            continue
        kind = {"int": int, "float": float}.get(param.kind, str)
        shown = "auto" if param.default is None else param.default
        group.add_argument(param.cli_flag, dest=name, type=kind, default=None,
                           metavar=name.upper() if not param.choices else "|".join(param.choices),
                           help=f"{param.help} (default {shown}; {users})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `attribute`."""
    add_model_arguments(p)
    add_method_arguments(p)
    p.add_argument("--target", type=int, metavar="K", help="class (or output index) to explain; default: the predicted one")
    p.add_argument("--layer", metavar="PATH", help="the layer a layer method hooks (default: the last convolution); "
                                                   "text: the embedding")
    p.add_argument("--batch", type=int, default=16, metavar="N",
                   help="path points / windows per forward pass (default 16)")
    p.add_argument("--qa-output", choices=("start", "end"), default="start",
                   help="question answering: explain the answer's start or end logit")
    p.add_argument("--out", metavar="MAP.npy", help="write the raw attribution map here")
    p.add_argument("--png", metavar="OVERLAY.png", help="write the map over the input as a PNG")
    p.add_argument("--sign", default=None, metavar="|".join(SIGN_MODES),
                   help="PNG: which attributions to show (default: the method's natural one)")
    p.add_argument("--outlier", type=float, default=2.0, metavar="P", help="PNG: clip the top P%% of the mass (default 2)")
    p.add_argument("--colormap", default=None, metavar="|".join(COLOR_MAPS), help="PNG colour map")
    p.add_argument("--opacity", type=float, default=0.6, metavar="A", help="PNG heat-map opacity 0..1 (default 0.6)")
    p.add_argument("--sanity", action="store_true",
                   help="also run the weight-randomisation check (Adebayo et al.) and report the rank correlation")
    p.add_argument("--sanity-layers", type=int, default=1, metavar="N", help="top layers to re-initialise (default 1)")
    p.add_argument("--json", action="store_true", help=f"print one JSON document (schema {ATTRIBUTION_SCHEMA})")


def request_from(args: argparse.Namespace) -> AttributionRequest:
    """The AttributionRequest the arguments describe; the method checks its own values (one sentence)."""
    from analyzers.methods import all_params, method_class

    cls = method_class(args.method)
    if args.batch < 1:
        raise LayerScopeError("--batch must be at least 1.")
    params = {name: getattr(args, name) for name in all_params() if getattr(args, name, None) is not None}
    request = AttributionRequest(args.method, args.target, layer=args.layer, qa_output=args.qa_output,
                                 seed=args.seed, internal_batch_size=args.batch, params=params)
    cls.values(request)  # a bad value is one sentence before the model is even opened
    return request


def _check_outputs(args: argparse.Namespace) -> None:
    for flag, value, suffix in (("--out", args.out, ".npy"), ("--png", args.png, ".png")):
        if value is None:
            continue
        path = Path(value).expanduser()
        if path.suffix.lower() != suffix:
            raise LayerScopeError(f"{flag} must name a {suffix} file.")
        if not path.parent.exists():
            raise LayerScopeError(f"{flag}: the folder {path.parent} does not exist.")
    if args.sign is not None and args.sign not in SIGN_MODES:
        raise LayerScopeError(f"Unknown --sign '{args.sign}'; use one of {', '.join(SIGN_MODES)}.")
    if args.colormap is not None and args.colormap not in COLOR_MAPS:
        raise LayerScopeError(f"Unknown --colormap '{args.colormap}'; use one of {', '.join(COLOR_MAPS)}.")
    if not 0 <= args.outlier < 100:
        raise LayerScopeError("--outlier must lie between 0 and 100.")


def write_png(path: Path, attribution: Any, sign: str | None, outlier: float, colormap: str | None,
              opacity: float) -> Path:
    """The map over the input (or the coloured tokens for text) as a PNG."""
    from analyzers.explain.display import default_sign, render_overlay, render_tokens, save_png

    sign = sign or default_sign(attribution.method, attribution.parameters)
    if attribution.tokens:
        return save_png(path, render_tokens(attribution.tokens, attribution.map, sign, outlier, colormap), min_side=1)
    inp = attribution.input
    rgb = render_overlay(attribution.map, inp.display, inp.layout, sign, outlier, colormap, opacity)
    return save_png(path, rgb)


def run(args: argparse.Namespace) -> int:
    """Open, attribute, save, print."""
    from analyzers.explain.attribution import attribute

    check_device(args.device)
    request = request_from(args)
    _check_outputs(args)
    progress = TerminalProgress()
    try:
        live = open_from_args(args, progress)
        inp = input_from_args(args, live)
        result = drive(attribute(live, inp, request), progress)
        timing = drive(live.benchmark(inp, warmup=1, runs=5), progress)
        sanity = None
        if args.sanity:
            from analyzers.explain.sanity import randomization_check

            sanity = drive(randomization_check(live, result, args.sanity_layers, args.seed), progress)
    finally:
        progress.close()
    if args.out:
        result.save_npy(Path(args.out).expanduser())
    if args.png:
        write_png(Path(args.png).expanduser(), result, args.sign, args.outlier, args.colormap, args.opacity)
    if args.json:
        doc = {"schema": ATTRIBUTION_SCHEMA, "model": live.describe(), "device": result.device,
               "framework": live.framework, "input": inp.describe(), "prediction": result.prediction.to_json(),
               "latency": timing.to_json(), **result.to_json(),
               "out": str(Path(args.out).expanduser()) if args.out else None,
               "png": str(Path(args.png).expanduser()) if args.png else None,
               "sanity": sanity.to_json() if sanity is not None else None}
        json.dump(doc, sys.stdout, indent=1, default=_jsonable)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_attribution(live, result, timing, sanity, args))
    return 0


def method_title(key: str) -> str:
    """A method's title for the report."""
    from analyzers.methods import method_class

    return method_class(key).title


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def format_attribution(live: Any, result: Any, timing: Any, sanity: Any, args: argparse.Namespace) -> str:
    """The human-readable report of `attribute`."""
    from analyzers.explain.sanity import completeness_sentence

    params = ", ".join(f"{k}={v}" for k, v in result.parameters.items())
    lines = [f"model:    {live.path.name} ({live.framework}, {live.format}) on {result.device}",
             f"input:    {result.input.source} {list(result.input.shape)}",
             *(f"note:     {note}" for note in result.input.notes),
             *format_prediction(result.prediction),
             f"method:   {method_title(result.method)} ({params})",
             f"target:   {result.target} ({result.target_label})",
             f"map:      shape {list(result.map.shape)}, sum {float(result.map.sum()):.4g}, "
             f"{result.seconds:.3f} s, {result.forwards} forward passes",
             f"latency:  {timing.median_ms:.3f} ms per forward pass (median of {timing.runs})"]
    if result.delta is not None:
        lines.append(f"delta:    {result.delta:.4g} (convergence delta)")
    if result.completeness is not None:
        lines.append(f"sanity:   {completeness_sentence(result)}")
    lines.extend(f"note:     {note}" for note in result.notes)
    if sanity is not None:
        lines.append(f"sanity:   randomised {', '.join(sanity.layers)}: Spearman {sanity.spearman_abs:.3f} "
                     f"(|map|), {sanity.spearman_signed:.3f} (signed). {sanity.verdict}")
    if result.tokens:
        pairs = sorted(zip(result.tokens, result.map.tolist()), key=lambda p: -abs(p[1]))[:8]
        lines.append("tokens:   " + ", ".join(f"{t} {s:+.4g}" for t, s in pairs))  # tiny scores keep their digits
    if args.out:
        lines.append(f"saved:    {args.out}")
    if args.png:
        lines.append(f"saved:    {args.png}")
    return "\n".join(lines) + "\n"
