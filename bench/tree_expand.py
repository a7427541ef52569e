"""Expanding the layer tree to a depth on models of 10^3 to 10^5 layers: the cost must not grow with N.

Each model is N blocks x 5 layers x 2 tensor-owning leaves (N = 400, 4000, 20000: 6.4 x 10^3 to
3.2 x 10^5 nodes). For each, in the same process and offscreen: (show) `set_summary` at depth 1 plus
the paint that follows, then (expand) the Depth box set to 3 plus its paint. The issue asks that 10^5
nodes "stay fluid": the tree fetches rows lazily, FETCH_BATCH at a time, so once N passes one batch
the expand must cost the same whatever N is. Target: the largest model's expand within 2.5x of the
smallest's (which does not fill a batch). Before the two-pass expand it grew with N^2: 11.5 s for
N = 400, over nine minutes for 1.2 x 10^5 nodes, on a 2-core machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtWidgets import QApplication  # noqa: E402

from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo  # noqa: E402
from analyzers.summary.overview import warm  # noqa: E402
from widgets.layer_tree import LayerTree  # noqa: E402

TARGET = 2.5


def deep_summary(blocks: int) -> ModelSummary:
    kids = []
    for b in range(blocks):
        layers = tuple(
            LayerNode(f"b{b}.l{i}", "Layer", (), tuple(
                LayerNode(f"b{b}.l{i}.p{j}", "Leaf", (TensorInfo(f"b{b}.l{i}.p{j}.w", (4,), "float32"),))
                for j in range(2)))
            for i in range(5))
        kids.append(LayerNode(f"b{b}", "Block", (), layers))
    summary = ModelSummary(SourceInfo("deep.safetensors", "safetensors", "torch", (), 0),
                           LayerNode("", "Deep", (), tuple(kids)))
    warm(summary)
    return summary


def settle(app: QApplication, tree: LayerTree) -> None:
    app.processEvents()
    tree.view.viewport().repaint()
    app.processEvents()


def once(app: QApplication, summary: ModelSummary) -> tuple[float, float]:
    tree = LayerTree()
    tree.resize(900, 700)
    tree.show()
    tree.depth_spin.setValue(1)
    settle(app, tree)
    start = time.perf_counter()
    tree.set_summary(summary)
    settle(app, tree)
    base = time.perf_counter() - start
    start = time.perf_counter()
    tree.depth_spin.setValue(3)
    settle(app, tree)
    expand = time.perf_counter() - start
    tree.close()
    tree.deleteLater()
    app.processEvents()
    return base, expand


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    expands = []
    for blocks in (400, 4000, 20000):
        summary = deep_summary(blocks)
        runs = [once(app, summary) for _ in range(3)]
        show = statistics.median(r[0] for r in runs)
        expand = statistics.median(r[1] for r in runs)
        expands.append(expand)
        print(f"{1 + blocks * 16:>8,} nodes  show at depth 1 {show * 1000:7.1f} ms  expand to depth 3 "
              f"{expand * 1000:7.1f} ms  ({expand / show:.2f}x the show)")
    growth = expands[-1] / expands[0]
    verdict = "meets" if growth <= TARGET else "misses"
    print(f"expand at {1 + 20000 * 16:,} nodes = {growth:.2f}x the expand at {1 + 400 * 16:,}: {verdict} the "
          f"{TARGET}x target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
