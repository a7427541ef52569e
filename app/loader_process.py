"""Open models in a separate Python process, so the window never waits on torch or TensorFlow.

Importing torch in a thread of the GUI process holds the GIL for over half a second at a time (the
window freezes); a pickled checkpoint can run code or crash the interpreter. A child process does
the loading instead: it imports the frameworks, runs `open_model`, streams `Progress` back and
finally the pickled `ModelSummary`. It stays alive between loads (torch is imported once) and is
killed on cancel, which stops even a long library call at once.

Wire format on the child's stdin/stdout: 4-byte big-endian length + pickle. The child moves its
own stdout to stderr first, so stray prints of a library cannot corrupt the stream.
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

from analyzers.errors import LayerScopeError, sentence
from analyzers.loaders import LoadOptions, open_model, registered
from analyzers.summary import ModelSummary
from analyzers.tasks import CancelToken, Progress, Steps, drive
from app import child_process
from app.child_process import error_message, read_message, rebuild_error, write_message

POLL_S = 0.05
PROGRESS_INTERVAL_S = 0.05


def plugin_modules() -> list[str]:
    """Modules of loaders registered from outside analyzers.loaders (plug-ins, test loaders)."""
    mods = []
    for spec in registered():
        mod = getattr(spec.open, "__module__", "") or ""
        if mod and not mod.startswith("analyzers.loaders") and mod != "__main__":
            mods.append(mod)
    return list(dict.fromkeys(mods))


def _serve_one(request: dict, out: BinaryIO) -> None:
    path = Path(request["path"])
    for entry in request.get("sys_path", ()):
        if entry not in sys.path:
            sys.path.append(entry)
    last = [0.0, ""]

    def report(progress: Progress) -> None:
        now = time.monotonic()
        if progress.text != last[1] or now - last[0] >= PROGRESS_INTERVAL_S:  # a new phase always shows
            last[0], last[1] = now, progress.text
            write_message(out, ("progress", progress))

    try:
        for module in request.get("plugins", ()):
            importlib.import_module(module)
        summary = drive(open_model(path, request["options"]), report)
        try:
            write_message(out, ("done", summary))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise LayerScopeError(sentence(path, f"its summary holds an object that cannot be passed on "
                                                 f"({type(exc).__name__})")) from None
    except Exception as exc:
        write_message(out, error_message(exc, path))


# What the child imports while it waits for the next request, so that the first Hugging Face or
# PyTorch file opens in a fraction of a second: transformers imports `modeling_utils` lazily, and
# that alone costs ~3 s on first use (bench/open_large.py measures both).
WARM_MODULES = ("torch", "transformers", "transformers.modeling_utils")


def warm_up(stop: threading.Event | None = None) -> None:
    """Import the heavy modules a later request will need (errors are left for that request to report).

    Stops between modules once `stop` is set. A request never runs while this thread imports:
    transformers' lazy module is not thread-safe, and a class looked up on it mid-import comes back
    missing (a Llama folder then opened as the bare LlamaModel, without its head).
    """
    for module in WARM_MODULES:
        if stop is not None and stop.is_set():
            return
        try:
            importlib.import_module(module)
        except Exception:  # a broken install is reported by the load that needs it, as one sentence
            return


# Imported before the first request is read: every loader's module (none imports a framework) and the
# readers of the most common first file (the bundled Keras sample: numpy and h5py). The window starts
# this child before its own first paint, so this overlaps with Qt's start-up on the other core.
FIRST_MODULES = ("numpy", "h5py")


def first_imports() -> None:
    """Register every loader and import the light readers a first request most likely needs."""
    from analyzers.loaders import registered

    registered()
    for module in FIRST_MODULES:
        try:
            importlib.import_module(module)
        except Exception:  # a broken install is reported by the load that needs it
            pass


def serve(inp: BinaryIO, out: BinaryIO, warm: bool = True) -> None:
    """Child main loop: one request at a time until stdin closes; warms up between requests."""
    warmer: threading.Thread | None = None
    stop = threading.Event()
    first_imports()
    while True:
        request = read_message(inp)
        if request is None:
            return
        if warmer is not None and warmer.is_alive():  # finish the import under way, start no other
            stop.set()
            warmer.join()
        _serve_one(request, out)
        if warm:  # after each answer, so no model is slowed; modules already imported cost nothing
            stop.clear()
            warmer = threading.Thread(target=warm_up, args=(stop,), name="layerscope-warm-up", daemon=True)
            warmer.start()


def child_main() -> None:
    """Entry point of the child process (`python -m app.loader_process`)."""
    out = child_process.redirect_stdout()
    try:
        serve(sys.stdin.buffer, out)
    finally:
        sys.stderr.flush()
        # torch's and TensorFlow's threads alive at interpreter exit printed "terminate called without an
        # active exception": the child holds nothing to save, so it leaves at once.
        os._exit(0)


class LoaderProcess:
    """One persistent child that opens models; one request at a time (a lock guards it)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._proc = child_process.take_prespawned("app.loader_process") or child_process.spawn("app.loader_process")
        return self._proc

    def kill(self) -> None:
        """Stop the child now (cancel); the next request starts a fresh one."""
        proc, self._proc = self._proc, None
        child_process.kill(proc)

    def open(self, path: Path, options: LoadOptions, token: CancelToken) -> Steps[ModelSummary]:
        """Steps that open `path` in the child; cancel kills it; runs in a worker thread."""
        while not self.lock.acquire(timeout=POLL_S):
            token.raise_if_cancelled()
        try:
            return (yield from self._request(path, options, token))
        finally:
            self.lock.release()

    def _request(self, path: Path, options: LoadOptions, token: CancelToken) -> Steps[ModelSummary]:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        request = {"path": str(path), "options": options, "plugins": plugin_modules(),
                   "sys_path": [p for p in sys.path if p and os.path.isdir(p)]}
        answered = False
        try:
            try:
                write_message(proc.stdin, request)
            except OSError:
                raise LayerScopeError(sentence(path, "the loader process could not be started")) from None
            while True:
                token.raise_if_cancelled()
                ready, _, _ = select.select([proc.stdout], [], [], POLL_S)
                if not ready:
                    continue
                message = read_message(proc.stdout)
                if message is None:
                    code = proc.wait()
                    raise LayerScopeError(sentence(path, f"the loader process stopped while reading it "
                                                         f"({child_process.describe_exit(code)}); the file may "
                                                         "be corrupted"))
                if message[0] == "progress":
                    yield message[1]
                    continue
                answered = True
                if message[0] == "done":
                    return message[1]
                raise rebuild_error(message)
        finally:
            if not answered:  # cancelled, closed early or crashed mid-request: never reuse that child
                self.kill()

    def close(self) -> None:
        """Ask the child to exit (stdin closed), then make sure it did."""
        proc, self._proc = self._proc, None
        child_process.close(proc)


_SHARED = child_process.SharedChild(LoaderProcess)


def shared_process() -> LoaderProcess:
    """The process-wide loader child (created on first use)."""
    return _SHARED.get()


def shutdown_shared() -> None:
    """Stop the shared child, if one runs (window close, tests)."""
    _SHARED.shutdown()


def open_isolated(path: Path, options: LoadOptions | None, token: CancelToken) -> Steps[ModelSummary]:
    """`open_model` in the shared child process: same result, same errors, cancellable at once."""
    return (yield from shared_process().open(Path(path), options or LoadOptions(), token))


if __name__ == "__main__":
    child_main()
