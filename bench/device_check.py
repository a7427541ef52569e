"""Device check: the bundled models and a ResNet-50-sized random CNN on CUDA vs CPU, timings and map agreement.

The one script to run on a machine with a GPU: `python bench/device_check.py` (add `--keras` to also run
the Keras samples on TensorFlow's GPU). For each model it prints inference latency (median after
warm-up) and Integrated Gradients time on the CPU and on CUDA, whether the top-1 class agrees, and
how close the two attribution maps are (relative L2 difference, Spearman of |map|, allclose).
On a machine without CUDA it says so and prints the CPU figures alone (exit code 0).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from analyzers.explain.attribution import AttributionRequest, compute  # noqa: E402
from analyzers.explain.inputs import ModelInput  # noqa: E402
from analyzers.explain.sanity import spearman  # noqa: E402
from analyzers.loaders import LoadOptions  # noqa: E402
from analyzers.runtime import load_live_model  # noqa: E402
from analyzers.tasks import drive  # noqa: E402


class Bottleneck(nn.Module):
    """ResNet's 1x1-3x3-1x1 bottleneck block with a projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    """The ResNet-50 layout (3-4-6-3 bottlenecks, 25.6 M parameters), randomly initialised; no torchvision needed."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        cin = 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(count):
                blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * Bottleneck.expansion
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def agreement(a: np.ndarray, b: np.ndarray) -> str:
    """How close two maps are: relative L2 difference, Spearman of |map|, and allclose at rtol 1e-3."""
    rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))
    rho = spearman(np.abs(a), np.abs(b))
    close = np.allclose(a, b, rtol=1e-3, atol=1e-3 * float(np.abs(a).max() or 1.0))
    return f"rel L2 {rel:.2e}, Spearman |map| {rho:.4f}, allclose {'yes' if close else 'NO'}"


def check(name: str, path: Path, options: LoadOptions, make_input, devices: list[str], steps: int) -> None:
    """Latency and IG on each device for one model; then how the devices' answers and maps agree."""
    results = {}
    for device in devices:
        t0 = time.perf_counter()
        live = load_live_model(path, options, device)
        load_s = time.perf_counter() - t0
        inp = make_input(live)
        timing = drive(live.benchmark(inp, warmup=3, runs=20))
        pred = live.predict(inp)
        req = AttributionRequest("ig", target=pred.target, steps=steps, internal_batch_size=16)
        compute(live, inp, req)  # warm-up (kernels, allocator)
        t0 = time.perf_counter()
        result = compute(live, inp, req)
        ig_s = time.perf_counter() - t0
        results[device] = (pred, result)
        rel = result.completeness.relative if result.completeness is not None else float("nan")
        print(f"  {name:<24} {live.device:<8} load {load_s:6.2f} s  forward {timing.median_ms:9.3f} ms "
              f"(peak {timing.peak_bytes / 2**20:8.1f} MiB {timing.memory_kind})  IG[{steps}] {ig_s * 1000:9.1f} ms  "
              f"completeness {100 * rel:.3f}%", flush=True)
        live.close()
    if len(results) == 2:
        (p_cpu, a_cpu), (p_gpu, a_gpu) = results.values()
        same = p_cpu.target == p_gpu.target
        print(f"  {name:<24} top-1 {'agrees' if same else 'DIFFERS'} ({p_cpu.target} vs {p_gpu.target}); "
              f"IG maps: {agreement(a_cpu.map, a_gpu.map)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run every check; CPU only (and say so) when there is no CUDA device."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras", action="store_true", help="also run the Keras samples (TensorFlow's GPU)")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet-50-sized model")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, torch {torch.__version__}", flush=True)
    if torch.cuda.is_available():
        devices = ["cpu", "cuda"]
        print(f"CUDA: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} device(s)), "
              f"CUDA {torch.version.cuda}", flush=True)
    else:
        devices = ["cpu"]
        print("CUDA is absent on this machine: CPU figures only.", flush=True)
    try:
        from analyzers.explain.inputs import sample_input
        from analyzers.samples import load_manifest

        entries = [m for m in load_manifest() if m.file.exists() and (m.framework == "torch" or args.keras)]
    except Exception as exc:  # the zoo is optional for this script
        print(f"(bundled samples skipped: {exc})", flush=True)
        entries = []
    for entry in entries:
        steps = 16 if entry.input.kind == "qa" else 64
        try:
            check(entry.id, entry.file, LoadOptions(), lambda live, e=entry: sample_input(e), devices, steps)
        except Exception as exc:  # one broken sample must not hide the others' figures
            print(f"  {entry.id:<24} FAILED: {type(exc).__name__}: {exc}", flush=True)
    if not args.no_resnet:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "resnet50_random.pt"
            torch.save(ResNet50().eval(), path)
            x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
            check("resnet50 (random init)", path, LoadOptions(trust=True),
                  lambda live: ModelInput("image", x, "random 3x224x224", layout="NCHW"), devices, 32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
