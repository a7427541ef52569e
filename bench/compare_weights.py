"""Weight drift throughput against a raw numpy read of the same memory-mapped bytes, in one run.

    .venv/bin/python bench/compare_weights.py            # two ~1.2 GB safetensors checkpoints (no zeros)
    .venv/bin/python bench/compare_weights.py --gb 2.0   # bigger
    .venv/bin/python bench/compare_weights.py --llama7b  # also: two sparse Llama-2-7B folders (13.5 GB each, holes)

Writes two float32 checkpoints of equal shape into a temporary folder (B = A + small noise, no exact zeros
on either side), reads both once to warm the page cache, then times (1) the raw read: every tensor of
both files memory-mapped and summed block by block with numpy, and (2) `drift_steps` over the same files
(relative change, cosine, max |B − A|, changed and zero counts per tensor, rolled up per layer). Prints
both throughputs, their ratio (target >= 0.5x) and the RSS growth of the drift. The folder is deleted
afterwards. `--llama7b` adds the RSS growth of a 7B pair (sparse files: real headers, no data on disk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ROWS, COLS = 4096, 4608  # one tensor: 18.9 M float32 values, 72 MiB
BLOCK = 1 << 20


def write_checkpoint(path: Path, tensors: int, seed: int, base: Path | None = None) -> Path:
    """A safetensors file of `tensors` float32 (ROWS, COLS) weights; with `base`, base's values plus noise."""
    names = [f"layers.{i}.proj.weight" for i in range(tensors)]
    size = ROWS * COLS * 4
    header = {n: {"dtype": "F32", "shape": [ROWS, COLS], "data_offsets": [i * size, (i + 1) * size]}
              for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(seed)
    start = 8 + len(raw)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for i in range(tensors):
            if base is None:
                values = rng.uniform(0.5, 1.5, (ROWS, COLS)).astype(np.float32)  # no exact zeros
                values *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), (ROWS, COLS))
            else:
                values = np.fromfile(base, dtype=np.float32, count=ROWS * COLS, offset=start + i * size).reshape(
                    ROWS, COLS) + rng.normal(0, 0.01, (ROWS, COLS)).astype(np.float32)
            values.tofile(f)
    return path


def raw_read(paths: list[Path]) -> tuple[float, int]:
    """Seconds to memory-map and sum every value of every tensor of `paths` block by block; bytes read."""
    from analyzers.loaders.safetensors_loader import read_header

    total = 0
    started = time.perf_counter()
    for path in paths:
        header, data_start = read_header(path)
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            a, b = meta["data_offsets"]
            values = np.memmap(path, dtype=np.float32, mode="r", offset=data_start + a, shape=((b - a) // 4,))
            for i in range(0, values.size, BLOCK):
                float(values[i:i + BLOCK].sum())
            total += b - a
            del values
    return time.perf_counter() - started, total


def drift(paths: list[Path]) -> tuple[float, int, object]:
    """Seconds, peak RSS growth and the report of drift_steps over the pair."""
    from analyzers.compare.drift import drift_steps
    from analyzers.loaders import open_model
    from analyzers.runtime.rss import RssPeak
    from analyzers.tasks import run_steps

    a, b = (run_steps(open_model(p)) for p in paths)
    with RssPeak(0.005) as rss:
        started = time.perf_counter()
        report = run_steps(drift_steps(a, b))
        seconds = time.perf_counter() - started
    return seconds, rss.growth, report


def llama7b_rss(folder: Path) -> None:
    """RSS growth of drift over two Llama-2-7B-shaped folders (sparse files: headers real, data all holes)."""
    from bench.sparse_models import LLAMA_7B, write_sparse_hf_folder

    folders = [write_sparse_hf_folder(LLAMA_7B, folder / name) for name in ("a", "b")]
    seconds, growth, report = drift(folders)
    print(f"Llama-2-7B pair (sparse files, {report.model.numel / 1e9:.2f} B values per side): {seconds:.1f} s, "
          f"RSS growth {growth / 2**20:.0f} MiB (target < 1024 MiB)")


def main(argv: list[str] | None = None) -> int:
    """Write the pair, time both passes, print the ratio, delete the pair."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=1.2, help="size of each checkpoint in GB (default 1.2)")
    p.add_argument("--llama7b", action="store_true", help="also the RSS growth over a sparse Llama-2-7B pair")
    args = p.parse_args(argv)
    tensors = max(1, round(args.gb * 1e9 / (ROWS * COLS * 4)))
    folder = Path(tempfile.mkdtemp(prefix="layerscope-drift-bench-"))
    try:
        print(f"writing two checkpoints of {tensors} x ({ROWS}, {COLS}) float32 "
              f"({tensors * ROWS * COLS * 4 / 1e9:.2f} GB each) in {folder}", flush=True)
        a = write_checkpoint(folder / "a.safetensors", tensors, 0)
        b = write_checkpoint(folder / "b.safetensors", tensors, 1, base=a)
        paths = [a, b]
        raw_read(paths)  # warm the page cache: both passes then read memory, not the disk
        raw_times = []
        drift_seconds = drift_growth = 0.0
        report = None
        for _ in range(3):  # raw, drift, raw, drift, ...: the best of each (the machine may be shared)
            raw_times.append(raw_read(paths)[0])
            s, g, report = drift(paths)
            drift_seconds = s if not drift_seconds else min(drift_seconds, s)
            drift_growth = max(drift_growth, g)
        raw_seconds = min(raw_times)
        nbytes = raw_read(paths)[1]
        print(f"raw numpy memmap read of both: {raw_seconds:.2f} s, {nbytes / raw_seconds / 1e9:.2f} GB/s")
        print(f"LayerScope drift over both:    {drift_seconds:.2f} s, {nbytes / drift_seconds / 1e9:.2f} GB/s "
              f"(relative change {report.model.relative_change:.4g}, cosine {report.model.cosine:.6f}, "
              f"zeros {report.model.zeros_a + report.model.zeros_b})")
        print(f"throughput ratio: {raw_seconds / drift_seconds:.2f}x the raw read (target >= 0.5x)")
        print(f"RSS growth during drift: {drift_growth / 2**20:.0f} MiB for {nbytes / 2**30:.2f} GiB read")
        if args.llama7b:
            llama7b_rss(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
