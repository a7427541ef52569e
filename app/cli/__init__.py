"""Command line: `layerscope inspect|run|attribute ...` and, with no command, the window.

Every user-facing failure is one sentence on stderr and exit code 2; no traceback reaches a user
(set LAYERSCOPE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from app.console import EXIT_USER_ERROR, OneLineParser

# command -> module with add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("app.cli.inspect", "Print what a checkpoint holds: layers, parameters, bytes, memory what-ifs."),
    "run": ("app.cli.run", "Run a model on an input and print its prediction, latency and memory."),
    "attribute": ("app.cli.attribute", "Compute a saliency / attribution map for a model and an input."),
    "attention": ("app.cli.attention", "Capture every attention layer x head of a model on an input (maps, rollout)."),
    "weights": ("app.cli.weights", "Weight statistics, quantisation and pruning previews (and the zoo's accuracy after)."),
    "compare": ("app.cli.compare", "Compare two models: aligned layers, weight drift, the same input through both."),
    "report": ("app.cli.report", "Write an analysis report: HTML, PDF, Markdown, JSON or CSV."),
}


__all__ = ["COMMANDS", "EXIT_USER_ERROR", "OneLineParser", "build_parser", "guarded", "main"]


def _available_commands() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = (module, help_text)
    return out


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Parser for the sub-commands (the window takes its own arguments).

    With `only`, just that command's module is imported: `inspect` then never pays for numpy and
    the runtime modules that `run` and `attribute` need.
    """
    parser = OneLineParser(
        prog="layerscope",
        description="LayerScope: see what is inside a neural-network checkpoint.",
        epilog="Without a command, `layerscope [PATH [PATH2]]` opens the window.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available_commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `layerscope` and `python main.py`."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # analyzers.runtime.tf_import.quiet_defaults, without its import
    if args_list and args_list[0] in COMMANDS:
        parser = build_parser(only=args_list[0])
        args = parser.parse_args(args_list)
        args.argv = args_list  # what `report` writes as the command that reproduces it
        module = importlib.import_module(COMMANDS[args.command][0])
        return guarded(module.run, args)
    if args_list and args_list[0] in ("-h", "--help") and importlib.util.find_spec("app.gui") is None:
        build_parser().print_help()
        return 0
    return guarded(_gui, args_list)


def _gui(args_list: list[str]) -> int:
    if importlib.util.find_spec("app.gui") is None:
        print("layerscope: the window is not part of this build; use `layerscope inspect PATH`.", file=sys.stderr)
        return EXIT_USER_ERROR
    return importlib.import_module("app.gui").main(args_list)


def guarded(func, *args) -> int:
    """Call `func`, turning user errors into one line on stderr and exit code 2."""
    from analyzers.errors import LayerScopeError  # tiny module: the window's start-up does not notice it

    try:
        return int(func(*args) or 0)
    except LayerScopeError as exc:
        print(f"layerscope: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("layerscope: cancelled.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except BaseException as exc:
        from analyzers.tasks import Cancelled

        if isinstance(exc, Cancelled):
            print("layerscope: cancelled.", file=sys.stderr)
            return 130
        if not isinstance(exc, Exception):
            raise
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    """Report an error no loader anticipated as one sentence (a traceback only with LAYERSCOPE_DEBUG=1)."""
    if os.environ.get("LAYERSCOPE_DEBUG"):
        raise exc
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    print(f"layerscope: error: unexpected {type(exc).__name__}{': ' + text if text else ''} "
          "(set LAYERSCOPE_DEBUG=1 for details).", file=sys.stderr)
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
