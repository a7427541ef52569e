"""`inspect` of a .keras file: the json + h5py reader against the old TensorFlow route, in the same run.

Each sample is a fresh process running the CLI's `inspect --json` on the same file, timed from spawn to
exit, so both routes pay Python's start-up and the CLI's own imports alike. "new" is the Keras loader as
registered; "old" re-registers `open_keras_with_tensorflow` below under the same name — the route
LayerScope took before (import TensorFlow, `keras.saving.load_model(compile=False, safe_mode=True)`,
walk the live layers) — so the rest of the command is the same code. The routes alternate so that
machine load hits both alike; each child prints its totals, and both routes must agree on them.
Target (issue 9): new <= 0.2 x old.

    python bench/inspect_keras.py [PATH ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.2
DEFAULT = REPO / "assets" / "models" / "digits_cnn.keras"


def _tree_of_live_model(model: Any) -> Any:
    """The old route's tree: every layer Keras tracks, with its weights and Keras's own trainable flags."""
    from analyzers.loaders.format_util import decorate_tree, safe_component, unique
    from analyzers.summary import TensorInfo
    from analyzers.summary.dtypes import canonical_dtype
    from analyzers.summary.nametree import TreeBuilder

    trainable = {id(v) for v in model.trainable_weights}
    builder = TreeBuilder(type(model).__name__)
    shapes: dict[str, tuple] = {}
    first: dict[int, str] = {}
    stack: list[tuple[str, Any]] = [("", model)]
    while stack:
        path, layer = stack.pop()
        try:
            shapes[path] = tuple(layer.output.shape)
        except Exception:  # noqa: BLE001 - layers called twice, subclassed layers
            pass
        subs = list(layer._flatten_layers(include_self=False, recursive=False))
        nested = {id(w) for sub in subs for w in sub.weights}
        taken: set[str] = set()
        for w in layer.weights:
            if id(w) in nested:
                continue
            name = unique(safe_component(w.name), taken)
            full = f"{path}.{name}" if path else name
            builder.add_tensor(path, TensorInfo(full, tuple(int(d) for d in w.shape), canonical_dtype(w.dtype),
                                                trainable=id(w) in trainable, shared_with=first.get(id(w))))
            first.setdefault(id(w), full)
        kids = []
        for sub in subs:
            child = unique(safe_component(sub.name), taken)
            child = f"{path}.{child}" if path else child
            builder.add_node(child, type(sub).__name__)
            kids.append((child, sub))
        stack.extend(reversed(kids))
    return decorate_tree(builder.build(), output_shapes=shapes)


def open_keras_with_tensorflow(path: Path, options: Any) -> Any:
    """The route before issue 9: rebuild the model with Keras (TensorFlow imported) and walk its layers."""
    from analyzers.runtime.tf_import import keras
    from analyzers.summary import ModelSummary, SourceInfo
    from analyzers.tasks import Progress

    yield Progress(0, 2, "Importing TensorFlow and Keras")
    model = keras().saving.load_model(str(path), compile=False, safe_mode=not options.trust)
    yield Progress(1, 2, "Walking layers")
    root = _tree_of_live_model(model)
    return ModelSummary(SourceInfo(str(path), "keras", "keras", (str(path),), path.stat().st_size), root)


def child(route: str, path: str) -> int:
    """Run `inspect --json` in this process with the chosen route; print the totals it reported."""
    sys.path.insert(0, str(REPO))
    from analyzers import loaders
    from app.cli import main

    loaders.registered()  # import every loader before one is replaced
    if route == "old":
        from analyzers.loaders.keras_loader import sniff_keras

        loaders.loader("keras", patterns=("*.keras", "*.h5", "*.hdf5"), priority=16, sniff=sniff_keras,
                       description="Keras model")(open_keras_with_tensorflow)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["inspect", path, "--json"])
    totals = json.loads(out.getvalue())["totals"]
    print(json.dumps({"code": code, "params": totals["params"], "trainable": totals["trainable_params"]}))
    return code


def sample(route: str, path: Path) -> tuple[float, dict]:
    """Seconds from spawn to exit of one child, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", route, str(path)], capture_output=True, text=True,
                          cwd=str(REPO), timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{route} route failed on {path}:\n{done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    """Time both routes on each file; print medians and the ratio; exit 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[DEFAULT])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ROUTE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    ok = True
    for path in args.paths:
        times: dict[str, list[float]] = {"old": [], "new": []}
        reports: dict[str, dict] = {}
        for _ in range(args.repeat):
            for route in ("old", "new"):
                elapsed, reports[route] = sample(route, path)
                times[route].append(elapsed)
        if reports["old"] != reports["new"]:
            raise SystemExit(f"the routes disagree on {path}: old {reports['old']}, new {reports['new']}")
        old, new = statistics.median(times["old"]), statistics.median(times["new"])
        ratio = new / old
        ok &= ratio <= TARGET
        print(f"{path.name}: old (TensorFlow) {old:.2f} s, new (json + h5py) {new:.2f} s, ratio {ratio:.3f} "
              f"(target <= {TARGET}) {'OK' if ratio <= TARGET else 'MISSED'}; "
              f"params {reports['new']['params']:,} on both routes")
        print(f"  samples old {', '.join(f'{t:.2f}' for t in times['old'])}; "
              f"new {', '.join(f'{t:.2f}' for t in times['new'])}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
