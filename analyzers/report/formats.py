"""Markdown, JSON and CSV renderings of a report, and writing any rendering atomically.

A report file is written to a temporary file in the target's folder and then renamed over it, so a
failure or a Cancel never leaves half a report and never clobbers the previous one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from analyzers.errors import LayerScopeError, sentence
from analyzers.report.model import Report, layer_table, memory_rows, report_json
from analyzers.summary.memory import human_bytes

FORMATS = {".html": "html", ".htm": "html", ".pdf": "pdf", ".md": "markdown", ".markdown": "markdown",
           ".json": "json", ".csv": "csv"}


def format_for(path: Path) -> str:
    """The report format a file name asks for (its suffix); one sentence for an unknown suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LayerScopeError(sentence(path, f"'{path.suffix or path.name}' is not a report format; use .html, "
                                             ".pdf, .md, .json or .csv"))
    return fmt


def _md(text: object) -> str:
    """Text from a checkpoint made safe inside a Markdown table cell (no pipes, no HTML, no line breaks)."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    return s.replace("<", "&lt;").replace(">", "&gt;").replace("`", "\\`")


def render_markdown(report: Report, image_folder: str) -> tuple[str, dict[str, bytes]]:
    """GitHub-flavoured Markdown and the images it links (name -> PNG bytes, to write into `image_folder`)."""
    out: list[str] = [f"# {_md(report.title)}", "", f"LayerScope report, {report.created}.", ""]
    images: dict[str, bytes] = {}
    for index, m in enumerate(report.models):
        if len(report.models) > 1:
            out += [f"## Model {'AB'[index]}: {_md(m.name)}", ""]
        if report.includes("header"):
            out += ["| | |", "|---|---|", f"| Path | `{_md(m.path)}` |", f"| Format | {_md(m.format)} |",
                    f"| Framework | {_md(m.framework or '—')} |", f"| Size on disk | {human_bytes(m.size_bytes)} |",
                    f"| SHA-256 | `{m.combined_sha256}` |",
                    "| Versions | " + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + " |",
                    f"| Reproduce | `{_md(report.command)}` |", ""]
        if report.includes("totals"):
            t = m.summary_doc["totals"]
            out += ["### Totals", "", "| | |", "|---|---:|", f"| Parameters | {t['params']:,} |",
                    f"| Trainable | {t['trainable_params']:,} |", f"| Non-trainable | {t['non_trainable_params']:,} |",
                    f"| Buffers | {t['buffers']:,} |", f"| Parameter bytes | {human_bytes(t['param_bytes'])} |", ""]
        if report.includes("notes") and m.notes:
            out += ["### Notes", ""] + [f"- {_md(n)}" for n in m.notes] + [""]
        if report.includes("layers"):
            out += [f"### Layers (to depth {m.layer_depth})", "",
                    "| Layer | Type | Own params | Total params | % | Bytes | Dtypes |", "|---|---|---:|---:|---:|---:|---|"]
            for r in layer_table(m):
                out.append(f"| {'&nbsp;' * 2 * r['depth']}{_md(r['path'] or '(model)')} | {_md(r['type'])} | "
                           f"{r['params']:,} | {r['params_total']:,} | {r['percent']:.2f} | "
                           f"{human_bytes(r['bytes_total'])} | {_md(', '.join(r['dtypes']))} |")
            out.append("")
        if report.includes("memory"):
            out += ["### Memory what-ifs", "", "| What | Bytes | Formula |", "|---|---:|---|"]
            out += [f"| {_md(label)} | {human_bytes(b)} | {_md(formula)} |" for label, b, formula in memory_rows(m)]
            out += [""] + [f"- {_md(a)}" for a in m.memory.assumptions] + [""]
        if report.includes("run") and m.run:
            top = m.run.get("prediction", {}).get("top", [])
            out += ["### Run", "", f"Input {_md(m.run.get('input', {}).get('source', ''))} on "
                                   f"{_md(m.run.get('device', ''))}.", "", "| Index | Label | Probability |",
                    "|---:|---|---:|"]
            out += [f"| {c['index']} | {_md(c['label'])} | {100 * c['probability']:.2f}% |" for c in top] + [""]
        if report.includes("attribution") and m.attributions:
            out += ["### Attribution", ""]
            for k, (doc, picture) in enumerate(zip(m.attributions, m.pictures)):
                name = f"model{index}_attribution{k}.png"
                images[name] = picture.png
                out += [f"![{_md(picture.caption)}]({image_folder}/{name})", "",
                        f"{_md(doc['method_title'])}, parameters `{_md(doc['parameters'])}`.", ""]
                if doc.get("completeness_sentence"):
                    out += [_md(doc["completeness_sentence"]), ""]
    if report.includes("compare") and report.compare:
        out += ["## Comparison", "", "```json", json.dumps(report.compare, indent=1, default=str)[:200_000], "```", ""]
    return "\n".join(out), images


def render_csv(report: Report) -> str:
    """One row per layer (every layer, every model), parameters and bytes as plain integers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    multi = len(report.models) > 1
    writer.writerow([*(["model"] if multi else []), "path", "type", "depth", "params", "params_total",
                     "trainable_total", "percent", "bytes_total", "dtypes", "output_shape", "flops"])
    for index, m in enumerate(report.models):
        for r in layer_table(m, all_layers=True):
            writer.writerow([*(["AB"[index]] if multi else []), r["path"], r["type"], r["depth"], r["params"],
                             r["params_total"], r["trainable_total"], f"{r['percent']:.6f}", r["bytes_total"],
                             " ".join(r["dtypes"]), "" if r["output_shape"] is None else "x".join(map(str, r["output_shape"])),
                             "" if r["flops"] is None else r["flops"]])
    return buffer.getvalue()


def write_atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary path)` in the target's folder, then rename it over `target`; on any failure the
    temporary file goes and `target` is untouched."""
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        raise LayerScopeError(sentence(target, f"the folder {folder} does not exist"))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_report(report: Report, target: Path) -> Path:
    """Write `report` as HTML, Markdown (images in a folder beside it), JSON or CSV, atomically."""
    from analyzers.report.html import render_html

    fmt = format_for(target)
    if fmt == "html":
        text = render_html(report)
    elif fmt == "json":
        text = json.dumps(report_json(report), indent=1, default=str) + "\n"
    elif fmt == "csv":
        text = render_csv(report)
    elif fmt == "markdown":
        folder_name = f"{target.stem}_files"
        text, images = render_markdown(report, folder_name)
        if images:
            _write_images(target.parent / folder_name, images)
    else:
        raise LayerScopeError(sentence(target, f"{fmt} reports are written by the window's browser engine"))
    return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_images(folder: Path, images: dict[str, bytes]) -> None:
    """The Markdown report's pictures, written to a temporary folder and swapped in whole."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, png in images.items():
            (staging / name).write_bytes(png)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
