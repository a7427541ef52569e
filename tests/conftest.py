"""Shared test set-up: Qt renders offscreen, QSettings live in a temporary folder, nothing goes online."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu --no-sandbox")
os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

try:  # QtWebEngine can be imported late only if this is set before the QApplication exists.
    from PySide6.QtCore import QCoreApplication, QSettings, Qt

    QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
except ImportError:  # pragma: no cover - analyzers tests run without Qt
    QSettings = None  # type: ignore[assignment,misc]


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path_factory: pytest.TempPathFactory):
    """Every test gets its own empty QSettings store, never the user's."""
    if QSettings is None:
        yield
        return
    folder = tmp_path_factory.mktemp("qsettings")
    QCoreApplication.setOrganizationName("LayerScopeTests")
    QCoreApplication.setApplicationName("LayerScopeTests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield
