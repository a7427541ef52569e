"""GraphView: Netron's page in QtWebEngine offscreen draws the graph, asks nothing off-machine, no consent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QUrl
from safetensors.torch import save_file

from analyzers.graph.standin import make_standin
from analyzers.summary import LayerNode, ModelSummary, SourceInfo
from app.netron_service import prepare_webengine_environment, serve
from tests.torch_fixtures import TinyCNN
from widgets.graph_view import NO_WEB_ENGINE, GraphView, is_loopback, web_engine_importable

prepare_webengine_environment()  # before pytest-qt creates the QApplication (collection comes first)

needs_web_engine = pytest.mark.skipif(not web_engine_importable(), reason="QtWebEngine (PySide6-Addons) is not installed")

DOM = """(function () {
    var nodes = Array.from(document.querySelectorAll('#canvas .graph-node'));
    var text = document.getElementById('message-text');
    return JSON.stringify({
        cls: document.body.className,
        ops: nodes.map(function (n) { return n.querySelector('text').textContent; }),
        message: text ? text.innerText : '',
        cookie: document.cookie
    });
})()"""


def onnx_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """TinyCNN exported to ONNX; returns the file and its op types in graph order (onnx's own answer)."""
    import onnx

    path = tmp_path / "cnn.onnx"
    torch.onnx.export(TinyCNN().eval(), (torch.randn(1, 1, 28, 28),), str(path), dynamo=False,
                      input_names=["image"], output_names=["logits"])
    return path, [n.op_type for n in onnx.load(str(path)).graph.node]


def shown_view(qtbot, width: int = 900, height: int = 700) -> GraphView:
    view = GraphView()
    qtbot.addWidget(view)
    view.resize(width, height)
    view.show()
    return view


def safetensors_standin(tmp_path: Path):
    """TinyCNN's state_dict as safetensors, and its weights-free stand-in for Netron."""
    from analyzers.loaders import open_model
    from analyzers.tasks import drive

    path = tmp_path / "cnn.safetensors"
    save_file(TinyCNN().state_dict(), str(path))
    return make_standin(drive(open_model(path)), tmp_path / "out", max_original_bytes=0)


def wait_for_graph(qtbot, view: GraphView, timeout_ms: int = 90_000) -> None:
    qtbot.waitUntil(lambda: view.state in ("graph", "error", "message"), timeout=timeout_ms)
    assert view.state == "graph", view.message


def page_dom(qtbot, view: GraphView) -> dict:
    box: list = []
    view.run_javascript(DOM, box.append)
    qtbot.waitUntil(lambda: bool(box), timeout=10_000)
    return json.loads(box[0]) if isinstance(box[0], str) and box[0] else {}


def assert_drawn(image, min_dark: int = 200) -> None:
    """The grabbed view is not blank: many dark (stroke or text) pixels on a light page."""
    assert not image.isNull() and image.width() > 400
    dark = sum(1 for x in range(0, image.width(), 3) for y in range(0, image.height(), 3)
               if image.pixelColor(x, y).lightness() < 128)
    assert dark >= min_dark, f"only {dark} dark pixels: the graph was not drawn"


@pytest.mark.slow
@needs_web_engine
def test_onnx_standin_is_drawn_offline_without_consent(qtbot, tmp_path: Path) -> None:
    path, ops = onnx_file(tmp_path)
    standin = make_standin(ModelSummary(SourceInfo(str(path), "onnx", "onnx"), LayerNode("")), tmp_path / "out",
                           max_original_bytes=0)
    assert standin.kind == "standin"
    server = serve(standin.path, path.name)
    view = shown_view(qtbot, 1000, 760)
    try:
        view.set_note(standin.reason)
        with qtbot.waitSignal(view.stateChanged, timeout=10_000):
            view.set_url(server.url)
        wait_for_graph(qtbot, view)
        dom = page_dom(qtbot, view)
        assert dom["ops"] == ops  # every node of the real graph, in order
        assert "default" in dom["cls"].split() and "notification" not in dom["cls"]
        assert "cookies" not in dom["message"] and "consent=" in dom["cookie"]
        requested = view.requested_urls()
        assert any(u.startswith(server.url + "data/") for u in requested)
        assert requested and all(is_loopback(QUrl(u)) for u in requested), requested
        assert view.blocked_urls() == []
        # Netron's telemetry was attempted inside the page and refused there, before any request.
        assert all(not is_loopback(QUrl(u)) for u in view.refused_by_page())
        assert "/data/" + standin.path.name in server.requested_paths
        qtbot.wait(300)  # let Chromium paint the last frame
        image = view.grab().toImage()
        image.save(str(tmp_path / "graph-onnx.png"))
        assert_drawn(image)
        assert view.note == standin.reason and view.browser_offered
    finally:
        server.stop()
        view.release_web()


@needs_web_engine
def test_safetensors_standin_is_drawn(qtbot, tmp_path: Path) -> None:
    standin = safetensors_standin(tmp_path)
    assert standin.show_names
    server = serve(standin.path, options={"names": True})
    view = shown_view(qtbot)
    try:
        view.set_url(server.url)
        wait_for_graph(qtbot, view)
        dom = page_dom(qtbot, view)
        modules = {name.rsplit(".", 1)[0] for name in TinyCNN().state_dict()}
        assert sorted(dom["ops"]) == sorted(modules)  # one box per module, titled with its name
        assert all(is_loopback(QUrl(u)) for u in view.requested_urls())
        qtbot.wait(300)
        assert_drawn(view.grab().toImage(), min_dark=100)
    finally:
        server.stop()
        view.release_web()


@needs_web_engine
def test_without_the_shim_consent_shows_and_the_interceptor_blocks(qtbot, tmp_path: Path, monkeypatch) -> None:
    """The checks above can fail: Netron's page as netron serves it asks for consent and calls out."""
    from app import netron_service

    plain = netron_service.patch_index
    monkeypatch.setattr(netron_service, "patch_index", lambda page, *a: plain(page, *a).replace(
        f'<script type="text/javascript" src="{netron_service.SHIM_NAME}"></script>\n', ""))
    path = tmp_path / "cnn.safetensors"
    save_file(TinyCNN().state_dict(), str(path))
    server = serve(path)
    view = shown_view(qtbot)
    try:
        view.set_url(server.url)
        qtbot.waitUntil(lambda: "cookies" in page_dom(qtbot, view).get("message", ""), timeout=60_000)
        assert "notification" in page_dom(qtbot, view)["cls"]
        assert view.state == "loading"  # the graph waits behind the consent screen
        assert any("ipinfo.io" in u for u in view.blocked_urls())  # and the interceptor stopped the look-up
    finally:
        server.stop()
        view.release_web()


def test_loopback_filter() -> None:
    for url in ("http://127.0.0.1:8080/x", "http://localhost/", "http://[::1]:9/", "data:text/plain,x", "about:blank"):
        assert is_loopback(QUrl(url)), url
    for url in ("https://analytics.google.com/g/collect", "https://ipinfo.io/json", "http://192.168.1.2/",
                "http://127.0.0.1.example.com/", "file:///etc/passwd", "ftp://localhost/"):
        assert not is_loopback(QUrl(url)), url


def test_url_loads_only_when_shown(qtbot) -> None:
    view = GraphView()
    qtbot.addWidget(view)
    view.set_url("http://127.0.0.1:9/")
    assert view.state == "loading" and view.web_view() is None  # Chromium is not started for a hidden tab
    view.set_message("Something else.")
    view.show()
    assert view.web_view() is None and view.state == "message"


def test_messages_busy_and_errors(qtbot) -> None:
    view = GraphView(use_web_engine=False)
    qtbot.addWidget(view)
    view.show()
    states: list[str] = []
    view.stateChanged.connect(states.append)
    view.set_busy("Preparing…")
    assert view.state == "busy" and view.message == "Preparing…" and not view.browser_offered
    view.set_message("model.xyz: no graph.", can_open_in_browser=True)
    assert view.state == "message" and view.message == "model.xyz: no graph." and view.browser_offered
    view.set_error("Netron's local server did not start (address in use).")
    assert view.state == "error" and not view.browser_offered
    assert states == ["busy", "message", "error"]


def test_without_web_engine_the_tab_offers_the_browser(qtbot) -> None:
    view = GraphView(use_web_engine=False)
    qtbot.addWidget(view)
    view.show()
    assert not view.web_engine_enabled
    view.set_url("http://127.0.0.1:9/")
    assert view.state == "message" and view.message == NO_WEB_ENGINE and view.browser_offered
    assert view.web_view() is None
    with qtbot.waitSignal(view.openInBrowserRequested, timeout=1000):
        view._browser_button.click()


@needs_web_engine
def test_the_graph_follows_the_window_theme(qtbot, tmp_path: Path) -> None:
    """Netron's page turns dark with a dark window palette and light again, whatever the system prefers."""
    from PySide6.QtGui import QColor, QPalette

    server = serve(safetensors_standin(tmp_path).path, options={"names": True})
    view = shown_view(qtbot)

    def background() -> int:
        box: list = []
        view.run_javascript("getComputedStyle(document.body).backgroundColor", box.append)
        qtbot.waitUntil(lambda: bool(box), timeout=10_000)
        red, green, blue = (int(v) for v in str(box[0]).split("(")[1].split(")")[0].split(",")[:3])
        return (red + green + blue) // 3

    try:
        view.set_url(server.url)
        wait_for_graph(qtbot, view)
        assert background() > 128
        dark = QPalette(view.palette())
        dark.setColor(QPalette.ColorRole.Window, QColor(40, 40, 40))
        view.setPalette(dark)
        qtbot.waitUntil(lambda: background() < 128, timeout=10_000)
        light = QPalette(view.palette())
        light.setColor(QPalette.ColorRole.Window, QColor(240, 240, 240))
        view.setPalette(light)
        qtbot.waitUntil(lambda: background() > 128, timeout=10_000)
    finally:
        server.stop()
        view.release_web()
