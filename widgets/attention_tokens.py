"""A BertViz-style token-to-token view: the query tokens on the left, the key tokens on the right, one line per
weight, its opacity the weight. Clicking a token on the left focuses it (only its lines, drawn stronger);
clicking it again, or on empty space, shows every token's lines again. Plain data in, the focus out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QMouseEvent, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

ROW_H = 18
GAP = 160  # horizontal room for the lines between the two columns
MIN_SHOWN = 0.02  # lines below this share of the largest weight are not drawn (they would be invisible anyway)
MAX_LINES = 6000  # beyond this many, only the strongest are drawn


class TokenLines(QWidget):
    """Draws query → key lines for one (query, key) map; knows nothing of how the map was made."""

    focusChanged = Signal(int)  # the focused query token, -1 for none

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.weights = np.zeros((0, 0), np.float32)
        self.query_labels: tuple[str, ...] = ()
        self.key_labels: tuple[str, ...] = ()
        self.focus = -1
        self.color = QColor(31, 119, 180)
        self._label_w = 80
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(False)

    def set_weights(self, weights: np.ndarray, query_labels: Sequence[str], key_labels: Sequence[str]) -> None:
        """Show a (query, key) map; the focus is kept when the token still exists."""
        self.weights = np.asarray(weights, dtype=np.float32)
        self.query_labels, self.key_labels = tuple(query_labels), tuple(key_labels)
        if self.focus >= self.weights.shape[0]:
            self.focus = -1
        metrics = QFontMetrics(self.font())
        widest = max((metrics.horizontalAdvance(t) for t in (*self.query_labels, *self.key_labels)), default=40)
        self._label_w = min(160, widest + 12)
        self.setFixedHeight(max(self.weights.shape) * ROW_H + 8 if self.weights.size else 40)
        self.updateGeometry()
        self.update()

    def set_focus(self, index: int) -> None:
        """Focus query token `index` (-1: none)."""
        index = index if 0 <= index < self.weights.shape[0] else -1
        if index != self.focus:
            self.focus = index
            self.focusChanged.emit(index)
            self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """Two label columns and the room between them."""
        return QSize(2 * self._label_w + GAP, self.height())

    def lines(self) -> list[tuple[int, int, float]]:
        """(query, key, opacity in [0, 1]) of every line drawn now: what a test reads instead of pixels."""
        w = self.weights
        if w.size == 0:
            return []
        part = w[self.focus:self.focus + 1] if self.focus >= 0 else w
        top = float(part.max()) or 1.0
        rows, cols = np.nonzero(part >= MIN_SHOWN * top)
        if rows.size > MAX_LINES:  # a long, flat map: only the strongest lines (the rest would be a grey blur)
            keep = np.argpartition(part[rows, cols], -MAX_LINES)[-MAX_LINES:]
            rows, cols = rows[keep], cols[keep]
        offset = max(self.focus, 0)
        return [(int(i) + offset, int(j), float(min(1.0, part[i, j] / top))) for i, j in zip(rows, cols)]

    def _columns(self) -> tuple[float, float]:
        left_end = float(self._label_w)
        right_start = max(left_end + 40.0, float(self.width() - self._label_w))
        return left_end, right_start

    def row_at(self, point: QPointF) -> tuple[str, int]:
        """('query' | 'key' | '', row) under a point."""
        row = int((point.y() - 4) // ROW_H)
        left_end, right_start = self._columns()
        if point.x() <= left_end and 0 <= row < len(self.query_labels):
            return "query", row
        if point.x() >= right_start and 0 <= row < len(self.key_labels):
            return "key", row
        return "", -1

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        """A click on a query token focuses it; on the focused one, or elsewhere, shows every token again."""
        side, row = self.row_at(event.position())
        self.set_focus(row if side == "query" and row != self.focus else -1)
        super().mousePressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        """Labels in two columns, lines between them."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        painter.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        text = pal.color(QPalette.ColorRole.Text)
        left_end, right_start = self._columns()
        for i, j, alpha in self.lines():
            color = QColor(self.color)
            color.setAlphaF(max(0.04, alpha if self.focus < 0 else 0.15 + 0.85 * alpha))
            painter.setPen(QPen(color, 1.0 + 2.0 * alpha if self.focus >= 0 else 1.0 + alpha))
            painter.drawLine(QPointF(left_end + 4, 4 + (i + 0.5) * ROW_H), QPointF(right_start - 4, 4 + (j + 0.5) * ROW_H))
        for column, labels, x0, align in ((0, self.query_labels, 0.0, Qt.AlignmentFlag.AlignRight),
                                          (1, self.key_labels, right_start, Qt.AlignmentFlag.AlignLeft)):
            for i, label in enumerate(labels):
                rect = QRectF(x0 + 2, 4 + i * ROW_H, self._label_w - 6, ROW_H)
                if column == 0 and i == self.focus:
                    painter.fillRect(rect, QColor(self.color.red(), self.color.green(), self.color.blue(), 60))
                painter.setPen(text)
                painter.drawText(rect, int(align | Qt.AlignmentFlag.AlignVCenter), label)
        painter.end()
