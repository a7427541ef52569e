"""The layer tree's data: a lazy QAbstractItemModel over LayerNode, with sorting and filtering built in.

Nothing is built up front: an item exists only once its parent was expanded, and children arrive
in batches (`canFetchMore`/`fetchMore`), so a 10^5-node model costs what is on screen. Sorting
and filtering happen in the model (a filter keeps the ancestors of every match), not in a proxy
that would call Python once per row of the whole tree.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QApplication

from analyzers.summary import LayerNode, ModelSummary
from analyzers.summary.memory import human_bytes, human_count
from analyzers.summary.nametree import natural_key
from analyzers.summary.params import LayerRow, row_for
from analyzers.summary.shapes import human_flops, shape_text

COLUMNS = ("Name", "Type", "Own params", "Total params", "% of model", "Bytes", "Dtype(s)", "Trainable",
           "Output shape", "FLOPs")
NAME, TYPE, OWN, TOTAL, SHARE, BYTES, DTYPES, TRAINABLE, SHAPE, FLOPS = range(len(COLUMNS))
NUMERIC = {OWN, TOTAL, SHARE, BYTES, FLOPS}
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
SHARE_ROLE = Qt.ItemDataRole.UserRole + 3
FETCH_BATCH = 500
EXPAND_MATCHES = 200  # a filter opens the ancestors of at most this many matches
DEFAULT_WIDTHS = (160, 96, 76, 88, 70, 70, 62, 56, 110, 84)
NO_PARENT = QModelIndex()  # default `parent` argument of the model methods
ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable  # built once: the view asks per row
NO_FLAGS = Qt.ItemFlag.NoItemFlags


class _Item:
    """A materialised row: a node, its parent item and, once asked for, its ordered children."""

    __slots__ = ("node", "parent", "row", "depth", "order", "kids", "show_all", "_row_data")

    def __init__(self, node: LayerNode | None, parent: _Item | None, row: int, depth: int, show_all: bool) -> None:
        self.node = node
        self.parent = parent
        self.row = row
        self.depth = depth
        self.order: list[LayerNode] | None = None
        self.kids: list[_Item] = []
        self.show_all = show_all
        self._row_data: LayerRow | None = None


class LayerTreeModel(QAbstractItemModel):
    """Rows are layers; columns are the numbers of COLUMNS; children materialise on demand."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._summary: ModelSummary | None = None
        self._model_params = 0
        self._keep: set[str] | None = None  # paths shown while a filter is set (matches + ancestors)
        self._matched: set[str] = set()
        self._filter = ""
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        self._root = _Item(None, None, 0, -1, False)
        self.materialised = 0  # items created so far (tests assert laziness with it)
        self._shapes: dict[str, tuple] = {}  # path -> output shape, from shape inference (else the node's own)
        self._flops: dict[str, int] = {}
        self._flops_caption = ""  # what the FLOPs are for ("FLOPs (2 × multiply–adds) for input ...")

    # -- data in ---------------------------------------------------------------------------------
    def set_summary(self, summary: ModelSummary | None) -> None:
        """Show another model (None: empty); the filter and sort order stay."""
        self.beginResetModel()
        self._summary = summary
        self._shapes, self._flops, self._flops_caption = {}, {}, ""
        self._model_params = summary.totals.params if summary else 0
        self._compute_filter()
        self._reset_items()
        self.endResetModel()

    @property
    def summary(self) -> ModelSummary | None:
        """The model shown."""
        return self._summary

    def set_shapes(self, shapes: dict[str, tuple], flops: dict[str, int], caption: str) -> None:
        """Output shapes and FLOPs by path for the shown model (from shape inference), with what the FLOPs are
        for; the rows stay where they are, only the two columns change."""
        self.layoutAboutToBeChanged.emit()
        self._shapes, self._flops, self._flops_caption = dict(shapes), dict(flops), caption
        if self._sort_column in (SHAPE, FLOPS):
            self.layoutChanged.emit()
            self.sort(self._sort_column, self._sort_order)
            return
        self.layoutChanged.emit()

    def output_shape(self, node: LayerNode) -> tuple | None:
        """The layer's output shape: shape inference's, else the one the file recorded."""
        return self._shapes.get(node.path, node.output_shape)

    def layer_flops(self, node: LayerNode) -> int | None:
        """The layer's FLOPs (with everything below it) for the stated input, None when unknown."""
        return self._flops.get(node.path, node.flops)

    def set_filter(self, text: str) -> None:
        """Keep layers whose name, path or type contains `text` (any case), with their ancestors."""
        text = text.strip()
        if text == self._filter:
            return
        self.beginResetModel()
        self._filter = text
        self._compute_filter()
        self._reset_items()
        self.endResetModel()

    @property
    def filter_text(self) -> str:
        """The filter in force ("" for none)."""
        return self._filter

    def matched_paths(self) -> list[str]:
        """Paths that match the filter itself (not kept only as ancestors), in tree order."""
        if self._summary is None or self._keep is None:
            return []
        return [n.path for n, _ in self._summary.walk() if n.path in self._matched]

    def _compute_filter(self) -> None:
        self._matched = set()
        if not self._filter or self._summary is None:
            self._keep = None
            return
        needle = self._filter.lower()
        keep: set[str] = set()
        stack: list[tuple[LayerNode, tuple[str, ...]]] = [(self._summary.root, ())]
        while stack:
            node, ancestors = stack.pop()
            if needle in node.path.lower() or (node.type and needle in node.type.lower()):
                self._matched.add(node.path)
                keep.add(node.path)
                keep.update(ancestors)
            if node.children:
                below = (*ancestors, node.path)
                stack.extend((child, below) for child in node.children)
        self._keep = keep

    def _reset_items(self) -> None:
        self._root = _Item(None, None, 0, -1, False)
        self.materialised = 0
        self._materialise(self._root, 1)

    # -- ordering --------------------------------------------------------------------------------
    def _sort_key(self, column: int) -> Callable[[LayerNode], object]:
        if column == NAME:
            return lambda n: natural_key(n.name)
        if column == TYPE:
            return lambda n: (n.type.lower(), natural_key(n.name))
        if column == OWN:
            return lambda n: n.own.params
        if column in (TOTAL, SHARE):
            return lambda n: n.total.params
        if column == BYTES:
            return lambda n: n.total.total_bytes
        if column == DTYPES:
            return lambda n: ",".join(n.dtypes)
        if column == SHAPE:
            return lambda n: _shape_key(self.output_shape(n))
        if column == FLOPS:
            return lambda n: -1 if self.layer_flops(n) is None else self.layer_flops(n)
        return lambda n: self._row(n, 0).trainable_label

    def _order(self, item: _Item) -> list[LayerNode]:
        if item.order is None and item is self._root:
            root = self._summary.root if self._summary is not None else None
            item.order = [root] if root is not None and (self._keep is None or root.path in self._keep) else []
        if item.order is None:
            children = list(item.node.children)
            if self._keep is not None and not item.show_all:
                children = [c for c in children if c.path in self._keep]
            if self._sort_column >= 0:
                children.sort(key=self._sort_key(self._sort_column),
                              reverse=self._sort_order == Qt.SortOrder.DescendingOrder)
            item.order = children
        return item.order

    def _materialise(self, item: _Item, upto: int) -> None:
        order = self._order(item)
        for row in range(len(item.kids), min(upto, len(order))):
            node = order[row]
            show_all = item.show_all or (self._keep is not None and node.path in self._matched)
            item.kids.append(_Item(node, item, row, item.depth + 1, show_all))
            self.materialised += 1

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort every level by `column` (-1: the file's own order); only materialised levels do work."""
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        old_items = [(i.internalPointer(), i.column()) for i in old]
        self._sort_column, self._sort_order = column, order
        stack = [self._root]
        while stack:
            item = stack.pop()
            if item.order is None:
                continue
            fetched = len(item.kids)
            by_node = {id(k.node): k for k in item.kids}
            item.order = None
            new_order = self._order(item)
            kids = []
            for row, node in enumerate(new_order[:fetched]):
                kid = by_node.get(id(node))
                if kid is None:
                    show_all = item.show_all or (self._keep is not None and node.path in self._matched)
                    kid = _Item(node, item, row, item.depth + 1, show_all)
                    self.materialised += 1
                kid.row = row
                kids.append(kid)
            item.kids = kids
            stack.extend(kids)
        new = []
        for kid, column_ in old_items:
            alive = isinstance(kid, _Item) and kid.parent is not None and kid.row < len(kid.parent.kids) \
                and kid.parent.kids[kid.row] is kid
            new.append(self.createIndex(kid.row, column_, kid) if alive else QModelIndex())
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()

    @property
    def sort_column(self) -> int:
        """The column sorted by (-1: file order)."""
        return self._sort_column

    # -- QAbstractItemModel ---------------------------------------------------------------------
    def _item(self, index: QModelIndex | QPersistentModelIndex) -> _Item:
        return index.internalPointer() if index.isValid() else self._root

    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> QModelIndex:
        """Index of a materialised child."""
        item = self._item(parent)
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        if 0 <= row < len(item.kids) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, item.kids[row])
        return QModelIndex()

    def parent(self, index: QModelIndex | QPersistentModelIndex | None = None):  # type: ignore[override]
        """Parent index (QObject.parent() when called without an index)."""
        if index is None:
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        item: _Item = index.internalPointer()
        up = item.parent
        if up is None or up is self._root:
            return QModelIndex()
        return self.createIndex(up.row, 0, up)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:
        """Rows fetched so far under `parent`."""
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._item(parent).kids)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:
        """Always the columns of COLUMNS."""
        return len(COLUMNS)

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> bool:
        """True when the layer has (visible) sub-layers, fetched or not."""
        if not parent.isValid():
            return bool(self._order(self._root))
        if parent.column() != 0:
            return False
        item: _Item = parent.internalPointer()
        if item.order is not None:
            return bool(item.order)
        if self._keep is None or item.show_all:
            return bool(item.node.children)  # no list built for rows that are never expanded
        return bool(self._order(item))

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        """True while some children of `parent` have no row yet."""
        if parent.isValid() and parent.column() != 0:
            return False
        item = self._item(parent)
        return len(item.kids) < len(self._order(item))

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        """Create the next FETCH_BATCH rows under `parent`."""
        self.fetch_until(parent, len(self._item(parent).kids) + FETCH_BATCH)

    def fetch_until(self, parent: QModelIndex | QPersistentModelIndex, rows: int) -> None:
        """Make sure at least `rows` children of `parent` exist (as many as there are)."""
        item = self._item(parent)
        start, end = len(item.kids), min(rows, len(self._order(item)))
        if end <= start:
            return
        self.beginInsertRows(QModelIndex(parent) if isinstance(parent, QPersistentModelIndex) else parent,
                             start, end - 1)
        self._materialise(item, end)
        self.endInsertRows()

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        """Selectable, enabled, read-only."""
        return ROW_FLAGS if index.isValid() else NO_FLAGS

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        """Column titles, right-aligned over numbers."""
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole and section == FLOPS:
            return self._flops_caption or "FLOPs (2 × multiply–adds) for a stated input size"
        if role == Qt.ItemDataRole.TextAlignmentRole and section in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _row(self, node: LayerNode, depth: int) -> LayerRow:
        return row_for(node, depth, self._model_params)

    def row_data(self, index: QModelIndex) -> LayerRow | None:
        """The numbers of the row at `index`."""
        if not index.isValid():
            return None
        item: _Item = index.internalPointer()
        if item._row_data is None:
            item._row_data = self._row(item.node, item.depth)
        return item._row_data

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        """Text, sort keys, tooltips and alignment of one cell."""
        if not index.isValid():
            return None
        item: _Item = index.internalPointer()
        node, col = item.node, index.column()
        if role == PATH_ROLE:
            return node.path
        row = self.row_data(index)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, row, col)
        if role == SORT_ROLE:
            return self._sort_key(col)(node)
        if role == SHARE_ROLE:
            return row.percent
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if col in NUMERIC:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node, row, col)
        if role == Qt.ItemDataRole.FontRole and col == NAME and self._keep is not None and node.path in self._matched:
            return self._bold_font()
        if role == Qt.ItemDataRole.ForegroundRole and row.params_total == 0 and row.buffers_total == 0:
            return QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
        return None

    @staticmethod
    def _bold_font() -> QFont:
        font = QFont(QApplication.font())
        font.setBold(True)
        return font

    def _display(self, node: LayerNode, row: LayerRow, col: int) -> str:
        if col == NAME:
            if not node.path and self._summary is not None:
                return _root_label(self._summary)
            return node.name
        if col == TYPE:
            return node.type
        if col == OWN:
            return f"{row.params:,}" if row.params else ""
        if col == TOTAL:
            return f"{row.params_total:,}"
        if col == SHARE:
            return f"{row.percent:.2f} %" if self._model_params else ""
        if col == BYTES:
            return human_bytes(row.bytes_total)
        if col == DTYPES:
            return ", ".join(row.dtypes)
        if col == SHAPE:
            return shape_text(self.output_shape(node))
        if col == FLOPS:
            flops = self.layer_flops(node)
            return "" if flops is None else human_flops(flops).replace(" FLOPs", "")
        return row.trainable_label

    def _tooltip(self, node: LayerNode, row: LayerRow, col: int) -> str:
        if col in (NAME, TYPE):
            return node.path or "(the whole model)"
        if col in (OWN, TOTAL):
            n = row.params if col == OWN else row.params_total
            return f"{n:,} parameters ({human_count(n)})"
        if col == BYTES:
            parts = ", ".join(f"{d}: {human_bytes(b)}" for d, b in sorted(row.bytes_by_dtype.items()))
            return f"{row.bytes_total:,} bytes" + (f" ({parts})" if parts else "")
        if col == TRAINABLE and row.params_total:
            return f"{row.trainable_total:,} trainable, {row.non_trainable_total:,} frozen"
        if col == FLOPS:
            flops = self.layer_flops(node)
            said = self._flops_caption or "FLOPs (2 × multiply–adds)"
            return f"{said}\n{flops:,} FLOPs, this layer and everything below it" if flops is not None else \
                f"{said}\nunknown for this layer"
        if col == SHAPE:
            shape = self.output_shape(node)
            return f"Output shape {shape_text(shape)}" if shape is not None else "Output shape unknown"
        return ""

    # -- paths -----------------------------------------------------------------------------------
    def index_for_path(self, path: str) -> QModelIndex:
        """Index of the layer at `path`, fetching the rows on its way; invalid if absent or filtered out."""
        summary = self._summary
        if summary is None or path not in summary:
            return QModelIndex()
        chain = [summary.node(path)]
        while (up := summary.parent(chain[-1].path)) is not None:
            chain.append(up)
        chain.reverse()
        parent_index = QModelIndex()
        item = self._root
        for node in chain:
            order = self._order(item)
            row = next((i for i, n in enumerate(order) if n is node), -1)
            if row < 0:
                return QModelIndex()
            if row >= len(item.kids):
                self.fetch_until(parent_index, row + 1)
            item = item.kids[row]
            parent_index = self.createIndex(row, 0, item)
        return parent_index

    def path_of(self, index: QModelIndex) -> str | None:
        """Layer path at `index` (None for an invalid index)."""
        return index.internalPointer().node.path if index.isValid() else None

    def row_text(self, index: QModelIndex) -> str:
        """The row as tab-separated text: path, then every column after the name."""
        item: _Item = index.internalPointer()
        row = self.row_data(index.siblingAtColumn(0))
        cells = [item.node.path or _root_label(self._summary)]
        cells += [self._display(item.node, row, c) for c in range(1, len(COLUMNS))]
        return "\t".join(cells)


def _root_label(summary: ModelSummary | None) -> str:
    if summary is None:
        return ""
    name = summary.source.path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return name or "(model)"


def _shape_key(shape: tuple | None) -> int:
    """Sort key of an output shape: its element count (-1 when unknown)."""
    if shape is None:
        return -1
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else 1
    return n
