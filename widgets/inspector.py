"""The inspector: everything about the selected layer — numbers, attributes and its tensors."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QFrame,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from analyzers.summary import Counts, LayerNode, TensorInfo
from analyzers.summary.memory import human_bytes, human_count

TENSOR_COLUMNS = ("Name", "Shape", "Dtype", "Numel", "Bytes", "Kind", "Trainable", "Tied to")
MAX_SUBTREE_TENSORS = 20_000


NO_PARENT = QModelIndex()  # default `parent` argument of the model methods


class TensorTableModel(QAbstractTableModel):
    """Rows are tensors; cheap for any count because Qt asks only for what is visible."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._tensors: list[TensorInfo] = []
        self._prefix = ""

    def set_tensors(self, tensors: list[TensorInfo], prefix: str = "") -> None:
        """Show these tensors; names are shown relative to `prefix` (the layer path)."""
        self.beginResetModel()
        self._tensors = tensors
        self._prefix = f"{prefix}." if prefix else ""
        self.endResetModel()

    @property
    def tensors(self) -> list[TensorInfo]:
        """The tensors shown."""
        return self._tensors

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:
        """One row per tensor."""
        return 0 if parent.isValid() else len(self._tensors)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = NO_PARENT) -> int:
        """The columns of TENSOR_COLUMNS."""
        return 0 if parent.isValid() else len(TENSOR_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        """Column titles."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return TENSOR_COLUMNS[section]
        return None

    def cell(self, row: int, col: int) -> str:
        """The text of one cell (also what tests read)."""
        t = self._tensors[row]
        if col == 0:
            name = t.name
            return name[len(self._prefix):] if self._prefix and name.startswith(self._prefix) else name
        if col == 1:
            return "(" + ", ".join(str(d) for d in t.shape) + ")" if t.shape else "scalar"
        if col == 2:
            return t.dtype
        if col == 3:
            return f"{t.numel:,}"
        if col == 4:
            return human_bytes(t.nbytes)
        if col == 5:
            return t.kind
        if col == 6:
            return "yes" if t.trainable and t.kind == "param" else "no"
        return t.shared_with or ""

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        """Cell text, alignment and full-name tooltips."""
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cell(index.row(), index.column())
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in (3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            t = self._tensors[index.row()]
            return f"{t.name}\n{t.nbytes:,} bytes" + (f"\ntied to {t.shared_with}" if t.shared_with else "")
        return None


class Inspector(QWidget):
    """Path, type, numbers, share of the model, attributes and tensors of one layer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._node: LayerNode | None = None
        self._totals: Counts | None = None
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.title.setFont(font)
        self.subtitle = QLabel(self)
        self.subtitle.setWordWrap(True)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.fields: dict[str, QLabel] = {}
        for key in ("Own params", "Total params", "Trainable", "Buffers", "Bytes", "Share of model", "Sub-layers",
                    "Output shape", "FLOPs"):
            label = QLabel(self)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.fields[key] = label
            self.form.addRow(f"{key}:", label)

        self.attributes = QTableWidget(0, 2, self)
        self.attributes.setHorizontalHeaderLabels(["Attribute", "Value"])
        self.attributes.verticalHeader().setVisible(False)
        self.attributes.horizontalHeader().setStretchLastSection(True)
        self.attributes.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.attributes.setAlternatingRowColors(True)

        self.tensor_model = TensorTableModel(self)
        self.tensors = QTableView(self)
        self.tensors.setModel(self.tensor_model)
        self.tensors.verticalHeader().setVisible(False)
        self.tensors.verticalHeader().setDefaultSectionSize(self.tensors.fontMetrics().height() + 6)
        self.tensors.setAlternatingRowColors(True)
        self.tensors.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.tensors.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.tensors.horizontalHeader().setStretchLastSection(True)
        self.subtree_box = QCheckBox("Include sub-layers' tensors", self)
        self.subtree_box.toggled.connect(self._refresh_tensors)
        self.tensor_label = QLabel(self)

        top = QWidget(self)
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.title)
        top_layout.addWidget(self.subtitle)
        top_layout.addLayout(self.form)
        top_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(top)

        attr_box = QWidget(self)
        attr_layout = QVBoxLayout(attr_box)
        attr_layout.setContentsMargins(0, 0, 0, 0)
        attr_layout.addWidget(QLabel("Attributes", self))
        attr_layout.addWidget(self.attributes)
        tensor_box = QWidget(self)
        tensor_layout = QVBoxLayout(tensor_box)
        tensor_layout.setContentsMargins(0, 0, 0, 0)
        tensor_layout.addWidget(self.tensor_label)
        tensor_layout.addWidget(self.tensors, 1)
        tensor_layout.addWidget(self.subtree_box)

        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(attr_box)
        self.splitter.addWidget(tensor_box)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setStretchFactor(2, 4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.set_layer(None, None)

    def set_layer(self, node: LayerNode | None, model_totals: Counts | None) -> None:
        """Show one layer; `model_totals` (the whole model's counts) gives its share."""
        self._node, self._totals = node, model_totals
        if node is None:
            self.title.setText("No layer selected")
            self.subtitle.setText("Pick a layer in the tree to see its tensors and attributes.")
            for label in self.fields.values():
                label.setText("")
            self.attributes.setRowCount(0)
            self.tensor_model.set_tensors([])
            self.tensor_label.setText("Tensors")
            return
        own, total = node.own, node.total
        self.title.setText(node.path or "(the whole model)")
        self.subtitle.setText(node.type or "type unknown (the file stores tensor names only)")
        f = self.fields
        f["Own params"].setText(_count(own.params))
        f["Total params"].setText(_count(total.params))
        f["Trainable"].setText(f"{total.trainable_params:,} trainable, {total.non_trainable_params:,} frozen"
                               if total.params else "no parameters")
        f["Buffers"].setText(f"{total.buffers:,} values ({human_bytes(total.buffer_bytes)})" if total.buffers else "none")
        by_dtype = ", ".join(f"{d} {human_bytes(b)}" for d, b in sorted(total.bytes_by_dtype.items(),
                                                                           key=lambda kv: -kv[1]))
        f["Bytes"].setText(f"{human_bytes(total.total_bytes)}" + (f"  ({by_dtype})" if by_dtype else ""))
        f["Share of model"].setText(self._share_text(total))
        f["Sub-layers"].setText(f"{len(node.children):,}")
        f["Output shape"].setText(str(node.output_shape) if node.output_shape is not None else "unknown")
        f["FLOPs"].setText(f"{node.flops:,}" if node.flops is not None else "unknown")
        items = sorted(node.attributes.items(), key=lambda kv: str(kv[0]))
        self.attributes.setRowCount(len(items))
        for row, (key, value) in enumerate(items):
            self.attributes.setItem(row, 0, QTableWidgetItem(str(key)))
            self.attributes.setItem(row, 1, QTableWidgetItem(_value_text(value)))
        self.attributes.resizeColumnToContents(0)
        self.subtree_box.blockSignals(True)
        self.subtree_box.setChecked(not node.tensors and bool(node.children))
        self.subtree_box.blockSignals(False)
        self._refresh_tensors()

    def set_shape_info(self, shape: str, flops: str) -> None:
        """The selected layer's output shape and FLOPs as shape inference found them (with their input)."""
        self.fields["Output shape"].setText(shape)
        self.fields["FLOPs"].setText(flops)

    def _share_text(self, total: Counts) -> str:
        totals = self._totals
        if totals is None:
            return ""
        parts = []
        if totals.params:
            parts.append(f"{100.0 * total.params / totals.params:.2f} % of parameters")
        if totals.total_bytes:
            parts.append(f"{100.0 * total.total_bytes / totals.total_bytes:.2f} % of bytes")
        return ", ".join(parts) or "the model has no parameters"

    def _refresh_tensors(self) -> None:
        node = self._node
        if node is None:
            return
        if self.subtree_box.isChecked():
            tensors: list[TensorInfo] = []
            for sub, _ in node.walk():
                tensors.extend(sub.tensors)
                if len(tensors) >= MAX_SUBTREE_TENSORS:
                    break
            shown = tensors[:MAX_SUBTREE_TENSORS]
            more = " (first 20,000)" if len(tensors) >= MAX_SUBTREE_TENSORS else ""
            self.tensor_label.setText(f"Tensors in this layer and below: {len(shown):,}{more}")
        else:
            shown = list(node.tensors)
            self.tensor_label.setText(f"Own tensors: {len(shown):,}")
        self.tensor_model.set_tensors(shown, node.path)
        if shown:
            self._fit_tensor_columns()

    def _fit_tensor_columns(self, sample: int = 30) -> None:
        """Column widths from the header and the first rows (QTableView would measure every row)."""
        metrics = self.tensors.fontMetrics()
        header = self.tensors.horizontalHeader()
        rows = min(sample, self.tensor_model.rowCount())
        for col, title in enumerate(TENSOR_COLUMNS[:-1]):
            texts = [title, *(self.tensor_model.cell(r, col) for r in range(rows))]
            width = max(metrics.horizontalAdvance(t) for t in texts) + 18
            header.resizeSection(col, min(width, 260))

    @property
    def node(self) -> LayerNode | None:
        """The layer shown."""
        return self._node


def _count(n: int) -> str:
    return f"{n:,} ({human_count(n)})" if n >= 1000 else f"{n:,}"


def _value_text(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    text = str(value)
    return text if len(text) <= 300 else text[:297] + "…"
