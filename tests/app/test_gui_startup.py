"""Start-up shortcuts must keep Qt's behaviour: the OpenGL-sharing attribute QtWebEngine needs is set."""

from __future__ import annotations

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
