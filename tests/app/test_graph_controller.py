"""GraphController: stand-in in a worker, Netron served, reasons shown, stale results dropped."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Signal
from safetensors.torch import save_file

from analyzers.errors import LayerScopeError
from analyzers.loaders import open_model
from analyzers.loaders.safetensors_loader import read_header
from analyzers.summary import LayerNode, ModelSummary, SourceInfo
from analyzers.tasks import CancelToken, drive
from app import graph_controller as graph_controller_module
from app.graph_controller import GraphController
from app.netron_service import prepare_webengine_environment
from app.workers import JobRunner
from tests.torch_fixtures import TinyCNN
from widgets.graph_view import GraphView, web_engine_importable

prepare_webengine_environment()


class FakeJobRunner(QObject):
    """Honours JobRunner's interface; jobs run only when the test says, in the order it says."""

    started = Signal(int, str)
    progress = Signal(int, object)
    finished = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[int, tuple] = {}
        self.cancelled_ids: list[int] = []
        self._next = 1

    def submit(self, make_steps, label, kind="io", on_done=None, on_error=None) -> int:
        job_id = self._next
        self._next += 1
        self.jobs[job_id] = (make_steps, label, kind, on_done, on_error, CancelToken())
        self.started.emit(job_id, label)
        return job_id

    def cancel(self, job_id=None) -> None:
        for jid in list(self.jobs) if job_id is None else [job_id]:
            if jid in self.jobs:
                self.jobs[jid][5].cancel()
                self.cancelled_ids.append(jid)

    def active(self) -> list[int]:
        return [j for j in self.jobs if j not in self.cancelled_ids]

    def run(self, job_id: int) -> None:
        """Run a job to its end and deliver its result, even a cancelled one's (a late thread)."""
        make_steps, _, _, on_done, on_error, token = self.jobs.pop(job_id)
        try:
            result = drive(make_steps(CancelToken()))
        except LayerScopeError as exc:
            on_error(str(exc))
        else:
            on_done(result)


def safetensors_summary(tmp_path: Path, name: str = "cnn.safetensors") -> ModelSummary:
    path = tmp_path / name
    save_file(TinyCNN().state_dict(), str(path))
    return drive(open_model(path))


def no_graph_summary(tmp_path: Path) -> ModelSummary:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(2048))
    return ModelSummary(SourceInfo(str(path), "tflite", "tflite"), LayerNode(""))


@pytest.fixture()
def view(qtbot) -> GraphView:
    widget = GraphView(use_web_engine=False)  # the Netron page itself is covered in test_graph_view.py
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_format_without_graph_shows_the_reason(view: GraphView, tmp_path: Path) -> None:
    jobs = FakeJobRunner()
    controller = GraphController(view, jobs, max_original_bytes=0)
    controller.show_model(no_graph_summary(tmp_path))
    assert view.state == "busy" and list(jobs.jobs.values())[0][1:3] == ("Preparing the graph", "io")
    jobs.run(next(iter(jobs.jobs)))
    assert view.state == "message"
    assert view.message.startswith("model.tflite: ") and "no weights-free stand-in" in view.message
    assert controller.server is None and not view.browser_offered
    controller.shutdown()


def test_result_for_an_older_model_is_dropped(view: GraphView, tmp_path: Path) -> None:
    jobs = FakeJobRunner()
    controller = GraphController(view, jobs, max_original_bytes=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = safetensors_summary(tmp_path / "a", "first.safetensors")
    second = no_graph_summary(tmp_path / "b")
    controller.show_model(first)
    controller.show_model(second)
    first_job, second_job = sorted(jobs.jobs)
    assert first_job in jobs.cancelled_ids  # superseded at once
    jobs.run(first_job)  # its thread finishes late: nothing of it is painted or served
    assert view.state == "busy" and controller.server is None and controller.standin is None
    jobs.run(second_job)
    assert view.state == "message" and view.message.startswith("model.tflite")
    controller.shutdown()


def test_graph_is_prepared_when_the_tab_is_first_shown(qtbot, tmp_path: Path) -> None:
    hidden = GraphView(use_web_engine=False)
    qtbot.addWidget(hidden)
    jobs = FakeJobRunner()
    controller = GraphController(hidden, jobs, max_original_bytes=0)
    controller.show_model(safetensors_summary(tmp_path))
    assert not jobs.jobs and hidden.state == "busy"
    hidden.show()
    assert len(jobs.jobs) == 1
    hidden.hide()
    hidden.show()
    assert len(jobs.jobs) == 1  # once per model
    jobs.run(next(iter(jobs.jobs)))
    assert controller.server is not None and controller.standin.kind == "standin"
    controller.shutdown()


def test_served_standin_and_open_in_browser(view: GraphView, tmp_path: Path, monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(graph_controller_module.QDesktopServices, "openUrl",
                        staticmethod(lambda url: opened.append(url.toString()) or True))
    jobs = FakeJobRunner()
    controller = GraphController(view, jobs, max_original_bytes=0)
    controller.show_model(safetensors_summary(tmp_path))
    jobs.run(next(iter(jobs.jobs)))
    server = controller.server
    assert server is not None and server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url + "data/cnn.safetensors", timeout=10) as response:
        data = response.read()
    header, start = read_header(controller.standin.path)
    assert start == len(data) and set(header) - {"__metadata__"} == set(TinyCNN().state_dict())
    assert view.state == "message" and view.browser_offered  # no QtWebEngine in this view: the fallback
    view.openInBrowserRequested.emit()
    assert opened == [server.url]
    folder = controller.standin.path.parent
    controller.shutdown()
    assert not server.running and not folder.exists()


def test_worker_error_is_one_sentence(view: GraphView, tmp_path: Path, monkeypatch) -> None:
    def broken(summary, out_dir, max_original_bytes):
        raise LayerScopeError("cnn.safetensors: the header could not be read.")
        yield

    monkeypatch.setattr(graph_controller_module, "standin_steps", broken)
    jobs = FakeJobRunner()
    controller = GraphController(view, jobs)
    controller.show_model(safetensors_summary(tmp_path))
    jobs.run(next(iter(jobs.jobs)))
    assert view.state == "error" and view.message == "cnn.safetensors: the header could not be read."
    controller.show_model(None)
    assert view.state == "message" and view.message == "No model is open."


@pytest.mark.skipif(not web_engine_importable(), reason="QtWebEngine (PySide6-Addons) is not installed")
def test_real_job_runner_draws_the_graph(qtbot, tmp_path: Path) -> None:
    view = GraphView()
    qtbot.addWidget(view)
    view.resize(900, 650)
    view.show()
    jobs = JobRunner()
    controller = GraphController(view, jobs, max_original_bytes=0)
    controller.show_model(safetensors_summary(tmp_path))
    qtbot.waitUntil(lambda: view.state in ("graph", "error", "message"), timeout=90_000)
    assert view.state == "graph", view.message
    assert "weights-free stand-in" in view.note
    assert all(u.startswith(controller.server.url) or u == "about:blank" for u in view.requested_urls())
    controller.shutdown()
    view.release_web()
    assert jobs.shutdown()
