"""What a model produced and what a vector input contributed, drawn with pyqtgraph.

`OutputImageView` draws a raw output whose shape is a picture (a generator's image) and marks the
pixel an attribution explains; a click on a pixel asks for that pixel as the target.
`VectorPanel` draws a 1-D attribution (a latent vector's) as one bar per input dimension: a heat
map one pixel tall told nothing. Both follow the palette when the theme changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from analyzers.explain.display import COLOR_MAPS, image_axes, output_picture, output_pixel

# The ends of the diverging map the image views use: the same blue and red mean the same sign.
POSITIVE = QColor(*COLOR_MAPS["blue-red"].stops[-1][1][:3])
NEGATIVE = QColor(*COLOR_MAPS["blue-red"].stops[0][1][:3])


class _Themed:
    """Mixin for pyqtgraph views: restyle in apply_palette() on every palette change (theme switch)."""

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        """Follow theme switches made while the window is open."""
        if event.type() == QEvent.Type.PaletteChange and getattr(self, "_ready", False):
            self.apply_palette()
        super().changeEvent(event)  # type: ignore[misc]


class OutputImageView(_Themed, pg.GraphicsLayoutWidget):
    """The model's raw output as a picture, with the attribution target's pixel marked."""

    pixelClicked = Signal(int)  # flat index into the output of the pixel clicked (channel 0)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = self.addViewBox(row=0, col=0, lockAspect=True, enableMouse=False)
        self.view.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.marker = pg.ScatterPlotItem(size=12, symbol="s", brush=None)
        self.marker.setZValue(10)
        self.view.addItem(self.marker)
        self.shape: tuple[int, ...] = ()
        self.picture: np.ndarray | None = None
        self.marked: tuple[int, int] | None = None
        self.setMinimumSize(120, 120)
        self.scene().sigMouseClicked.connect(self._on_click)
        self._ready = True
        self.apply_palette()

    def apply_palette(self) -> None:
        """The palette's base colour around the picture."""
        self.setBackground(self.palette().color(QPalette.ColorRole.Base))

    def set_output(self, values: np.ndarray | None) -> bool:
        """Draw `values` (a raw output without the batch axis) when it is image-like; False when it is not."""
        picture = output_picture(values)
        self.picture = picture
        self.shape = tuple(np.shape(values)) if picture is not None else ()
        self.mark(None)
        if picture is None:
            self.image.clear()
            return False
        self.image.setImage(picture, levels=(0.0, 1.0), autoLevels=False)
        self.view.autoRange(padding=0.02)
        return True

    def mark(self, index: int | None) -> None:
        """Outline the pixel of flat output index `index` (None: no mark)."""
        pixel = output_pixel(index, self.shape) if index is not None and self.shape else None
        self.marked = pixel
        if pixel is None:
            self.marker.setData([])
            return
        row, col = pixel
        self.marker.setData([col + 0.5], [row + 0.5], pen=pg.mkPen(POSITIVE, width=2), brush=None)

    def pixel_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(row, column) of the picture under a scene position, None outside it."""
        if self.picture is None:
            return None
        point = self.view.mapSceneToView(scene_pos)
        row, col = int(np.floor(point.y())), int(np.floor(point.x()))
        h, w = self.picture.shape[:2]
        return (row, col) if 0 <= row < h and 0 <= col < w else None

    def index_of(self, row: int, col: int) -> int:
        """Flat output index of a pixel (channel 0), the way targets count."""
        if image_axes(self.shape) == "CHW":
            return int(np.ravel_multi_index((0, row, col), self.shape))
        return int(np.ravel_multi_index((row, col, *([0] * (len(self.shape) - 2))), self.shape))

    def _on_click(self, event) -> None:
        pixel = self.pixel_at(event.scenePos())
        if pixel is not None:
            self.pixelClicked.emit(self.index_of(*pixel))


class VectorBars(_Themed, pg.PlotWidget):
    """One bar per input dimension, red for positive and blue for negative attribution."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        plot = self.getPlotItem()
        plot.setMouseEnabled(x=True, y=False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.setLabel("bottom", "input dimension")
        plot.setLabel("left", "attribution")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, pen=pg.mkPen(None))
        plot.addItem(self.bars)
        self.zero = pg.InfiniteLine(pos=0, angle=0, movable=False)
        plot.addItem(self.zero)
        self.values = np.zeros(0)
        self.setMinimumHeight(160)
        self._ready = True
        self.apply_palette()

    def apply_palette(self) -> None:
        """Background, axes and the zero line in the palette's colours."""
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.WindowText)
        plot = self.getPlotItem()
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen(fg))
            axis.setTextPen(pg.mkPen(fg))
            axis.setLabel(axis.labelText, color=fg.name())
        self.zero.setPen(pg.mkPen(fg, width=1))

    def set_values(self, values: np.ndarray) -> None:
        """Draw one bar per value (index on the x axis)."""
        self.values = np.asarray(values, dtype=np.float64).ravel()
        n = self.values.size
        brushes = [pg.mkBrush(POSITIVE if v >= 0 else NEGATIVE) for v in self.values]
        self.bars.setOpts(x=np.arange(n), height=self.values, width=0.8, brushes=brushes)
        lo = min(0.0, float(self.values.min())) if n else 0.0
        hi = max(0.0, float(self.values.max())) if n else 1.0
        if hi == lo:
            hi = lo + 1.0
        plot = self.getPlotItem()
        plot.setXRange(-1, max(n, 1), padding=0)
        plot.setYRange(lo - 0.05 * (hi - lo) * (lo < 0), hi + 0.05 * (hi - lo) * (hi > 0), padding=0)  # 0 stays an edge

    def brush_colors(self) -> list[QColor]:
        """The colour of each bar (for tests)."""
        return [pg.mkBrush(b).color() for b in self.bars.opts["brushes"]]


class VectorPanel(QWidget):
    """A vector input's attribution as bars, its caption, and saving the raw map."""

    saved = Signal(str)  # path of a written .npy

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bars = VectorBars(self)
        self.caption = QLabel("", self)
        self.caption.setWordWrap(True)
        self.strongest = QLabel("", self)
        self.strongest.setWordWrap(True)
        self.save_npy_button = QPushButton("Save map (.npy)…", self)
        self.save_npy_button.clicked.connect(self._ask_save_npy)
        saving = QHBoxLayout()
        saving.addStretch(1)
        saving.addWidget(self.save_npy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bars, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.strongest)
        layout.addLayout(saving)
        self.raw: np.ndarray | None = None

    def set_map(self, raw: np.ndarray, caption: str = "", top: int = 5) -> None:
        """Show a 1-D attribution, one bar per input dimension, and name its strongest dimensions."""
        self.raw = np.asarray(raw)
        values = self.raw.astype(np.float64).ravel()
        self.bars.set_values(values)
        self.caption.setText(caption)
        order = np.argsort(-np.abs(values))[:top]
        self.strongest.setText("Strongest dimensions: " + ", ".join(f"{int(i)} ({values[i]:+.3g})" for i in order))
        self.save_npy_button.setEnabled(True)

    def clear(self) -> None:
        """Forget the map."""
        self.raw = None
        self.bars.set_values(np.zeros(0))
        self.caption.setText("")
        self.strongest.setText("")
        self.save_npy_button.setEnabled(False)

    def save_npy(self, path: Path | str) -> Path:
        """Write the raw map as .npy."""
        if self.raw is None:
            raise ValueError("There is no map to save.")
        path = Path(path)
        np.save(path, self.raw)
        self.saved.emit(str(path))
        return path

    def _ask_save_npy(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the raw attribution map", "attribution.npy",
                                              "NumPy array (*.npy)")
        if path:
            self.save_npy(path if path.endswith(".npy") else path + ".npy")
