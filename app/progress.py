"""Progress on a terminal for CLI commands: one rewritten stderr line, only when stderr is a TTY."""

from __future__ import annotations

import sys

from analyzers.tasks import Progress


class TerminalProgress:
    """Callable for `drive(on_progress=...)` that redraws one status line on stderr."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.active = bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = 0

    def __call__(self, p: Progress) -> None:
        if not self.active:
            return
        frac = p.fraction
        pct = f"{100 * frac:5.1f}% " if frac is not None else ""
        text = f"\r{pct}{p.text}"[:120]
        self.stream.write(text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Erase the status line."""
        if self.active and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
