"""Long work as generators: they yield Progress, return their result and honour a cancel token."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long job: `done` of `total` units (total None when unknown) and what is happening."""

    done: float
    total: float | None
    text: str = ""

    @property
    def fraction(self) -> float | None:
        """Share done in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


Steps = Generator[Progress, None, T]


class Cancelled(BaseException):  # noqa: N818 - named like asyncio.CancelledError
    """BaseException, like asyncio.CancelledError, so no library's `except Exception` eats it."""


class CancelToken:
    """A thread-safe flag the GUI sets and the job checks between steps (and inside hooks)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled when cancel() was called; the check long library calls make from hooks."""
        if self._event.is_set():
            raise Cancelled()


def drive(
    steps: Steps[T],
    on_progress: Callable[[Progress], None] | None = None,
    token: CancelToken | None = None,
) -> T:
    """Run a step generator to completion headless (CLI, tests, worker threads) and return its result."""
    try:
        while True:
            if token is not None and token.cancelled:
                raise Cancelled()
            try:
                progress = next(steps)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None:
                on_progress(progress)
    finally:
        steps.close()


def run_steps(steps: Steps[T]) -> T:
    """Run a step generator without progress or cancel; shorthand for tests and scripts."""
    return drive(steps)
