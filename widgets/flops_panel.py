"""The Overview's FLOPs section: FLOPs by layer type for a stated input, and the input size to change it."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from analyzers.summary.shapes import human_flops
from widgets.charts import SERIES_COLORS, BarChart


def flops_formatter(value: float) -> str:
    """Tick and bar label for FLOPs."""
    return human_flops(value) if value else "0"


class FlopsPanel(QGroupBox):
    """Caption (what is counted, for which input), a bar per layer type, and the input-size box."""

    inputShapeRequested = Signal(str)  # the shape typed, batch first ("1x3x224x224")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("FLOPs by layer type", parent)
        self.caption = QLabel(self)
        self.caption.setWordWrap(True)
        self.chart = BarChart("FLOPs by layer type (own operations of each layer)", flops_formatter,
                              SERIES_COLORS[3 % len(SERIES_COLORS)], self)
        self.chart.setMinimumHeight(160)
        self.shape_edit = QLineEdit(self)
        self.shape_edit.setPlaceholderText("e.g. 1x128 or 1x3x224x224")
        self.shape_edit.setToolTip("Input size, batch first: batch × tokens for text, batch × channels × height × "
                                   "width for images (the layout the model takes). Every shape and FLOPs figure "
                                   "is recomputed for it.")
        self.recompute_button = QPushButton("Recompute", self)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Input size (batch first):", self))
        row.addWidget(self.shape_edit, 1)
        row.addWidget(self.recompute_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 6)
        layout.addWidget(self.caption)
        layout.addLayout(row)
        layout.addWidget(self.chart)
        self.recompute_button.clicked.connect(self._request)
        self.shape_edit.returnPressed.connect(self._request)
        self.set_waiting("Output shapes and FLOPs are computed after the model opens.")

    def _request(self) -> None:
        text = self.shape_edit.text().strip()
        if text:
            self.inputShapeRequested.emit(text)

    def set_waiting(self, text: str) -> None:
        """Say what is happening (computing, or why nothing is shown) and clear the bars."""
        self.caption.setText(text)
        self.chart.set_bars([], [], [], None)
        self.chart.setVisible(False)

    def set_result(self, bars: Sequence[tuple[str, int]], total: int | None, caption: str, reason: str,
                   shape: str, editable: bool = True) -> None:
        """Show FLOPs by type (own FLOPs summed per type), the total and what they are for, or why not."""
        text = caption
        if total is not None:
            text += f": {human_flops(total)} in all ({total:,})."
        if reason:
            text += f" {reason}"
        self.caption.setText(text)
        self.shape_edit.setText(shape)
        self.shape_edit.setEnabled(editable)
        self.recompute_button.setEnabled(editable)
        self.chart.setVisible(bool(bars))
        known = sum(v for _, v in bars)
        self.chart.set_bars([b for b, _ in bars], [float(v) for _, v in bars], [b for b, _ in bars],
                            float(total) if total else float(known) or None)
