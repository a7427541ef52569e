"""An exception inside a slot reaches the user as one sentence naming the log, never as a traceback."""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QTimer

from app import crash_guard


def test_a_failing_slot_is_one_sentence_and_a_logged_traceback(qtbot, tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LAYERSCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    shown: list[str] = []
    crash_guard.install(shown.append)

    def broken_slot() -> None:
        raise AttributeError("'QGraphicsTextItem' object has no attribute 'setText'")

    QTimer.singleShot(0, broken_slot)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    log = tmp_path / "layerscope" / "errors.log"
    assert shown == [f"Something went wrong inside LayerScope (AttributeError: 'QGraphicsTextItem' object has no "
                     f"attribute 'setText'); the details are in {log}."]
    assert "broken_slot" in log.read_text() and "Traceback" in log.read_text()
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
    assert "ZeroDivisionError" in log.read_text()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ZeroDivisionError" not in err
