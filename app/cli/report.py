"""`layerscope report MODEL [MODEL2] --out FILE`: the analysis as a self-contained HTML page, a PDF, Markdown,
JSON (schema layerscope.report/1) or CSV, chosen by the suffix; written atomically."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.report.formats import format_for, write_text_report
from analyzers.report.model import SECTIONS, ModelSection, attach_attribution, model_section, new_report
from analyzers.tasks import drive
from app.cli.options import (
    add_input_arguments,
    add_open_arguments,
    check_device,
    input_from_args,
    open_from_args,
    options_from,
)
from app.progress import TerminalProgress

DEFAULT_DEPTH = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `report`."""
    from app.cli.attribute import add_method_arguments

    p.add_argument("models", nargs="+", metavar="MODEL", help="the model file or folder (a second one: compare them)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the report to write: .html (self-contained), .pdf, .md (images beside it), .json, .csv")
    p.add_argument("--depth", type=int, default=DEFAULT_DEPTH, metavar="N",
                   help=f"deepest level of the layer table (default {DEFAULT_DEPTH}; JSON and CSV list every layer)")
    p.add_argument("--sections", metavar="LIST", default=",".join(SECTIONS),
                   help=f"comma-separated sections to include (default all: {','.join(SECTIONS)})")
    p.add_argument("--page-size", choices=("A4", "Letter"), default="A4", help="PDF page size (default A4)")
    add_open_arguments(p)
    add_input_arguments(p)
    add_method_arguments(p)
    p.set_defaults(method=None)
    p.add_argument("--target", type=int, metavar="K", help="class to explain; default: the predicted one")
    p.add_argument("--layer", metavar="PATH", help="the layer a layer method hooks (default: the last convolution)")
    p.add_argument("--batch", type=int, default=16, metavar="N", help="path points / windows per forward pass")
    p.add_argument("--qa-output", choices=("start", "end"), default="start", help="QA: explain the start or end logit")
    p.add_argument("--sanity", action="store_true", help="add the weight-randomisation check to the attribution")
    p.add_argument("--attention", action="store_true",
                   help="capture the model's attention on --input and add its maps (a transformer, or a model with "
                        "attention layers)")
    p.add_argument("--weights", action="store_true",
                   help="with two models: add the weight drift between them (reads both checkpoints' values)")
    p.add_argument("--sanity-layers", type=int, default=1, metavar="N", help="top layers to re-initialise (default 1)")


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise LayerScopeError(f"--sections: unknown section '{unknown[0]}'; use {', '.join(SECTIONS)}.")
    return chosen


def _check(args: argparse.Namespace, out: Path) -> None:
    if len(args.models) > 2:
        raise LayerScopeError("report takes one model, or two to compare.")
    if args.depth < 0:
        raise LayerScopeError("--depth must be 0 or more.")
    format_for(out)
    if not out.parent.is_dir():
        raise LayerScopeError(f"--out: the folder {out.parent} does not exist.")
    check_device(args.device)


def _explain(args: argparse.Namespace, section: ModelSection, progress: TerminalProgress) -> str:
    """Run the model on --input, attribute it with --method and capture its attention with --attention; the
    device it ran on."""
    from analyzers.explain.attribution import attribute
    from app.cli.attribute import request_from

    live = open_from_args(args, progress, section.path)
    inp = input_from_args(args, live)
    result = drive(live.run(inp, 5, 2, 10), progress)
    run_doc = {"schema": "layerscope.run/1", "model": live.describe(), "device": result.device,
               "framework": live.framework, "input": inp.describe(), "prediction": result.prediction.to_json(),
               "latency": result.timing.to_json()}
    section.run = run_doc
    if args.method:
        attribution = drive(attribute(live, inp, request_from(args)), progress)
        sanity = None
        if args.sanity:
            from analyzers.explain.sanity import randomization_check

            sanity = drive(randomization_check(live, attribution, args.sanity_layers, args.seed), progress)
        attach_attribution(section, attribution, sanity)
    if args.attention:
        from analyzers.report.model import attach_attention

        attach_attention(section, drive(live.attention(inp), progress))
    return result.device


def _compare(args: argparse.Namespace, report: Any, progress: TerminalProgress) -> None:
    """Align the two models (and stream their weight drift with --weights) into the report's comparison."""
    from analyzers.compare.document import compare_to_json
    from analyzers.compare.structure import align
    from analyzers.report.model import attach_compare

    a, b = (m.summary for m in report.models)
    diff = align(a, b)
    drift = None
    if args.weights:
        from analyzers.compare.drift import drift_steps

        drift = drive(drift_steps(a, b, diff=diff), progress)
    attach_compare(report, compare_to_json(diff, drift, depth=args.depth))


def run(args: argparse.Namespace) -> int:
    """Gather, render, write."""
    from analyzers.loaders import open_model
    from app.loading import bundled_options

    out = Path(args.out).expanduser()
    _check(args, out)
    sections = _sections(args.sections)
    progress = TerminalProgress()
    device = ""
    try:
        models: list[ModelSection] = []
        for model in args.models:
            path = Path(model).expanduser()
            summary = drive(open_model(path, bundled_options(path, options_from(args))), progress)
            models.append(drive(model_section(summary, args.depth), progress))
        if args.input is not None or args.method or args.attention:
            for section in models:
                device = _explain(args, section, progress)
        argv = list(getattr(args, "argv", None) or sys.argv[1:])
        command = "layerscope " + " ".join(shlex.quote(a) for a in argv) if argv else ""
        report = new_report(models, command, sections, device)
        if len(models) == 2:
            _compare(args, report, progress)
        if format_for(out) == "pdf":
            from analyzers.report.html import render_html
            from app.report_browser import print_pdf

            print_pdf(render_html(report), out, args.page_size)
        else:
            write_text_report(report, out)
    finally:
        progress.close()
    print(f"Wrote {out}")
    return 0
