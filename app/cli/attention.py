"""`layerscope attention MODEL --input ... [--layer L] [--head H] [--rollout] --out ATT.npz [--png VIEW.png] [--json]`.

Captures every attention layer of the model on the input (the same job the Attention tab runs). The .npz holds,
per saved layer i, `attention_i` (heads, query, key) float16 (or `attention_i_head_H` with --head) and `mean_i`,
the `tokens`, `layer_names`, and with --rollout `rollout` and `rollout_progression`; a vision transformer adds
`cls_grid` and `image`. `--json` prints schema layerscope.attention/1: layers, heads, tokens, shapes and the
maps the file holds. A model without attention, or a layer or head it does not have, is one sentence (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.explain.attention import ATTENTION_SCHEMA
from analyzers.tasks import drive
from app.cli.options import add_model_arguments, check_device, input_from_args, open_from_args
from app.cli.run import format_prediction
from app.progress import TerminalProgress

MAX_LISTED_LAYERS = 24


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `attention`."""
    add_model_arguments(p)
    p.add_argument("--layer", metavar="L", help="only this attention layer (its number, from 0, or its name) in the "
                                                "file and the PNG; default: every layer in the file, the last in the PNG")
    p.add_argument("--head", type=int, metavar="H", help="only this head (default: every head; the PNG shows the mean)")
    p.add_argument("--rollout", action="store_true",
                   help="attention rollout (Abnar & Zuidema 2020) and its per-layer progression: into the file, "
                        "and the PNG shows it")
    p.add_argument("--out", metavar="ATT.npz", help="write the maps here (.npz, read with np.load)")
    p.add_argument("--png", metavar="VIEW.png", help="write the chosen map as a PNG: the matrix with its tokens, or "
                                                     "for a vision transformer the class token's map over the image")
    p.add_argument("--colormap", default="heat", metavar="NAME", help="PNG over an image: colour map (default heat)")
    p.add_argument("--opacity", type=float, default=0.6, metavar="A", help="PNG over an image: opacity 0..1 (default 0.6)")
    p.add_argument("--json", action="store_true", help=f"print one JSON document (schema {ATTENTION_SCHEMA})")


def _check_outputs(args: argparse.Namespace) -> None:
    from analyzers.explain.display import COLOR_MAPS

    for flag, value, suffix in (("--out", args.out, ".npz"), ("--png", args.png, ".png")):
        if value is None:
            continue
        path = Path(value).expanduser()
        if path.suffix.lower() != suffix:
            raise LayerScopeError(f"{flag} must name a {suffix} file.")
        if not path.parent.exists():
            raise LayerScopeError(f"{flag}: the folder {path.parent} does not exist.")
    if args.head is not None and args.head < 0:
        raise LayerScopeError("--head must be 0 or more.")
    if args.colormap not in COLOR_MAPS:
        raise LayerScopeError(f"Unknown --colormap '{args.colormap}'; use one of {', '.join(COLOR_MAPS)}.")
    if not 0.0 <= args.opacity <= 1.0:
        raise LayerScopeError("--opacity must lie between 0 and 1.")


def chosen_maps(result: Any, args: argparse.Namespace) -> tuple[int | None, int | None]:
    """(layer index or None, head or None) from --layer / --head, each checked against what was captured."""
    layer = result.layer_index(args.layer) if args.layer is not None else None
    if args.head is not None:
        heads = result.layers[layer].heads if layer is not None else result.heads
        where = f"layer {layer}" if layer is not None else "the model's attention"
        if args.head >= heads:
            raise LayerScopeError(f"{where[0].upper()}{where[1:]} has {heads} head{'s' if heads != 1 else ''} "
                                  f"(0 to {heads - 1}); there is no head {args.head}.")
    if args.rollout and not result.rollout_indices():
        raise LayerScopeError("--rollout needs square self-attention layers, and this model's attention has none "
                              f"(its layers: {', '.join(sorted({x.kind for x in result.layers}))}).")
    return layer, args.head


def run(args: argparse.Namespace) -> int:
    """Open, capture, save, print."""
    check_device(args.device)
    _check_outputs(args)
    progress = TerminalProgress()
    try:
        live = open_from_args(args, progress)
        inp = input_from_args(args, live)
        result = drive(live.attention(inp), progress)
    finally:
        progress.close()
    layer, head = chosen_maps(result, args)
    keys: list[str] = []
    if args.out:
        keys = result.save_npz(Path(args.out).expanduser(), None if layer is None else [layer], head, args.rollout)
    if args.png:
        from analyzers.explain.attention_display import write_view_png

        write_view_png(Path(args.png).expanduser(), result, layer, head, args.rollout, args.colormap, args.opacity)
    if args.json:
        prediction = result.prediction.to_json() if result.prediction is not None else None
        doc = {"schema": ATTENTION_SCHEMA, "model": live.describe(), "input": inp.describe(), "prediction": prediction,
               **result.to_json(keys), "layer": layer, "head": head, "rollout": bool(args.rollout),
               "out": str(Path(args.out).expanduser()) if args.out else None,
               "png": str(Path(args.png).expanduser()) if args.png else None}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_attention(live, result, layer, head, args))
    return 0


def format_attention(live: Any, result: Any, layer: int | None, head: int | None, args: argparse.Namespace) -> str:
    """The human-readable report: model, prediction, one line per layer, where the first token looks."""
    from analyzers.errors import printable

    lines = [f"model:    {live.path.name} ({live.framework}, {live.format}) on {result.device}",
             f"input:    {len(result.tokens)} tokens" + (f", {result.shown_tokens()} before the padding"
                                                         if result.shown_tokens() < len(result.tokens) else ""),
             *(format_prediction(result.prediction) if result.prediction is not None else []),
             f"capture:  {result.route}, {len(result.layers)} attention layer{'s' if len(result.layers) != 1 else ''}, "
             f"up to {result.heads} heads, {result.seconds:.3f} s"]
    for i, item in enumerate(result.layers[:MAX_LISTED_LAYERS]):
        h, q, k = item.shape
        lines.append(f"  {i:>3}  {printable(item.title, 60):<40} {h} head{'s' if h != 1 else ' '}  {q} x {k}")
    if len(result.layers) > MAX_LISTED_LAYERS:
        lines.append(f"  … {len(result.layers) - MAX_LISTED_LAYERS} more layers (--json lists them all)")
    from analyzers.explain.attention_display import view_map

    view = view_map(result, layer, head, args.rollout)
    if view.map.size:
        row = view.map[0]
        best = sorted(range(len(row)), key=lambda j: -float(row[j]))[:5]
        shown = ", ".join(f"{printable(view.key_labels[j], 20)} {float(row[j]):.3f}" for j in best)
        lines.append(f"attends: '{printable(view.query_labels[0], 20)}' in {view.title}: {shown}")
    lines.extend(f"note:     {note}" for note in result.notes)
    if args.out:
        lines.append(f"saved:    {args.out}")
    if args.png:
        lines.append(f"saved:    {args.png}")
    return "\n".join(lines) + "\n"
