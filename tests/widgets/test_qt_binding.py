"""The Qt binding must keep Python's reference counts: PySide6 6.12.0 dropped one reference to None on
every call of a Qt method returning nothing (and to True inside pyqtgraph), and the window died with
"Fatal Python error: none_dealloc" after about a hundred chart resizes. constraints.txt pins a release
without it; this test fails on a binding that has it."""

from __future__ import annotations

import sys


def test_void_qt_calls_keep_none_and_true_alive(qtbot) -> None:
    import pyqtgraph as pg
    from PySide6.QtCore import QObject

    obj = QObject()
    none_before = sys.getrefcount(None)
    for _ in range(2000):
        obj.setObjectName("x")
    assert sys.getrefcount(None) >= none_before - 50  # 6.12.0: 2,000 fewer

    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    plot.plot([1.0, 2.0, 3.0])
    plot.show()
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(200):  # 6.12.0 crashed the process within ~100 of these
        plot.resize(300 + i, 200 + i)
        qtbot.wait(0)
    assert sys.getrefcount(True) >= true_before - 50
    assert sys.getrefcount(None) >= none_before - 50
