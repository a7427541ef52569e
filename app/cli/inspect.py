"""`layerscope inspect PATH`: the summary as a table, Markdown or JSON (schema layerscope.summary/1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analyzers.errors import LayerScopeError
from analyzers.loaders import open_model
from analyzers.tasks import drive
from app.cli.options import add_open_arguments, options_from
from app.progress import TerminalProgress


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `inspect`."""
    p.add_argument("path", help="checkpoint file or model folder")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", dest="format", const="json",
                     help="print one JSON document (schema layerscope.summary/1)")
    fmt.add_argument("--table", action="store_const", dest="format", const="table",
                     help="print a layer tree with own/total params, %% and bytes (default)")
    fmt.add_argument("--markdown", action="store_const", dest="format", const="markdown",
                     help="print Markdown tables")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="deepest level shown (root is 0); default: 3 for tables, all for JSON")
    add_open_arguments(p)
    p.add_argument("--batch", type=int, default=1, metavar="B", help="batch size for the KV-cache estimate")
    p.add_argument("--seq-len", type=int, default=None, metavar="S",
                   help="sequence length for the KV-cache estimate (default: context length, at most 4096)")
    p.add_argument("--names-only", action="store_true",
                   help="HF folders: tree of tensor names from the headers, no framework import")
    p.add_argument("--no-tensors", action="store_true", help="JSON: leave out each layer's tensor list")
    p.add_argument("--shapes", action="store_true",
                   help="each layer's output shape, from one forward pass on the meta device (PyTorch, no weights "
                        "read), the saved config (Keras) or onnx.shape_inference")
    p.add_argument("--flops", action="store_true",
                   help="each layer's FLOPs (2 x multiply-adds: matrix products, convolutions, attention, "
                        "normalisation) for the input size")
    p.add_argument("--input-shape", metavar="SHAPE", default=None,
                   help="input size for --shapes/--flops, batch first: 1x128 (tokens) or 1x3x224x224 (an image); "
                        "default: the sample manifest's, config.json's or the saved model's")


def run(args: argparse.Namespace) -> int:
    """Open, summarise, print."""
    if args.batch < 1 or (args.seq_len is not None and args.seq_len < 1):
        raise LayerScopeError("--batch and --seq-len must be positive integers.")
    if args.depth is not None and args.depth < 0:
        raise LayerScopeError("--depth must be 0 or more.")
    requested = None
    if args.input_shape:
        from analyzers.summary.shapes import parse_shape_text

        requested = parse_shape_text(args.input_shape)  # a typo is said before the model is opened
    progress = TerminalProgress()
    try:
        from app.loading import bundled_options

        options = bundled_options(Path(args.path), options_from(args))
        summary = drive(open_model(args.path, options), progress)
        report = None
        if args.shapes or args.flops or args.input_shape:
            from analyzers.loaders.shape_inference import infer_shapes
            from analyzers.summary.shapes import apply_report

            report = drive(infer_shapes(summary, requested, trust=options.trust), progress)
            if requested is not None and not report.shapes and report.shapes_reason:
                raise LayerScopeError(report.shapes_reason)  # the shape asked for does not fit the model
            summary = apply_report(summary, report)
    finally:
        progress.close()
    fmt = args.format or "table"
    if fmt == "json":
        from analyzers.summary.document import summary_to_json

        doc = summary_to_json(summary, depth=args.depth, batch=args.batch, seq_len=args.seq_len,
                              tensors=not args.no_tensors)
        if report is not None:
            doc["shapes"] = report.to_json()
        # Indented for a person at a terminal, compact for a pipe (70B: 0.5 MB instead of 1.3 MB).
        if sys.stdout.isatty():
            json.dump(doc, sys.stdout, indent=1)
        else:
            json.dump(doc, sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        from analyzers.summary.table import DEFAULT_TABLE_DEPTH, render_markdown, render_table

        depth = args.depth if args.depth is not None else DEFAULT_TABLE_DEPTH
        render = render_markdown if fmt == "markdown" else render_table
        sys.stdout.write(render(summary, depth=depth, batch=args.batch, seq_len=args.seq_len))
        if report is not None:
            from analyzers.summary.table import render_shapes

            notes = tuple(r for r in (report.shapes_reason, report.flops_reason) if r) + tuple(report.notes)
            sys.stdout.write(render_shapes(summary, report.caption(), depth, fmt == "markdown",
                                           tuple(dict.fromkeys(notes))))
    return 0
