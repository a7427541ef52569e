"""The Memory tab: what-if table, stacked bar chart and every formula and assumption behind them."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from analyzers.summary.memory import WEIGHT_DTYPES, MemoryLine, MemoryReport, human_bytes
from widgets.charts import StackedBarChart

SEGMENTS = ("Weights", "fp32 master weights", "Gradients", "Adam state (m, v)", "KV cache", "Buffers")
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "int8", "int4": "int4"}
INT4_GROUPS = (32, 64, 128, 256)
# Weights: the model's weights in the row's dtype; Total: weights + KV cache + buffers (+ training state).
TABLE_COLUMNS = ("Scenario", "Weights", "KV cache", "Total", "Total bytes")
MAX_SEQ = 1 << 21


@dataclass(frozen=True)
class Scenario:
    """One row of the what-if: a label, its report line and its parts (one value per SEGMENTS entry)."""

    label: str
    line: MemoryLine
    parts: tuple[float, ...]


def scenarios(report: MemoryReport) -> list[Scenario]:
    """Every what-if row with its stacked parts; each row's parts add up to its line's bytes."""
    buffers = report.buffer_bytes
    out = [Scenario("Weights as stored", report.as_stored, (report.as_stored.bytes, 0, 0, 0, 0, 0))]
    for dtype in WEIGHT_DTYPES:
        line = report.inference[dtype]
        weights = report.weights[dtype].bytes
        kv = line.bytes - weights - buffers
        out.append(Scenario(f"Inference {SHORT[dtype]}", line, (weights, 0, 0, 0, kv, buffers)))
    w32 = report.weights["float32"].bytes
    half = w32 / 2
    train = report.training
    out.append(Scenario("Training Adam fp32", train["fp32"], (w32, 0, w32, 2 * w32, 0, buffers)))
    out.append(Scenario("Training Adam mixed bf16", train["mixed"], (half, w32, half, 2 * w32, 0, buffers)))
    out.append(Scenario("Training Adam pure bf16", train["bf16"], (half, 0, half, w32, 0, buffers)))
    return out


class MemoryView(QWidget):
    """Table + stacked bars of memory what-ifs; batch, sequence and int4 group drive a recompute."""

    parametersChanged = Signal(int, int, int)  # batch, sequence length (0 = none), int4 group

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._report: MemoryReport | None = None
        self._previews: list[MemoryLine] = []  # "after quantisation / pruning" rows measured by a preview
        self.batch_spin = QSpinBox(self)
        self.batch_spin.setRange(1, 4096)
        self.batch_spin.setValue(1)
        self.seq_spin = QSpinBox(self)
        self.seq_spin.setRange(1, MAX_SEQ)
        self.seq_spin.setSingleStep(256)
        self.seq_spin.setValue(2048)
        self.seq_spin.setSuffix(" tokens")
        self.group_combo = QComboBox(self)
        for g in INT4_GROUPS:
            self.group_combo.addItem(f"{g} weights", g)
        self.group_combo.setCurrentIndex(INT4_GROUPS.index(128))
        self.batch_label = QLabel("Batch", self)
        self.seq_label = QLabel("Tokens", self)
        self.kv_label = QLabel(self)
        self.kv_label.setWordWrap(True)

        controls = QHBoxLayout()
        controls.addWidget(self.batch_label)
        controls.addWidget(self.batch_spin)
        controls.addSpacing(12)
        controls.addWidget(self.seq_label)
        controls.addWidget(self.seq_spin)
        controls.addSpacing(12)
        controls.addWidget(QLabel("int4 group", self))
        controls.addWidget(self.group_combo)
        controls.addStretch(1)

        self.table = QTableWidget(0, len(TABLE_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        for column in range(len(TABLE_COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(TABLE_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.chart = StackedBarChart("Memory by scenario", parent=self)
        self.chart.setMinimumHeight(260)

        self.formulas = QLabel(self)
        self.formulas.setWordWrap(True)
        self.formulas.setTextFormat(Qt.TextFormat.RichText)
        self.formulas.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formulas.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        formula_scroll = QScrollArea(self)
        formula_scroll.setWidgetResizable(True)
        formula_scroll.setFrameShape(QFrame.Shape.NoFrame)
        formula_scroll.setWidget(self.formulas)

        self.table.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustToContents)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(controls)
        layout.addWidget(self.kv_label)
        layout.addWidget(self.chart, 3)
        layout.addWidget(self.table)
        layout.addWidget(formula_scroll, 2)

        self.batch_spin.valueChanged.connect(self._emit)
        self.seq_spin.valueChanged.connect(self._emit)
        self.group_combo.currentIndexChanged.connect(self._emit)
        self._show_kv_controls(False)

    def parameters(self) -> tuple[int, int, int]:
        """(batch, sequence length or 0 when hidden, int4 group) as the controls say."""
        seq = self.seq_spin.value() if self.seq_spin.isVisibleTo(self) else 0
        return self.batch_spin.value(), seq, int(self.group_combo.currentData())

    def _emit(self) -> None:
        self.parametersChanged.emit(*self.parameters())

    def _show_kv_controls(self, show: bool) -> None:
        for w in (self.batch_label, self.batch_spin, self.seq_label, self.seq_spin, self.kv_label):
            w.setVisible(show)

    def set_report(self, report: MemoryReport | None) -> None:
        """Show a report; the KV-cache controls appear only for decoder language models."""
        self._report = report
        if report is None:
            self.table.setRowCount(0)
            self.chart.set_data([], [])
            self.formulas.setText("")
            self._show_kv_controls(False)
            return
        decoder = report.kv_cache is not None
        self._show_kv_controls(decoder)
        for spin, value in ((self.batch_spin, report.batch), (self.seq_spin, report.seq_len)):
            if value and spin.value() != value:
                spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(False)
        if decoder:
            kv = report.kv_cache
            limit = f", trained for {kv.max_positions:,} positions" if kv.max_positions else ""
            self.kv_label.setText(f"KV cache: {kv.layers} layers × {kv.kv_heads} kv-heads × {kv.head_dim} "
                                  f"head-dim{limit}")
        rows = scenarios(report)
        rows += [Scenario(line.label, line, (max(0, line.bytes - report.buffer_bytes), 0, 0, 0, 0,
                                             min(report.buffer_bytes, line.bytes))) for line in self._previews]
        self._fill_table(rows)
        self.chart.set_data([r.label for r in rows],
                            [(name, [r.parts[i] for r in rows]) for i, name in enumerate(SEGMENTS)])
        self._fill_formulas(report, rows)

    @property
    def report(self) -> MemoryReport | None:
        """The report shown."""
        return self._report

    def set_previews(self, lines: list[MemoryLine]) -> None:
        """Rows measured by a quantisation or pruning preview ("after int8 …"), shown under the what-ifs until
        replaced (an empty list removes them); each line's bytes are the whole model's as stored after it."""
        self._previews = list(lines)
        if self._report is not None:
            self.set_report(self._report)

    @property
    def previews(self) -> list[MemoryLine]:
        """The preview rows shown."""
        return list(self._previews)

    def _fill_table(self, rows: list[Scenario]) -> None:
        self.table.setRowCount(len(rows))
        mono = QFont(self.table.font())
        mono.setStyleHint(QFont.StyleHint.Monospace)
        kv_at = SEGMENTS.index("KV cache")
        has_kv = any(row.parts[kv_at] for row in rows)
        self.table.setColumnHidden(TABLE_COLUMNS.index("KV cache"), not has_kv)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for i, row in enumerate(rows):
            kv = row.parts[kv_at]
            texts = (row.label, human_bytes(row.parts[0]), human_bytes(kv) if kv else "—",
                     human_bytes(row.line.bytes), f"{row.line.bytes:,}")
            for column, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setToolTip(row.line.formula)
                if column:
                    item.setTextAlignment(right)
                self.table.setItem(i, column, item)

    def _fill_formulas(self, report: MemoryReport, rows: list[Scenario]) -> None:
        assumptions = "".join(f"<li>{_esc(a)}</li>" for a in report.assumptions)
        lines = "".join(f"<li><b>{_esc(r.label)}</b> = {human_bytes(r.line.bytes)}: {_esc(r.line.formula)}</li>"
                        for r in rows)
        self.formulas.setText(f"<b>Assumptions</b><ul style='margin-top:2px'>{assumptions}</ul>"
                              f"<b>Formulas</b><ul style='margin-top:2px'>{lines}</ul>")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
