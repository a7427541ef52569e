"""Controls that keep a panel whole at any window size.

`SteadyComboBox` never grows with its items; `SideBySide` puts a column of controls beside their
results when the page is wide enough and above them when it is not, so nothing is cut off and
the page scrolls instead (the window wraps each tab in a scroll area, which never shrinks a page
below its minimum width by itself).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QComboBox, QScrollArea, QSizePolicy, QSplitter, QWidget

STACKED_RESULTS_HEIGHT = 640  # results below the controls (a narrow window) keep room for a map


class SteadyComboBox(QComboBox):
    """A combo box whose width never follows its items (long layer names, sample sentences, labels).

    A plain QComboBox sizes itself to its longest item when first shown: Grad-CAM's layer list
    ("encoder.layers.0.self_attn.out_proj  (NonDynamicallyQuantizableLinear)") widened the Explain
    controls past their scroll area and cut off Cancel. The current item is elided and in the
    tooltip; the drop-down list is as wide as its longest item."""

    def __init__(self, parent: QWidget | None = None, chars: int = 14) -> None:
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(chars)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.currentTextChanged.connect(self.setToolTip)

    def showPopup(self) -> None:  # noqa: N802 - Qt's name
        """Open the list wide enough for its longest item."""
        view = self.view()
        view.setTextElideMode(Qt.TextElideMode.ElideNone)
        view.setMinimumWidth(view.sizeHintForColumn(0) + view.verticalScrollBar().sizeHint().width() + 8)
        super().showPopup()


class SideBySide(QSplitter):
    """Controls (a scroll area) beside their results when they fit next to each other, else above them."""

    def __init__(self, controls: QScrollArea, results: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.controls, self.results = controls, results
        self.addWidget(controls)
        self.addWidget(results)
        self.setStretchFactor(0, 0)  # the controls keep their width; the results take what is left
        self.setStretchFactor(1, 1)
        self.setSizes([300, 700])
        self.setChildrenCollapsible(False)
        inner = controls.widget()
        controls.setMinimumWidth(inner.minimumSizeHint().width() + controls.verticalScrollBar().sizeHint().width() + 4)
        inner.installEventFilter(self)  # shown or hidden rows change the height the controls need
        self._watched: QWidget | None = None

    def side_by_side_width(self) -> int:
        """The narrowest width at which controls and results fit next to each other."""
        return self.controls.minimumWidth() + self.handleWidth() + self.results.minimumSizeHint().width()

    def stacked(self) -> bool:
        """True when the controls sit above the results."""
        return self.orientation() == Qt.Orientation.Vertical

    def fit_width(self, width: int) -> None:
        """Side by side when `width` allows it, else one above the other (nothing is cut off)."""
        wide = width >= self.side_by_side_width()
        turned = self.stacked() == wide
        if turned:
            self.setOrientation(Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical)
        # Stacked, the controls show whole (no scrolling inside a scrolling page) and the results keep
        # the height they need; the page scrolls instead.
        tall = 0 if wide else self.controls.widget().minimumSizeHint().height() + 4
        if tall != self.controls.minimumHeight() or turned:
            self.controls.setMinimumHeight(tall)
            self.results.setMinimumHeight(0 if wide else max(STACKED_RESULTS_HEIGHT, self.results.sizeHint().height()))
            self.setSizes([300, 700] if wide else [tall, self.results.minimumHeight()])

    def _viewport(self) -> QWidget | None:
        """The viewport of the scroll area the page sits in, if any."""
        w = self.parentWidget()
        while w is not None:
            if isinstance(w, QAbstractScrollArea):
                return w.viewport()
            w = w.parentWidget()
        return None

    def _available_width(self) -> int:
        viewport = self._watched
        if viewport is None:
            return self.width()
        area = viewport.parentWidget()
        content = area.widget() if isinstance(area, QScrollArea) else None
        offset = self.mapTo(content, QPoint(0, 0)).x() if content is not None and content.isAncestorOf(self) else 0
        return viewport.width() - offset

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Watch the page's viewport from now on and fit its width."""
        viewport = self._viewport()
        if viewport is not self._watched:
            if self._watched is not None:
                self._watched.removeEventFilter(self)
            self._watched = viewport
            if viewport is not None:
                viewport.installEventFilter(self)
        self.fit_width(self._available_width())
        super().showEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Fit our own width when no viewport is watched."""
        if self._watched is None:
            self.fit_width(event.size().width())
        super().resizeEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        """The viewport was resized or the controls changed (a model, a method): fit again."""
        if (watched is self._watched and event.type() == QEvent.Type.Resize) or (
                watched is self.controls.widget() and event.type() == QEvent.Type.LayoutRequest):
            self.fit_width(self._available_width())
        return False  # only watching: the event goes on (QObject's own filter says the same)
