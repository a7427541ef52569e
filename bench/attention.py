"""Benchmark: LayerScope's attention capture against the framework's own `output_attentions=True` forward pass.

A BERT-base-shaped model (transformers BertConfig defaults: 12 layers, 12 heads, hidden 768) is built from its
config with random weights (no download) and wrapped as the live model the runner would hold. At 128 and 512
tokens, in one run and interleaved, the script times

- baseline: the model (eager attention) called with `output_attentions=True` under inference_mode;
- LayerScope: `live.attention(input)` — the same pass plus the switch to eager attention and back, padding
  masks, float16 storage, head means, the patch-grid check, the prediction and hook clean-up;

and prints the medians, their ratio (target: at most 1.2x) and the RSS growth of one call of each. With Qt
available it also times the Attention tab drawing the 12 x 12 grid of a 128-token capture (target: under 1 s).
Run: `python bench/attention.py [--repeats N] [--device cpu|cuda] [--no-grid]`.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analyzers.explain.inputs import InputHint, ModelInput  # noqa: E402
from analyzers.runtime.rss import RssPeak  # noqa: E402
from analyzers.runtime.torch_runtime import TorchLiveModel, hook_count  # noqa: E402
from analyzers.tasks import drive  # noqa: E402

TARGET_RATIO = 1.2
GRID_TARGET_MS = 1000.0


def bert_base(device: str) -> torch.nn.Module:
    """BertModel at BERT-base size, random weights from its config."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig()).eval().to(device)


def text_input(tokens: int, vocab: int, padding: int = 0) -> ModelInput:
    """Random token ids with `padding` trailing pads masked out."""
    rng = np.random.default_rng(tokens)
    ids = rng.integers(1000, vocab, size=(1, tokens)).astype(np.int64)
    mask = np.ones((1, tokens), np.int64)
    if padding:
        ids[0, -padding:] = 0
        mask[0, -padding:] = 0
    return ModelInput("text", ids, "random", layout="tokens", tokens=tuple(f"t{i}" for i in range(tokens - padding)),
                      extras={"attention_mask": mask})


def timed(fn, device: str) -> float:
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000.0


def bench_length(live: TorchLiveModel, tokens: int, repeats: int) -> dict[str, float]:
    """Medians of both sides at one length, their ratio, and one call's RSS growth each."""
    module = live.module
    inp = text_input(tokens, module.config.vocab_size, padding=tokens // 8)
    x, extras = live.tensors(inp)

    def baseline() -> None:
        previous = module.config._attn_implementation
        module.set_attn_implementation("eager")
        with torch.inference_mode():
            out = module(input_ids=x, **extras, output_attentions=True)
        [a.cpu() for a in out.attentions]  # the weights reach the host, as a caller reading them needs
        module.set_attn_implementation(previous)

    def ours() -> None:
        drive(live.attention(inp))

    baseline()
    ours()  # warm-up: kernels, transformers' capture hooks installed once per call
    base_ms, ours_ms = [], []
    for _ in range(repeats):
        base_ms.append(timed(baseline, live.device))
        ours_ms.append(timed(ours, live.device))
    gc.collect()
    with RssPeak() as base_rss:
        baseline()
    gc.collect()
    hooks = hook_count(module)  # transformers' own capture hooks, which the baseline's call installed
    with RssPeak() as ours_rss:
        result = drive(live.attention(inp))
    stored = sum(layer.weights.nbytes + layer.mean.nbytes for layer in result.layers)
    assert hook_count(module) == hooks, "the capture left a hook behind"
    b, o = statistics.median(base_ms), statistics.median(ours_ms)
    return {"tokens": tokens, "baseline_ms": b, "ours_ms": o, "ratio": o / b, "baseline_rss": base_rss.growth,
            "ours_rss": ours_rss.growth, "stored": stored, "layers": len(result.layers), "heads": result.heads,
            "result": result}


def bench_grid(result) -> float | None:
    """Milliseconds for the Attention tab to draw a capture's grid and first map (offscreen Qt), or None."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PySide6.QtWidgets import QApplication

        from widgets.attention_view import AttentionPanel
    except ImportError:
        return None
    app = QApplication.instance() or QApplication([])
    panel = AttentionPanel()
    panel.resize(1500, 900)
    panel.show()
    app.processEvents()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        panel.set_result(result)
        app.processEvents()
        panel.grid.grab()  # the atlas and its labels are really painted
        times.append((time.perf_counter() - t0) * 1000.0)
    panel.close()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--lengths", default="128,512")
    p.add_argument("--no-grid", action="store_true")
    args = p.parse_args(argv)
    module = bert_base(args.device)
    live = TorchLiveModel(module, Path("bert-base-random"), "hf", args.device, input_name="input_ids",
                          hint=InputHint("text", (None,), "int64", "tokens"))
    print(f"BERT-base shape (12 layers x 12 heads, hidden 768), random weights, on {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = [bench_length(live, int(n), args.repeats) for n in args.lengths.split(",")]
    for r in rows:
        print(f"{r['tokens']:>4} tokens: output_attentions forward {r['baseline_ms']:8.1f} ms, LayerScope capture "
              f"{r['ours_ms']:8.1f} ms, ratio {r['ratio']:.3f} (target <= {TARGET_RATIO}); RSS growth "
              f"{r['baseline_rss'] / 2**20:6.1f} MiB vs {r['ours_rss'] / 2**20:6.1f} MiB; kept "
              f"{r['stored'] / 2**20:.1f} MiB ({r['layers']} layers x {r['heads']} heads, float16 + float32 means)")
    worst = max(r["ratio"] for r in rows)
    print(f"worst ratio {worst:.3f}: {'met' if worst <= TARGET_RATIO else 'MISSED'}")
    if not args.no_grid:
        first = next((r for r in rows if r["tokens"] == 128), rows[0])
        ms = bench_grid(first["result"])
        if ms is not None:
            print(f"Attention tab: {first['layers']} x {first['heads']} grid at {first['tokens']} tokens drawn in "
                  f"{ms:.0f} ms (target < {GRID_TARGET_MS:.0f} ms): {'met' if ms < GRID_TARGET_MS else 'MISSED'}")
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
