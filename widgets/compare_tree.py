"""Two layer trees side by side, one row per aligned layer pair, expanded and scrolled together.

Both views show one model (`PairTreeModel`, a row per `LayerPair` of analyzers.compare.structure):
the left view its A columns, the right view its B columns and the Δ and drift columns. Sharing
the model and the selection keeps matched rows on the same line by construction; expanding,
collapsing and scrolling one view does the same to the other. Rows are coloured by status: green
for a layer only in B (added), red for one only in A (removed), amber for a changed pair; the side
that lacks the layer is hatched.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QTreeView, QVBoxLayout, QWidget

from analyzers.compare.structure import LayerPair, StructureDiff
from analyzers.summary.memory import human_bytes

COLUMNS = ("Name", "Type", "Params", "Bytes", "Dtype", "Name", "Type", "Params", "Δ params", "Δ %", "Drift", "Bytes",
           "Dtype")
A_NAME, A_TYPE, A_PARAMS, A_BYTES, A_DTYPE, B_NAME, B_TYPE, B_PARAMS, DELTA, DELTA_PCT, DRIFT, B_BYTES, B_DTYPE = \
    range(len(COLUMNS))
A_COLUMNS = range(A_NAME, B_NAME)
B_COLUMNS = range(B_NAME, len(COLUMNS))
NUMERIC = {A_PARAMS, A_BYTES, B_PARAMS, B_BYTES, DELTA, DELTA_PCT, DRIFT}
WIDTHS = {A_NAME: 130, A_TYPE: 80, A_PARAMS: 72, A_BYTES: 66, A_DTYPE: 56, B_NAME: 130, B_TYPE: 80, B_PARAMS: 72,
          B_BYTES: 66, B_DTYPE: 56, DELTA: 66, DELTA_PCT: 56, DRIFT: 52}
STATUS_ROLE = Qt.ItemDataRole.UserRole + 1
KEY_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_COLORS = {"added": QColor(46, 160, 67, 70), "removed": QColor(218, 54, 51, 70), "changed": QColor(210, 153, 34, 80)}
MISSING = QColor(128, 128, 128, 60)
NO_PARENT = QModelIndex()


class PairTreeModel(QAbstractItemModel):
    """Rows are aligned layer pairs; A's columns, B's columns, Δ and drift (once computed)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._diff: StructureDiff | None = None
        self._rows: dict[int, int] = {}  # id(pair) -> row under its parent
        self._drift: dict[tuple, float | None] = {}  # pair key -> relative change of the subtree
        self.names = ("A", "B")

    def set_diff(self, diff: StructureDiff | None, names: tuple[str, str] = ("A", "B")) -> None:
        """Show another comparison (None: empty); drift figures are dropped."""
        self.beginResetModel()
        self._diff = diff
        self.names = names
        self._drift = {}
        self._rows = {}
        if diff is not None:
            for pair in diff.rows:
                for row, child in enumerate(pair.children):
                    self._rows[id(child)] = row
        self.endResetModel()

    @property
    def diff(self) -> StructureDiff | None:
        """The comparison shown."""
        return self._diff

    def set_drift(self, relative: dict[tuple, float | None]) -> None:
        """Relative weight change per pair key (subtree), shown in the Drift column."""
        self._drift = dict(relative)
        if self._diff is not None and self._diff.rows:
            self.dataChanged.emit(self.index(0, DRIFT), self.index(0, DRIFT))
            self.layoutChanged.emit()

    # -- QAbstractItemModel -------------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> QModelIndex:
        """Index of a pair under `parent` (the root pair at the top)."""
        if self._diff is None or not 0 <= column < len(COLUMNS):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, self._diff.root) if row == 0 else QModelIndex()
        pair: LayerPair = parent.internalPointer()
        if 0 <= row < len(pair.children):
            return self.createIndex(row, column, pair.children[row])
        return QModelIndex()

    def parent(self, index: QModelIndex | QPersistentModelIndex | None = None):  # type: ignore[override]
        """Parent index (QObject.parent() without an index)."""
        if index is None:
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        up = index.internalPointer().parent
        if up is None:
            return QModelIndex()
        return self.createIndex(self._rows.get(id(up), 0), 0, up)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:
        """Children of a pair (one root row at the top)."""
        if self._diff is None:
            return 0
        if not parent.isValid():
            return 1
        if parent.column() != 0:
            return 0
        return len(parent.internalPointer().children)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:
        """All of COLUMNS; each view hides the other side's."""
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        """Column titles, right-aligned over numbers."""
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        """Selectable and enabled."""
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable if index.isValid() else Qt.ItemFlag.NoItemFlags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        """Text, colours, tooltips and alignment of one cell."""
        if not index.isValid():
            return None
        pair: LayerPair = index.internalPointer()
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(pair, col)
        if role == STATUS_ROLE:
            return pair.status
        if role == KEY_ROLE:
            return pair.key
        if role == Qt.ItemDataRole.BackgroundRole:
            node = pair.a if col in A_COLUMNS else pair.b
            if node is None and col not in (DELTA, DELTA_PCT, DRIFT):
                return QBrush(MISSING, Qt.BrushStyle.BDiagPattern)
            color = STATUS_COLORS.get(pair.status)
            return QBrush(color) if color is not None else None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int((Qt.AlignmentFlag.AlignRight if col in NUMERIC else Qt.AlignmentFlag.AlignLeft)
                       | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(pair)
        if role == Qt.ItemDataRole.FontRole and pair.renamed and col in (A_NAME, B_NAME):
            font = QFont()
            font.setItalic(True)
            return font
        return None

    def text(self, pair: LayerPair, col: int) -> str:
        """The cell's text."""
        if col in (DELTA, DELTA_PCT, DRIFT):
            if col == DELTA:
                return f"{pair.delta:+,}" if pair.delta else ("0" if pair.a is not None or pair.b is not None else "")
            if col == DELTA_PCT:
                pct = pair.delta_percent
                return "" if pct is None or pair.delta == 0 else f"{pct:+.1f} %"
            value = self._drift.get(pair.key)
            if value is None:
                return ""
            return "inf" if value == math.inf else f"{value:.3g}"
        node = pair.a if col in A_COLUMNS else pair.b
        if node is None:
            return ""
        local = {A_NAME: 0, B_NAME: 0, A_TYPE: 1, B_TYPE: 1, A_PARAMS: 2, B_PARAMS: 2, A_BYTES: 3, B_BYTES: 3}.get(col, 4)
        if local == 0:
            if pair.how == "root":
                return self.names[0 if col in A_COLUMNS else 1]
            return node.name + (" ↔" if pair.renamed and col == A_NAME else "")
        if local == 1:
            return node.type
        if local == 2:
            return f"{node.total.params:,}"
        if local == 3:
            return human_bytes(node.total.total_bytes)
        return ", ".join(node.dtypes)

    def tooltip(self, pair: LayerPair) -> str:
        """Both paths, how they were paired, and every change."""
        lines = [f"A: {pair.path_a or '(the model)' if pair.a is not None else '—'}",
                 f"B: {pair.path_b or '(the model)' if pair.b is not None else '—'}"]
        how = {"path": "paired by path", "signature": "paired by order and signature (renamed)",
               "prefix": "a wrapper whose name was removed to align the paths"}.get(pair.how)
        if how:
            lines.append(how)
        changes = pair.changes()
        if pair.status in ("added", "removed"):
            lines.append("only in " + ("B" if pair.status == "added" else "A"))
        lines.extend(changes[:12])
        return "\n".join(lines)

    def index_of(self, pair: LayerPair, column: int = 0) -> QModelIndex:
        """The index of a pair."""
        if pair.parent is None:
            return self.createIndex(0, column, pair)
        return self.createIndex(self._rows[id(pair)], column, pair)


class AlignedTrees(QWidget):
    """A's tree and B's tree on one row grid: expanding, collapsing, scrolling and selecting move both."""

    pairSelected = Signal(object)  # the LayerPair's key (path_a, path_b)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = PairTreeModel(self)
        self.title_a, self.title_b = QLabel(self), QLabel(self)
        self.view_a, self.view_b = QTreeView(self), QTreeView(self)
        for view, shown, tree_column in ((self.view_a, A_COLUMNS, A_NAME), (self.view_b, B_COLUMNS, B_NAME)):
            view.setModel(self.model)
            view.setUniformRowHeights(True)
            view.setSelectionBehavior(QTreeView.SelectionBehavior.SelectRows)
            view.setSelectionMode(QTreeView.SelectionMode.SingleSelection)
            view.setTreePosition(tree_column)
            view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # equal viewport heights
            header = view.header()
            header.setStretchLastSection(False)
            header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
            for col in range(len(COLUMNS)):
                view.setColumnHidden(col, col not in shown)
                header.resizeSection(col, WIDTHS[col])
        self.view_b.setSelectionModel(self.view_a.selectionModel())
        self.view_a.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # B's bar drives both
        self._syncing = False
        for view, other in ((self.view_a, self.view_b), (self.view_b, self.view_a)):
            view.expanded.connect(lambda index, other=other: self._mirror(other, index, True))
            view.collapsed.connect(lambda index, other=other: self._mirror(other, index, False))
            view.verticalScrollBar().valueChanged.connect(lambda value, other=other: self._scroll(other, value))
        self.view_a.selectionModel().currentRowChanged.connect(self._on_current)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        for title, view, stretch in ((self.title_a, self.view_a, 4), (self.title_b, self.view_b, 5)):
            column = QVBoxLayout()
            column.setSpacing(2)
            title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            column.addWidget(title)
            column.addWidget(view, 1)
            row.addLayout(column, stretch)
        self.setLayout(row)

    def set_diff(self, diff: StructureDiff | None, names: tuple[str, str] = ("A", "B")) -> None:
        """Show a comparison, expanded two levels, its model row selected."""
        self.model.set_diff(diff, names)
        self.title_a.setText(f"<b>A</b>  {names[0]}")
        self.title_b.setText(f"<b>B</b>  {names[1]}")
        if diff is not None:
            self.expand_to_depth(2)
            self.view_a.setCurrentIndex(self.model.index(0, A_NAME))

    def expand_to_depth(self, depth: int) -> None:
        """Both trees expanded to `depth` levels below the model row."""
        self._syncing = True
        try:
            for view in (self.view_a, self.view_b):
                view.expandToDepth(max(0, depth - 1))
        finally:
            self._syncing = False

    def select_pair(self, key: tuple) -> bool:
        """Select and reveal the row of the pair with `key` in both trees."""
        diff = self.model.diff
        pair = next((p for p in diff.rows if p.key == tuple(key)), None) if diff is not None else None
        if pair is None:
            return False
        index = self.model.index_of(pair, A_NAME)
        parent = index.parent()
        while parent.isValid():
            self.view_a.expand(parent)
            parent = parent.parent()
        self.view_a.setCurrentIndex(index)
        self.view_a.scrollTo(index)
        return True

    def _mirror(self, other: QTreeView, index: QModelIndex, expanded: bool) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            other.setExpanded(index.siblingAtColumn(0), expanded)
        finally:
            self._syncing = False

    def _scroll(self, other: QTreeView, value: int) -> None:
        bar = other.verticalScrollBar()
        if bar.value() != value:
            if bar.maximum() < value:
                bar.setMaximum(value)
            bar.setValue(value)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.view_b.scrollTo(current)
            self.pairSelected.emit(current.data(KEY_ROLE))
