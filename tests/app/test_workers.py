"""JobRunner: results, progress, errors and cancel arrive as signals in the GUI thread."""

from __future__ import annotations

import threading
import time

import pytest

from analyzers.errors import CorruptFile
from analyzers.tasks import CancelToken, Progress
from app.workers import JobRunner


def counting(n: int, delay: float = 0.0):
    """make_steps for a job that counts to n and returns n."""

    def make(token: CancelToken):
        for i in range(n):
            yield Progress(i, n, f"step {i}")
            if delay:
                time.sleep(delay)
        return n

    return make


@pytest.fixture
def runner(qtbot):
    jobs = JobRunner()
    yield jobs
    jobs.shutdown(5000)


def test_result_and_progress_arrive_in_the_gui_thread(qtbot, runner) -> None:
    seen_threads = []
    progress = []
    runner.progress.connect(lambda jid, p: (progress.append(p), seen_threads.append(threading.current_thread())))
    done = []
    with qtbot.waitSignal(runner.finished, timeout=5000) as blocker:
        job = runner.submit(counting(5, 0.06), "count", on_done=done.append)
    assert blocker.args == [job, 5]
    assert done == [5]
    assert progress and all(isinstance(p, Progress) for p in progress)
    assert set(seen_threads) == {threading.main_thread()}
    assert runner.active() == []


def test_layerscope_error_is_its_sentence(qtbot, runner) -> None:
    def broken(token):
        yield Progress(0, 1, "reading")
        raise CorruptFile("model.bin: the file is truncated.")

    errors = []
    with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
        runner.submit(broken, "open", on_error=errors.append)
    assert blocker.args[1] == "model.bin: the file is truncated."
    assert errors == ["model.bin: the file is truncated."]


def test_unexpected_error_is_one_sentence(qtbot, runner) -> None:
    def buggy(token):
        yield Progress(0, 1)
        raise KeyError("weight")

    with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
        runner.submit(buggy, "Reading weights")
    message = blocker.args[1]
    assert message.startswith("Reading weights failed unexpectedly (KeyError")
    assert message.endswith(".") and "\n" not in message


def test_an_error_while_showing_the_result_is_reported(qtbot, runner) -> None:
    def explode(result):
        raise ValueError("bad result")

    errors = []
    with qtbot.waitSignal(runner.failed, timeout=5000):
        runner.submit(counting(1), "show", on_done=explode, on_error=errors.append)
    assert "ValueError" in errors[0]


def test_cancel_mid_job_drops_the_result(qtbot, runner) -> None:
    done = []
    with qtbot.waitSignal(runner.progress, timeout=5000):
        job = runner.submit(counting(200, 0.02), "slow", on_done=done.append)
    with qtbot.waitSignal(runner.cancelled, timeout=1000) as blocker:
        runner.cancel(job)
    assert blocker.args == [job]
    assert runner.active() == []
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=5000)  # the thread saw the token and stopped
    assert done == []


def test_a_newer_job_with_the_same_label_supersedes_the_older(qtbot, runner) -> None:
    results = []
    first = runner.submit(counting(100, 0.02), "load", on_done=results.append)
    with qtbot.waitSignal(runner.finished, timeout=5000) as blocker:
        second = runner.submit(counting(3), "load", on_done=results.append)
    assert blocker.args == [second, 3]
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=5000)
    assert results == [3]
    assert first not in runner.active()


def test_model_jobs_never_overlap(qtbot, runner) -> None:
    running = []
    overlap = []
    lock = threading.Lock()

    def job(token):
        with lock:
            running.append(1)
            overlap.append(len(running))
        yield Progress(0, 1)
        time.sleep(0.1)
        with lock:
            running.pop()
        return True

    ids = [runner.submit(job, f"model {i}", kind="model") for i in range(3)]
    qtbot.waitUntil(lambda: not runner.active(), timeout=5000)
    assert len(ids) == 3 and max(overlap) == 1


def test_unknown_kind_is_refused(runner) -> None:
    with pytest.raises(ValueError):
        runner.submit(counting(1), "x", kind="gpu")
