"""The Attention tab (pyqtgraph): a layers × heads grid of thumbnails (one atlas image), the full matrix of the
chosen map with token labels on both axes and a hover read-out, a BertViz-style token-to-token view with the
chosen query token across every layer, and a vision transformer's class-token map over the picture with the
saliency view's opacity and colour-map controls. Head/layer selectors, mean-over-heads and rollout toggles,
Save map (.npz) and Save view (PNG).

Plain data in (`set_model`, `set_result`), user intent out (`attentionRequested`, `cancelRequested`); what a
map means and how it is derived is analyzers.explain.attention's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from analyzers.errors import LayerScopeError
from analyzers.explain.attention import AttentionResult
from analyzers.explain.attention_display import MATRIX_STOPS, MapView, atlas, grid_cells, scaled, view_map
from analyzers.explain.display import COLOR_MAPS
from analyzers.explain.requests import AttentionSettings, InputChoice
from widgets.attention_tokens import TokenLines
from widgets.controls import SteadyComboBox
from widgets.saliency_view import SaliencyView

THUMB = 40  # pixels per thumbnail side
GAP = 4
MAX_TICKS = 48  # token labels per axis before they are thinned out
WIDE = 980  # narrower than this, the grid goes above the views
SOURCES = (("sample", "Bundled sample"), ("text", "Text"), ("image", "Image file"), ("random", "Random"),
           ("npy", ".npy array"))


def matrix_colormap() -> pg.ColorMap:
    """The matrix colour map (analyzers' viridis stops) for pyqtgraph."""
    return pg.ColorMap([s[0] for s in MATRIX_STOPS], [(*s[1], 255) for s in MATRIX_STOPS], name="attention")


def _ticks(labels: tuple[str, ...], pixels: float | None = None) -> list[list[tuple[float, str]]]:
    """Tick labels for the token axis, thinned to every n-th token when they would overlap in `pixels`."""
    step = max(1, -(-len(labels) // MAX_TICKS))
    if pixels and labels:
        need = max(len(t) for t in labels) * 7.0 + 8.0
        step = max(step, int(np.ceil(len(labels) * need / max(pixels, 1.0))))
    return [[(i + 0.5, labels[i]) for i in range(0, len(labels), step)], []]


class AttentionGrid(pg.GraphicsLayoutWidget):
    """Layers × heads thumbnails as one atlas image; a click picks a cell."""

    cellClicked = Signal(int, int)  # row (layer), column (head, then mean, then rollout)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = self.addViewBox(row=0, col=0, lockAspect=True, enableMouse=False)
        self.view.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.frame = pg.QtWidgets.QGraphicsRectItem()
        self.frame.setPen(pg.mkPen((230, 60, 40), width=2))
        self.frame.setZValue(5)
        self.frame.setVisible(False)
        self.view.addItem(self.frame)
        self.labels: list[pg.TextItem] = []
        self.shape = (0, 0)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.setBackground(self.palette().color(QPalette.ColorRole.Base))

    def set_cells(self, cells: list[list[np.ndarray | None]], rows: list[str], columns: list[str]) -> None:
        """Draw the thumbnails (each scaled to its own maximum) with row and column labels."""
        for item in self.labels:
            self.view.removeItem(item)
        self.labels = []
        self.shape = (len(cells), len(columns))
        self.image.setImage(atlas(cells, THUMB, GAP), autoLevels=False, levels=(0, 255))
        step = THUMB + GAP
        fg = self.palette().color(QPalette.ColorRole.WindowText)
        for i, text in enumerate(rows):
            item = pg.TextItem(text, color=fg, anchor=(1.0, 0.5))
            item.setPos(-2, i * step + THUMB / 2)
            self.view.addItem(item)
            self.labels.append(item)
        for j, text in enumerate(columns):
            item = pg.TextItem(text, color=fg, anchor=(0.5, 1.0))
            item.setPos(j * step + THUMB / 2, -2)
            self.view.addItem(item)
            self.labels.append(item)
        self.view.setRange(QRectF(-30, -18, self.shape[1] * step + 30, self.shape[0] * step + 18), padding=0.01)

    def clear_cells(self) -> None:
        """Show nothing."""
        self.set_cells([], [], [])
        self.image.clear()
        self.frame.setVisible(False)

    def mark(self, row: int, column: int) -> None:
        """Outline the chosen cell."""
        step = THUMB + GAP
        self.frame.setRect(QRectF(column * step - 1.5, row * step - 1.5, THUMB + 3, THUMB + 3))
        self.frame.setVisible(0 <= row < self.shape[0] and 0 <= column < self.shape[1])

    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """(row, column) of the thumbnail under a view position, or None in a gap or outside."""
        step = THUMB + GAP
        row, col = int(y // step), int(x // step)
        if x < 0 or y < 0 or not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]):
            return None
        if x - col * step > THUMB or y - row * step > THUMB:
            return None
        return row, col

    def _on_click(self, event: Any) -> None:
        point = self.view.mapSceneToView(event.scenePos())
        cell = self.cell_at(point.x(), point.y())
        if cell is not None:
            self.cellClicked.emit(*cell)


class AttentionMatrix(pg.GraphicsLayoutWidget):
    """One (query, key) map with token labels on both axes and a read-out of the weight under the mouse."""

    hovered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = self.addPlot(row=0, col=0)
        self.plot.invertY(True)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showAxis("top")
        self.plot.hideAxis("bottom")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=matrix_colormap(), interactive=False, width=14)
        self.bar.setImageItem(self.image)
        self.addItem(self.bar, row=0, col=1)
        self.view: MapView | None = None
        self.readout = ""
        self.scene().sigMouseMoved.connect(self._on_move)
        self.setBackground(self.palette().color(QPalette.ColorRole.Base))

    def set_view(self, view: MapView) -> None:
        """Show a map; the colour scale runs from 0 to its largest weight."""
        self.view = view
        q, k = view.map.shape
        top = float(view.map.max()) if view.map.size else 1.0
        self.image.setImage(view.map, autoLevels=False, levels=(0.0, top or 1.0))
        self.image.setRect(QRectF(0, 0, k, q))
        self.bar.setLevels((0.0, top or 1.0))
        self.plot.getAxis("top").setTicks(_ticks(view.key_labels, max(200.0, self.width() - 160.0)))
        self.plot.getAxis("left").setTicks(_ticks(view.query_labels, None))
        self.plot.setTitle(view.title)
        self.plot.setRange(xRange=(0, k), yRange=(0, q), padding=0.01)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Thin the key labels again for the new width."""
        super().resizeEvent(event)
        if getattr(self, "view", None) is not None:
            self.plot.getAxis("top").setTicks(_ticks(self.view.key_labels, max(200.0, self.width() - 160.0)))

    def read(self, row: int, col: int) -> str:
        """The read-out for one cell: query → key and the weight."""
        v = self.view
        if v is None or not (0 <= row < v.map.shape[0] and 0 <= col < v.map.shape[1]):
            return ""
        return (f"query {row} '{v.query_labels[row]}' → key {col} '{v.key_labels[col]}': "
                f"{float(v.map[row, col]):.4f}")

    def _on_move(self, pos: Any) -> None:
        if self.view is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        point = self.plot.vb.mapSceneToView(pos)
        text = self.read(int(np.floor(point.y())), int(np.floor(point.x())))
        if text and text != self.readout:
            self.readout = text
            self.hovered.emit(text)


class AttentionPanel(QWidget):
    """Input, selectors and the views of the Attention tab; holds the last AttentionResult."""

    attentionRequested = Signal(object)  # AttentionSettings
    cancelRequested = Signal()
    saved = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: AttentionResult | None = None
        self.current: MapView | None = None
        self.layer_index = 0
        self.head: int | None = 0
        self._build()
        self.set_model("", "unknown", [])

    # --- building -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_label = QLabel("No model open.", self)
        self.model_label.setWordWrap(True)
        self.caption = QLabel("", self)
        self.caption.setWordWrap(True)
        self.source = SteadyComboBox(self)
        for key, title in SOURCES:
            self.source.addItem(title, key)
        self.sample = SteadyComboBox(self, chars=16)
        self.value = QLineEdit(self)
        self.browse = QPushButton("Browse…", self)
        self.show_button = QPushButton("Show attention", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        inputs = QGridLayout()  # two short rows: the tab also fits the window's narrow centre column
        inputs.addWidget(self.source, 0, 0)
        inputs.addWidget(self.sample, 0, 1, 1, 2)
        inputs.addWidget(self.value, 0, 1)
        inputs.addWidget(self.browse, 0, 2)
        inputs.addWidget(self.show_button, 1, 0)
        inputs.addWidget(self.cancel_button, 1, 1, Qt.AlignmentFlag.AlignLeft)
        inputs.setColumnStretch(1, 1)
        self.layer = SteadyComboBox(self, chars=16)
        self.head_box = SteadyComboBox(self, chars=7)
        self.mean_box = QCheckBox("Mean over heads", self)
        self.rollout_box = QCheckBox("Rollout", self)
        self.padding_box = QCheckBox("Show padding", self)
        self.save_npz_button = QPushButton("Save map (.npz)…", self)
        self.save_png_button = QPushButton("Save view (PNG)…", self)
        selectors = QGridLayout()
        selectors.addWidget(QLabel("Layer", self), 0, 0)
        selectors.addWidget(self.layer, 0, 1)
        selectors.addWidget(QLabel("Head", self), 0, 2)
        selectors.addWidget(self.head_box, 0, 3)
        toggles = QHBoxLayout()
        for w in (self.mean_box, self.rollout_box, self.padding_box):
            toggles.addWidget(w)
        toggles.addStretch(1)
        selectors.addLayout(toggles, 1, 0, 1, 4)
        selectors.setColumnStretch(1, 1)
        saving = QHBoxLayout()
        saving.addWidget(self.caption, 1)
        saving.addWidget(self.save_npz_button, 0, Qt.AlignmentFlag.AlignTop)
        saving.addWidget(self.save_png_button, 0, Qt.AlignmentFlag.AlignTop)

        self.grid = AttentionGrid(self)
        self.matrix = AttentionMatrix(self)
        self.readout = QLabel("", self)
        matrix_page = QWidget(self)
        matrix_layout = QVBoxLayout(matrix_page)
        matrix_layout.setContentsMargins(0, 0, 0, 0)
        matrix_layout.addWidget(self.matrix, 1)
        matrix_layout.addWidget(self.readout)
        self.lines = TokenLines(self)
        lines_scroll = QScrollArea(self)
        lines_scroll.setWidgetResizable(True)
        lines_scroll.setWidget(self.lines)
        self.across = AttentionMatrix(self)
        self.across.setMinimumHeight(120)
        tokens_page = QSplitter(Qt.Orientation.Vertical, self)
        tokens_page.addWidget(lines_scroll)
        tokens_page.addWidget(self.across)
        tokens_page.setSizes([400, 160])
        self.overlay = SaliencyView(self)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Map opacity")
        self.colormap = QComboBox(self)
        self.colormap.addItems([name for name, spec in COLOR_MAPS.items() if not spec.diverging])
        self.colormap.setCurrentText("heat")
        image_page = QWidget(self)
        image_layout = QVBoxLayout(image_page)
        image_layout.setContentsMargins(0, 0, 0, 0)
        image_layout.addWidget(self.overlay, 1)
        overlay_controls = QHBoxLayout()
        for label, w in (("Opacity", self.opacity), ("Colours", self.colormap)):
            overlay_controls.addWidget(QLabel(label, self))
            overlay_controls.addWidget(w, 1)
        image_layout.addLayout(overlay_controls)
        self.views = QTabWidget(self)
        self.matrix_tab = self.views.addTab(matrix_page, "Matrix")
        self.tokens_tab = self.views.addTab(tokens_page, "Tokens")
        self.image_tab = self.views.addTab(image_page, "Image")
        self.tokens_page, self.image_page = tokens_page, image_page
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.grid)
        self.splitter.addWidget(self.views)
        self.splitter.setChildrenCollapsible(False)
        self.grid.setMinimumSize(220, 160)
        self.views.setMinimumSize(260, 260)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addLayout(inputs)
        layout.addWidget(self.status)
        layout.addLayout(selectors)
        layout.addWidget(self.splitter, 1)
        self.filler = QWidget(self)  # holds the space while there are no maps, so the controls stay together
        layout.addWidget(self.filler, 1)
        layout.addLayout(saving)

        self.source.currentIndexChanged.connect(self._on_source)
        self.browse.clicked.connect(self._browse)
        self.show_button.clicked.connect(self._emit_request)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.layer.currentIndexChanged.connect(self._on_layer)
        self.head_box.currentIndexChanged.connect(self._on_head)
        self.mean_box.toggled.connect(self._on_mean)
        self.rollout_box.toggled.connect(self._refresh_views)
        self.padding_box.toggled.connect(self._refresh_all)
        self.grid.cellClicked.connect(self.select_cell)
        self.matrix.hovered.connect(self.readout.setText)
        self.lines.focusChanged.connect(self._show_across)
        self.opacity.valueChanged.connect(lambda v: self.overlay.set_opacity(v / 100.0))
        self.colormap.currentTextChanged.connect(self._refresh_views)
        self.save_npz_button.clicked.connect(self._ask_save_npz)
        self.save_png_button.clicked.connect(self._ask_save_png)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """The grid beside the views when the tab is wide, above them when it is narrow."""
        super().resizeEvent(event)
        wide = event.size().width() >= WIDE
        orientation = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.splitter.orientation() != orientation:
            self.splitter.setOrientation(orientation)
            self.splitter.setSizes([450, 650] if wide else [300, 520])

    # --- model and input --------------------------------------------------------------------------

    def set_model(self, name: str, kind: str, samples: list[tuple[str, str]]) -> None:
        """A new model: its name, input kind and bundled samples (label, value); the last maps are dropped."""
        self.model_label.setText(name or "No model open.")
        self.sample.clear()
        for label, value in samples:
            self.sample.addItem(label, value)
        wanted = "sample" if samples else ("text" if kind in ("text", "qa") else "random")
        self.source.setCurrentIndex(max(0, self.source.findData(wanted)))
        self._on_source()
        self.show_button.setEnabled(bool(name))
        self.clear_result()
        self.status.setText("Pick an input and press Show attention: every layer and head is captured in one "
                            "forward pass." if name else "")

    def input_choice(self) -> InputChoice:
        """The input as picked now."""
        kind = self.source.currentData()
        value = self.sample.currentData() if kind == "sample" else self.value.text().strip()
        if kind == "sample":
            value = str(max(0, self.sample.currentIndex()))
        return InputChoice(kind, value or "")

    def settings(self) -> AttentionSettings:
        """What Show attention would ask for now."""
        return AttentionSettings(self.input_choice())

    def _emit_request(self) -> None:
        self.attentionRequested.emit(self.settings())

    def _on_source(self, *_: object) -> None:
        kind = self.source.currentData()
        self.sample.setVisible(kind == "sample")
        self.value.setVisible(kind != "sample")
        self.browse.setVisible(kind in ("image", "npy"))
        self.value.setPlaceholderText({"text": "A sentence; for question answering: question || context",
                                       "image": "PNG or JPEG file", "random": "shape, e.g. 1x28x28 (empty: the model's)",
                                       "npy": ".npy file (the batch axis is added)"}.get(kind, ""))

    def _browse(self) -> None:
        pattern = "Images (*.png *.jpg *.jpeg *.bmp)" if self.source.currentData() == "image" else "NumPy arrays (*.npy)"
        path, _ = QFileDialog.getOpenFileName(self, "Choose an input", self.value.text(), pattern)
        if path:
            self.value.setText(path)

    def set_busy(self, busy: bool, text: str = "") -> None:
        """While a capture runs: Show disabled, Cancel enabled, the progress text shown."""
        self.show_button.setEnabled(not busy and self.model_label.text() != "No model open.")
        self.cancel_button.setEnabled(busy)
        self.status.setText(text)

    def show_status(self, text: str) -> None:
        """One line under the input (progress, or why nothing is shown)."""
        self.status.setText(text)

    # --- results ------------------------------------------------------------------------------------

    def clear_result(self) -> None:
        """Forget the maps."""
        self.result = self.current = None
        self.grid.clear_cells()
        self.layer.clear()
        self.head_box.clear()
        self.caption.setText("")
        self.readout.setText("")
        self.lines.set_weights(np.zeros((0, 0)), (), ())
        self.overlay.clear_result()
        self.splitter.setVisible(False)
        self.filler.setVisible(True)
        for w in (self.save_npz_button, self.save_png_button, self.layer, self.head_box, self.mean_box,
                  self.rollout_box, self.padding_box):
            w.setEnabled(False)

    def set_result(self, result: AttentionResult, caption: str = "") -> None:
        """Show every layer of a capture: the grid, then the first layer's first head in the views."""
        self.result = result
        self.splitter.setVisible(True)
        self.filler.setVisible(False)
        self.layer_index, self.head = 0, 0
        for box in (self.layer, self.head_box):
            box.blockSignals(True)
            box.clear()
        for i, layer in enumerate(result.layers):
            self.layer.addItem(f"{i}: {layer.title}", i)
        for h in range(result.heads):
            self.head_box.addItem(f"head {h}", h)
        for box in (self.layer, self.head_box):
            box.blockSignals(False)
        for box in (self.mean_box, self.rollout_box):
            box.blockSignals(True)
            box.setChecked(False)
            box.blockSignals(False)
        self.rollout_box.setEnabled(bool(result.rollout_indices()))
        for w in (self.save_npz_button, self.save_png_button, self.layer, self.head_box, self.mean_box,
                  self.padding_box):
            w.setEnabled(True)
        self.padding_box.setEnabled(result.shown_tokens() < len(result.tokens))
        self.views.setTabVisible(self.tokens_tab, result.grid is None)
        self.views.setTabVisible(self.image_tab, result.grid is not None)
        self.views.setCurrentIndex(self.image_tab if result.grid is not None else self.matrix_tab)
        self.caption.setText("\n".join(part for part in (caption, *result.notes) if part))
        self.lines.focus = -1
        self._refresh_all()

    def select(self, layer: int, head: int | None, rollout: bool = False) -> None:
        """Choose a map: `layer`'s `head` (None: the mean over heads) or the rollout up to `layer`."""
        if self.result is None:
            return
        self.layer_index = self.result.layer_index(layer)
        self.head = head
        for box, value in ((self.layer, self.layer_index), (self.head_box, head if head is not None else 0)):
            box.blockSignals(True)
            box.setCurrentIndex(box.findData(value))
            box.blockSignals(False)
        for box, on in ((self.mean_box, head is None), (self.rollout_box, rollout)):
            box.blockSignals(True)
            box.setChecked(on)
            box.blockSignals(False)
        self.head_box.setEnabled(head is not None and not rollout)
        self._refresh_views()

    def select_cell(self, row: int, column: int) -> None:
        """A grid click: a head, the mean column or the rollout column of a layer."""
        if self.result is None:
            return
        heads = self.result.heads
        if column < heads:
            self.select(row, column)
        elif column == heads:
            self.select(row, None)
        else:
            self.select(row, None, rollout=True)

    def grid_column(self) -> int:
        """The grid column of the map shown now."""
        heads = self.result.heads if self.result is not None else 0
        if self.rollout_box.isChecked():
            return heads + 1
        return heads if self.head is None else self.head

    def _on_layer(self, *_: object) -> None:
        if self.result is not None and self.layer.currentData() is not None:
            self.select(int(self.layer.currentData()), self.head, self.rollout_box.isChecked())

    def _on_head(self, *_: object) -> None:
        if self.result is not None and self.head_box.currentData() is not None and not self.mean_box.isChecked():
            self.select(self.layer_index, int(self.head_box.currentData()), self.rollout_box.isChecked())

    def _on_mean(self, on: bool) -> None:
        head = None if on else int(self.head_box.currentData() or 0)
        self.select(self.layer_index, head, self.rollout_box.isChecked())

    def _refresh_all(self, *_: object) -> None:
        if self.result is None:
            return
        cells, rows, columns = grid_cells(self.result, self.padding_box.isChecked())
        self.grid.set_cells(cells, rows, columns)
        self.select(self.layer_index, self.head, self.rollout_box.isChecked())

    def _refresh_views(self, *_: object) -> None:
        result = self.result
        if result is None:
            return
        rollout = self.rollout_box.isChecked() and bool(result.rollout_indices())
        self.head_box.setEnabled(not rollout and not self.mean_box.isChecked())
        view = view_map(result, self.layer_index, self.head, rollout, self.padding_box.isChecked())
        self.current = view
        self.grid.mark(self.layer_index if not rollout else view.layer, self.grid_column())
        self.matrix.set_view(view)
        self.readout.setText("Hover over the matrix to read a weight.")
        if result.grid is None:
            self.lines.set_weights(view.map, view.query_labels, view.key_labels)
            self._show_across(self.lines.focus)
        else:
            grid = result.cls_grid(view.layer, self.head, rollout)
            if grid is not None:
                self.overlay.symmetric = False
                self.overlay.set_result(result.image, scaled(grid), False, self.colormap.currentText())

    def _show_across(self, focus: int) -> None:
        """The focused query token (the first when none) in every layer: layers down, keys across."""
        result, current = self.result, self.current
        if result is None or result.grid is not None or current is None:
            return
        query = max(0, focus)
        try:
            indices, rows = result.query_rows(query, self.head)
        except LayerScopeError:  # no layer has that query row
            return
        if not indices:
            return
        keys = result.layers[indices[0]].key_tokens
        if len(keys) == len(result.tokens):
            keys = keys[:result.shown_tokens(self.padding_box.isChecked())]
        label = current.query_labels[query] if query < len(current.query_labels) else str(query)
        head = "mean over heads" if self.head is None else f"head {self.head}"
        self.across.set_view(MapView(rows[:, :len(keys)], tuple(f"L{i}" for i in indices), tuple(keys),
                                     f"'{label}' in every layer ({head})", indices[0]))

    # --- saving -------------------------------------------------------------------------------------

    def save_npz(self, path: Path | str) -> Path:
        """Every layer's heads and means, the tokens and the rollout, as .npz."""
        if self.result is None:
            raise ValueError("There is no attention to save.")
        path = Path(path)
        self.result.save_npz(path)
        self.saved.emit(str(path))
        return path

    def save_png(self, path: Path | str) -> Path:
        """The view on screen now (matrix, token lines or the map over the image) as PNG."""
        if self.result is None:
            raise ValueError("There is no attention to save.")
        path = Path(path)
        page = self.views.currentWidget()
        if not page.grab().save(str(path), "PNG"):
            raise OSError(f"{path.name}: the view could not be written.")
        self.saved.emit(str(path))
        return path

    def _ask_save_npz(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the attention maps", "attention.npz", "NumPy archive (*.npz)")
        if path:
            self.save_npz(path if path.endswith(".npz") else path + ".npz")

    def _ask_save_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the view", "attention.png", "PNG image (*.png)")
        if path:
            self.save_png(path if path.lower().endswith(".png") else path + ".png")
