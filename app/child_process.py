"""What the loader and the model runner share: a framed pickle stream to a persistent Python child.

Wire format on the child's stdin/stdout: 4-byte big-endian length + pickle. The child moves its own
stdout to stderr first, so stray prints of a library cannot corrupt the stream. Only LayerScope's own
processes write the stream (never a file's bytes), so unpickling it is as safe as importing our code.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

from analyzers import errors
from analyzers.errors import LayerScopeError, TrustRequired, printable, sentence

ROOT = Path(__file__).resolve().parent.parent
BIG_PAYLOAD = 1 << 20  # above this, unpickle in pure Python so the GIL keeps switching


def write_message(stream: BinaryIO, message: object) -> None:
    """Frame and send one picklable message."""
    blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">I", len(blob)) + blob)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> Any:
    """The next message, or None at end of stream."""
    head = _read_exact(stream, 4)
    if head is None:
        return None
    blob = _read_exact(stream, struct.unpack(">I", head)[0])
    return None if blob is None else loads(blob)


def loads(blob: bytes) -> Any:
    """Unpickle a message; a big one with the pure-Python unpickler, which lets the GUI thread paint."""
    if len(blob) < BIG_PAYLOAD:
        return pickle.loads(blob)
    # The C unpickler holds the GIL for the whole call (seconds for a 10^5-node tree); the
    # Python one yields it every few milliseconds, so the GUI thread keeps painting.
    return pickle._Unpickler(io.BytesIO(blob)).load()  # type: ignore[attr-defined]


def error_message(exc: BaseException, path: Path | str, doing: str = "opening it") -> tuple:
    """An exception as a picklable tuple the parent turns back into the same error."""
    if isinstance(exc, TrustRequired):
        return ("error", "TrustRequired", str(exc), str(exc.path), exc.detail)
    if isinstance(exc, LayerScopeError):
        return ("error", type(exc).__name__, str(exc), str(path), "")
    if isinstance(exc, MemoryError):
        return ("error", "LayerScopeError", sentence(path, f"{doing} ran out of memory"), str(path), "")
    text = printable(str(exc).strip().splitlines()[0][:300].rstrip(".")) if str(exc).strip() else ""
    problem = f"{doing} failed unexpectedly ({type(exc).__name__}{': ' + text if text else ''})"
    return ("error", "LayerScopeError", sentence(path, problem), str(path), "")


def rebuild_error(message: tuple) -> LayerScopeError:
    """The parent's side of `error_message`."""
    _, name, text, path, detail = message
    if name == "TrustRequired":
        return TrustRequired(path, detail)
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, LayerScopeError)):
        cls = LayerScopeError
    return cls(text)


def redirect_stdout() -> BinaryIO:
    """In the child: the message stream (the real stdout); library prints go to stderr from now on."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def child_environment() -> dict[str, str]:
    """The child's environment: LayerScope importable, nothing goes online, TensorFlow quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def spawn(module: str) -> subprocess.Popen:
    """Start `python -m module` with pipes for the message streams."""
    return subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd=str(ROOT), env=child_environment(), bufsize=0)


_prespawned: dict[str, subprocess.Popen] = {}


def prespawn(module: str) -> None:
    """Start `python -m module` now, before anyone asks for it (the window does this before its first paint
    so that the loader's imports overlap with Qt's); `take_prespawned` hands it over later."""
    if module not in _prespawned:
        try:
            _prespawned[module] = spawn(module)
        except OSError:
            pass  # the first request spawns it and reports a failure then


def take_prespawned(module: str) -> subprocess.Popen | None:
    """The child `prespawn` started for `module`, if it is still alive (it is handed out once)."""
    proc = _prespawned.pop(module, None)
    if proc is not None and proc.poll() is not None:
        kill(proc)
        return None
    return proc


def close_prespawned() -> None:
    """Close the children started ahead that nobody took (the window closed before it opened a model)."""
    while _prespawned:
        close(_prespawned.popitem()[1], wait_s=0.5)


def kill(proc: subprocess.Popen | None) -> None:
    """Stop a child now and close its pipes."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def close(proc: subprocess.Popen | None, wait_s: float = 2.0) -> None:
    """Ask a child to exit (stdin closed), wait a little, then make sure it did."""
    if proc is None:
        return
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    kill(proc)


def describe_exit(code: int | None) -> str:
    """How a child ended, in words: 'it crashed (signal SIGSEGV)' or 'it exited with code 3'."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGKILL":
            return "it was killed (SIGKILL, often the system running out of memory)"
        return f"it crashed ({name})"
    return f"it exited with code {code}"


class SharedChild:
    """One process-wide handle on a child (the loader, the model runner): made on first use, closed once."""

    def __init__(self, factory: Any) -> None:
        import threading

        self._factory = factory
        self._handle: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The handle, made now if there is none."""
        with self._lock:
            if self._handle is None:
                self._handle = self._factory()
            return self._handle

    def shutdown(self) -> None:
        """Close the handle's child, if one was made (window close, tests); the next get() makes a new one."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()
