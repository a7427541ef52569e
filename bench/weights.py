"""Weight statistics against a raw numpy pass over the same memory-mapped bytes, in one run.

Writes a float32 safetensors checkpoint of about 1.5 GB (24 matrices of 4096 x 4096, LLM-layer sized)
to a temporary folder, reads it once so both measurements find it in the page cache, then times:
  (a) raw numpy: each tensor memory-mapped whole and passed to numpy for the same numbers (min, max,
      mean, std, exact zeros, NaN and Inf counts, np.histogram over 64 bins of its range)
  (b) a bare read: np.sum over each memory-mapped tensor (how fast the bytes come at all)
  (c) LayerScope: open_model + open_weights + weight_stats (two streamed passes, 4 M-value chunks,
      histograms per layer), with the process's RSS growth while it runs
Target: (c) at least 0.5x the throughput of (a). The best of --runs runs each, alternating.
With --7b, statistics of a Llama-2-7B-shaped sparse folder (13.5 GB of bf16 holes, bench/sparse_models.py):
the RSS growth must stay under 1 GB.
The checkpoint is deleted afterwards.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analyzers.loaders import open_model  # noqa: E402
from analyzers.tasks import drive  # noqa: E402
from analyzers.weights.source import open_weights  # noqa: E402
from analyzers.weights.stats import HIST_BINS, weight_stats  # noqa: E402

MATRICES = 24
SIDE = 4096


def rss_bytes() -> int:
    """The process's resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS every 20 ms while inside; `.growth` is the peak above the RSS at entry."""

    def __enter__(self) -> PeakRss:
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        """Peak RSS above the RSS at entry."""
        return self.peak - self.start


def write_checkpoint(folder: Path) -> Path:
    """24 float32 4096x4096 matrices with a few planted zeros, written tensor by tensor (bounded memory)."""
    import json
    import struct

    path = folder / "model.safetensors"
    nbytes = SIDE * SIDE * 4
    header = {f"model.layers.{i}.mlp.weight": {"dtype": "F32", "shape": [SIDE, SIDE],
                                                "data_offsets": [i * nbytes, (i + 1) * nbytes]} for i in range(MATRICES)}
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(0)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _ in range(MATRICES):
            m = rng.standard_normal((SIDE, SIDE), dtype=np.float32) * 0.02
            m[:, :16] = 0.0
            f.write(m.tobytes())
    return path


def offsets(path: Path) -> list[tuple[int, tuple[int, int]]]:
    """(byte offset, shape) of every tensor of the file."""
    from analyzers.loaders.safetensors_loader import read_header

    header, start = read_header(path)
    return [(start + meta["data_offsets"][0], tuple(meta["shape"])) for k, meta in header.items()
            if k != "__metadata__"]


def numpy_pass(path: Path, spans: list[tuple[int, tuple[int, int]]]) -> float:
    """(a): the same statistics with plain numpy over each whole memory-mapped tensor; seconds."""
    t = time.perf_counter()
    for offset, shape in spans:
        x = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)
        lo, hi = float(x.min()), float(x.max())
        _ = (x.mean(dtype=np.float64), x.std(dtype=np.float64), x.size - np.count_nonzero(x),
             int(np.isnan(x).sum()), int(np.isinf(x).sum()), np.histogram(x, HIST_BINS, (lo, hi)))
        del x
    return time.perf_counter() - t


def read_pass(path: Path, spans: list[tuple[int, tuple[int, int]]]) -> float:
    """(b): one np.sum over each memory-mapped tensor; seconds."""
    t = time.perf_counter()
    for offset, shape in spans:
        x = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)
        float(x.sum(dtype=np.float64))
        del x
    return time.perf_counter() - t


def layerscope_pass(path: Path) -> tuple[float, int, object]:
    """(c): LayerScope's statistics; (seconds, RSS growth in bytes, the result)."""
    gc.collect()
    with PeakRss() as rss:
        t = time.perf_counter()
        summary = drive(open_model(path))
        with open_weights(summary) as source:
            stats = drive(weight_stats(summary, source))
        seconds = time.perf_counter() - t
    return seconds, rss.growth, stats


def seven_b(root: Path) -> None:
    """Statistics of a 7B-shaped sparse folder: time and RSS growth (target < 1 GB)."""
    from analyzers.loaders import LoadOptions
    from bench.sparse_models import LLAMA_7B, write_sparse_hf_folder

    folder = write_sparse_hf_folder(LLAMA_7B, root / "llama7b")
    summary = drive(open_model(folder, LoadOptions(names_only=True)))
    gc.collect()
    with PeakRss() as rss:
        t = time.perf_counter()
        with open_weights(summary) as source:
            stats = drive(weight_stats(summary, source))
        seconds = time.perf_counter() - t
    gb = summary.totals.total_bytes / 1e9
    ok = rss.growth < (1 << 30)
    print(f"7B-shaped folder ({LLAMA_7B.params:,} bf16 params, {gb:.1f} GB, sparse): statistics of "
          f"{len(stats.tensors)} tensors in {seconds:.1f} s ({gb / seconds:.2f} GB/s), RSS growth "
          f"{rss.growth / 2**20:.0f} MiB [target < 1024 MiB: {'meets target' if ok else 'MISSES target'}]")


def main() -> int:
    """Run the benchmark and print its lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each measurement (best reported)")
    parser.add_argument("--7b", dest="seven_b", action="store_true", help="also the 7B-shaped RSS measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="layerscope-bench-weights-") as tmp:
        path = write_checkpoint(Path(tmp))
        size = path.stat().st_size
        spans = offsets(path)
        read_pass(path, spans)  # into the page cache for every measurement alike
        a, b, c = [], [], []
        growth = 0
        for _ in range(args.runs):
            a.append(numpy_pass(path, spans))
            b.append(read_pass(path, spans))
            seconds, grew, stats = layerscope_pass(path)
            c.append(seconds)
            growth = max(growth, grew)
        gb = size / 1e9
        ratio = min(a) / min(c)
        print(f"checkpoint: {MATRICES} float32 {SIDE}x{SIDE} matrices, {gb:.2f} GB (page cache warm), best of "
              f"{args.runs}")
        print(f"(a) raw numpy, same statistics per whole tensor  {min(a):6.2f} s  {gb / min(a):5.2f} GB/s")
        print(f"(b) bare read (np.sum per tensor)                {min(b):6.2f} s  {gb / min(b):5.2f} GB/s")
        print(f"(c) LayerScope weight_stats (2 streamed passes)  {min(c):6.2f} s  {gb / min(c):5.2f} GB/s  "
              f"= {ratio:.2f}x (a)   [target >= 0.5x (a): {'meets target' if ratio >= 0.5 else 'MISSES target'}]"
              f"; RSS growth {growth / 2**20:.0f} MiB for {size / 2**20:.0f} MiB of weights")
        print(f"    peak RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        if args.seven_b:
            seven_b(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
