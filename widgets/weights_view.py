"""The Weights tab: a per-layer table of weight statistics (sortable by any of them), the selected layer's
histogram (linear or log counts), findings, and the quantisation / pruning / held-out accuracy previews.

Plain data in (set_*: the analyses' result objects), intent out (Signals); nothing is read or run here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from analyzers.summary.memory import human_bytes
from analyzers.weights.accuracy import ShrinkReport
from analyzers.weights.quantize import PrunePreview, QuantPreview
from analyzers.weights.stats import ValueStats, WeightStats

COLUMNS = ("Layer", "Type", "Values", "Min", "Max", "Mean", "Std", "Zeros", "NaN", "Inf", "int8 SNR", "int4 SNR",
           "Pruned", "Findings")
NUMERIC = set(range(2, len(COLUMNS) - 1))
NO_PARENT = QModelIndex()


def _g(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _db(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    return "exact" if math.isinf(value) else f"{value:.1f} dB"


class LayerStatsModel(QAbstractTableModel):
    """One row per layer holding weights; every column sorts by its number."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, str, ValueStats]] = []
        self._snr: dict[str, dict[str, float]] = {}
        self._pruned: dict[str, float] = {}
        self._flags: dict[str, str] = {}

    def set_stats(self, stats: WeightStats | None) -> None:
        """The layers' statistics (None: none)."""
        self.beginResetModel()
        self._rows = [] if stats is None else [(p, stats.layer_types.get(p, ""), v) for p, v in stats.layers.items()]
        self._flags = {}
        if stats is not None:
            for f in stats.findings:
                self._flags[f.path] = ("⚠ " if f.severity == "warning" else "✖ ") + f.text
        self.endResetModel()

    def set_quant(self, preview: QuantPreview | None) -> None:
        """The layers' round-trip SNR per scheme."""
        self.beginResetModel()
        self._snr = {} if preview is None else {p: {s: e.snr_db for s, e in errs.items()}
                                                 for p, errs in preview.layers.items()}
        self.endResetModel()

    def set_prune(self, preview: PrunePreview | None) -> None:
        """The share of each layer's weights the pruning preview zeroes."""
        self.beginResetModel()
        self._pruned = {} if preview is None else {p: loss.fraction for p, loss in preview.layers.items()}
        self.endResetModel()

    def path_at(self, row: int) -> str:
        """The layer path of a row."""
        return self._rows[row][0]

    def row_of(self, path: str) -> int:
        """The row showing `path`, -1 when none."""
        return next((i for i, r in enumerate(self._rows) if r[0] == path), -1)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:  # noqa: N802
        """One row per layer with weights."""
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:  # noqa: N802
        """The columns of COLUMNS."""
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        """Column titles."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {"Zeros": "share of values exactly 0.0 (the sparsity the weights already have)",
                    "Std": "population standard deviation of the finite values",
                    "int8 SNR": "signal-to-noise ratio of the int8 per-channel round trip",
                    "int4 SNR": "signal-to-noise ratio of the int4 group-128 round trip",
                    "Pruned": "share of the layer's weights the global magnitude pruning preview zeroes"}.get(
                COLUMNS[section])
        return None

    def value(self, row: int, col: int) -> object:
        """The sortable value of a cell."""
        path, kind, s = self._rows[row]
        return (path, kind, s.count, s.min, s.max, s.mean, s.std, s.zero_fraction, s.nans, s.infs,
                self._snr.get(path, {}).get("int8"), self._snr.get(path, {}).get("int4"), self._pruned.get(path),
                self._flags.get(path, ""))[col]

    def text(self, row: int, col: int) -> str:
        """The text of a cell (also what tests read)."""
        v = self.value(row, col)
        if col in (0, 1, 13):
            return str(v or ("(model)" if col == 0 else ""))
        if col == 2 or col in (8, 9):
            return f"{v:,}"
        if col == 7:
            return f"{v:.1%}"
        if col in (10, 11):
            return _db(v)  # type: ignore[arg-type]
        if col == 12:
            return "" if v is None else f"{v:.1%}"
        return _g(v)  # type: ignore[arg-type]

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        """Cell text, alignment and the finding as a tooltip."""
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(index.row(), index.column())
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._flags.get(self._rows[index.row()][0]) or self._rows[index.row()][0]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by any column; unknown values last."""
        self.layoutAboutToBeChanged.emit()
        keyed = [(self.value(i, column), r) for i, r in enumerate(self._rows)]
        known = [k for k in keyed if k[0] is not None and not (isinstance(k[0], float) and math.isnan(k[0]))]
        unknown = [k for k in keyed if k not in known]
        known.sort(key=lambda kv: kv[0], reverse=order == Qt.SortOrder.DescendingOrder)  # type: ignore[arg-type, return-value]
        self._rows = [r for _, r in known] + [r for _, r in unknown]
        self.layoutChanged.emit()


class HistogramPlot(pg.PlotWidget):
    """A PlotWidget without mouse zoom or menus, plain value ticks (no SI prefix), following the palette."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self._ready = False
        super().__init__(parent)
        plot = self.getPlotItem()
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=True, alpha=0.15)
        for name in ("left", "bottom"):
            plot.getAxis(name).enableAutoSIPrefix(False)
        self.setMinimumHeight(150)
        self._ready = True
        self.apply_palette()

    def apply_palette(self) -> None:
        """Background, axes and labels in the palette's colours."""
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.WindowText)
        for name in ("left", "bottom"):
            axis = self.getPlotItem().getAxis(name)
            axis.setPen(pg.mkPen(fg))
            axis.setTextPen(pg.mkPen(fg))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        """Follow theme switches."""
        if event.type() == QEvent.Type.PaletteChange and self._ready:
            self.apply_palette()
        super().changeEvent(event)


class HistogramView(QWidget):
    """The selected layer's histogram as steps over its range, counts linear or log."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Pick a layer", self)
        self.title.setWordWrap(True)
        self.log_box = QCheckBox("Log scale (log10 of 1 + count)", self)
        self.plot = HistogramPlot(self)
        self.plot.setLabel("bottom", "value")
        self.plot.setLabel("left", "count")
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.log_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.details)
        self._counts: np.ndarray | None = None
        self._edges: np.ndarray | None = None
        self.log_box.toggled.connect(self._draw)

    @property
    def counts(self) -> np.ndarray | None:
        """The counts drawn (None: no histogram)."""
        return self._counts

    def set_histogram(self, title: str, stats: ValueStats | None, details: str) -> None:
        """Show a layer's histogram (its bins span its finite range) and its numbers."""
        self.title.setText(title)
        self.details.setText(details)
        if stats is None or stats.hist is None or stats.hist_lo is None or stats.hist_hi is None:
            self._counts = self._edges = None
        else:
            self._counts = np.asarray(stats.hist, dtype=np.float64)
            self._edges = np.linspace(stats.hist_lo, stats.hist_hi, len(stats.hist) + 1)
        self._draw()

    def _draw(self) -> None:
        self.plot.clear()
        if self._counts is None or self._edges is None:
            return
        log = self.log_box.isChecked()
        heights = np.log10(1.0 + self._counts) if log else self._counts
        self.plot.setLabel("left", "log10(1 + count)" if log else "count")
        brush = pg.mkBrush(70, 130, 180, 160)
        self.plot.addItem(pg.PlotDataItem(self._edges, heights, stepMode="center", fillLevel=0, brush=brush,
                                          pen=pg.mkPen(40, 90, 140)))


class WeightsView(QWidget):
    """Buttons for each analysis, findings, the layer table, the histogram and the previews' summaries."""

    statsRequested = Signal()
    quantRequested = Signal()
    pruneRequested = Signal(float)  # sparsity 0..1
    accuracyRequested = Signal()
    cancelRequested = Signal()
    layerPicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.heading = QLabel("No model open.", self)
        self.heading.setWordWrap(True)
        self.stats_button = QPushButton("Statistics", self)
        self.stats_button.setToolTip("Read every weight: min, max, mean, std, exact zeros, NaN/Inf and a histogram "
                                     "per tensor and layer, with findings")
        self.quant_button = QPushButton("int8 / int4", self)
        self.quant_button.setToolTip("Quantise every weight matrix to int8 (per-channel) and int4 (group 128) and "
                                     "back: the error (SNR, relative) and the size after")
        self.sparsity_spin = QDoubleSpinBox(self)
        self.sparsity_spin.setRange(0.0, 99.0)
        self.sparsity_spin.setDecimals(0)
        self.sparsity_spin.setSingleStep(10)
        self.sparsity_spin.setValue(50)
        self.sparsity_spin.setSuffix(" %")
        self.prune_button = QPushButton("Prune", self)
        self.prune_button.setToolTip("Global magnitude pruning at this sparsity: what each layer loses and the "
                                     "size in CSR or a bitmap")
        self.accuracy_button = QPushButton("Accuracy after…", self)
        self.accuracy_button.setToolTip("Bundled sample models: the score on their held-out set after int8, int4 "
                                        "and pruning at 30/50/70 %, against the original")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for w in (self.stats_button, self.quant_button, QLabel("Sparsity", self), self.sparsity_spin,
                  self.prune_button, self.accuracy_button, self.cancel_button):
            bar.addWidget(w)
        bar.addStretch(1)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.findings = QLabel(self)
        self.findings.setWordWrap(True)
        self.findings.setTextFormat(Qt.TextFormat.RichText)
        self.model = LayerStatsModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # a long path keeps its end
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.histogram = HistogramView(self)
        self.previews = QLabel(self)
        self.previews.setWordWrap(True)
        self.previews.setTextFormat(Qt.TextFormat.RichText)
        self.previews.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.table)
        split.addWidget(self.histogram)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.heading)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        layout.addWidget(self.findings)
        layout.addWidget(split, 1)
        layout.addWidget(self.previews)
        self.stats_button.clicked.connect(self.statsRequested)
        self.quant_button.clicked.connect(self.quantRequested)
        self.prune_button.clicked.connect(self._prune)
        self.accuracy_button.clicked.connect(self.accuracyRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        self._preview_text: dict[str, str] = {}
        self.set_model("", None, False)

    def _prune(self) -> None:
        self.pruneRequested.emit(self.sparsity_spin.value() / 100.0)

    def _on_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.layerPicked.emit(self.model.path_at(current.row()))

    def set_model(self, name: str, why_not: str | None, zoo: bool) -> None:
        """A new model: everything cleared; `why_not` says why its values cannot be read (buttons off)."""
        self.heading.setText(f"<b>{name}</b>" if name else "No model open.")
        readable = bool(name) and why_not is None
        for b in (self.stats_button, self.quant_button, self.prune_button, self.sparsity_spin):
            b.setEnabled(readable)
        self.accuracy_button.setEnabled(bool(name) and zoo)
        self.accuracy_button.setVisible(zoo)
        self.status.setText(why_not or "")
        self.findings.setText("")
        self.model.set_stats(None)
        self.model.set_quant(None)
        self.model.set_prune(None)
        self._preview_text = {}
        self.previews.setText("")
        self.histogram.set_histogram("Pick a layer", None, "")

    def set_busy(self, text: str | None) -> None:
        """Say what runs (None: nothing); Cancel is enabled while something does."""
        self.cancel_button.setEnabled(text is not None)
        if text is not None:
            self.status.setText(text)

    def set_status(self, text: str) -> None:
        """One line under the buttons (a result's summary, an error)."""
        self.status.setText(text)

    def set_stats(self, stats: WeightStats) -> None:
        """Statistics: the table, the findings."""
        self.model.set_stats(stats)
        if stats.findings:
            items = "".join(f"<li>{'✖' if f.severity == 'error' else '⚠'} {_esc(f.text)}</li>" for f in stats.findings[:20])
            more = f"<li>… and {len(stats.findings) - 20} more</li>" if len(stats.findings) > 20 else ""
            self.findings.setText(f"<b>Findings</b><ul style='margin-top:2px'>{items}{more}</ul>")
        else:
            self.findings.setText("<b>Findings:</b> none — no NaN or Inf, no dead layer, no extreme range.")
        self._fit_columns()

    def _fit_columns(self) -> None:
        """The layer column at most 240 px (paths are elided from the left), the others to their contents."""
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        header.resizeSection(0, min(header.sectionSize(0), 240))

    def set_quant(self, preview: QuantPreview) -> None:
        """The quantisation preview: SNR columns and the model's size after each scheme."""
        self.model.set_quant(preview)
        self._fit_columns()
        parts = []
        for s in preview.schemes:
            t = preview.totals(s)
            parts.append(f"<b>{s}</b>: SNR {_db(t.snr_db)}, relative error {t.relative_error:.4f}; model "
                         f"{human_bytes(preview.model_bytes)} → {human_bytes(preview.model_bytes_after[s])}")
        self._preview_text["quant"] = "Quantisation (2-D+ weights; biases and norms as stored): " + "; ".join(parts)
        self._show_previews()

    def set_prune(self, preview: PrunePreview) -> None:
        """The pruning preview: the Pruned column and the model's size after."""
        self.model.set_prune(preview)
        self._fit_columns()
        threshold = "nothing pruned" if preview.threshold is None else f"|w| ≤ {preview.threshold:.4g}"
        self._preview_text["prune"] = (
            f"Global magnitude pruning at {preview.sparsity:.0%} ({threshold}, {preview.achieved:.2%} zeroed): model "
            f"{human_bytes(preview.model_bytes)} → {human_bytes(preview.model_bytes_after)} with pruned tensors in "
            "CSR or a bitmap, whichever is smaller")
        self._show_previews()

    def set_accuracy(self, report: ShrinkReport) -> None:
        """The held-out scores after each transform."""
        rows = "".join(f"<tr><td>{_esc(r.label)}</td><td align='right'>{r.score:.4f}</td>"
                       f"<td align='right'>{'' if r.variant == 'original' else f'{r.delta:+.4f}'}</td>"
                       f"<td align='right'>{human_bytes(r.weight_bytes)}</td></tr>" for r in report.rows)
        self._preview_text["accuracy"] = (
            f"<b>{_esc(report.title)}</b>: {_esc(report.metric)} on its {report.heldout_size} held-out examples"
            f"<table cellspacing='6'><tr><th align='left'>weights</th><th>score</th><th>change</th><th>size</th>"
            f"</tr>{rows}</table>")
        self._show_previews()

    def _show_previews(self) -> None:
        self.previews.setText("<br>".join(self._preview_text[k] for k in ("quant", "prune", "accuracy")
                                          if k in self._preview_text))

    def show_layer(self, title: str, stats: ValueStats | None, extra: Mapping[str, str] | None = None) -> None:
        """The selected layer's histogram and numbers (a layer without its own weights: its subtree's numbers)."""
        if stats is None:
            self.histogram.set_histogram(title, None, "No statistics for this layer (it holds no readable weights).")
            return
        lines = [f"{stats.count:,} values, min {_g(stats.min)}, max {_g(stats.max)}, mean {_g(stats.mean)}, "
                 f"std {_g(stats.std)}, exact zeros {stats.zero_fraction:.2%}, NaN {stats.nans:,}, Inf {stats.infs:,}"]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        if stats.hist is None:
            lines.append("No histogram here: bins are per layer; pick a layer that holds weights.")
        self.histogram.set_histogram(title, stats, "\n".join(lines))

    def select_path(self, path: str) -> None:
        """Select the table's row of `path` (quietly), if it has one."""
        row = self.model.row_of(path)
        if row < 0:
            return
        self.table.selectionModel().blockSignals(True)
        self.table.selectRow(row)
        self.table.selectionModel().blockSignals(False)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
