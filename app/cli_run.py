"""`layerscope run MODEL --input ...`: the prediction, latency, peak memory and the device that ran it.

Also home of what `run` and `attribute` share: the model/input options and turning them into a live
model and a ModelInput.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError, sentence
from analyzers.inputs import ModelInput, Preprocess, parse_input, parse_shape, sample_input
from analyzers.runtime.devices import DEVICE_CHOICES
from analyzers.tasks import drive
from app.progress import TerminalProgress

RUN_SCHEMA = "layerscope.run/1"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options every command that runs a model takes: the model, the input, the device, preprocessing."""
    p.add_argument("model", help="model file or folder (.keras/.h5, .pt/.pth full module or state_dict, TorchScript, "
                                 "Hugging Face folder)")
    p.add_argument("--input", metavar="FILE|TEXT|ARRAY.npy",
                   help="an image file, a .npy array (the batch axis is added), a text (quoted), a .txt file, "
                        "random[:SHAPE] (e.g. random:1x28x28), or sample[:N] for a bundled model's samples; "
                        "default: a bundled model's default sample")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"{'|'.join(DEVICE_CHOICES)} (default auto: CUDA, else Apple MPS, else CPU); cuda:N picks a GPU")
    p.add_argument("--trust", action="store_true",
                   help="allow files that pickle Python code (a full nn.Module, Keras Lambda layers) to run it")
    p.add_argument("--arch", metavar="SPEC", help="architecture of a bare state_dict: module:Class or file.py:Class")
    p.add_argument("--arch-kwargs", metavar="JSON", default="{}", help="constructor arguments for --arch, as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs (default 0)")
    pre = p.add_argument_group("image preprocessing (default: the sample manifest's, else [0, 1] at the model's size)")
    pre.add_argument("--size", metavar="HxW", help="resize images to H x W")
    pre.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB)")
    pre.add_argument("--layout", choices=("NCHW", "NHWC"), help="channel order of the model's image tensor")
    pre.add_argument("--scale", type=float, help="pixel multiplier before mean/std (default 1/255)")
    pre.add_argument("--mean", metavar="M[,M,M]", help="mean subtracted after scaling, one value or one per channel")
    pre.add_argument("--std", metavar="S[,S,S]", help="std divided by after the mean, one value or one per channel")
    pre.add_argument("--invert", action="store_true", help="invert pixels (255 - p) first")
    p.set_defaults(names_only=False)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `run`."""
    add_model_arguments(p)
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes to list (default 5)")
    p.add_argument("--runs", type=int, default=10, metavar="N", help="timed runs; the median is reported (default 10)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed warm-up runs (default 2)")
    p.add_argument("--json", action="store_true", help=f"print one JSON document (schema {RUN_SCHEMA})")


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise LayerScopeError(f"--{name} must be numbers separated by commas, e.g. 0.485,0.456,0.406.") from None


def preprocess_changed(args: argparse.Namespace) -> bool:
    """True when any image preprocessing option was given."""
    return bool(args.size or args.channels or args.layout or args.scale is not None or args.mean or args.std
                or args.invert)


def preprocess_from(args: argparse.Namespace, live: Any) -> Preprocess:
    """The image preprocessing: the manifest's (bundled models) or the model's size, with the user's changes."""
    sample = live.sample
    if sample is not None and sample.input.kind == "image":
        pre = Preprocess.from_spec(sample.input)
    else:
        pre = Preprocess.for_hint(live.hint)
    changes: dict[str, Any] = {}
    if args.size:
        shape = parse_shape(args.size)
        if len(shape) != 2:
            raise LayerScopeError("--size must be two numbers, e.g. 224x224.")
        changes["size"] = shape
    if args.channels:
        changes["channels"] = args.channels
    if args.layout:
        changes["layout"] = args.layout
    if args.scale is not None:
        changes["scale"] = args.scale
    if args.mean:
        changes["mean"] = _floats(args.mean, "mean")
    if args.std:
        changes["std"] = _floats(args.std, "std")
    if args.invert:
        changes["invert"] = True
    return pre.with_changes(**changes) if changes else pre


def open_from_args(args: argparse.Namespace, progress: TerminalProgress) -> Any:
    """The live model named by the arguments, on the requested device."""
    from analyzers.runtime import open_live_model
    from app.cli_inspect import options_from

    return drive(open_live_model(args.model, options_from(args), args.device), progress)


def input_from_args(args: argparse.Namespace, live: Any) -> ModelInput:
    """The ModelInput named by --input (a bundled model's default sample when absent)."""
    from analyzers.runtime import ensure_input_fits

    value = args.input
    sample = live.sample
    if value is None or value == "sample" or value.startswith("sample:"):
        if sample is None:
            raise LayerScopeError("--input is required for a model that is not a bundled sample "
                                  "(an image, a .npy array, a text or random:SHAPE).")
        choice = None
        if value and value.startswith("sample:"):
            key = value.split(":", 1)[1]
            try:
                choice = sample.samples[int(key)]
            except (ValueError, IndexError):
                raise LayerScopeError(f"--input {value}: {sample.id} has samples 0 to {len(sample.samples) - 1}.") \
                    from None
        inp = sample_input(sample, choice)
        if sample.input.kind == "image" and preprocess_changed(args):  # the user's preprocessing, on the sample
            from analyzers.inputs import image_input

            path = Path(choice or sample.default_sample)
            inp = image_input(path, preprocess_from(args, live))
            if not live.hint.fits(inp.shape):
                raise LayerScopeError(sentence(path, f"after preprocessing it has shape {inp.shape}, but the model "
                                                     f"takes {live.hint.describe()}; adjust the size or channels"))
    else:
        inp = parse_input(value, live.hint, live.encoder, preprocess_from(args, live), args.seed, live.vocab_size())
    ensure_input_fits(live, inp)
    return inp


def check_device(device: str) -> None:
    """One sentence for a --device value that is no device at all."""
    base = device.split(":", 1)[0].lower()
    if base not in DEVICE_CHOICES:
        raise LayerScopeError(f"--device {device} is not a device; use one of {', '.join(DEVICE_CHOICES)}.")


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
    from analyzers.memory import human_bytes

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
