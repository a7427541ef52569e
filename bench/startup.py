"""Time to first paint of LayerScope's window against a bare PySide6 window, measured in the same run.

Each sample is a fresh process (offscreen platform), timed from spawn until the process reports its
first paint event; the two kinds alternate so that machine load hits both alike. Target: <= 1.3x.

LayerScope's first paint shows the window's frame: menus, tab bar, status bar and the splitter. The
layer tree and the inspector are built in the event-loop turn right after it, the chart tabs in
the next one; "ready" is when the tree and inspector exist (a model could be shown), reported too.
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
TARGET = 1.3

BARE = r"""
import sys
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv)
window = QMainWindow()
window.resize(1500, 900)
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            print("{}", flush=True)
            app.exit(0)
        return False
watcher = FirstPaint()
window.installEventFilter(watcher)
window.show()
app.exec()
"""


def first_paint_seconds(cmd: list[str], env: dict[str, str]) -> tuple[float, dict]:
    """Seconds from spawning `cmd` until it prints its first-paint line (and that line, parsed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=str(REPO),
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.wait(timeout=60)
    if not line.strip():
        raise SystemExit(f"no first-paint line from: {' '.join(cmd)}")
    return elapsed, json.loads(line)


def main() -> int:
    """Run the comparison and print medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="samples of each kind (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="layerscope-startup-") as home:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": home, "HOME": home,
               "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        ours_cmd = [sys.executable, str(REPO / "main.py"), "--exit-after-first-paint"]
        bare_cmd = [sys.executable, "-c", BARE]
        first_paint_seconds(bare_cmd, env)  # warm the file cache for both
        first_paint_seconds(ours_cmd, env)
        bare, ours, ready, heavy = [], [], [], set()
        for _ in range(args.runs):
            bare.append(first_paint_seconds(bare_cmd, env)[0])
            seconds, info = first_paint_seconds(ours_cmd, env)
            ready.append(seconds)
            ours.append(seconds - (info["ready_s"] - info["first_paint_s"]))
            heavy.update(info.get("heavy_at_first_paint", []))
    b, o, r = statistics.median(bare), statistics.median(ours), statistics.median(ready)
    ratio = o / b
    print(f"bare PySide6 window, first paint        {b * 1000:7.0f} ms  (median of {args.runs})")
    print(f"LayerScope window, first paint          {o * 1000:7.0f} ms  = {ratio:.2f}x bare   [target <= "
          f"{TARGET}x: {'meets target' if ratio <= TARGET else 'MISSES target'}]")
    print(f"LayerScope tree and inspector built     {r * 1000:7.0f} ms  = {r / b:.2f}x bare")
    print(f"frameworks imported at first paint: {', '.join(sorted(heavy)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
