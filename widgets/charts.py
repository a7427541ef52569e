"""Shared pyqtgraph charts: labelled horizontal bars (clickable, highlightable) and stacked bars.

They follow the Qt palette (light or dark theme): background, axes and text are re-styled when the
palette changes. Bars are horizontal so that long layer names stay readable on the left axis. Each
chart keeps one bar item and one label item and updates them in place: adding and removing dozens
of pyqtgraph items per model made the window stutter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import QWidget

from analyzers.summary.memory import human_bytes, human_count

# Colour-blind friendly (Okabe–Ito), readable on light and dark backgrounds.
SERIES_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
MAX_LABEL = 38
MAX_CAPTIONS = 60
MIN_CHART_HEIGHT = 140
ROW_GAP_PX = 6  # pixels between two rows' labels, beyond the font's height
LABEL_SHARE = 0.4  # row labels take at most this share of the chart's width (the rest: bars and captions)
TITLE_PT = 10


def elide(text: str, limit: int = MAX_LABEL) -> str:
    """Shorten a label from the left (the end of a path says most), keeping `limit` characters."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def bytes_formatter(value: float) -> str:
    """Tick label for byte values."""
    return human_bytes(value) if value else "0"


def count_formatter(value: float) -> str:
    """Tick label for parameter counts."""
    return human_count(int(value)) if value else "0"


class ValueAxis(pg.AxisItem):
    """An axis whose tick labels are counts (1.2M) or bytes (3.4 GiB) instead of 1.2e6."""

    def __init__(self, orientation: str, formatter: Callable[[float], str] | None = None, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.formatter = formatter or count_formatter

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        """Tick labels through the formatter."""
        return [self.formatter(v * scale) if v >= 0 else "" for v in values]


class BarCaptions(pg.GraphicsObject):
    """Text after the end of each bar, drawn by one item in screen pixels (not scaled with the view)."""

    def __init__(self) -> None:
        super().__init__()
        self._items: list[tuple[float, float, str]] = []
        self._color = QColor("black")

    def set_captions(self, items: list[tuple[float, float, str]], color: QColor) -> None:
        """(x, y, text) in data coordinates; the text starts just right of x."""
        self.prepareGeometryChange()
        self._items = items
        self._color = QColor(color)
        self.update()

    @property
    def texts(self) -> list[str]:
        """The captions shown."""
        return [t for _, _, t in self._items]

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        """The whole visible view: captions may reach its right edge."""
        vb = self.getViewBox()
        return vb.viewRect() if vb is not None else QRectF()

    def paint(self, painter: QPainter, *args) -> None:
        """Map each anchor to device pixels, then draw unscaled text there."""
        if not self._items:
            return
        transform = painter.transform()
        painter.save()
        painter.resetTransform()
        painter.setPen(self._color)
        ascent = QFontMetrics(painter.font()).ascent()
        for x, y, text in self._items:
            point = transform.map(QPointF(x, y))
            painter.drawText(QPointF(point.x() + 5, point.y() + ascent / 2 - 1), text)
        painter.restore()


class _ThemedPlot(pg.PlotWidget):
    """A PlotWidget without mouse zoom or menus that follows the application palette."""

    def __init__(self, title: str, formatter: Callable[[float], str], parent: QWidget | None = None) -> None:
        self._ready = False
        self._fit: tuple[float, list[str]] | None = None
        self._row_labels: list[str] = []
        self._label_step = 1
        self.value_axis = ValueAxis("bottom", formatter)
        super().__init__(parent, axisItems={"bottom": self.value_axis})
        self.formatter = formatter
        self._title = title
        plot = self.getPlotItem()
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.disableAutoRange()  # ranges are set from the data; no autorange pass per item
        plot.invertY(True)
        plot.showGrid(x=True, y=False, alpha=0.15)
        plot.getAxis("bottom").setStyle(maxTickLevel=0, autoExpandTextSpace=True)
        plot.getViewBox().sigResized.connect(self._on_view_resized)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.72, width=[], pen=pg.mkPen(None))
        self.captions = BarCaptions()
        plot.addItem(self.bars)
        plot.addItem(self.captions)
        self.setMinimumHeight(140)
        self.setMinimumWidth(160)
        self._ready = True
        self.apply_palette()

    def text_color(self) -> QColor:
        """The palette's text colour."""
        return self.palette().color(QPalette.ColorRole.WindowText)

    def apply_palette(self) -> None:
        """Re-style background, axes and title for the current palette."""
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.WindowText)
        plot = self.getPlotItem()
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen(fg))
            axis.setTextPen(pg.mkPen(fg))
        self._set_title()
        self._redraw()

    def _set_title(self) -> None:
        """The title, elided to the chart's width: a wider title widened the plot past the widget."""
        font = QFont(self.font())
        font.setPointSizeF(TITLE_PT)
        title = QFontMetrics(font).elidedText(self._title, Qt.TextElideMode.ElideRight, max(60, self.width() - 24))
        self.getPlotItem().setTitle(title, color=self.text_color().name(), size=f"{TITLE_PT}pt")

    def _redraw(self) -> None:
        """Subclasses draw their data."""

    def fit_x(self, top: float, labels: Sequence[str]) -> None:
        """Set the x range so the longest bar plus its caption fits in the plot's pixel width."""
        metrics = QFontMetrics(self.font())
        text_px = max((metrics.horizontalAdvance(t) for t in labels), default=0) + 14 + self.reserved_px()
        width = self.getPlotItem().getViewBox().width()
        if width <= 50:
            width = max(200.0, self.width() * 0.7)
        room = max(0.3, 1.0 - text_px / width)
        self._fit = (top, list(labels))
        self.getPlotItem().setXRange(0, (top or 1.0) / room, padding=0)

    def reserved_px(self) -> int:
        """Pixels at the right of the plot that bars must leave free (a legend drawn there)."""
        return 0

    def _on_view_resized(self, *_: object) -> None:
        if self._fit is not None:
            self.fit_x(*self._fit)
        if self._row_labels:
            self._label_rows()

    def row_px(self) -> int:
        """Pixels one row needs so that its label never touches the next one."""
        return QFontMetrics(self.font()).height() + ROW_GAP_PX

    def _set_rows(self, labels: Sequence[str]) -> None:
        """Rows top to bottom; the chart asks for the height that gives every row its label."""
        self._row_labels = list(labels)
        n = len(labels)
        plot = self.getPlotItem()
        chrome = self.height() - plot.getViewBox().height() if plot.getViewBox().height() > 0 else 0
        chrome = max(chrome, 3 * self.row_px())  # title and margins (and an axis) before the first layout
        self.setMinimumHeight(max(MIN_CHART_HEIGHT, int(chrome + n * self.row_px())))
        plot.setYRange(-0.6, max(n, 1) - 0.4, padding=0)
        self._label_rows()

    def _label_rows(self) -> None:
        """Label every row the height allows: a row whose label would overlap the last one shown gets none."""
        labels = self._row_labels
        n = len(labels)
        metrics = QFontMetrics(self.font())
        height = self.getPlotItem().getViewBox().height()
        step = 1 if height <= 0 else max(1, math.ceil(n * (metrics.height() + 2) / height))
        self._label_step = step
        # Long labels are cut from the left (the end of a path says most) to a share of the width: the
        # axis grew to the longest label and pushed bars, captions and title past the chart's edge.
        limit = max(48, int(self.width() * LABEL_SHARE))
        ticks = [(i, metrics.elidedText(elide(labels[i]), Qt.TextElideMode.ElideLeft, limit)) for i in range(0, n, step)]
        self.getPlotItem().getAxis("left").setTicks([ticks, []])

    def label_step(self) -> int:
        """Rows between two labelled rows (1: every row has its label)."""
        return self._label_step

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        """Follow theme switches."""
        if event.type() == QEvent.Type.PaletteChange and self._ready:
            self.apply_palette()
        super().changeEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Labels and title are elided to the width: fit them again."""
        super().resizeEvent(event)
        if self._ready and event.size().width() != event.oldSize().width():
            self._set_title()
            if self._row_labels:
                self._label_rows()


class BarChart(_ThemedPlot):
    """Horizontal bars with labels on the left; click a bar to pick it, highlight some by key."""

    barClicked = Signal(str)  # the bar's key

    def __init__(self, title: str, formatter: Callable[[float], str] = count_formatter,
                 color: str = SERIES_COLORS[0], parent: QWidget | None = None) -> None:
        self._labels: list[str] = []
        self._values: list[float] = []
        self._keys: list[str] = []
        self._highlight: set[str] = set()
        self._total: float | None = None
        self._color = color
        super().__init__(title, formatter, parent)
        self.getPlotItem().hideAxis("bottom")  # every bar carries its value
        self.getPlotItem().showGrid(x=False, y=False)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.scene().sigMouseMoved.connect(self._on_move)

    @property
    def keys(self) -> list[str]:
        """Keys of the bars, top to bottom."""
        return list(self._keys)

    @property
    def values(self) -> list[float]:
        """Values of the bars, top to bottom."""
        return list(self._values)

    @property
    def captions_shown(self) -> list[str]:
        """The text after each bar (value and share of the total), top to bottom."""
        return self.captions.texts

    @property
    def highlighted(self) -> set[str]:
        """Keys drawn highlighted."""
        return set(self._highlight)

    def set_bars(self, labels: Sequence[str], values: Sequence[float], keys: Sequence[str] | None = None,
                 total: float | None = None) -> None:
        """Replace the bars (top to bottom); percentages are of `total` (the whole model), else of the bars' sum."""
        self._total = float(total) if total else None
        self._labels = list(labels)
        self._values = [float(v) for v in values]
        self._keys = list(keys) if keys is not None else list(labels)
        self._highlight &= set(self._keys)
        self._redraw()

    def set_highlight(self, keys: set[str] | Sequence[str]) -> None:
        """Draw these bars in the highlight colour, the rest dimmed."""
        new = set(keys) & set(self._keys)
        if new != self._highlight:
            self._highlight = new
            self._paint_bars()

    def _brushes(self) -> list:
        base = QColor(self._color)
        dim = QColor(base)
        dim.setAlpha(110)
        hi = self.palette().color(QPalette.ColorRole.Highlight)
        if not self._highlight:
            return [pg.mkBrush(base)] * len(self._keys)
        return [pg.mkBrush(hi if key in self._highlight else dim) for key in self._keys]

    def _paint_bars(self) -> None:
        n = len(self._values)
        self.bars.setOpts(x0=[0.0] * n, y=list(range(n)), height=0.72, width=self._values, brushes=self._brushes())

    def _redraw(self) -> None:
        if not hasattr(self, "_values"):
            return
        n = len(self._values)
        self._paint_bars()
        self._set_rows(self._labels)
        total = self._total or sum(self._values) or 1.0
        captions = [self.formatter(v) + (f"  {100 * v / total:.1f}%" if n > 1 or self._total else "")
                    for v in self._values]
        shown = captions if n <= MAX_CAPTIONS else []
        self.captions.set_captions([(v, i, c) for i, (v, c) in enumerate(zip(self._values, shown))], self.text_color())
        self.fit_x(max(self._values, default=0.0) or 1.0, shown)

    def bar_at(self, scene_pos: QPointF) -> int | None:
        """Index of the bar (row) under a scene position, None when there is none."""
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        point = vb.mapSceneToView(scene_pos)
        i = round(point.y())
        if 0 <= i < len(self._values) and abs(point.y() - i) <= 0.36 and point.x() >= 0:
            return i
        return None

    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        i = self.bar_at(event.scenePos())
        if i is not None:
            self.barClicked.emit(self._keys[i])

    def _on_move(self, pos: QPointF) -> None:
        i = self.bar_at(pos)
        if i is None:
            self.setToolTip("")
            return
        self.setToolTip(f"{self._labels[i]}\n{self.formatter(self._values[i])} ({self._values[i]:,.0f})")


class StackedBarChart(_ThemedPlot):
    """Horizontal bars made of named segments (weights, KV cache, gradients ...), with a legend."""

    def __init__(self, title: str, formatter: Callable[[float], str] = bytes_formatter,
                 parent: QWidget | None = None) -> None:
        self._rows: list[str] = []
        self._segments: list[tuple[str, list[float]]] = []
        self._legend_names: list[str] = []
        super().__init__(title, formatter, parent)
        self._legend = self.getPlotItem().addLegend(offset=(-10, 10))
        self.scene().sigMouseMoved.connect(self._on_move)

    @property
    def rows(self) -> list[str]:
        """Row labels, top to bottom."""
        return list(self._rows)

    @property
    def segments(self) -> list[tuple[str, list[float]]]:
        """(segment name, one value per row)."""
        return [(name, list(vals)) for name, vals in self._segments]

    def set_data(self, rows: Sequence[str], segments: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Rows top to bottom; each segment gives one value per row, stacked left to right."""
        self._rows = list(rows)
        self._segments = [(name, [float(v) for v in vals]) for name, vals in segments]
        self._redraw()

    def totals(self) -> list[float]:
        """Sum of the segments of each row."""
        return [sum(vals[i] for _, vals in self._segments) for i in range(len(self._rows))]

    def _redraw(self) -> None:
        if not hasattr(self, "_segments") or not hasattr(self, "_legend"):
            return
        n = len(self._rows)
        x0, y, width, brushes = [], [], [], []
        start = [0.0] * n
        used = []
        for s, (name, values) in enumerate(self._segments):
            if not any(values):
                continue
            brush = pg.mkBrush(SERIES_COLORS[s % len(SERIES_COLORS)])
            used.append((name, brush))
            for i, v in enumerate(values):
                if v:
                    x0.append(start[i])
                    y.append(i)
                    width.append(v)
                    brushes.append(brush)
                    start[i] += v
        self.bars.setOpts(x0=x0, y=y, height=0.7, width=width, brushes=brushes)
        self._set_rows(self._rows)
        captions = [self.formatter(t) for t in start]
        self.captions.set_captions([(t, i, c) for i, (t, c) in enumerate(zip(start, captions))], self.text_color())
        self._fill_legend(used)
        self.fit_x(max(start, default=0.0) or 1.0, captions)

    def _fill_legend(self, used: list[tuple[str, object]]) -> None:
        names = [name for name, _ in used]
        fg = self.text_color()
        bg = QColor(self.palette().color(QPalette.ColorRole.Base))
        bg.setAlpha(220)
        self._legend.setLabelTextColor(fg)
        for _, label in self._legend.items:  # pyqtgraph stores the colour but keeps the text drawn in the old one
            label.setText(label.text, color=fg)
        self._legend.setBrush(pg.mkBrush(bg))
        if names == self._legend_names:
            return
        self._legend.clear()
        for name, brush in used:  # a sample item per segment, never added to the plot
            self._legend.addItem(pg.BarGraphItem(x0=[0], y=[0], height=1, width=[1], brush=brush), name)
        self._legend_names = names

    def reserved_px(self) -> int:
        """The legend's width: the longest bar and its caption end left of it, never under it."""
        if not getattr(self, "_legend_names", None):
            return 0
        return int(self._legend.boundingRect().width()) + 16

    def legend_names(self) -> list[str]:
        """Segment names in the legend."""
        return list(self._legend_names)

    def _on_move(self, pos: QPointF) -> None:
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            self.setToolTip("")
            return
        i = round(vb.mapSceneToView(pos).y())
        if not 0 <= i < len(self._rows):
            self.setToolTip("")
            return
        parts = [f"{name}: {human_bytes(vals[i])}" for name, vals in self._segments if vals[i]]
        self.setToolTip(f"{self._rows[i]}\n" + "\n".join(parts))
