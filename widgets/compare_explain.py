"""Compare mode's Explain page: one input for both models, their predictions side by side, and both attribution
maps on ONE colour scale with their difference.

Plain data in (`set_inputs`, `show_outcome`), intent out (`runRequested`, `cancelRequested`). The maps are
normalised by analyzers.compare.outputs (one pooled constant) and coloured by analyzers.explain.display,
so what is drawn here is what `layerscope compare --png` writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from analyzers.compare.outputs import OutputComparison, SharedMaps
from analyzers.explain.display import SIGN_MODES, colorize, default_colormap, overlay

MAP_SIDE = 196  # pixels each map is drawn at


def rgb_pixmap(rgb: np.ndarray, side: int = MAP_SIDE) -> QPixmap:
    """An (H, W, 3) uint8 picture as a pixmap `side` pixels on its longer edge, pixels kept sharp."""
    data = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = data.shape[:2]
    image = QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    scale = side / max(h, w, 1)
    return QPixmap.fromImage(image).scaled(max(1, round(w * scale)), max(1, round(h * scale)),
                                           Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)


def map_pictures(maps: SharedMaps, display_a: np.ndarray | None, display_b: np.ndarray | None) -> list[np.ndarray]:
    """A and B over their inputs on the shared scale, and B − A on a diverging scale (the pictures drawn)."""
    cmap = default_colormap(maps.sign)
    out = [overlay(display_a, colorize(maps.a, cmap, maps.sign), 0.6 if display_a is not None else 1.0),
           overlay(display_b, colorize(maps.b, cmap, maps.sign), 0.6 if display_b is not None else 1.0)]
    if maps.difference is not None:
        out.append(overlay(None, colorize(maps.difference, "blue-red", "all"), 1.0))
    return out


class CompareExplainPanel(QWidget):
    """Input and method pickers, Run / Cancel, the two predictions and the three maps."""

    runRequested = Signal(object)  # {"kind", "value", "method" (None: run only), "sign"}
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = QComboBox(self)
        self.value = QLineEdit(self)
        self.value.setPlaceholderText("an image or .npy file, random:1x28x28, or a text")
        self.browse = QPushButton("Browse…", self)
        self.method = QComboBox(self)
        self.sign = QComboBox(self)
        self.sign.addItem("method's own sign", None)
        for name in SIGN_MODES:
            self.sign.addItem(name, name)
        self.run_button = QPushButton("Run both", self)
        self.attribute_button = QPushButton("Run and attribute both", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tops = (QLabel(self), QLabel(self))
        self.pictures = (QLabel(self), QLabel(self), QLabel(self))
        self.captions = (QLabel("A", self), QLabel("B", self), QLabel("B − A", self))
        self.scale_label = QLabel(self)
        self.scale_label.setWordWrap(True)

        form = QGridLayout()
        form.addWidget(QLabel("Input", self), 0, 0)
        form.addWidget(self.source, 0, 1)
        form.addWidget(self.value, 1, 1)
        form.addWidget(self.browse, 1, 2)
        form.addWidget(QLabel("Method", self), 2, 0)
        form.addWidget(self.method, 2, 1)
        form.addWidget(QLabel("Scale keeps", self), 3, 0)
        form.addWidget(self.sign, 3, 1)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.attribute_button, self.cancel_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        tops = QHBoxLayout()
        for label in self.tops:
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            label.setTextFormat(Qt.TextFormat.RichText)
            tops.addWidget(label, 1)
        maps = QGridLayout()
        for i, (picture, caption) in enumerate(zip(self.pictures, self.captions)):
            picture.setMinimumSize(MAP_SIDE, MAP_SIDE)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            maps.addWidget(picture, 0, i)
            maps.addWidget(caption, 1, i)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addLayout(tops)
        layout.addWidget(self.summary)
        layout.addLayout(maps)
        layout.addWidget(self.scale_label)
        layout.addStretch(1)

        self.source.currentIndexChanged.connect(self._on_source)
        self.browse.clicked.connect(self._browse)
        self.run_button.clicked.connect(lambda: self._request(False))
        self.attribute_button.clicked.connect(lambda: self._request(True))
        self.cancel_button.clicked.connect(self.cancelRequested)
        self._on_source()

    # -- data in -------------------------------------------------------------------------------
    def set_inputs(self, samples: list[tuple[str, str]], methods: list[tuple[str, str]], default_method: str) -> None:
        """The bundled samples to offer (label, index) and the attribution methods (key, title)."""
        self.source.blockSignals(True)
        self.source.clear()
        if samples:
            self.source.addItem("Default sample", ("sample", ""))
        for label, index in samples:
            self.source.addItem(f"Sample: {label}", ("sample", index))
        self.source.addItem("File, text or random input…", ("auto", ""))
        self.source.blockSignals(False)
        self.method.clear()
        for key, title in methods:
            self.method.addItem(title, key)
        at = self.method.findData(default_method)
        self.method.setCurrentIndex(max(at, 0))
        self._on_source()
        self.clear()

    def clear(self) -> None:
        """Forget the shown results."""
        for label in (*self.tops, *self.pictures):
            label.clear()
        self.summary.clear()
        self.scale_label.clear()
        self.status.clear()

    def set_busy(self, busy: bool, text: str = "") -> None:
        """Disable the buttons while a request runs; say what happens."""
        for b in (self.run_button, self.attribute_button):
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.status.setText(text)

    def show_outcome(self, names: tuple[str, str], comparison: OutputComparison, maps: SharedMaps | None,
                     displays: tuple[np.ndarray | None, np.ndarray | None] = (None, None), notes: list[str] | None = None,
                     target: str = "") -> None:
        """Both predictions, agreement and divergences; both maps on the shared scale and their difference."""
        for label, name, top in zip(self.tops, names, (comparison.top_a, comparison.top_b)):
            rows = "".join(f"<tr><td>{c.label or c.index}</td><td align='right'>"
                           f"{'' if c.probability != c.probability else f'{100 * c.probability:.2f} %'}</td></tr>"
                           for c in top)
            label.setText(f"<b>{name}</b><table>{rows}</table>")
        parts = []
        if comparison.agreement is not None:
            parts.append(f"Top-1 {'agrees' if comparison.agreement else 'differs'}; top-k overlap "
                         f"{100 * (comparison.top_k_overlap or 0):.0f} %.")
        if comparison.kl_ab is not None:
            parts.append(f"KL(A‖B) {comparison.kl_ab:.4g} nats, KL(B‖A) {comparison.kl_ba:.4g}, "
                         f"Jensen–Shannon {comparison.js:.4g}; largest probability gap {comparison.max_probability_gap:.3g}.")
        if comparison.note:
            parts.append(comparison.note)
        parts.extend(notes or [])
        self.summary.setText(" ".join(parts))
        for picture in self.pictures:
            picture.clear()
        self.scale_label.clear()
        if maps is None:
            return
        for picture, rgb in zip(self.pictures, map_pictures(maps, *displays)):
            picture.setPixmap(rgb_pixmap(rgb))
        if maps.difference is not None:
            self.captions[2].setText(f"B − A  (largest |Δ| {float(np.max(np.abs(maps.difference))):.3g} of full scale)")
        text = (f"One colour scale for both maps: full colour = {maps.scale:.4g} ({maps.sign}); alone, A would be "
                f"scaled by {maps.own_scales[0]:.4g} and B by {maps.own_scales[1]:.4g}.")
        if target:
            text += f" Both explain {target}."
        if maps.note:
            text += " " + maps.note
        self.scale_label.setText(text)

    # -- intent out ----------------------------------------------------------------------------
    def request(self, attribute: bool) -> dict[str, Any]:
        """What Run / Attribute would ask for now."""
        kind, value = self.source.currentData() or ("sample", "")
        if kind == "auto":
            value = self.value.text().strip()
        return {"kind": kind, "value": value, "method": self.method.currentData() if attribute else None,
                "sign": self.sign.currentData()}

    def _request(self, attribute: bool) -> None:
        self.runRequested.emit(self.request(attribute))

    def _on_source(self, *_: object) -> None:
        kind = (self.source.currentData() or ("sample", ""))[0]
        self.value.setVisible(kind == "auto")
        self.browse.setVisible(kind == "auto")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Input for both models", "",
                                              "Images and arrays (*.png *.jpg *.jpeg *.bmp *.npy);;All files (*)")
        if path:
            self.value.setText(path)
