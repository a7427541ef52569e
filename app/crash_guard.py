"""Unexpected errors inside the window become one sentence and a log file, never a traceback on stderr.

PySide prints an exception raised in a slot and carries on; a user saw a traceback scroll past (and a
half-built panel). The hook below writes the traceback to a log file, shows one sentence naming it,
and leaves the window running. LAYERSCOPE_DEBUG=1 prints the traceback too.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


def log_path() -> Path:
    """Where tracebacks of unexpected errors go: $XDG_CACHE_HOME/layerscope/errors.log (~/.cache/...)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "layerscope" / "errors.log"


def record(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> Path | None:
    """Append the traceback to the log; the log's path, or None when it cannot be written."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
            f.writelines(traceback.format_exception(exc_type, exc, tb))
    except OSError:
        return None
    return path


def sentence_for(exc: BaseException, log: Path | None) -> str:
    """The one sentence a user reads about an error LayerScope did not expect."""
    text = str(exc).strip().splitlines()[0][:200].rstrip(".") if str(exc).strip() else ""
    where = f"; the details are in {log}" if log is not None else ""
    return f"Something went wrong inside LayerScope ({type(exc).__name__}{': ' + text if text else ''}){where}."


def install(show: Callable[[str], None]) -> None:
    """Route unexpected exceptions of the GUI thread and of helper threads to `show` (one sentence)."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log = record(exc_type, exc, tb)
        if os.environ.get("LAYERSCOPE_DEBUG"):
            traceback.print_exception(exc_type, exc, tb)
        try:
            show(sentence_for(exc, log))
        except Exception:  # noqa: BLE001 - the window itself is going away; the log has it
            pass

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            log = record(args.exc_type, args.exc_value, args.exc_traceback)
            if os.environ.get("LAYERSCOPE_DEBUG"):
                traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback)
            del log  # a helper thread cannot touch the window; the log keeps what happened

    sys.excepthook = hook
    threading.excepthook = thread_hook


# Qt's own notices that say nothing to a user: the offscreen platform (--screenshot) cannot honour window
# size hints, and says so on every new top-level window.
QT_NOISE = ("This plugin does not support propagateSizeHints()",)


def quiet_qt_noise() -> None:
    """Drop Qt's known harmless notices (QT_NOISE); every other Qt message still reaches stderr."""
    from PySide6.QtCore import qInstallMessageHandler

    previous: list = []

    def handler(mode, context, message: str) -> None:
        if any(message.startswith(noise) for noise in QT_NOISE):
            return
        if previous and previous[0] is not None:
            previous[0](mode, context, message)
        else:
            sys.stderr.write(message + "\n")

    previous.append(qInstallMessageHandler(handler))
