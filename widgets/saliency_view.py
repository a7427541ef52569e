"""The input with an attribution heat map over it (pyqtgraph), and the controls that restyle it.

`SaliencyView` only draws: a picture and an already-normalised heat map with a colour map whose
centre is transparent. `SaliencyPanel` holds the raw map, lets the user change opacity, colour map,
sign mode and outlier percentile (normalising with analyzers.explain.display, like Captum's
visualize_image_attr), and saves the raw map as .npy or the view as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from analyzers.explain.display import (
    COLOR_MAPS,
    DEFAULT_OUTLIER_PERCENT,
    SIGN_MODES,
    default_colormap,
    normalize,
    render_overlay,
    save_png,
    to_2d,
    value_range,
)


def pg_colormap(name: str) -> pg.ColorMap:
    """A pyqtgraph ColorMap with the RGBA stops (alpha included) of analyzers' colour map `name`."""
    spec = COLOR_MAPS[name]
    return pg.ColorMap([s[0] for s in spec.stops], [s[1] for s in spec.stops], name=name)


class SaliencyView(pg.GraphicsLayoutWidget):
    """Draws an image and a heat map over it; knows nothing of how either was made."""

    opacityChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = self.addViewBox(row=0, col=0, lockAspect=True, enableMouse=True)
        self.view.invertY(True)
        self.base = pg.ImageItem(axisOrder="row-major")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setZValue(10)
        self.view.addItem(self.base)
        self.view.addItem(self.heat)
        self.colormap_name = "blue-red"
        self.bar = pg.ColorBarItem(values=(-1.0, 1.0), colorMap=pg_colormap(self.colormap_name), interactive=False,
                                   width=14)
        self.bar.setImageItem(self.heat)
        self.addItem(self.bar, row=0, col=1)
        self._opacity = 0.6
        self.heat.setOpacity(self._opacity)
        self.symmetric = True
        self._ready = True
        self.apply_palette()

    def apply_palette(self) -> None:
        """Background and colour-bar text in the palette's colours (light or dark theme)."""
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.WindowText)
        self.bar.axis.setPen(pg.mkPen(fg))
        self.bar.axis.setTextPen(pg.mkPen(fg))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        """Follow theme switches made while the window is open."""
        if event.type() == QEvent.Type.PaletteChange and getattr(self, "_ready", False):
            self.apply_palette()
        super().changeEvent(event)

    def set_result(self, image: np.ndarray | None, heat: np.ndarray, symmetric: bool,
                   colormap: str | None = None) -> None:
        """Show `heat` (normalised: [-1, 1] when symmetric, else [0, 1]) over `image` ((H, W) or (H, W, 3) in [0, 1])."""
        self.symmetric = symmetric
        heat = np.asarray(heat, dtype=np.float32)
        if image is not None:
            img = np.asarray(image, dtype=np.float32)
            self.base.setImage(img, levels=(0.0, 1.0), autoLevels=False)
            self.base.setVisible(True)
            h, w = img.shape[:2]
        else:  # no picture (a sequence, a latent vector): a light ground shows the map's extent
            h, w = heat.shape[:2]
            self.base.setImage(np.full((h, w), 0.93, dtype=np.float32), levels=(0.0, 1.0), autoLevels=False)
            self.base.setVisible(True)
        self.heat.setImage(heat, autoLevels=False)
        self.heat.setRect(QRectF(0, 0, w, h))
        self.set_colormap(colormap or self.colormap_name)
        self.view.autoRange(padding=0.02)

    def set_colormap(self, name: str) -> None:
        """Use analyzers' colour map `name` (its transparent end or centre hides near-zero attribution)."""
        self.colormap_name = name
        lo, hi = (-1.0, 1.0) if self.symmetric or COLOR_MAPS[name].diverging else (0.0, 1.0)
        self.bar.setColorMap(pg_colormap(name))
        self.bar.setLevels((lo, hi))
        self.heat.setLevels((lo, hi))

    def set_opacity(self, opacity: float) -> None:
        """Heat-map opacity in [0, 1]."""
        value = float(np.clip(opacity, 0.0, 1.0))
        if value != self._opacity:
            self._opacity = value
            self.heat.setOpacity(value)
            self.opacityChanged.emit(value)

    def opacity(self) -> float:
        """The heat map's opacity."""
        return self._opacity

    def clear_result(self) -> None:
        """Show nothing."""
        self.base.clear()
        self.heat.clear()


class SaliencyPanel(QWidget):
    """A SaliencyView with its controls; holds the raw map so restyling never recomputes it."""

    saved = Signal(str)  # path of a written .npy or PNG

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = SaliencyView(self)
        self.caption = QLabel("", self)
        self.caption.setWordWrap(True)
        self.opacity = QSlider(self)
        self.opacity.setOrientation(pg.QtCore.Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Heat-map opacity")
        self.opacity.setMinimumWidth(90)
        self.colormap = QComboBox(self)
        self.colormap.addItems(list(COLOR_MAPS))
        self.sign = QComboBox(self)
        self.sign.addItems(list(SIGN_MODES))
        self.sign.setToolTip("Which attributions to show, as Captum's visualize_image_attr sign modes")
        self.outlier = QDoubleSpinBox(self)
        self.outlier.setRange(0.0, 50.0)
        self.outlier.setDecimals(1)
        self.outlier.setSingleStep(0.5)
        self.outlier.setValue(DEFAULT_OUTLIER_PERCENT)
        self.outlier.setSuffix(" %")
        self.outlier.setToolTip("Clip the top share of the attribution mass so one pixel cannot wash out the map")
        self.save_npy_button = QPushButton("Save map (.npy)…", self)
        self.save_png_button = QPushButton("Save view (PNG)…", self)
        controls = QGridLayout()  # two rows of two: the panel stays usable in a narrow centre column
        for i, (label, widget) in enumerate((("Opacity", self.opacity), ("Colours", self.colormap),
                                             ("Sign", self.sign), ("Outliers", self.outlier))):
            controls.addWidget(QLabel(label, self), i // 2, 2 * (i % 2))
            controls.addWidget(widget, i // 2, 2 * (i % 2) + 1)
        controls.setColumnStretch(1, 1)
        controls.setColumnStretch(3, 1)
        saving = QHBoxLayout()
        saving.addStretch(1)
        saving.addWidget(self.save_npy_button)
        saving.addWidget(self.save_png_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        layout.addLayout(controls)
        layout.addLayout(saving)
        self.raw: np.ndarray | None = None
        self.image: np.ndarray | None = None
        self.layout_name = ""
        self.normalized: np.ndarray | None = None
        self.opacity.valueChanged.connect(self._on_opacity)
        self.colormap.currentTextChanged.connect(self._restyle)
        self.sign.currentTextChanged.connect(self._on_sign)
        self.outlier.valueChanged.connect(self._restyle)
        self.save_npy_button.clicked.connect(self._ask_save_npy)
        self.save_png_button.clicked.connect(self._ask_save_png)
        self._set_enabled(False)

    def set_map(self, raw: np.ndarray, image: np.ndarray | None, layout: str = "", sign: str = "all",
                caption: str = "") -> None:
        """Show a raw attribution map (shaped like the input, no batch axis) over `image`."""
        self.raw = np.asarray(raw)
        self.image = image
        self.layout_name = layout
        self.caption.setText(caption)
        self.sign.blockSignals(True)
        self.sign.setCurrentText(sign)
        self.sign.blockSignals(False)
        self.colormap.blockSignals(True)
        self.colormap.setCurrentText(default_colormap(sign))
        self.colormap.blockSignals(False)
        self._set_enabled(True)
        self._restyle()

    def clear(self) -> None:
        """Forget the map."""
        self.raw = self.normalized = self.image = None
        self.caption.setText("")
        self.view.clear_result()
        self._set_enabled(False)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.save_npy_button, self.save_png_button, self.sign, self.outlier, self.colormap):
            w.setEnabled(on)

    def _on_opacity(self, value: int) -> None:
        self.view.set_opacity(value / 100.0)

    def _on_sign(self, sign: str) -> None:
        self.colormap.blockSignals(True)
        self.colormap.setCurrentText(default_colormap(sign))
        self.colormap.blockSignals(False)
        self._restyle()

    def _restyle(self, *_: object) -> None:
        if self.raw is None:
            return
        sign = self.sign.currentText()
        self.normalized = normalize(to_2d(self.raw, self.layout_name), sign, self.outlier.value())
        lo, _ = value_range(sign)
        self.view.set_result(self.image, self.normalized, lo < 0, self.colormap.currentText())

    def save_npy(self, path: Path | str) -> Path:
        """Write the raw map as .npy."""
        if self.raw is None:
            raise ValueError("There is no map to save.")
        path = Path(path)
        np.save(path, self.raw)
        self.saved.emit(str(path))
        return path

    def save_png(self, path: Path | str) -> Path:
        """Write the picture as shown (map over the input, current colours and opacity) as PNG."""
        if self.raw is None:
            raise ValueError("There is no map to save.")
        rgb = render_overlay(self.raw, self.image, self.layout_name, self.sign.currentText(), self.outlier.value(),
                             self.colormap.currentText(), self.view.opacity())
        out = save_png(path, rgb)
        self.saved.emit(str(out))
        return out

    def _ask_save_npy(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the raw attribution map", "attribution.npy",
                                              "NumPy array (*.npy)")
        if path:
            self.save_npy(path if path.endswith(".npy") else path + ".npy")

    def _ask_save_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the view", "attribution.png", "PNG image (*.png)")
        if path:
            self.save_png(path if path.lower().endswith(".png") else path + ".png")
