"""File ▸ Export report… (Ctrl+E): the open model's analysis as HTML, PDF, Markdown, JSON or CSV.

The report is gathered from the window's session (its summary, and the last run and attribution when
there are ones) in a job with progress and Cancel (hashing a 140 GB folder takes a while), rendered off
the GUI thread, and written atomically; a PDF is the same HTML printed by QtWebEngine on the GUI thread.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence

from analyzers.tasks import CancelToken, Progress, Steps

EXPORT_LABEL = "Exporting the report"


def section_availability(session: Any, compare: Any = None, weights: Any = None) -> dict[str, str]:
    """Section -> "" when the window has its data, else the sentence saying why it is greyed out."""
    out = {k: "" for k in ("header", "totals", "layers", "memory", "charts", "notes")}
    out["run"] = "" if session.last_run is not None else "Run the model on the Explain tab first."
    out["attribution"] = "" if session.last_attribution is not None else "Compute an attribution on the Explain tab first."
    out["attention"] = "" if session.last_attention is not None else "Capture attention on the Attention tab first."
    out["compare"] = "" if compare is not None and compare.diff is not None else \
        "Compare with a second model first (File ▸ Compare with…)."
    out["weights"] = "" if weights is not None else "Compute weight statistics on the Weights tab first."
    return out


def comparison_document(compare: Any, depth: int) -> tuple[dict[str, Any], Any, tuple[Any, Any]]:
    """The compare feature's alignment, drift and same-input outcome as layerscope.compare/1, with its maps."""
    from analyzers.compare.document import compare_to_json

    comparison, maps, displays = compare.last_explained or (None, None, (None, None))
    doc = compare_to_json(compare.diff, compare.last_drift, comparison, maps, depth)
    return doc, maps, displays


def run_document(outcome: Any) -> dict[str, Any]:
    """A Run outcome as the `layerscope.run/1` document the CLI prints."""
    r = outcome.result
    return {"schema": "layerscope.run/1", "model": outcome.model, "device": r.device, "framework": r.framework,
            "input": outcome.input or dict(r.input), "prediction": r.prediction.to_json(), "latency": r.timing.to_json()}


def report_steps(session: Any, choice: Any, target: Path, command: str, token: CancelToken,
                 compare: Any = None, session_b: Any = None, weights: Any = None) -> Steps[Any]:
    """Gather and render the report in a worker; returns the rendered HTML for a PDF, else the written path."""
    from analyzers.report.formats import write_text_report
    from analyzers.report.html import render_html
    from analyzers.report.model import (
        attach_attention,
        attach_attribution,
        attach_compare,
        model_section,
        new_report,
    )

    yield Progress(0, None, "Gathering the report")
    section = yield from model_section(session.summary, choice.depth, token)
    sections = [section]
    if "compare" in choice.sections and compare is not None and session_b is not None and session_b.is_open:
        sections.append((yield from model_section(session_b.summary, choice.depth, token)))
    if "attention" in choice.sections and session.last_attention is not None:
        attach_attention(section, session.last_attention.result)
    if "weights" in choice.sections and weights is not None:
        section.weights = weights
    device = ""
    if "run" in choice.sections and session.last_run is not None:
        section.run = run_document(session.last_run)
        device = session.last_run.result.device
    if "attribution" in choice.sections and session.last_attribution is not None:
        outcome = session.last_attribution
        attach_attribution(section, outcome.attribution, outcome.sanity)
        device = device or outcome.attribution.device
    report = new_report(sections, command, choice.sections, device)
    if len(sections) == 2:
        doc, maps, displays = comparison_document(compare, choice.depth)
        attach_compare(report, doc, maps, *displays)
    token.raise_if_cancelled()
    yield Progress(1, 2, f"Writing {target.name}")
    if choice.format == "pdf":
        return render_html(report)
    return write_text_report(report, target)


class ReportFeature(QObject):
    """The Export report action, its dialog, and the export job."""

    exported = Signal(str)  # the written file
    failed = Signal(str)  # one sentence

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: Any = None
        self._job: int | None = None
        self.action = QAction("Export &report…", window)
        self.action.setShortcut(QKeySequence("Ctrl+E"))
        self.action.triggered.connect(self.ask)
        menu = window.menu("file")
        actions = menu.actions()
        if actions:  # above Quit, which stays last
            menu.insertAction(actions[-1], self.action)
            menu.insertSeparator(actions[-1])
        else:
            menu.addAction(self.action)

    def ask(self) -> None:
        """Show the dialog, then where to save; start the export."""
        from PySide6.QtWidgets import QDialog, QFileDialog

        from analyzers.summary.params import layer_rows
        from widgets.report_dialog import ReportDialog

        session = self.window.session
        if not session.is_open:
            self.window.show_error("Open a model first, then export its report.")
            return
        depths: list[int] = []
        for row in layer_rows(session.summary):
            while len(depths) <= row.depth:
                depths.append(0)
            depths[row.depth] += 1
        self.dialog = ReportDialog(section_availability(session, self._compare(), self._weights()), depths,
                                   self.window)
        if self.dialog.exec() != QDialog.DialogCode.Accepted:
            return
        choice = self.dialog.choice()
        default = str(Path(session.path).parent / f"{Path(session.path).stem}-report{choice.suffix}")
        path, _ = QFileDialog.getSaveFileName(self.window, "Save the report", default,
                                              f"{choice.format.upper()} (*{choice.suffix})")
        if path:
            if not path.lower().endswith(choice.suffix):
                path += choice.suffix
            self.export(Path(path), choice)

    def export(self, target: Path, choice: Any) -> int | None:
        """Start the export job (the dialog's choice, or a test's)."""
        session = self.window.session
        if not session.is_open:
            self.window.show_error("Open a model first, then export its report.")
            return None
        compare = self._compare()
        session_b = compare.session_b if compare is not None else None
        paths = [str(session.path)] + ([str(session_b.path)] if compare is not None and session_b.is_open else [])
        command = (f"layerscope report {' '.join(paths)} --out {target} --depth {choice.depth} "
                   f"--sections {','.join(choice.sections)}")
        steps = partial(report_steps, session, choice, target, command, compare=compare, session_b=session_b,
                        weights=self._weights())
        self._job = self.window.jobs.submit(steps, EXPORT_LABEL, "io", on_done=partial(self._done, target, choice),
                                            on_error=self._error)
        return self._job

    def _compare(self) -> Any:
        """The compare feature when the window is comparing two models (its alignment is done), else None."""
        compare = getattr(self.window, "compare", None)
        return compare if compare is not None and compare.active and compare.diff is not None else None

    def _weights(self) -> Any:
        """The Weights tab's last layerscope.weights/1 document, when it computed one."""
        weights = getattr(self.window, "weights", None)
        document = getattr(weights, "last_document", None)
        return document() if callable(document) else document

    def _done(self, target: Path, choice: Any, result: Any) -> None:
        self._job = None
        if choice.format == "pdf":
            from app.report_browser import print_pdf

            try:
                print_pdf(result, target, choice.page_size)
            except Exception as exc:  # noqa: BLE001 - one sentence, the window stays
                self._error(str(exc) if str(exc).endswith(".") else f"{target.name}: {exc}.")
                return
        self.window.statusBar().showMessage(f"Wrote {target}", 10000)
        self.exported.emit(str(target))
        if getattr(self.window, "interactive", False):
            self._offer_to_open(target)

    def _offer_to_open(self, target: Path) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Information, "Report written", f"Wrote {target}.",
                          QMessageBox.StandardButton.Close, self.window)
        open_button = box.addButton("Open report", QMessageBox.ButtonRole.AcceptRole)
        box.exec()
        if box.clickedButton() is open_button:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))

    def _error(self, message: str) -> None:
        self._job = None
        self.window.show_error(message)
        self.failed.emit(message)


def install(window: Any) -> ReportFeature:
    """Add File ▸ Export report… to `window`."""
    return ReportFeature(window)
