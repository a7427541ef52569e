"""Fixtures for window tests: a MainWindow per test, a helper that opens a path and waits."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _stop_loader_process():
    """The shared loader and model-runner children live for the session; stop them at the end."""
    yield
    from app.loader_process import shutdown_shared
    from app.runner_process import shutdown_shared as shutdown_runner

    shutdown_shared()
    shutdown_runner()


@pytest.fixture
def make_window(qtbot):
    """Factory: a fresh MainWindow (isolated settings come from tests/conftest.py)."""
    from app.main_window import MainWindow

    def make(**kwargs) -> MainWindow:
        window = MainWindow(**kwargs)
        qtbot.addWidget(window)
        return window

    return make


@pytest.fixture
def window(make_window):
    """A window that loads in the loader process, as the application does."""
    return make_window()


@pytest.fixture
def open_and_wait(qtbot):
    """Open `path` in `window` the way File ▸ Open does and wait until loading finished."""

    def run(window, path: Path, timeout: int = 120_000, options=None) -> tuple[bool, str]:
        with qtbot.waitSignal(window.loadFinished, timeout=timeout) as blocker:
            window.open_path(path, options)
        qtbot.waitUntil(lambda: not window.views_pending(), timeout=10_000)  # tabs are filled turn by turn
        return tuple(blocker.args)

    return run
