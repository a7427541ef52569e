"""File ▸ Export report…: choose the sections, the layer table's depth and the format, see what will be in it."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

FORMATS = (("html", "HTML page (self-contained)", ".html"), ("pdf", "PDF", ".pdf"),
           ("markdown", "Markdown (images beside it)", ".md"), ("json", "JSON (layerscope.report/1)", ".json"),
           ("csv", "CSV (one row per layer)", ".csv"))
SECTION_TITLES = {"header": "Source and versions", "totals": "Totals", "layers": "Layer table", "memory": "Memory what-ifs",
                  "charts": "Charts", "run": "Run (prediction, latency)", "attribution": "Attribution maps",
                  "attention": "Attention maps", "compare": "Comparison", "weights": "Weight statistics",
                  "notes": "Notes and warnings"}


@dataclass(frozen=True)
class ReportChoice:
    """What the user asked for: sections, table depth, format and page size."""

    sections: tuple[str, ...]
    depth: int
    format: str  # "html" | "pdf" | "markdown" | "json" | "csv"
    suffix: str
    page_size: str


class ReportDialog(QDialog):
    """Sections (those without data greyed out and saying why), depth, format; a live preview of the contents."""

    choiceChanged = Signal(object)  # ReportChoice

    def __init__(self, available: dict[str, str], layers_by_depth: list[int], parent: QWidget | None = None) -> None:
        """`available`: section -> "" when it has data, else why not; `layers_by_depth[d]`: rows at depth d."""
        super().__init__(parent)
        self.setWindowTitle("Export report")
        self._layers = layers_by_depth
        self.boxes: dict[str, QCheckBox] = {}
        group = QGroupBox("Sections", self)
        grid = QGridLayout(group)
        for i, (key, title) in enumerate(SECTION_TITLES.items()):
            box = QCheckBox(title, group)
            why = available.get(key, "")
            box.setEnabled(not why)
            box.setChecked(not why)
            if why:
                box.setToolTip(why)
            box.toggled.connect(self._changed)
            self.boxes[key] = box
            grid.addWidget(box, i // 2, i % 2)
        self.depth = QSpinBox(self)
        self.depth.setRange(0, max(0, len(layers_by_depth) - 1))
        self.depth.setValue(min(3, self.depth.maximum()))
        self.format = QComboBox(self)
        for key, title, _ in FORMATS:
            self.format.addItem(title, key)
        self.page_size = QComboBox(self)
        self.page_size.addItems(["A4", "Letter"])
        form = QFormLayout()
        form.addRow("Layer table depth", self.depth)
        form.addRow("Format", self.format)
        form.addRow("PDF page size", self.page_size)
        self.preview = QLabel(self)
        self.preview.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.export_button = self.buttons.addButton("Export…", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(group)
        layout.addLayout(form)
        layout.addWidget(QLabel("<b>Will include</b>", self))
        layout.addWidget(self.preview)
        layout.addWidget(self.buttons)
        for widget in (self.depth, self.format, self.page_size):
            signal = widget.valueChanged if isinstance(widget, QSpinBox) else widget.currentIndexChanged
            signal.connect(self._changed)
        self._changed()

    def choice(self) -> ReportChoice:
        """The report the dialog describes now."""
        fmt = self.format.currentData()
        suffix = next(s for k, _, s in FORMATS if k == fmt)
        sections = tuple(k for k, box in self.boxes.items() if box.isChecked() and box.isEnabled())
        return ReportChoice(sections, self.depth.value(), fmt, suffix, self.page_size.currentText())

    def preview_text(self) -> str:
        """What the report will hold, in words."""
        choice = self.choice()
        parts = []
        for key in choice.sections:
            if key == "layers":
                rows = sum(self._layers[: choice.depth + 1])
                every = " (every layer in JSON and CSV)" if choice.format in ("json", "csv") else ""
                parts.append(f"layer table to depth {choice.depth}: {rows:,} rows{every}")
            else:
                parts.append(SECTION_TITLES[key].lower())
        return ("; ".join(parts) or "nothing: tick a section") + "."

    def _changed(self, *_: object) -> None:
        self.page_size.setEnabled(self.format.currentData() == "pdf")
        self.preview.setText(self.preview_text())
        self.export_button.setEnabled(bool(self.choice().sections))
        self.choiceChanged.emit(self.choice())
