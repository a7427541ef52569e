"""The HTML report of a 70B-shaped Hugging Face folder (every layer in the table) against writing the same
summary with `inspect --json`, measured in the same run.

Both are timed in-process on one summary read once (the file is the same for both, so reading it is not
what is compared): (a) summary_to_json + json.dump of the whole tree, as `inspect --json` writes it;
(b) the report model rendered to HTML with every layer in the table. The files' SHA-256 is left out of
(b): it streams the checkpoint at disk speed (140 GB here, sparse), which no JSON dump does; its
throughput is printed on its own. Target (issue 13): (b) <= 3x (a), and the HTML file under 10 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.sparse_models import LLAMA_70B, write_sparse_hf_folder  # noqa: E402

TARGET_RATIO = 3.0
TARGET_BYTES = 10 * 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from analyzers.loaders import LoadOptions, open_model
    from analyzers.report.formats import write_text_report
    from analyzers.report.model import model_section, new_report
    from analyzers.summary.document import summary_to_json
    from analyzers.tasks import drive

    with tempfile.TemporaryDirectory(prefix="layerscope-bench-report-") as tmp:
        root = Path(tmp)
        folder = write_sparse_hf_folder(LLAMA_70B, root / "llama70b")
        summary = drive(open_model(folder, LoadOptions(names_only=True)))
        depth = max(d for _, d in summary.walk())
        rows = summary.node_count
        inspect_s: list[float] = []
        report_s: list[float] = []
        size = 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            with (root / "inspect.json").open("w") as f:
                json.dump(summary_to_json(summary), f, separators=(",", ":"))
            inspect_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            section = drive(model_section(summary, depth, digests=False))
            out = write_text_report(new_report([section], "bench"), root / "report.html")
            report_s.append(time.perf_counter() - t0)
            size = out.stat().st_size
        from analyzers.report.model import digest_files

        shard = sorted(folder.glob("*.safetensors"))[0]
        t0 = time.perf_counter()
        list_digest = drive(digest_files([shard]))
        hash_rate = list_digest[0].size / (time.perf_counter() - t0)
    a, b = statistics.median(inspect_s), statistics.median(report_s)
    print(f"70B-shaped folder, {rows:,} layers, table to depth {depth} (every layer)")
    print(f"inspect --json document   {a:7.3f} s (median of {args.runs})")
    print(f"HTML report               {b:7.3f} s (median of {args.runs}) = {b / a:.2f}x  [target <= {TARGET_RATIO}x: "
          f"{'met' if b / a <= TARGET_RATIO else 'NOT met'}]")
    print(f"SHA-256 of the files      {hash_rate / 1e6:7.0f} MB/s (one {shard.name}, sparse)")
    print(f"HTML size                 {size / 1e6:7.2f} MB  [target < 10 MB: {'met' if size < TARGET_BYTES else 'NOT met'}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
