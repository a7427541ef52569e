"""Start-up shortcuts must keep Qt's behaviour: the OpenGL-sharing attribute QtWebEngine needs is set."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.cli_helpers import REPO

CHECK = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from app.gui import share_opengl_contexts
    from PySide6.QtCore import QCoreApplication, Qt
    assert not QCoreApplication.testAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
    share_opengl_contexts()
    print(QCoreApplication.testAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts))
    """
)


def test_share_opengl_contexts_sets_the_qt_attribute() -> None:
    res = subprocess.run([sys.executable, "-c", CHECK, str(REPO)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"


def test_no_display_is_one_sentence_and_exit_2() -> None:
    """`python main.py` on a Linux machine without a display: one sentence, not Qt's abort."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    res = subprocess.run([sys.executable, str(REPO / "main.py")], capture_output=True, text=True, timeout=60,
                         env=env, cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.startswith("layerscope: error: no display") and res.stderr.count("\n") == 1, res.stderr
