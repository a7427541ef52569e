"""Run analyzers' step generators off the GUI thread; progress and results come back as signals.

A job is a generator made by `make_steps(token)` (DESIGN.md §4). It runs in a `QRunnable` on a
pool: "io" jobs (loading) on a small pool, "model" jobs on a single-thread pool so that two jobs
never hook the same module at once. The pools are persistent Python threads, not QThreadPool: a
QThreadPool thread gets a new Python thread state for every job, and pybind11 (TensorFlow, torch)
caches thread states per OS thread, so a Keras forward pass after torch was imported in another
pool thread deadlocked on the GIL (reproduced with TF 2.21, torch 2.13, PySide6 6.12). Results arrive in the GUI thread through queued signals of a
QObject created in the GUI thread. A job cancelled by the user, or superseded by a newer job with
the same label, is dropped at once: whatever its thread returns later is never painted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QRunnable, Signal

from analyzers.errors import LayerScopeError
from analyzers.tasks import Cancelled, CancelToken, Progress, Steps, drive

T = TypeVar("T")

PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress repaints a second per job


def unexpected_sentence(label: str, exc: BaseException) -> str:
    """One readable sentence for an error no analyzer turned into a LayerScopeError."""
    text = str(exc).strip().splitlines()[0][:300].rstrip(".") if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    what = label or "The job"
    return f"{what} failed unexpectedly ({detail})."


class PythonThreadPool:
    """A fixed set of long-lived Python threads running QRunnables in submission order."""

    def __init__(self, threads: int, name: str) -> None:
        self._size = max(1, threads)
        self._name = name
        self._queue: queue.Queue[QRunnable | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._idle = threading.Condition()

    def start(self, runnable: QRunnable) -> None:
        """Queue `runnable`; a thread is started when all existing ones may be busy."""
        with self._idle:
            self._busy += 1
            if len(self._threads) < min(self._size, self._busy):
                thread = threading.Thread(target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put(runnable)

    def _loop(self) -> None:
        while True:
            runnable = self._queue.get()
            if runnable is None:
                return
            try:
                runnable.run()
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def waitForDone(self, msecs: int = -1) -> bool:  # noqa: N802 - QThreadPool's name
        """Wait until every queued runnable ran; False when `msecs` passed first."""
        timeout = None if msecs < 0 else msecs / 1000.0
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def activeThreadCount(self) -> int:  # noqa: N802 - QThreadPool's name
        """Runnables queued or running."""
        return self._busy


class _JobSignals(QObject):
    """Lives in the GUI thread; worker threads emit on it, so delivery is queued."""

    progress = Signal(int, object)
    done = Signal(int, object)
    error = Signal(int, str)
    cancelled = Signal(int)


class _JobRunnable(QRunnable):
    """Drives one generator to its end in a pool thread and reports through `_JobSignals`."""

    def __init__(self, job_id: int, label: str, make_steps: Callable[[CancelToken], Steps[Any]],
                 token: CancelToken, signals: _JobSignals) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the JobRunner keeps the Python object alive until the job ends
        self._id = job_id
        self._label = label
        self._make_steps = make_steps
        self._token = token
        self._signals = signals
        self._last_emit = 0.0
        self._last_text = ""

    def _on_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        final = progress.total is not None and progress.done >= progress.total
        if final or progress.text != self._last_text or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit, self._last_text = now, progress.text
            self._emit(self._signals.progress, self._id, progress)

    def run(self) -> None:
        """Pool-thread entry point: never lets an exception escape into Qt."""
        try:
            self._token.raise_if_cancelled()
            steps = self._make_steps(self._token)
            result = drive(steps, self._on_progress, self._token)
        except Cancelled:
            self._emit(self._signals.cancelled, self._id)
        except LayerScopeError as exc:
            self._emit(self._signals.error, self._id, str(exc))
        except MemoryError:
            self._emit(self._signals.error, self._id, f"{self._label or 'The job'} ran out of memory.")
        except Exception as exc:  # a bug or a library error nobody translated: still one sentence
            self._emit(self._signals.error, self._id, unexpected_sentence(self._label, exc))
        else:
            self._emit(self._signals.done, self._id, result)

    @staticmethod
    def _emit(signal, *args: object) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the window (and its JobRunner) closed while this job ran: nobody listens
            pass


@dataclass
class _Job:
    """Book-keeping of one submitted job (GUI thread only)."""

    id: int
    label: str
    kind: str
    token: CancelToken
    runnable: _JobRunnable
    on_done: Callable[[Any], None] | None
    on_error: Callable[[str], None] | None


class JobRunner(QObject):
    """Runs analyzers step generators off the GUI thread with status-bar progress and Cancel."""

    started = Signal(int, str)  # job id, label
    progress = Signal(int, object)  # job id, analyzers.tasks.Progress
    finished = Signal(int, object)  # job id, result
    failed = Signal(int, str)  # job id, one-sentence message
    cancelled = Signal(int)  # job id

    def __init__(self, parent: QObject | None = None, io_threads: int = 2) -> None:
        super().__init__(parent)
        self._signals = _JobSignals(self)
        self._signals.progress.connect(self._on_progress)
        self._signals.done.connect(self._on_done)
        self._signals.error.connect(self._on_error)
        self._signals.cancelled.connect(self._on_cancelled)
        self._pools = {"io": PythonThreadPool(io_threads, "layerscope-io"),
                       "model": PythonThreadPool(1, "layerscope-model")}
        self._jobs: dict[int, _Job] = {}
        self._running: dict[int, _JobRunnable] = {}  # still in a thread, dropped or not
        self._labels: dict[str, int] = {}
        self._next_id = 1

    def submit(
        self,
        make_steps: Callable[[CancelToken], Steps[T]],
        label: str,
        kind: str = "io",
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> int:
        """Start a job; a live job with the same label is superseded (cancelled, its result dropped)."""
        if kind not in self._pools:
            raise ValueError(f"unknown job kind {kind!r}; expected 'io' or 'model'")
        previous = self._labels.get(label)
        if previous is not None and previous in self._jobs:
            self._drop(previous, announce=True)
        job_id = self._next_id
        self._next_id += 1
        token = CancelToken()
        runnable = _JobRunnable(job_id, label, make_steps, token, self._signals)
        self._jobs[job_id] = _Job(job_id, label, kind, token, runnable, on_done, on_error)
        self._running[job_id] = runnable
        self._labels[label] = job_id
        self.started.emit(job_id, label)
        self._pools[kind].start(runnable)
        return job_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job, or every live job when `job_id` is None; they report `cancelled` at once."""
        ids = list(self._jobs) if job_id is None else [job_id]
        for jid in ids:
            if jid in self._jobs:
                self._drop(jid, announce=True)

    def active(self) -> list[int]:
        """Ids of jobs whose result is still awaited."""
        return list(self._jobs)

    def label_of(self, job_id: int) -> str:
        """The label a live job was submitted with ("" when it is no longer live)."""
        job = self._jobs.get(job_id)
        return job.label if job else ""

    def is_busy(self) -> bool:
        """True while any thread still runs a job, dropped ones included."""
        return bool(self._running)

    def shutdown(self, wait_ms: int = 3000) -> bool:
        """Cancel everything and wait for the threads; True when they all stopped in time."""
        self.cancel()
        ok = True
        for pool in self._pools.values():
            ok = pool.waitForDone(wait_ms) and ok
        return ok

    def _drop(self, job_id: int, announce: bool) -> None:
        job = self._jobs.pop(job_id)
        job.token.cancel()
        if self._labels.get(job.label) == job_id:
            del self._labels[job.label]
        if announce:
            self.cancelled.emit(job_id)

    def _finish(self, job_id: int) -> _Job | None:
        """Forget a job whose thread ended; the job record when its result is still wanted."""
        self._running.pop(job_id, None)
        job = self._jobs.pop(job_id, None)
        if job is not None and self._labels.get(job.label) == job_id:
            del self._labels[job.label]
        return job

    def _on_progress(self, job_id: int, progress: object) -> None:
        if job_id in self._jobs:
            self.progress.emit(job_id, progress)

    def _on_done(self, job_id: int, result: object) -> None:
        job = self._finish(job_id)
        if job is None:
            return
        try:
            if job.on_done is not None:
                job.on_done(result)
        except LayerScopeError as exc:
            self._report_error(job, str(exc))
            return
        except Exception as exc:  # showing a result must never take the window down
            self._report_error(job, unexpected_sentence(f"Showing the result of {job.label}", exc))
            return
        self.finished.emit(job_id, result)

    def _on_error(self, job_id: int, message: str) -> None:
        job = self._finish(job_id)
        if job is not None:
            self._report_error(job, message)

    def _report_error(self, job: _Job, message: str) -> None:
        self.failed.emit(job.id, message)
        if job.on_error is not None:
            job.on_error(message)

    def _on_cancelled(self, job_id: int) -> None:
        job = self._finish(job_id)
        if job is not None:
            self.cancelled.emit(job_id)
