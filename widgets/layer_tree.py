"""The layer tree widget: filter box, depth controls, the tree view with its % bars, copy actions.

The data side (lazy model, sort, filter) is in widgets/layer_tree_model.py.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QGuiApplication, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from analyzers.summary import ModelSummary
from widgets.layer_tree_model import (  # noqa: F401 - re-exported for callers of the widget
    BYTES,
    COLUMNS,
    DEFAULT_WIDTHS,
    DTYPES,
    EXPAND_MATCHES,
    FETCH_BATCH,
    FLOPS,
    NAME,
    OWN,
    PATH_ROLE,
    SHAPE,
    SHARE,
    SHARE_ROLE,
    SORT_ROLE,
    TOTAL,
    TRAINABLE,
    TYPE,
    LayerTreeModel,
)


class ShareBarDelegate(QStyledItemDelegate):
    """Draws the % of model column as a bar under the number."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        """Background, then a bar as wide as the share, then the text."""
        share = index.data(SHARE_ROLE) or 0.0
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else QApplication.style()
        text, opt.text = opt.text, ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        rect = opt.rect.adjusted(3, 4, -3, -4)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        if share > 0 and rect.width() > 0:
            role = opt.palette.ColorRole.HighlightedText if selected else opt.palette.ColorRole.Highlight
            color = QColor(opt.palette.color(role))
            color.setAlpha(90 if selected else 110)
            width = max(1, round(rect.width() * min(share, 100.0) / 100.0))
            painter.save()
            painter.fillRect(QRect(rect.left(), rect.top(), width, rect.height()), color)
            painter.restore()
        painter.save()
        role = opt.palette.ColorRole.HighlightedText if selected else opt.palette.ColorRole.Text
        painter.setPen(opt.palette.color(role))
        painter.drawText(opt.rect.adjusted(4, 0, -4, 0), int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                         text)
        painter.restore()


class LayerTree(QWidget):
    """Filter box, depth controls and the tree view; says which layer the user picked."""

    layerSelected = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = LayerTreeModel(self)
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by name or type  (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.depth_spin = QSpinBox(self)
        self.depth_spin.setRange(0, 32)
        self.depth_spin.setValue(1)
        self.depth_spin.setToolTip("Expand the tree to this depth")
        self.collapse_button = QToolButton(self)
        self.collapse_button.setText("Collapse")
        self.collapse_button.setToolTip("Collapse every layer")
        self.count_label = QLabel(self)

        self.view = QTreeView(self)
        self.view.setModel(self.model)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QTreeView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QTreeView.SelectionBehavior.SelectRows)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.setItemDelegateForColumn(SHARE, ShareBarDelegate(self.view))
        header = self.view.header()
        header.setSortIndicatorClearable(True)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSortingEnabled(True)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate(DEFAULT_WIDTHS):
            header.resizeSection(col, width)
        header.setMinimumSectionSize(40)
        header.setResizeContentsPrecision(64)  # fitting a column looks at this many rows, not all

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(QLabel("Depth", self))
        bar.addWidget(self.depth_spin)
        bar.addWidget(self.collapse_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count_label)

        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(180)
        self._filter_timer.timeout.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        self.depth_spin.valueChanged.connect(self.expand_to_depth)
        self.collapse_button.clicked.connect(self._collapse_all)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)
        self.view.customContextMenuRequested.connect(self._context_menu)

    # -- data in ---------------------------------------------------------------------------------
    def set_summary(self, summary: ModelSummary | None) -> None:
        """Show a model's layers, expanded to the depth box's value."""
        self.model.set_summary(summary)
        self._update_count()
        self.expand_to_depth(self.depth_spin.value())
        if summary is not None:
            if not self.model.filter_text:
                self._open_wrappers()
            self.view.setCurrentIndex(self.model.index(0, 0))
            self.fit_columns()

    def set_shapes(self, shapes: dict[str, tuple], flops: dict[str, int], caption: str) -> None:
        """Fill the Output shape and FLOPs columns (caption: what the FLOPs are for, shown in their tooltips)."""
        self.model.set_shapes(shapes, flops, caption)
        self.model.headerDataChanged.emit(Qt.Orientation.Horizontal, SHAPE, FLOPS)

    def _open_wrappers(self, levels: int = 3) -> None:
        """Open the child that holds most of the model, when it is one of a few (model -> layers)."""
        index = self.model.index(0, 0)
        total = self.model.summary.totals.params if self.model.summary else 0
        for _ in range(levels):
            if not index.isValid() or not total or not self.view.isExpanded(index):
                return
            rows = self.model.rowCount(index)
            if rows > 3:
                return
            kids = [self.model.index(r, 0, index) for r in range(rows)]
            best = max(kids, key=lambda k: self.model.row_data(k).params_total, default=None)
            if best is None or self.model.row_data(best).params_total * 2 < total or not self.model.hasChildren(best):
                return
            self.view.expand(best)
            index = best

    def fit_columns(self) -> None:
        """Widen columns whose visible cells or header are clipped (never narrower than the defaults)."""
        header = self.view.header()
        for col, cap in ((NAME, 260), (TYPE, 150), (OWN, 150), (TOTAL, 150), (BYTES, 110), (DTYPES, 200)):
            title = str(self.model.headerData(col, Qt.Orientation.Horizontal))
            title_width = header.fontMetrics().horizontalAdvance(title) + 14  # the title, less the sort arrow
            wanted = min(cap, max(self.view.sizeHintForColumn(col), title_width))
            if wanted > header.sectionSize(col):
                header.resizeSection(col, wanted)

    def width_to_show(self, last: int = SHARE) -> int:
        """Pixels the tree pane needs to show every column up to `last` (default: % of model) unclipped."""
        header = self.view.header()
        columns = sum(header.sectionSize(c) for c in range(last + 1) if not header.isSectionHidden(c))
        frame = 2 * self.view.frameWidth() + self.view.verticalScrollBar().sizeHint().width()
        margins = self.layout().contentsMargins() if self.layout() is not None else None
        return columns + frame + (margins.left() + margins.right() if margins is not None else 0) + 4

    def select_path(self, path: str) -> bool:
        """Select and reveal the layer at `path` (clearing a filter that hides it); False if absent."""
        index = self.model.index_for_path(path)
        if not index.isValid() and self.model.filter_text and self.model.summary and path in self.model.summary:
            self.set_filter("")
            index = self.model.index_for_path(path)
        if not index.isValid():
            return False
        parent = index.parent()
        while parent.isValid():
            self.view.expand(parent)
            parent = parent.parent()
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return True

    def selected_path(self) -> str | None:
        """Path of the current layer, None when nothing is selected."""
        return self.model.path_of(self.view.currentIndex())

    def set_filter(self, text: str) -> None:
        """Filter now (the box's own typing is debounced)."""
        self._filter_timer.stop()
        if self.filter_edit.text() != text:
            self.filter_edit.blockSignals(True)
            self.filter_edit.setText(text)
            self.filter_edit.blockSignals(False)
        self._apply_filter()

    def focus_filter(self) -> None:
        """Put the cursor in the filter box, its text selected (Ctrl+F)."""
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

    def expand_to_depth(self, depth: int) -> None:
        """Collapse everything, then expand layers down to `depth` below the model row.

        Two passes: the rows are fetched while every parent is still collapsed (cheap for the view),
        then the parents are expanded while the view's layout is pending, so it is laid out once.
        Fetching under expanded parents made the view re-lay itself out per parent: quadratic, minutes
        for 10^5 layers."""
        self.view.collapseAll()
        root = self.model.index(0, 0)
        if not root.isValid() or depth <= 0:
            return
        to_expand = [root]
        level = [root]
        for step in range(depth):
            if step == depth - 1 and step > 0:
                break  # the view fetches the deepest level's rows itself, and only as far as it lays out
            below = []
            for parent in level:
                self.model.fetch_until(parent, FETCH_BATCH)  # the rows an expanded parent shows
                if step < depth - 1:
                    for row in range(self.model.rowCount(parent)):
                        child = self.model.index(row, 0, parent)
                        if self.model.hasChildren(child):
                            below.append(child)
            to_expand.extend(below)
            level = below
        self.view.scheduleDelayedItemsLayout()  # expand() then only records the index
        for index in to_expand:
            self.view.expand(index)

    # -- internals -------------------------------------------------------------------------------
    def _apply_filter(self) -> None:
        current = self.selected_path()
        self.model.set_filter(self.filter_edit.text())
        self._update_count()
        if self.model.filter_text:
            for path in self.model.matched_paths()[:EXPAND_MATCHES]:
                index = self.model.index_for_path(path)
                parent = index.parent()
                while parent.isValid() and not self.view.isExpanded(parent):
                    self.view.expand(parent)
                    parent = parent.parent()
        else:
            self.expand_to_depth(self.depth_spin.value())
        if current is not None and self.model.index_for_path(current).isValid():
            self.select_path(current)

    def _update_count(self) -> None:
        summary = self.model.summary
        if summary is None:
            self.count_label.setText("")
        elif self.model.filter_text:
            n = len(self.model.matched_paths())
            self.count_label.setText(f"{n:,} of {summary.node_count:,} layers match")
        else:
            self.count_label.setText(f"{summary.node_count:,} layers")

    def _collapse_all(self) -> None:
        self.view.collapseAll()
        root = self.model.index(0, 0)
        if root.isValid():
            self.view.expand(root)

    def _on_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        path = self.model.path_of(current)
        if path is not None:
            self.layerSelected.emit(path)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        menu = QMenu(self)
        copy_path = QAction("Copy path", menu)
        copy_row = QAction("Copy row", menu)
        expand = QAction("Expand all below", menu)
        collapse = QAction("Collapse all below", menu)
        menu.addActions([copy_path, copy_row])
        menu.addSeparator()
        menu.addActions([expand, collapse])
        chosen = menu.exec(self.view.viewport().mapToGlobal(pos))
        if chosen is copy_path:
            self.copy_path(index)
        elif chosen is copy_row:
            self.copy_row(index)
        elif chosen is expand:
            self._expand_below(index.siblingAtColumn(0), 64)
            self.view.expand(index.siblingAtColumn(0))
        elif chosen is collapse:
            self.view.collapse(index.siblingAtColumn(0))

    def copy_path(self, index: QModelIndex) -> str:
        """Put the layer's dotted path on the clipboard (and return it)."""
        text = self.model.path_of(index) or ""
        QGuiApplication.clipboard().setText(text)
        return text

    def copy_row(self, index: QModelIndex) -> str:
        """Put the row, tab-separated, on the clipboard (and return it)."""
        text = self.model.row_text(index.siblingAtColumn(0))
        QGuiApplication.clipboard().setText(text)
        return text
