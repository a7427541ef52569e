"""The Overview tab: where the model came from, its totals, notes, metadata and three charts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from analyzers.summary import LayerNode, ModelSummary
from analyzers.summary.memory import human_bytes, human_count
from analyzers.summary.overview import OTHER_KEY, Bar, OverviewData, block_of
from widgets.charts import SERIES_COLORS, BarChart, bytes_formatter, count_formatter
from widgets.flops_panel import FlopsPanel

MAX_METADATA_ITEMS = 400
WELCOME = ("<h2>No model open</h2><p>Open a checkpoint with <b>File ▸ Open file…</b> (Ctrl+O) or "
           "<b>File ▸ Open folder…</b>, or drop a file or folder on the window.</p>")


def _form(rows: list[tuple[str, str]]) -> QWidget:
    box = QWidget()
    grid = QGridLayout(box)
    grid.setContentsMargins(0, 0, 0, 0)
    grid.setHorizontalSpacing(12)
    grid.setVerticalSpacing(3)
    for r, (key, value) in enumerate(rows):
        k = QLabel(key)
        k.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        v = QLabel(value)
        v.setWordWrap(True)
        v.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(k, r, 0)
        grid.addWidget(v, r, 1)
    grid.setColumnStretch(1, 1)
    return box


class OverviewView(QWidget):
    """Source, totals, notes and metadata of a model, with charts by type, block and dtype."""

    blockClicked = Signal(str)  # path of a top-level block
    typeClicked = Signal(str)  # a layer type

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._summary: ModelSummary | None = None
        self._data: OverviewData | None = None
        self._queue: list[tuple[BarChart, tuple[Bar, ...], float]] = []  # charts still to draw, one per turn
        self._highlight_node: LayerNode | None = None
        self.welcome = QLabel(WELCOME, self)
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.welcome.setWordWrap(True)

        self.heading = QLabel(self)
        font = self.heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.heading.setFont(font)
        self.heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.source_box = QGroupBox("Source", self)
        self.totals_box = QGroupBox("Totals", self)
        for box in (self.source_box, self.totals_box):
            QVBoxLayout(box).setContentsMargins(8, 4, 8, 6)
        self.notes = QLabel(self)
        self.notes.setWordWrap(True)
        self.notes.setTextFormat(Qt.TextFormat.RichText)
        self.metadata = QTreeWidget(self)
        self.metadata.setHeaderLabels(["Metadata", "Value"])
        self.metadata.setColumnWidth(0, 220)
        self.metadata.setMinimumHeight(120)
        self.metadata.setAlternatingRowColors(True)

        self.type_chart = BarChart("Parameters by layer type", count_formatter, SERIES_COLORS[0], self)
        self.dtype_chart = BarChart("Bytes by dtype", bytes_formatter, SERIES_COLORS[2], self)
        self.block_chart = BarChart("Parameters by block (click a bar to select it)", count_formatter,
                                    SERIES_COLORS[1], self)
        self.type_chart.barClicked.connect(self.typeClicked)
        self.block_chart.barClicked.connect(self._on_block_clicked)

        content = QWidget(self)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.heading)
        boxes = QHBoxLayout()
        boxes.addWidget(self.source_box, 1)
        boxes.addWidget(self.totals_box, 1)
        layout.addLayout(boxes)
        layout.addWidget(self.notes)
        charts = QHBoxLayout()
        charts.addWidget(self.type_chart, 3)
        charts.addWidget(self.dtype_chart, 2)
        layout.addLayout(charts)
        layout.addWidget(self.block_chart)
        self.flops_panel = FlopsPanel(self)  # filled by the shapes feature (app/features/shapes.py)
        layout.addWidget(self.flops_panel)
        layout.addWidget(self.metadata)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)

        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(scroll)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

    def set_model(self, summary: ModelSummary | None, data: OverviewData | None) -> None:
        """Show a model (None: the welcome text)."""
        self._summary, self._data = summary, data
        if summary is None or data is None:
            self._queue = []
            self.stack.setCurrentIndex(0)
            return
        self.stack.setCurrentIndex(1)
        src, t = summary.source, summary.totals
        self.heading.setText(Path(src.path).name or src.path)
        files = len(src.files)
        source_rows = [
            ("Path", src.path),
            ("Format", src.format),
            ("Framework", src.framework or "none (tensor names and shapes only)"),
            ("On disk", human_bytes(src.size_bytes) if src.size_bytes is not None else "unknown"),
        ]
        if files > 1:
            source_rows.append(("Files", f"{files:,}"))
        source_rows.append(("Layers", f"{summary.node_count:,}"))
        by_dtype = ", ".join(f"{d} {human_bytes(b)}" for d, b in sorted(t.bytes_by_dtype.items(), key=lambda kv: -kv[1]))
        totals_rows = [
            ("Parameters", f"{t.params:,} ({human_count(t.params)})"),
            ("Trainable", f"{t.trainable_params:,}"),
            ("Non-trainable", f"{t.non_trainable_params:,}"),
            ("Buffers", f"{t.buffers:,} values, {human_bytes(t.buffer_bytes)}"),
            ("Parameter bytes", human_bytes(t.param_bytes)),
            ("Bytes by dtype", by_dtype or "none"),
        ]
        self._fill(self.source_box, source_rows)
        self._fill(self.totals_box, totals_rows)
        if summary.notes:
            items = "".join(f"<li>{_escape(n)}</li>" for n in summary.notes)
            self.notes.setText(f"<b>Notes</b><ul style='margin-top:2px'>{items}</ul>")
            self.notes.show()
        else:
            self.notes.hide()
        typed = any(b.key != "(untyped)" for b in data.by_type)
        self.type_chart.setVisible(typed)
        self._highlight_node = None
        self._fill_metadata(summary)
        # One chart per event-loop turn: together they take long enough to make the window stutter.
        start = not self._queue
        params = data.params_total or float(t.params)  # percentages are shares of the whole model
        self._queue = [(self.type_chart, data.by_type, params), (self.dtype_chart, data.by_dtype, data.bytes_total),
                       (self.block_chart, data.by_block, params)]
        if start:
            QTimer.singleShot(5, self._draw_next_chart)

    def pending(self) -> bool:
        """True while some chart still waits to be drawn."""
        return bool(self._queue)

    def flush(self) -> None:
        """Draw every waiting chart now."""
        while self._queue:
            self._draw_next_chart()

    def _draw_next_chart(self) -> None:
        if not self._queue:
            return
        chart, bars, total = self._queue.pop(0)
        chart.set_bars([b.label for b in bars], [b.value for b in bars], [b.key for b in bars], total)
        if self._highlight_node is not None:
            self.highlight(self._highlight_node)
        if self._queue:
            QTimer.singleShot(5, self._draw_next_chart)

    def _on_block_clicked(self, key: str) -> None:
        if key != OTHER_KEY:  # "other N blocks" stands for many layers: there is no one to select
            self.blockClicked.emit(key)

    @staticmethod
    def _fill(box: QGroupBox, rows: list[tuple[str, str]]) -> None:
        layout = box.layout()
        while layout.count():
            old = layout.takeAt(0).widget()
            if old is not None:
                old.deleteLater()
        layout.addWidget(_form(rows))

    def _fill_metadata(self, summary: ModelSummary) -> None:
        self.metadata.clear()
        budget = [MAX_METADATA_ITEMS]
        sources: dict[str, object] = dict(summary.metadata)
        if summary.config:
            sources["config.json"] = dict(summary.config)
        for key, value in sources.items():
            _add_value(self.metadata.invisibleRootItem(), str(key), value, budget)
        self.metadata.setVisible(bool(sources))

    def highlight(self, node: LayerNode | None) -> None:
        """Mark the selected layer in the charts: its type, its block, its dtypes."""
        self._highlight_node = node
        if node is None or self._data is None:
            for chart in (self.type_chart, self.block_chart, self.dtype_chart):
                chart.set_highlight(set())
            return
        self.type_chart.set_highlight({node.type} if node.type and node.path else set())
        block = block_of(node.path, self._data.by_block) if node.path else None
        self.block_chart.set_highlight({block} if block is not None else set())
        self.dtype_chart.set_highlight(set(node.dtypes) if node.path else set())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _add_value(parent: QTreeWidgetItem, key: str, value: object, budget: list[int]) -> None:
    if budget[0] <= 0:
        return
    budget[0] -= 1
    item = QTreeWidgetItem(parent, [key, ""])
    if isinstance(value, Mapping):
        item.setText(1, f"{len(value)} entries")
        for k, v in value.items():
            _add_value(item, str(k), v, budget)
    elif isinstance(value, list | tuple) and value and any(isinstance(v, Mapping | list | tuple) for v in value):
        item.setText(1, f"{len(value)} items")
        for i, v in enumerate(value):
            _add_value(item, f"[{i}]", v, budget)
    else:
        text = str(value)
        item.setText(1, text if len(text) <= 400 else text[:397] + "…")
        item.setToolTip(1, text[:4000])
