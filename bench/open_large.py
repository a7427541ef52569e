"""How fast LayerScope opens 7B and 70B checkpoints, against baselines measured in the same run.

Generates sparse Llama-2-7B / 70B-shaped HF folders (real headers, no data on disk) and measures
wall time and peak RSS of:
  (a) `inspect --json --names-only` cold      (no torch import needed for safetensors headers)
  (b) `inspect --json` cold, typed tree       (imports torch + transformers)
  (c) the typed tree in a process where torch and transformers are already imported: the GUI's
      loader process, which also warms transformers.modeling_utils (and, for comparison, a process
      that only ran `import torch, transformers`)
  (d) the accelerate route: AutoConfig + init_empty_weights + from_config (`accelerate estimate-memory`)
  (e) a bare parse of the headers (json.loads of every shard header)
  (f) output shapes and FLOPs of every layer for batch 1 x 512 tokens (meta-device forward pass, no weight
      read), in the same warm process right after (c): its time against the typed tree's
Each is the median of several runs; ratios are against (e) for (a), against (d) for (b), (c), and (f)
against (c) measured in the same process (target: at most 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.loader_process import WARM_MODULES  # noqa: E402
from bench.sparse_models import LLAMA_7B, LLAMA_70B, LlamaShape, write_sparse_hf_folder  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONWARNINGS": "ignore"}

BARE_PARSE = r"""
import json, struct, sys, time
from pathlib import Path
t = time.perf_counter()
folder = Path(sys.argv[1])
index = json.loads((folder / "model.safetensors.index.json").read_text())
n = 0
for shard in dict.fromkeys(index["weight_map"].values()):
    with open(folder / shard, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        n += len(json.loads(f.read(size)))
print(json.dumps({"inner": time.perf_counter() - t, "tensors": n}))
"""

ACCELERATE = r"""
import json, sys, time
t = time.perf_counter()
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM
cfg = AutoConfig.from_pretrained(sys.argv[1])
with init_empty_weights():
    model = AutoModelForCausalLM.from_config(cfg)
print(json.dumps({"inner": time.perf_counter() - t, "params": model.num_parameters()}))
"""

WARM = r"""
import importlib, json, sys, time
sys.path.insert(0, sys.argv[2])
modules = sys.argv[3].split(",")
for m in modules:  # what the process already has before the user opens the model
    importlib.import_module(m)
from analyzers.loaders import open_model, LoadOptions
from analyzers.tasks import drive
t = time.perf_counter()
summary = drive(open_model(sys.argv[1], LoadOptions()))
print(json.dumps({"inner": time.perf_counter() - t, "params": summary.totals.params}))
"""


SHAPES = r"""
import importlib, json, sys, time
sys.path.insert(0, sys.argv[2])
for m in sys.argv[3].split(","):
    importlib.import_module(m)
from analyzers.loaders import open_model, LoadOptions
from analyzers.loaders.shape_inference import infer_shapes
from analyzers.tasks import drive
t = time.perf_counter()
summary = drive(open_model(sys.argv[1], LoadOptions()))
tree = time.perf_counter() - t
t = time.perf_counter()
report = drive(infer_shapes(summary))
shapes = time.perf_counter() - t
print(json.dumps({"tree": tree, "shapes": shapes, "flops": report.total_flops, "layers": len(report.shapes),
                  "input": report.input_text}))
"""


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=str(REPO))
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    # The child has been reaped by communicate(); getrusage(RUSAGE_CHILDREN) keeps the maximum so far,
    # so measure peak RSS with a wait4-based run instead when it matters.
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return wall, 0.0, out.decode()


def measure_rss(cmd: list[str]) -> tuple[float, float, str]:
    """Like measure(), with the child's own peak RSS from wait4."""
    start = time.perf_counter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.dup2(w, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(r)
        os.chdir(REPO)
        os.execve(cmd[0], cmd, ENV)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 1 << 16)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024.0, b"".join(chunks).decode()


def median_of(runs: int, cmd: list[str]) -> tuple[float, float, str]:
    """Median wall time and median peak RSS over `runs` runs."""
    results = [measure_rss(cmd) for _ in range(runs)]
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results), results[-1][2])


def bench_shape(shape: LlamaShape, root: Path, runs: int) -> dict:
    """All five measurements for one model shape."""
    folder = write_sparse_hf_folder(shape, root / shape.name)
    py = sys.executable
    main = str(REPO / "main.py")
    a = median_of(runs, [py, main, "inspect", str(folder), "--json", "--names-only"])
    doc = json.loads(a[2])
    assert doc["totals"]["params"] == shape.params, (doc["totals"]["params"], shape.params)
    b = median_of(runs, [py, main, "inspect", str(folder), "--json"])
    assert json.loads(b[2])["totals"]["params"] == shape.params
    def warm(modules: str) -> float:
        outs = [median_of(1, [py, "-c", WARM, str(folder), str(REPO), modules]) for _ in range(runs)]
        return statistics.median(json.loads(r[2])["inner"] for r in outs)

    c0_inner = warm("torch,transformers")
    c_inner = warm(",".join(WARM_MODULES))
    d = median_of(runs, [py, "-c", ACCELERATE, str(folder)])
    assert json.loads(d[2])["params"] == shape.params
    e = median_of(runs, [py, "-c", BARE_PARSE, str(folder)])
    e_inner = json.loads(e[2])["inner"]
    f = [json.loads(median_of(1, [py, "-c", SHAPES, str(folder), str(REPO), ",".join(WARM_MODULES)])[2])
         for _ in range(runs)]
    return {"shape": shape, "a": a, "b": b, "c": c_inner, "c0": c0_inner, "d": d, "e": e, "e_inner": e_inner,
            "f": f}


def report(res: dict) -> list[str]:
    """Printable lines with ratios and target checks."""
    s: LlamaShape = res["shape"]
    a, b, d, e = res["a"], res["b"], res["d"], res["e"]
    is_70b = s.layers >= 80
    a_target, c_target = (1.0, 3.0) if is_70b else (0.5, 1.0)

    def verdict(ok: bool) -> str:
        return "meets target" if ok else "MISSES target"

    return [
        f"== {s.name}: {s.params:,} params, {s.shards} bf16 shards (sparse) ==",
        f"(e) bare header parse, cold process   {e[0]:7.2f} s  {e[1]:7.0f} MiB  (parse itself {res['e_inner'] * 1000:.1f} ms)",
        f"(a) inspect --json --names-only cold  {a[0]:7.2f} s  {a[1]:7.0f} MiB  = {a[0] / e[0]:.2f}x (e)   "
        f"[target <= {a_target} s, < 100 MiB: {verdict(a[0] <= a_target and a[1] < 100)}]",
        f"(d) accelerate route, cold process    {d[0]:7.2f} s  {d[1]:7.0f} MiB",
        f"(b) inspect --json typed tree cold    {b[0]:7.2f} s  {b[1]:7.0f} MiB  = {b[0] / d[0]:.2f}x (d)   "
        f"[target <= 1.00x (d): {verdict(b[0] <= d[0])}]",
        f"(c) typed tree in the GUI's warm loader process      {res['c']:7.2f} s   "
        f"[target <= {c_target} s: {verdict(res['c'] <= c_target)}]",
        f"    same after `import torch, transformers` alone     {res['c0']:7.2f} s   "
        "(transformers then imports modeling_utils lazily; the loader process warms it up)",
        *shapes_lines(res["f"]),
    ]


def shapes_lines(runs: list[dict]) -> list[str]:
    """(f): shapes and FLOPs against the typed tree timed in the same process."""
    tree = statistics.median(r["tree"] for r in runs)
    shapes = statistics.median(r["shapes"] for r in runs)
    last = runs[-1]
    ratio = shapes / tree if tree else float("inf")
    return [f"(f) shapes + FLOPs, meta device ({last['input']}: {last['flops'] / 1e12:.2f} TFLOPs, "
            f"{last['layers']:,} layers)  {shapes:7.2f} s = {ratio:.2f}x the typed tree's {tree:.2f} s in that process   "
            f"[target <= 2.00x: {'meets target' if ratio <= 2.0 else 'MISSES target'}]"]


def main() -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--only", choices=["7b", "70b"], help="one shape only")
    args = parser.parse_args()
    shapes = {"7b": [LLAMA_7B], "70b": [LLAMA_70B], None: [LLAMA_7B, LLAMA_70B]}[args.only]
    with tempfile.TemporaryDirectory(prefix="layerscope-bench-") as tmp:
        for shape in shapes:
            for line in report(bench_shape(shape, Path(tmp), args.runs)):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
