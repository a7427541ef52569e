"""Netron's server: loopback only, serves the stand-in and Netron's page, nothing else, page kept offline."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from analyzers.graph.standin import make_standin
from analyzers.loaders import open_model
from analyzers.loaders.safetensors_loader import read_header
from analyzers.tasks import drive
from app.netron_service import OFFLINE_SHIM, SHIM_NAME, netron_static_dir, patch_index, serve
from tests.torch_fixtures import TinyCNN


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


@pytest.fixture()
def standin(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.safetensors"
    save_file(TinyCNN().state_dict(), str(path))
    result = make_standin(drive(open_model(path)), tmp_path / "out", max_original_bytes=0)
    assert result.path is not None
    return result.path


def test_serves_the_standin_and_the_page_on_loopback(standin: Path) -> None:
    server = serve(standin, "cnn.safetensors")
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert server._server.server_address[0] == "127.0.0.1"
        status, body, mime = get(server.url)
        assert status == 200 and mime.startswith("text/html")
        page = body.decode()
        assert f'<meta name="file" content="/data/{standin.name}">' in page
        assert f'<script type="text/javascript" src="{SHIM_NAME}"></script>' in page
        assert page.index(SHIM_NAME) < page.index('src="index.js"')
        status, data, _ = get(server.url + "data/" + standin.name)
        assert status == 200 and data == standin.read_bytes()
        header, start = read_header(standin)
        assert start == len(data) and header
        status, shim, mime = get(server.url + SHIM_NAME)
        assert status == 200 and shim.decode() == OFFLINE_SHIM and "javascript" in mime
        status, script, _ = get(server.url + "view.js")
        assert status == 200 and script == (netron_static_dir() / "view.js").read_bytes()
        assert "/data/" + standin.name in server.requested_paths
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_nothing_but_the_given_files_is_served(standin: Path, tmp_path: Path) -> None:
    secret = standin.parent / "secret.bin"
    secret.write_bytes(b"weights")
    extra = tmp_path / "variables.index"
    extra.write_bytes(b"index")
    server = serve(standin, extra_files={"variables/variables.index": extra})
    try:
        for path in ("data/secret.bin", "data/../secret.bin", "data/%2e%2e/secret.bin", "../server.py",
                     "server.py", "data/", "nope.js"):
            assert get(server.url + path)[0] == 404, path
        assert get(server.url + "data/variables/variables.index")[1] == b"index"
    finally:
        server.stop()


def test_two_servers_serve_their_own_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"x": torch.zeros(2)}, str(a))
    save_file({"y": torch.zeros(3)}, str(b))
    first, second = serve(a), serve(b)
    try:
        assert first.port != second.port
        assert get(first.url + "data/a.safetensors")[1] == a.read_bytes()
        assert get(second.url + "data/b.safetensors")[1] == b.read_bytes()
        assert get(first.url + "data/b.safetensors")[0] == 404
    finally:
        first.stop()
        second.stop()


def test_view_options_reach_the_page(standin: Path) -> None:
    plain, named = serve(standin), serve(standin, options={"names": True})
    try:
        assert get(plain.url + SHIM_NAME)[1].decode() == OFFLINE_SHIM
        shim = get(named.url + SHIM_NAME)[1].decode()
        assert shim.startswith('window.__layerscope_options__ = {"names": true};\n') and shim.endswith(OFFLINE_SHIM)
    finally:
        plain.stop()
        named.stop()


def test_webengine_environment_for_root_and_offscreen(monkeypatch) -> None:
    import os

    from app import netron_service

    monkeypatch.setenv("QTWEBENGINE_CHROMIUM_FLAGS", "--lang=en")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(netron_service.os, "geteuid", lambda: 0)
    netron_service.prepare_webengine_environment()
    netron_service.prepare_webengine_environment()  # idempotent
    assert os.environ["QTWEBENGINE_CHROMIUM_FLAGS"].split() == ["--lang=en", "--no-sandbox", "--disable-gpu"]
    monkeypatch.setenv("QTWEBENGINE_CHROMIUM_FLAGS", "")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(netron_service.os, "geteuid", lambda: 1000)
    netron_service.prepare_webengine_environment()
    assert os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] == ""


def test_page_patch_dates_the_page_today_and_names_the_model() -> None:
    page = (netron_static_dir() / "index.html").read_text(encoding="utf-8")
    assert '<meta name="date"' in page and '<script type="text/javascript" src="index.js">' in page
    today = dt.date(2031, 5, 17)
    patched = patch_index(page, "my model.onnx", 'a "quoted" name', "9.9.9", today)
    assert '<meta name="date" content="2031-05-17 00:00:00">' in patched
    assert '<meta name="file" content="/data/my%20model.onnx">' in patched
    assert '<meta name="name" content="a &quot;quoted&quot; name">' in patched
    assert '<meta name="version" content="9.9.9">' in patched
    assert patched.count(SHIM_NAME) == 1


def test_shim_sets_consent_and_refuses_foreign_requests() -> None:
    browser_js = (netron_static_dir() / "browser.js").read_text(encoding="utf-8")
    # The facts the shim relies on, as netron's own code states them.
    assert "this._getCookie('consent')" in browser_js
    assert "sendBeacon" in (netron_static_dir() / "base.js").read_text(encoding="utf-8")
    assert "document.cookie = 'consent='" in OFFLINE_SHIM
    for api in ("navigator.sendBeacon", "XMLHttpRequest.prototype.open", "window.fetch"):
        assert api in OFFLINE_SHIM
    json.dumps(OFFLINE_SHIM)  # plain text, served as it is
