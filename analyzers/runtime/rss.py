"""The peak resident memory of work in this process, sampled in a thread (CPU runs; CUDA has its allocator)."""

from __future__ import annotations

import threading


class RssPeak:
    """Samples this process's resident memory in a thread; `growth` is the peak above the start."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = 0
        self.peak_rss = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssPeak:
        self.start_rss = self.peak_rss = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="layerscope-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    @property
    def growth(self) -> int:
        """Bytes the peak rose above the resident size at the start."""
        return max(0, self.peak_rss - self.start_rss)


