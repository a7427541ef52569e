"""Compare mode: both models' trees aligned on the left; Overview, Memory, Explain and Drift with A, B and Δ on
the right; a bar across the top to swap A and B, close one side or leave compare mode.

Plain data in (`set_diff`, `set_drift`, the Explain panel's `show_outcome`), intent out (Signals); the
window's compare feature (app/features/compare.py) runs the jobs.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QModelIndex, QRect, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from analyzers.compare.measures import DriftReport, DriftStats
from analyzers.compare.structure import SideBySide, StructureDiff
from analyzers.summary.memory import human_bytes
from widgets.compare_explain import CompareExplainPanel
from widgets.compare_tree import AlignedTrees

TAB_NAMES = ("Overview", "Memory", "Explain", "Drift")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
BAR_ROLE = Qt.ItemDataRole.UserRole + 2  # share of the widest bar, 0..1
KEY_ROLE = Qt.ItemDataRole.UserRole + 3
DRIFT_COLUMNS = ("Layer", "Type", "Rel. change", "Cosine", "Max |B − A|", "Changed", "Zeros A", "Zeros B")


class SortItem(QTableWidgetItem):
    """A table cell that sorts by its SORT_ROLE value (numbers as numbers, None last)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if mine is None or theirs is None:
            return mine is not None
        try:
            return mine < theirs
        except TypeError:
            return str(mine) < str(theirs)


def _item(text: str, sort: object = None, right: bool = False) -> SortItem:
    item = SortItem(text)
    item.setData(SORT_ROLE, text if sort is None else sort)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if right:
        item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
    return item


class BarDelegate(QStyledItemDelegate):
    """Draws a cell's BAR_ROLE share as a bar under its text (the drift per layer)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        """Background, bar, then the number right-aligned."""
        share = index.data(BAR_ROLE) or 0.0
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else QApplication.style()
        text, opt.text = opt.text, ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        rect = opt.rect.adjusted(3, 4, -3, -4)
        if share > 0 and rect.width() > 0:
            color = QColor(opt.palette.color(opt.palette.ColorRole.Highlight))
            color.setAlpha(120)
            painter.fillRect(QRect(rect.left(), rect.top(), max(1, round(rect.width() * min(share, 1.0))),
                                   rect.height()), color)
        painter.drawText(opt.rect.adjusted(4, 0, -4, 0),
                         int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), text)


def _table(columns: tuple[str, ...] | list[str], stretch: int = 0) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(False)
    header.setSectionResizeMode(stretch % len(columns), QHeaderView.ResizeMode.Stretch)
    return table


def _delta_text(row: SideBySide, as_bytes: bool) -> str:
    if row.delta == 0:
        return "0"
    sign = "+" if row.delta > 0 else "−"
    text = sign + (human_bytes(abs(row.delta)) if as_bytes else f"{abs(row.delta):,}")
    pct = row.delta_percent
    return text + (f" ({pct:+.1f} %)" if pct is not None else "")


def fill_side_by_side(table: QTableWidget, rows: list[SideBySide], as_bytes: bool = False) -> None:
    """Rows of (label, A, B, Δ)."""
    table.setSortingEnabled(False)
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        bytes_row = as_bytes or row.label.startswith(("bytes", "parameter bytes", "buffer bytes"))
        fmt = human_bytes if bytes_row else (lambda n: f"{n:,}")
        table.setItem(r, 0, _item(row.label))
        table.setItem(r, 1, _item(fmt(row.a), row.a, True))
        table.setItem(r, 2, _item(fmt(row.b), row.b, True))
        table.setItem(r, 3, _item(_delta_text(row, bytes_row), row.delta, True))


class CompareView(QWidget):
    """Both models side by side: aligned trees, and the Overview, Memory, Explain and Drift pages."""

    swapRequested = Signal()
    closeRequested = Signal(str)  # "A" or "B"
    exitRequested = Signal()
    driftRequested = Signal()
    driftCancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.diff: StructureDiff | None = None
        self.drift: DriftReport | None = None
        self.names = ("A", "B")
        self.label_a, self.label_b = QLabel(self), QLabel(self)
        self.close_a, self.close_b = QToolButton(self), QToolButton(self)
        for button, side in ((self.close_a, "A"), (self.close_b, "B")):
            button.setText(f"Close {side}")
            button.setToolTip(f"Close {side}; the other model stays open on its own")
            button.clicked.connect(lambda checked=False, side=side: self.closeRequested.emit(side))
        self.swap_button = QPushButton("⇄ Swap A and B", self)
        self.exit_button = QPushButton("Leave compare mode", self)
        self.swap_button.clicked.connect(self.swapRequested)
        self.exit_button.clicked.connect(self.exitRequested)
        self.message = QLabel(self)
        self.message.setWordWrap(True)

        self.trees = AlignedTrees(self)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.overview_label = QLabel(self)
        self.overview_label.setWordWrap(True)
        self.overview_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.totals_table = _table(("", "A", "B", "Δ"))
        self.changes_table = _table(("Layer", "Status", "Params A", "Params B", "What changed"), stretch=-1)
        self.memory_table = _table(("What-if", "A", "B", "Δ"))
        self.batch_spin = QSpinBox(self)
        self.batch_spin.setRange(1, 4096)
        self.seq_spin = QSpinBox(self)
        self.seq_spin.setRange(0, 1 << 21)
        self.seq_spin.setSpecialValueText("model's context")
        self.seq_spin.setSingleStep(256)
        self.explain = CompareExplainPanel(self)
        self.drift_button = QPushButton("Compare the weights", self)
        self.drift_cancel = QPushButton("Cancel", self)
        self.drift_cancel.setEnabled(False)
        self.drift_status = QLabel(self)
        self.drift_status.setWordWrap(True)
        self.drift_table = _table(DRIFT_COLUMNS, stretch=2)
        self.drift_table.setItemDelegateForColumn(2, BarDelegate(self.drift_table))
        self.drift_notes = QLabel(self)
        self.drift_notes.setWordWrap(True)
        self._build_layout()
        self.batch_spin.valueChanged.connect(self._fill_memory)
        self.seq_spin.valueChanged.connect(self._fill_memory)
        self.drift_button.clicked.connect(self.driftRequested)
        self.drift_cancel.clicked.connect(self.driftCancelRequested)
        self.drift_table.itemSelectionChanged.connect(self._on_drift_selected)
        self.changes_table.itemSelectionChanged.connect(self._on_change_selected)

    def _build_layout(self) -> None:
        bar = QHBoxLayout()
        bar.addWidget(self.label_a, 1)
        bar.addWidget(self.close_a)
        bar.addWidget(self.swap_button)
        bar.addWidget(self.label_b, 1)
        bar.addWidget(self.close_b)
        bar.addWidget(self.exit_button)
        overview = QWidget()
        box = QVBoxLayout(overview)
        box.addWidget(self.overview_label)
        box.addWidget(self.totals_table, 2)
        box.addWidget(QLabel("Layers that differ", overview))
        box.addWidget(self.changes_table, 3)
        memory = QWidget()
        box = QVBoxLayout(memory)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Batch", memory))
        controls.addWidget(self.batch_spin)
        controls.addWidget(QLabel("Sequence", memory))
        controls.addWidget(self.seq_spin)
        controls.addStretch(1)
        box.addLayout(controls)
        box.addWidget(self.memory_table, 1)
        drift = QWidget()
        box = QVBoxLayout(drift)
        buttons = QHBoxLayout()
        buttons.addWidget(self.drift_button)
        buttons.addWidget(self.drift_cancel)
        buttons.addStretch(1)
        box.addLayout(buttons)
        box.addWidget(self.drift_status)
        box.addWidget(self.drift_table, 1)
        box.addWidget(self.drift_notes)
        for page, name in zip((overview, memory, self.explain, drift), TAB_NAMES):
            self.tabs.addTab(page, name)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.trees)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        self.splitter = split
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.message)
        layout.addWidget(split, 1)

    # -- data in -----------------------------------------------------------------------------------
    def set_waiting(self, text: str) -> None:
        """A line above the trees (one side still loading, a job's news)."""
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def set_diff(self, diff: StructureDiff | None, names: tuple[str, str] = ("A", "B")) -> None:
        """Show a new comparison: trees, totals, changes and memory; the drift of a previous pair is dropped."""
        self.diff, self.names, self.drift = diff, names, None
        self.label_a.setText(f"<b>A</b>  {names[0]}")
        self.label_b.setText(f"<b>B</b>  {names[1]}")
        self.trees.set_diff(diff, names)
        self.set_drift(None)
        if diff is None:
            for table in (self.totals_table, self.changes_table, self.memory_table):
                table.setRowCount(0)
            self.overview_label.clear()
            return
        c = diff.counts
        prefixes = ""
        if diff.prefix_a or diff.prefix_b:
            prefixes = f" Prefixes removed to align the paths: A '{diff.prefix_a}', B '{diff.prefix_b}'."
        cross = " Keras kernels are read in PyTorch's layout." if diff.cross_framework else ""
        self.overview_label.setText(
            f"{c['matched']} layers matched ({c['renamed']} renamed, {c['changed']} changed), {c['only_a']} only in A, "
            f"{c['only_b']} only in B.{prefixes}{cross}")
        fill_side_by_side(self.totals_table, diff.totals())
        rows = [p for p in diff.rows if p.status in ("changed", "added", "removed")]
        table = self.changes_table
        table.setRowCount(len(rows))
        for r, pair in enumerate(rows):
            label = pair.path_a if pair.path_b in (None, pair.path_a) else (
                pair.path_b if pair.path_a is None else f"{pair.path_a} ↔ {pair.path_b}")
            cells = [_item(label or "(model)"), _item(pair.status), _item(f"{pair.params_a:,}", pair.params_a, True),
                     _item(f"{pair.params_b:,}", pair.params_b, True), _item("; ".join(pair.changes()))]
            for col, cell in enumerate(cells):
                cell.setData(KEY_ROLE, pair.key)
                table.setItem(r, col, cell)
        self._fill_memory()

    def _fill_memory(self, *_: object) -> None:
        if self.diff is None:
            return
        fill_side_by_side(self.memory_table, self.diff.memory(self.batch_spin.value(), self.seq_spin.value() or None),
                          as_bytes=True)

    def set_drift_busy(self, busy: bool, text: str = "") -> None:
        """The drift job started or ended; what it is doing."""
        self.drift_button.setEnabled(not busy)
        self.drift_cancel.setEnabled(busy)
        self.drift_status.setText(text)

    def set_drift(self, report: DriftReport | None) -> None:
        """The drift per layer (a bar for its relative change), sortable; the Drift column of the B tree."""
        self.drift = report
        table = self.drift_table
        table.setSortingEnabled(False)
        if report is None:
            table.setRowCount(0)
            self.drift_notes.clear()
            self.trees.model.set_drift({})
            return
        rows = report.ranked()
        finite = [d.own.relative_change for d in rows if d.own.relative_change not in (None, math.inf)]
        widest = max(finite, default=0.0) or 1.0
        table.setRowCount(len(rows) + 1)
        for r, d in enumerate([*rows, None]):
            stats: DriftStats = report.model if d is None else d.own
            label, layer_type, key = ("(whole model)", "", ("", "")) if d is None else (d.label, d.type, d.key)
            rel = stats.relative_change
            cells = [_item(label), _item(layer_type),
                     _item("-" if rel is None else "inf" if rel == math.inf else f"{rel:.4g}",
                           -1.0 if rel is None else rel, True),
                     _item(_fmt(stats.cosine, 6), -2.0 if stats.cosine is None else stats.cosine, True),
                     _item(_fmt(stats.max_abs), stats.max_abs, True),
                     _item(_pct(stats.changed_fraction), stats.changed_fraction or 0.0, True),
                     _item(_pct(stats.sparsity_a), stats.sparsity_a or 0.0, True),
                     _item(_pct(stats.sparsity_b), stats.sparsity_b or 0.0, True)]
            cells[2].setData(BAR_ROLE, 1.0 if rel == math.inf else (rel or 0.0) / widest)
            for col, cell in enumerate(cells):
                cell.setData(KEY_ROLE, key)
                table.setItem(r, col, cell)
        table.setSortingEnabled(True)
        table.sortItems(2, Qt.SortOrder.DescendingOrder)  # what changed most first
        notes = [f"Not comparable: {t.name_a} / {t.name_b}: {t.reason}." for t in report.not_comparable()[:8]]
        if report.only_a or report.only_b:
            notes.append(f"Tensors only in A: {len(report.only_a)}; only in B: {len(report.only_b)} "
                         f"({', '.join([*report.only_a, *report.only_b][:4])}).")
        dequantized = sorted({t.dequantized for t in report.tensors if t.dequantized})
        notes.extend(f"Dequantised: {d}." for d in dequantized)
        notes.append(f"Read {human_bytes(report.bytes_read)} in {report.seconds:.2f} s.")
        self.drift_notes.setText(" ".join(notes))
        self.trees.model.set_drift({d.key: d.total.relative_change for d in report.layers})

    def show_tab(self, name: str) -> bool:
        """Bring the page called `name` (any case) forward; False when there is none."""
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i).lower() == name.strip().lower():
                self.tabs.setCurrentIndex(i)
                return True
        return False

    def _on_drift_selected(self) -> None:
        items = self.drift_table.selectedItems()
        if items:
            self.trees.select_pair(items[0].data(KEY_ROLE))

    def _on_change_selected(self) -> None:
        items = self.changes_table.selectedItems()
        if items:
            self.trees.select_pair(items[0].data(KEY_ROLE))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"
