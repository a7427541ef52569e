"""Run live models in a child process, so a crash inside a framework never takes the window down.

TensorFlow's static initialisers crashed the window (SIGSEGV) when a Keras model ran in a process
where QtWebEngine had loaded Mesa's LLVM; CUDA running out of memory, or any native crash, would do
the same. The window therefore imports neither torch nor TensorFlow: one persistent child (this
module run as `python -m app.runner_process`) keeps the live models open between requests and
answers Run, Attribute and device listings; progress streams back as it happens.

Cancel is a message: the job stops at its next check (a forward pre-hook checks before every pass)
and the child keeps its models. A child that does not answer a cancel within CANCEL_GRACE_S, or that
dies, is replaced by a fresh one on the next request; the user is told in one sentence.
"""

from __future__ import annotations

import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from analyzers.errors import LayerScopeError
from analyzers.tasks import Cancelled, CancelToken, Progress, Steps, drive
from app import child_process
from app.child_process import error_message, read_message, rebuild_error, write_message

POLL_S = 0.05
PROGRESS_INTERVAL_S = 0.05
CANCEL_GRACE_S = 5.0  # a job that has not stopped this long after Cancel is killed with its process


class RunnerDied(LayerScopeError):
    """The model-runner process ended while it worked on a request."""


# --- the child ------------------------------------------------------------------------------------


def _job(models: Any, request: dict) -> Callable[[CancelToken], Steps[Any]]:
    from analyzers.explain import live_jobs

    op = request["op"]
    if op == "run":
        return lambda token: live_jobs.run_job(models, request["ref"], request["settings"], token)
    if op == "attribute":
        return lambda token: live_jobs.attribute_job(models, request["ref"], request["settings"], token)
    if op == "attention":
        return lambda token: live_jobs.attention_job(models, request["ref"], request["settings"], token)
    if op == "compare":
        return lambda token: live_jobs.compare_job(models, request["ref"], request["ref_b"], request["settings"], token)
    if op == "drift":
        from analyzers.compare.drift import drift_steps

        return lambda token: drift_steps(request["a"], request["b"], token)
    if op == "shapes":
        from analyzers.loaders.shape_inference import infer_shapes

        return lambda token: infer_shapes(request["summary"], request.get("shape"), token, bool(request.get("trust")))
    if op == "weights":
        from analyzers.weights.report import analyze_weights

        return lambda token: analyze_weights(request["summary"], request["request"], token)
    if op == "shrink":
        from analyzers.weights.shrink import shrink_job

        return lambda token: shrink_job(models, request["ref"], tuple(request["variants"]), token)
    if op == "devices":
        return live_jobs.devices_job
    if op == "warm":
        return lambda token: live_jobs.warm_job(str(request.get("framework", "")), token)
    if op == "hooks":
        return lambda token: live_jobs.hooks_job(models, token)
    if op == "status":
        def status(_token: CancelToken) -> Steps[dict]:
            frameworks = sorted(m for m in ("torch", "tensorflow", "keras") if m in sys.modules)
            return {"open_models": models.paths(), "frameworks": frameworks}
            yield  # a generator, like every job

        return status
    if op == "forget":
        def forget(_token: CancelToken) -> Steps[None]:
            models.forget(request.get("path"))
            return None
            yield  # a generator, like every job

        return forget
    raise LayerScopeError(f"The model runner does not know the request '{op}'.")


class _Child:
    """The child's state: one job at a time on a worker thread; the main thread reads requests and cancels."""

    def __init__(self, out: BinaryIO) -> None:
        from analyzers.explain.live_jobs import LiveModels

        self.out = out
        self.models = LiveModels()
        self.write_lock = threading.Lock()
        self.jobs: queue.Queue[dict | None] = queue.Queue()
        self.current: tuple[int, CancelToken] | None = None
        self.cancelled: set[int] = set()
        self.state_lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self.write_lock:
            write_message(self.out, message)

    def cancel(self, job_id: int) -> None:
        with self.state_lock:
            if self.current is not None and self.current[0] == job_id:
                self.current[1].cancel()
            else:
                self.cancelled.add(job_id)

    def work(self) -> None:
        while True:
            request = self.jobs.get()
            if request is None:
                return
            job_id = request["id"]
            token = CancelToken()
            with self.state_lock:
                if job_id in self.cancelled:
                    self.cancelled.discard(job_id)
                    token.cancel()
                self.current = (job_id, token)
            self._answer(job_id, request, token)
            with self.state_lock:
                self.current = None

    def _answer(self, job_id: int, request: dict, token: CancelToken) -> None:
        last = [0.0, ""]

        def report(progress: Progress) -> None:
            now = time.monotonic()
            if progress.text != last[1] or now - last[0] >= PROGRESS_INTERVAL_S:
                last[0], last[1] = now, progress.text
                self.send(("progress", job_id, progress))

        subject = request.get("path") or (request["ref"].path if "ref" in request else "the model runner")
        try:
            result = drive(_job(self.models, request)(token), report, token)
        except Cancelled:
            self.send(("cancelled", job_id))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one sentence for the window
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self.send(("error", job_id, error_message(exc, subject, "running it")))
        else:
            try:
                self.send(("done", job_id, result))
            except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled
                self.send(("error", job_id, error_message(exc, subject, "sending its result")))


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Child main loop: requests queue for the worker; cancels act at once; returns when stdin closes."""
    child = _Child(out)
    worker = threading.Thread(target=child.work, name="layerscope-runner", daemon=True)
    worker.start()
    while True:
        message = read_message(inp)
        if message is None:
            return
        if message.get("op") == "cancel":
            child.cancel(int(message["id"]))
        else:
            child.jobs.put(message)


def child_main() -> None:
    """Entry point of `python -m app.runner_process`; exits without running framework teardown."""
    out = child_process.redirect_stdout()
    try:
        serve(sys.stdin.buffer, out)
    finally:
        sys.stderr.flush()
        # TensorFlow and torch threads still alive at interpreter exit printed "terminate called without
        # an active exception" (and sometimes crashed): nothing is left to save, so leave at once.
        os._exit(0)


# --- the parent -----------------------------------------------------------------------------------


class RunnerProcess:
    """The window's handle on the model-runner child: one request at a time, progress as steps."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._next_id = 1
        self.deaths = 0  # how many children ended mid-request (tests, the status bar)

    @property
    def running(self) -> bool:
        """True while a child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        child_process.kill(self._proc)
        self._proc = child_process.spawn("app.runner_process")
        return self._proc

    def request(self, op: str, token: CancelToken, subject: Path | str = "", **payload: Any) -> Steps[Any]:
        """Steps that send one request and end in its result; Cancel is passed on, a death is one sentence."""
        while not self._lock.acquire(timeout=POLL_S):
            token.raise_if_cancelled()
        try:
            return (yield from self._request(op, token, subject, payload))
        finally:
            self._lock.release()

    def _request(self, op: str, token: CancelToken, subject: Path | str, payload: dict) -> Steps[Any]:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        job_id = self._next_id
        self._next_id += 1
        name = Path(subject).name if subject else "the model"
        try:
            write_message(proc.stdin, {"op": op, "id": job_id, "path": str(subject) if subject else "", **payload})
        except OSError:
            child_process.kill(proc)
            self._proc = None
            raise RunnerDied(f"{name}: the model runner could not be started.") from None
        answered = False
        cancel_sent_at: float | None = None
        try:
            while True:
                if token.cancelled and cancel_sent_at is None:
                    cancel_sent_at = time.monotonic()
                    self._send_cancel(proc, job_id)
                if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > CANCEL_GRACE_S:
                    answered = True  # given up: the child that would not stop goes, its models with it
                    self.kill()
                    raise Cancelled()
                ready, _, _ = select.select([proc.stdout], [], [], POLL_S)
                if not ready:
                    continue
                message = read_message(proc.stdout)
                if message is None:
                    answered = True
                    code = proc.wait()
                    self._proc = None
                    self.deaths += 1
                    raise RunnerDied(f"{name}: the model runner stopped while working on it "
                                     f"({child_process.describe_exit(code)}); the window is unaffected, "
                                     "run it again to start a fresh runner.")
                kind, mid = message[0], message[1]
                if mid != job_id:
                    continue  # the late answer of a request given up on
                if kind == "progress":
                    if cancel_sent_at is None:
                        yield message[2]
                    continue
                answered = True
                if kind == "done":
                    return message[2]
                if kind == "cancelled":
                    raise Cancelled()
                raise rebuild_error(message[2])
        finally:
            if not answered:
                self._give_up(proc, job_id, cancel_sent_at)

    def _send_cancel(self, proc: subprocess.Popen, job_id: int) -> None:
        try:
            write_message(proc.stdin, {"op": "cancel", "id": job_id})
        except OSError:
            pass

    def _give_up(self, proc: subprocess.Popen, job_id: int, cancel_sent_at: float | None) -> None:
        """The caller stopped listening (cancel, window closing): let the job stop, or kill the child."""
        if cancel_sent_at is None:
            cancel_sent_at = time.monotonic()
            self._send_cancel(proc, job_id)
        while time.monotonic() - cancel_sent_at < CANCEL_GRACE_S and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], POLL_S)
            if not ready:
                continue
            message = read_message(proc.stdout)
            if message is None:
                break
            if message[1] == job_id and message[0] != "progress":
                return  # it stopped; the child and its open models stay
        child_process.kill(proc)
        if self._proc is proc:
            self._proc = None

    def close(self) -> None:
        """Ask the child to exit and make sure it did."""
        proc, self._proc = self._proc, None
        child_process.close(proc)

    def kill(self) -> None:
        """Stop the child now."""
        proc, self._proc = self._proc, None
        child_process.kill(proc)


_SHARED = child_process.SharedChild(RunnerProcess)


def shared_runner() -> RunnerProcess:
    """The process-wide model runner (its child starts with the first request)."""
    return _SHARED.get()


def shutdown_shared() -> None:
    """Stop the shared runner's child, if one runs (window close, tests)."""
    _SHARED.shutdown()


if __name__ == "__main__":
    child_main()
