"""Graph tab on a Llama-2-70B-shaped checkpoint: time and peak memory of the stand-in, Netron's server, the page.

Writes a sparse Hugging Face folder (config.json, ~15 bf16 safetensors shards of full size holding
only their headers, and the index), then measures, each step in a fresh Python process so its
peak RSS is its own:

  baseline      parse every shard's header (the least any reader of this checkpoint does)
  summary       analyzers.loaders.open_model(folder, names_only) (what the window opened)
  stand-in      analyzers.graph.standin.make_standin (what GraphController runs in its worker)
  server        app.netron_service serving the stand-in: the page and the data over HTTP
  bare page     QtWebEngine offscreen showing a one-line page: what the web view costs by itself
  page          QtWebEngine offscreen: Netron's page until the graph is drawn (GUI process and
                Chromium's processes measured apart); both skipped with --no-page

Usage: python bench/graph_large.py [--dir DIR] [--shards 15] [--no-page]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LLAMA_70B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
    "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
    "tie_word_embeddings": False, "hidden_act": "silu", "rope_theta": 10000.0,
}


def llama_tensors(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of a Llama checkpoint, in the order HF writes them."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    out = [("model.embed_tokens.weight", (v, h))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i)), (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def write_sparse_folder(folder: Path, shards: int) -> tuple[int, int]:
    """The HF folder with full-size shards that hold only headers (sparse); returns (params, bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(LLAMA_70B, indent=2))
    tensors = llama_tensors(LLAMA_70B)
    total = sum(math.prod(s) * 2 for _, s in tensors)
    per_shard = total / shards
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        if size >= per_shard * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append((name, shape))
        size += math.prod(shape) * 2
    weight_map = {}
    for k, group in enumerate(groups, 1):
        shard = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in group:
            nbytes = math.prod(shape) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = shard
        blob = json.dumps(header).encode()
        blob += b" " * (-len(blob) % 8)
        with (folder / shard).open("wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
            f.truncate(8 + len(blob) + offset)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return sum(math.prod(s) for _, s in tensors), total


PRELUDE = textwrap.dedent(f"""
    import json, os, sys, time
    sys.path.insert(0, {str(ROOT)!r})
    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    start_rss = rss_mb()
""")

STEPS = {
    "baseline": """
        from pathlib import Path
        from analyzers.loaders.safetensors_loader import read_header
        t = time.perf_counter()
        n = sum(len(read_header(p)[0]) - 1 for p in sorted(Path(FOLDER).glob("*.safetensors")))
        out = {"seconds": time.perf_counter() - t, "tensors": n}
    """,
    "summary": """
        from analyzers.loaders import LoadOptions, open_model
        from analyzers.tasks import drive
        t = time.perf_counter()
        s = drive(open_model(FOLDER, LoadOptions(names_only=True)))
        out = {"seconds": time.perf_counter() - t, "tensors": sum(1 for _ in s.tensors), "params": s.totals.params}
    """,
    "stand-in": """
        import pickle
        from analyzers.loaders import LoadOptions, open_model
        from analyzers.tasks import drive
        from analyzers.graph.standin import make_standin
        s = drive(open_model(FOLDER, LoadOptions(names_only=True)))
        before = peak_mb()
        t = time.perf_counter()
        r = make_standin(s, OUT)
        out = {"seconds": time.perf_counter() - t, "path": str(r.path), "bytes": r.path.stat().st_size,
               "kind": r.kind, "peak_before_mb": before}
    """,
    "server": """
        import urllib.request
        from pathlib import Path
        from app.netron_service import serve
        standin = Path(STANDIN)
        t = time.perf_counter()
        server = serve(standin)
        page = urllib.request.urlopen(server.url, timeout=30).read()
        data = urllib.request.urlopen(server.url + "data/" + standin.name, timeout=30).read()
        seconds = time.perf_counter() - t
        server.stop()
        out = {"seconds": seconds, "page_bytes": len(page), "data_bytes": len(data)}
    """,
    "bare-page": """
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from app.netron_service import prepare_webengine_environment
        prepare_webengine_environment()
        import psutil
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from PySide6.QtWebEngineWidgets import QWebEngineView
        view = QWebEngineView(); view.resize(1200, 800); view.show()
        done = []
        view.loadFinished.connect(done.append)
        t = time.perf_counter()
        view.setHtml("<html><body><p>A bare page.</p></body></html>")
        while not done and time.perf_counter() - t < 120:
            app.processEvents(); time.sleep(0.01)
        seconds = time.perf_counter() - t
        kids = psutil.Process().children(recursive=True)
        out = {"seconds": seconds, "chromium_peak_mb": sum(k.memory_info().rss for k in kids) / 2**20}
        del view
    """,
    "page": """
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from pathlib import Path
        from app.netron_service import prepare_webengine_environment, serve
        prepare_webengine_environment()
        import psutil
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from widgets.graph_view import GraphView
        view = GraphView(); view.resize(1200, 800); view.show()
        server = serve(Path(STANDIN), options={"names": True})
        peak_children = [0.0]
        def sample():
            kids = psutil.Process().children(recursive=True)
            peak_children[0] = max(peak_children[0], sum(k.memory_info().rss for k in kids) / 2**20)
        timer = QTimer(); timer.timeout.connect(sample); timer.start(100)
        t = time.perf_counter()
        view.set_url(server.url)
        deadline = time.perf_counter() + 300
        while view.state == "loading" and time.perf_counter() < deadline:
            app.processEvents(); time.sleep(0.01)
        seconds = time.perf_counter() - t
        sample()
        nodes = []
        view.run_javascript("document.querySelectorAll('#canvas .graph-node').length", nodes.append)
        while not nodes and time.perf_counter() < deadline:
            app.processEvents(); time.sleep(0.01)
        if len(sys.argv) > 1:
            app.processEvents(); time.sleep(0.5); app.processEvents()
            view.grab().save(sys.argv[1])
        offsite = [u for u in view.requested_urls() if not u.startswith(server.url) and u != "about:blank"]
        out = {"seconds": seconds, "state": view.state, "nodes": nodes[0] if nodes else None,
               "chromium_peak_mb": peak_children[0], "offsite_requests": len(offsite),
               "message": view.message if view.state != "graph" else ""}
        view.release_web(); server.stop()
    """,
}


def run_step(name: str, params: dict[str, str], argv: tuple[str, ...] = ()) -> dict:
    """Run one step in a fresh interpreter; returns its measurements plus its own peak RSS."""
    code = PRELUDE + "".join(f"{k} = {v!r}\n" for k, v in params.items()) + textwrap.dedent(STEPS[name]) + \
        '\nout["peak_mb"] = peak_mb(); out["start_mb"] = start_rss\nprint("RESULT " + json.dumps(out))\n'
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result["wall"] = wall
            return result
    raise SystemExit(f"step {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    """Generate the sparse folder, run every step, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write the sparse folder (default: a temp dir)")
    parser.add_argument("--shards", type=int, default=15)
    parser.add_argument("--no-page", action="store_true", help="skip the QtWebEngine step")
    parser.add_argument("--png", type=Path, default=None, help="save the drawn graph here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="layerscope-bench-", dir=args.dir))
    try:
        folder = work / "llama-2-70b-sparse"
        t = time.perf_counter()
        params, nbytes = write_sparse_folder(folder, args.shards)
        on_disk = sum(os.stat(p).st_blocks * 512 for p in folder.iterdir())
        print(f"Sparse Llama-2-70B folder: {params / 1e9:.1f} B params, {nbytes / 2**30:.1f} GiB of bf16 in "
              f"{args.shards} shards, {on_disk / 2**20:.1f} MiB on disk, written in {time.perf_counter() - t:.1f} s")
        base = run_step("baseline", {"FOLDER": str(folder)})
        rows = [("baseline: parse every shard header", base)]
        rows.append(("summary: open_model(names_only)", run_step("summary", {"FOLDER": str(folder)})))
        standin = run_step("stand-in", {"FOLDER": str(folder), "OUT": str(work / "standin")})
        rows.append(("stand-in: make_standin", standin))
        rows.append(("server: page + stand-in over HTTP", run_step("server", {"STANDIN": standin["path"]})))
        if not args.no_page:
            rows.append(("bare QWebEngineView, a one-line page", run_step("bare-page", {})))
            page_argv = (str(args.png),) if args.png else ()
            rows.append(("page: Netron draws it (QtWebEngine)", run_step("page", {"STANDIN": standin["path"]}, page_argv)))
        print(f"\nstand-in: {standin['bytes'] / 1024:.0f} KiB ({standin['kind']}) for {nbytes / 2**30:.0f} GiB "
              "of weights\n")
        print(f"{'step':40} {'seconds':>8} {'x base':>7} {'peak RSS MiB':>13} {'x base':>7}  notes")
        for label, r in rows:
            notes = {k: v for k, v in r.items() if k in ("tensors", "data_bytes", "state", "nodes", "chromium_peak_mb",
                                                         "offsite_requests", "message") and v not in ("", None)}
            if "chromium_peak_mb" in notes:
                notes["chromium_peak_mb"] = round(notes["chromium_peak_mb"])
            print(f"{label:40} {r['seconds']:8.2f} {r['seconds'] / base['seconds']:7.1f} {r['peak_mb']:13.0f} "
                  f"{r['peak_mb'] / base['peak_mb']:7.2f}  {notes}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
