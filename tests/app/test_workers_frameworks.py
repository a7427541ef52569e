"""Model jobs that mix torch and Keras in one window process must not deadlock on the GIL.

Regression: with QThreadPool workers, listing torch devices in one pool thread and then running a
Keras forward pass in a later model job hung both the job and the GUI thread (pybind11 kept a stale
thread state). The scenario runs in a child process so that a deadlock fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.cli_helpers import REPO

SCENARIO = textwrap.dedent(
    """
    import os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    sys.path.insert(0, sys.argv[1])
    from PySide6.QtCore import QCoreApplication, QTimer
    from analyzers.loaders import LoadOptions
    from analyzers.tasks import CancelToken, Progress
    from app.workers import JobRunner

    app = QCoreApplication([])
    jobs = JobRunner()
    state = {}

    def devices(token):
        from analyzers.runtime.devices import torch_devices
        yield Progress(0, None, "devices")
        return [d.name for d in torch_devices()]

    def run(token):
        from analyzers.explain.inputs import sample_input
        from analyzers.runtime import open_live_model
        from analyzers.samples import default_model
        live = yield from open_live_model(default_model().file, LoadOptions(), "auto")
        inp = sample_input(live.sample, None)
        yield from live.run(inp, 3, 1, 3, token)
        state["live"], state["inp"] = live, inp
        return "run"

    def attribute(token):
        from analyzers.explain.attribution import AttributionRequest, attribute
        result = yield from attribute(state["live"], state["inp"], AttributionRequest(method="ig"), token, 3)
        return "attribute"

    steps = [("io", devices), ("model", run), ("model", attribute)]

    def next_job(*_):
        if not steps:
            print("all jobs finished", flush=True)
            app.exit(0)
            return
        kind, make = steps.pop(0)
        # a pause lets the previous pool thread go idle, as between a user's clicks
        QTimer.singleShot(300, lambda: jobs.submit(make, make.__name__, kind, on_done=next_job,
                                                   on_error=lambda m: (print(m), app.exit(3))))

    next_job()
    sys.exit(app.exec())
    """
)


@pytest.mark.slow
def test_keras_jobs_after_torch_in_another_pool_thread_finish() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1"}
    try:
        res = subprocess.run([sys.executable, "-c", SCENARIO, str(REPO)], capture_output=True, text=True,
                             timeout=240, env=env, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        pytest.fail("the jobs deadlocked: no result within 240 s")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "all jobs finished" in res.stdout
