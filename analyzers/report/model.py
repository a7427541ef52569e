"""The report model: everything one analysis report says, gathered once as plain data, then rendered.

Renderers (HTML, Markdown, JSON, CSV here; PDF through the browser engine in app/) all read this, so
every format says the same thing. A checkpoint is untrusted input: names stay plain strings here and
each renderer escapes them for its own syntax.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.summary import ModelSummary
from analyzers.summary.document import memory_json, summary_to_json
from analyzers.summary.memory import MemoryReport, estimate_memory, human_bytes
from analyzers.summary.overview import Bar, overview_data
from analyzers.summary.params import layer_rows
from analyzers.tasks import CancelToken, Progress, Steps

SCHEMA = "layerscope.report/1"
SECTIONS = ("header", "totals", "layers", "memory", "charts", "run", "attribution", "attention", "compare",
            "weights", "notes")
HASH_CHUNK = 8 << 20
FRAMEWORK_PACKAGES = {"torch": ("torch", "captum", "transformers", "safetensors"), "keras": ("tensorflow", "keras"),
                      "onnx": ("onnx",), "gguf": ("gguf",), "tensorflow": ("tensorflow",), "": ("safetensors",)}


@dataclass(frozen=True)
class FileDigest:
    """One file of a checkpoint: its path, size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Chart:
    """A bar chart as numbers: a title, what the values are, and its bars (label, value, text beside it)."""

    title: str
    unit: str  # "params" | "bytes"
    bars: tuple[tuple[str, float, str], ...]


@dataclass(frozen=True)
class Picture:
    """An image the report embeds (PNG bytes) and what it shows."""

    caption: str
    png: bytes


@dataclass
class ModelSection:
    """One model's part of a report."""

    name: str
    path: str
    format: str
    framework: str
    size_bytes: int
    files: list[FileDigest]
    summary: ModelSummary
    summary_doc: dict[str, Any]
    layer_depth: int
    memory: MemoryReport
    charts: list[Chart]
    notes: list[str]
    run: dict[str, Any] | None = None  # layerscope.run/1 when the user ran it
    attributions: list[dict[str, Any]] = field(default_factory=list)  # layerscope.attribution/1 documents
    pictures: list[Picture] = field(default_factory=list)  # each attribution's overlay
    attention: dict[str, Any] | None = None  # layerscope.attention/1 when captured
    attention_pictures: list[Picture] = field(default_factory=list)
    weights: dict[str, Any] | None = None  # layerscope.weights/1 when computed

    @property
    def combined_sha256(self) -> str:
        """One digest for a multi-file checkpoint: SHA-256 of the files' digests in path order."""
        if len(self.files) == 1:
            return self.files[0].sha256
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.path):
            h.update(f.sha256.encode("ascii"))
        return h.hexdigest()


@dataclass
class Report:
    """A whole report: one model, or two and their comparison."""

    title: str
    created: str
    command: str
    versions: dict[str, str]
    device: str
    sections: tuple[str, ...]
    models: list[ModelSection]
    compare: dict[str, Any] | None = None  # layerscope.compare/1 when two models were compared
    compare_pictures: list[Picture] = field(default_factory=list)

    def includes(self, section: str) -> bool:
        """True when the user asked for `section` (and the renderer should show it when its data is there)."""
        return section in self.sections


def versions_for(frameworks: Sequence[str]) -> dict[str, str]:
    """LayerScope's, Python's and the involved frameworks' versions, from package metadata (nothing imported)."""
    out = {"layerscope": _version("layerscope") or "0.1.0", "python": platform.python_version()}
    for fw in frameworks:
        for pkg in FRAMEWORK_PACKAGES.get(fw, ()):
            v = _version(pkg)
            if v:
                out[pkg] = v
    return out


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def digest_files(paths: Sequence[Path], token: CancelToken | None = None) -> Steps[list[FileDigest]]:
    """SHA-256 of each file, streamed in 8 MiB chunks with progress (a 140 GB folder is read once)."""
    total = sum(p.stat().st_size for p in paths) or 1
    done = 0
    out: list[FileDigest] = []
    for p in paths:
        h = hashlib.sha256()
        with p.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                if token is not None:
                    token.raise_if_cancelled()
                h.update(chunk)
                done += len(chunk)
                yield Progress(done, total, f"Hashing {p.name}")
        out.append(FileDigest(str(p), p.stat().st_size, h.hexdigest()))
    return out


def _files_of(summary: ModelSummary) -> list[Path]:
    files = [Path(f) for f in summary.source.files if Path(f).is_file()]
    source = Path(summary.source.path)
    if not files and source.is_file():
        files = [source]
    if not files and source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
    return files


def _bars(bars: Sequence[Bar], total: float, unit: str) -> tuple[tuple[str, float, str], ...]:
    def text(value: float) -> str:
        amount = human_bytes(value) if unit == "bytes" else f"{int(value):,}"
        return f"{amount} ({100 * value / total:.1f}%)" if total else amount

    return tuple((b.label, float(b.value), text(b.value)) for b in bars)


def charts_for(summary: ModelSummary, memory: MemoryReport) -> list[Chart]:
    """The Overview's charts and the memory bars as numbers."""
    data = overview_data(summary)
    params = data.params_total or float(summary.totals.params) or 0.0
    charts = [Chart("Parameters by layer type", "params", _bars(data.by_type, params, "params")),
              Chart("Parameters by block", "params", _bars(data.by_block, params, "params")),
              Chart("Bytes by dtype", "bytes", _bars(data.by_dtype, data.bytes_total, "bytes"))]
    memory_bars = [(f"weights {d}", float(line.bytes), human_bytes(line.bytes)) for d, line in memory.weights.items()]
    memory_bars += [(f"training Adam {k}", float(line.bytes), human_bytes(line.bytes))
                    for k, line in memory.training.items()]
    charts.append(Chart("Memory what-ifs", "bytes", tuple(memory_bars)))
    return [c for c in charts if c.bars]


def model_section(summary: ModelSummary, depth: int, token: CancelToken | None = None, batch: int = 1,
                  seq_len: int | None = None, digests: bool = True) -> Steps[ModelSection]:
    """One model's section: header with file digests (`digests=False`: sizes only, for benchmarks of the
    rendering), the summary document, memory what-ifs and charts."""
    files = _files_of(summary)
    if digests:
        digests_found = yield from digest_files(files, token)
    else:
        digests_found = [FileDigest(str(p), p.stat().st_size, "0" * 64) for p in files]
    memory = estimate_memory(summary, batch=batch, seq_len=seq_len)
    doc = summary_to_json(summary, depth=None, batch=batch, seq_len=seq_len, tensors=False)
    source = summary.source
    name = Path(source.path).name or source.path
    size = source.size_bytes if source.size_bytes is not None else sum(d.size for d in digests_found)
    return ModelSection(name, source.path, source.format, source.framework, size, digests_found, summary, doc, depth,
                        memory, charts_for(summary, memory), list(summary.notes))


def layer_table(section: ModelSection, all_layers: bool = False) -> list[dict[str, Any]]:
    """The layer rows a renderer shows: to the chosen depth, or every layer (JSON, CSV)."""
    rows = layer_rows(section.summary, None if all_layers else section.layer_depth)
    return [{"path": r.path, "name": r.name or "(model)", "type": r.type, "depth": r.depth, "params": r.params,
             "params_total": r.params_total, "trainable_total": r.trainable_total, "percent": r.percent,
             "bytes_total": r.bytes_total, "dtypes": list(r.dtypes), "trainable": r.trainable_label,
             "output_shape": list(r.output_shape) if r.output_shape is not None else None, "flops": r.flops}
            for r in rows]


def memory_rows(section: ModelSection) -> list[tuple[str, int, str]]:
    """(what-if, bytes, formula) rows of the memory table."""
    m = section.memory
    rows = [(m.as_stored.label, m.as_stored.bytes, m.as_stored.formula)]
    for group in (m.weights, m.inference, m.training):
        rows.extend((line.label, line.bytes, line.formula) for line in group.values())
    return rows


def reproduce_command(paths: Sequence[str], out: str, depth: int, extra: Sequence[str] = ()) -> str:
    """The command line that writes the same report again."""
    words = ["layerscope", "report", *paths, "--out", out, "--depth", str(depth), *extra]
    return " ".join(shlex.quote(w) for w in words)


def new_report(models: list[ModelSection], command: str, sections: Sequence[str] = SECTIONS, device: str = "",
               compare: dict[str, Any] | None = None, title: str | None = None) -> Report:
    """A report of `models` (their frameworks' versions looked up now) with the sections asked for."""
    frameworks = sorted({m.framework for m in models})
    title = title or (" vs ".join(m.name for m in models) if len(models) > 1 else models[0].name)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        from analyzers.errors import LayerScopeError

        raise LayerScopeError(f"Unknown report section '{unknown[0]}'; use {', '.join(SECTIONS)}.")
    return Report(title, time.strftime("%Y-%m-%d %H:%M:%S %Z"), command, versions_for(frameworks), device,
                  tuple(sections), models, compare)


def report_json(report: Report) -> dict[str, Any]:
    """The `layerscope.report/1` document: the header, and each model's embedded summary/run/attribution docs."""
    return {
        "schema": SCHEMA,
        "title": report.title,
        "created": report.created,
        "command": report.command,
        "versions": report.versions,
        "device": report.device or None,
        "sections": list(report.sections),
        "models": [{
            "name": m.name, "path": m.path, "format": m.format, "framework": m.framework,
            "size_bytes": m.size_bytes, "sha256": m.combined_sha256,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in m.files],
            "summary": m.summary_doc,
            "memory": memory_json(m.memory),
            "notes": m.notes,
            "run": m.run, "attributions": m.attributions, "attention": m.attention, "weights": m.weights,
        } for m in report.models],
        "compare": report.compare,
    }


def attach_attribution(section: ModelSection, attribution: Any, sanity: Any = None, run_doc: Mapping | None = None,
                       sign: str | None = None) -> None:
    """Add one attribution (analyzers.explain.attribution.Attribution) with its overlay picture and checks."""
    import io

    from PIL import Image

    from analyzers.explain.display import default_sign, render_overlay, render_tokens
    from analyzers.explain.sanity import completeness_sentence

    doc = {"schema": "layerscope.attribution/1", **attribution.to_json()}
    if attribution.completeness is not None:
        doc["completeness_sentence"] = completeness_sentence(attribution)
    if sanity is not None:
        doc["sanity"] = sanity.to_json()
    section.attributions.append(doc)
    sign = sign or default_sign(attribution.method, attribution.parameters)
    if attribution.tokens:
        rgb = render_tokens(attribution.tokens, attribution.map, sign)
    else:
        rgb = render_overlay(attribution.map, attribution.input.display, attribution.input.layout, sign)
    image = Image.fromarray(rgb)
    if max(image.size) < 224:  # small inputs (28x28 digits) stay visible
        factor = max(1, 224 // max(image.size))
        image = image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    section.pictures.append(Picture(f"{doc['method_title']} for target {attribution.target} "
                                    f"({attribution.target_label})", buffer.getvalue()))
    if run_doc is not None and section.run is None:
        section.run = dict(run_doc)


def _png_bytes(write: Any) -> bytes:
    """PNG bytes from a function that writes a PNG file (the views' writers take a path)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="layerscope-report-") as tmp:
        path = Path(tmp) / "picture.png"
        write(path)
        return path.read_bytes()


def attach_attention(section: ModelSection, result: Any) -> None:
    """Add a captured attention (analyzers.explain.attention.AttentionResult): its facts, the mean over heads of
    the last layer, and the rollout through every layer."""
    from analyzers.explain.attention import ATTENTION_SCHEMA
    from analyzers.explain.attention_display import write_view_png

    section.attention = {"schema": ATTENTION_SCHEMA, **result.to_json()}
    last = len(result.layers) - 1
    if last < 0:
        return
    section.attention_pictures.append(Picture(f"{result.layers[last].name}: mean over heads",
                                              _png_bytes(lambda p: write_view_png(p, result, last, None, False))))
    if result.rollout_indices():
        section.attention_pictures.append(Picture("rollout through every layer",
                                                  _png_bytes(lambda p: write_view_png(p, result, None, None, True))))


def attach_compare(report: Report, doc: dict[str, Any], maps: Any = None, a_display: Any = None,
                   b_display: Any = None) -> None:
    """Add a comparison (`layerscope.compare/1`) and, when both models explained one input, the two maps on
    their shared scale and B − A as pictures."""
    import io

    from PIL import Image

    report.compare = doc
    if maps is None:
        return
    from analyzers.explain.display import colorize, default_colormap, overlay

    for caption, norm, display, sign in (("A's map (shared scale)", maps.a, a_display, maps.sign),
                                         ("B's map (shared scale)", maps.b, b_display, maps.sign),
                                         ("B − A", maps.difference, a_display, "all")):
        if norm is None:
            continue
        rgba = colorize(norm, default_colormap(sign), sign)
        rgb = overlay(display, rgba)
        image = Image.fromarray(rgb)
        if max(image.size) < 224:
            factor = max(1, 224 // max(image.size))
            image = image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        report.compare_pictures.append(Picture(caption, buffer.getvalue()))
