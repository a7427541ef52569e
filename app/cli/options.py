"""What every command that opens a model shares: how it is opened (trust, --arch), the live model's device and
input for run / attribute (and the coming compare, attention, report, weights), and turning them into
LoadOptions, a live model and the same InputChoice the window sends."""

from __future__ import annotations

import argparse
import json
from typing import Any

from analyzers.errors import LayerScopeError
from analyzers.explain.inputs import ModelInput, Preprocess, parse_shape
from analyzers.explain.requests import InputChoice
from analyzers.loaders import LoadOptions
from analyzers.tasks import drive

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def add_open_arguments(p: argparse.ArgumentParser) -> None:
    """How a checkpoint is opened: --trust, --arch, --arch-kwargs."""
    p.add_argument("--trust", action="store_true",
                   help="allow a file's own code (a full nn.Module, Keras Lambda layers) to run when the model runs; "
                        "inspecting never runs it")
    p.add_argument("--arch", metavar="SPEC", help="architecture of a bare state_dict: module:Class or file.py:Class")
    p.add_argument("--arch-kwargs", metavar="JSON", default="{}", help="constructor arguments for --arch, as JSON")


def options_from(args: argparse.Namespace) -> LoadOptions:
    """LoadOptions from parsed arguments (shared by every command that opens a model)."""
    try:
        kwargs = json.loads(args.arch_kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise LayerScopeError(f"--arch-kwargs is not valid JSON ({exc.msg} at character {exc.pos}).") from None
    if not isinstance(kwargs, dict):
        raise LayerScopeError("--arch-kwargs must be a JSON object, e.g. '{\"num_classes\": 10}'.")
    return LoadOptions(trust=args.trust, arch=args.arch, arch_kwargs=kwargs,
                       names_only=bool(getattr(args, "names_only", False)))


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options every command that runs a model takes: the model, the input, the device, preprocessing."""
    p.add_argument("model", help="model file or folder (.keras/.h5, .pt/.pth full module or state_dict, TorchScript, "
                                 "Hugging Face folder)")
    add_open_arguments(p)
    add_input_arguments(p)


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """The input a model runs on, its device and the image preprocessing (run, attribute, report ...)."""
    p.add_argument("--input", metavar="FILE|TEXT|ARRAY.npy",
                   help="an image file, a .npy array (the batch axis is added), a text (quoted), a .txt file, "
                        "random[:SHAPE] (e.g. random:1x28x28), or sample[:N] for a bundled model's samples; "
                        "default: a bundled model's default sample")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"{'|'.join(DEVICE_CHOICES)} (default auto: CUDA, else Apple MPS, else CPU); cuda:N picks a GPU")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs and random draws (default 0)")
    pre = p.add_argument_group("image preprocessing (default: the sample manifest's, else [0, 1] at the model's size)")
    pre.add_argument("--size", metavar="HxW", help="resize images to H x W")
    pre.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB)")
    pre.add_argument("--layout", choices=("NCHW", "NHWC"), help="channel order of the model's image tensor")
    pre.add_argument("--scale", type=float, help="pixel multiplier before mean/std (default 1/255)")
    pre.add_argument("--mean", metavar="M[,M,M]", help="mean subtracted after scaling, one value or one per channel")
    pre.add_argument("--std", metavar="S[,S,S]", help="std divided by after the mean, one value or one per channel")
    pre.add_argument("--invert", action="store_true", help="invert pixels (255 - p) first")
    p.set_defaults(names_only=False)


def check_device(device: str) -> None:
    """One sentence for a --device value that is no device at all."""
    base = device.split(":", 1)[0].lower()
    if base not in DEVICE_CHOICES:
        raise LayerScopeError(f"--device {device} is not a device; use one of {', '.join(DEVICE_CHOICES)}.")


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
    from analyzers.explain.live_jobs import default_preprocess

    pre = default_preprocess(live)
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


def open_from_args(args: argparse.Namespace, progress: Any, model: str | None = None) -> Any:
    """The live model named by the arguments (or `model`), on the requested device."""
    from analyzers.runtime import open_live_model

    return drive(open_live_model(model or args.model, options_from(args), args.device), progress)


def input_choice_from(args: argparse.Namespace, live: Any) -> InputChoice:
    """--input as the InputChoice the window would send: a bundled sample, or a value read by its form."""
    value = args.input
    if value is None or value == "sample" or value.startswith("sample:"):
        if live.sample is None:
            raise LayerScopeError("--input is required for a model that is not a bundled sample "
                                  "(an image, a .npy array, a text or random:SHAPE).")
        index = value.split(":", 1)[1] if value and ":" in value else ""
        pre = preprocess_from(args, live) if preprocess_changed(args) else None
        return InputChoice("sample", index, args.seed, pre)
    return InputChoice("auto", value, args.seed, preprocess_from(args, live))


def input_from_args(args: argparse.Namespace, live: Any) -> ModelInput:
    """The ModelInput named by --input (a bundled model's default sample when absent)."""
    from analyzers.explain.live_jobs import build_input

    return build_input(live, input_choice_from(args, live))
