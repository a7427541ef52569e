"""Netron's viewer on loopback, offline: the netron package's page and scripts, one model, nothing else.

`netron.serve()` is not used as it is, for three reasons measured on netron 9.3:
its request handler keeps the served file in a class attribute (two servers in one process serve
the same file), it reads the whole model file into memory on every request, and its page asks for
consent, sends Google Analytics beacons and, 180 days after the package's build date, locks itself
behind "Please update to the newest version". This module serves the same static files from the
installed package with a handler of its own that

- streams only the files it was given (the weights-free stand-in, or a small original), 404 for the rest;
- stamps today's date into the page, so the age lock never fires;
- adds `layerscope-offline.js` before Netron's own scripts: it sets the `consent` cookie Netron
  checks (no consent screen, no ipinfo.io look-up) and refuses every request that is not to this
  server (telemetry beacons, XHR, fetch), in the embedded view and in an external browser alike.
"""

from __future__ import annotations

import datetime as _dt
import html
import http.server
import json
import logging
import os
import re
import shutil
import sys
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
STOP_POLL_S = 0.05  # stop() waits at most this long for the serving loop (it runs in the GUI thread)
SHIM_NAME = "layerscope-offline.js"

# Runs before index.js. Netron reads the `consent` cookie before it shows its consent screen and
# sends telemetry with navigator.sendBeacon; XHR and fetch cover its other look-ups (ipinfo.io,
# gists, GitHub raw links).
OFFLINE_SHIM = r"""// LayerScope: keep Netron's viewer offline (no consent screen, no telemetry, loopback only).
(function () {
    'use strict';
    var origin = window.location.origin;
    var isLocal = function (url) {
        try {
            var u = new URL(String(url), window.location.href);
            return u.protocol === 'data:' || u.protocol === 'blob:' || u.origin === origin;
        } catch (e) {
            return false;
        }
    };
    window.__layerscope_blocked__ = [];
    try {
        var options = window.__layerscope_options__;
        if (options && !window.localStorage.getItem('options')) {
            window.localStorage.setItem('options', JSON.stringify(options));
        }
    } catch (e) {
        // storage disabled: Netron's defaults apply
    }
    var refuse = function (url) {
        window.__layerscope_blocked__.push(String(url));
        return new Error('LayerScope keeps this viewer offline; it did not request ' + String(url));
    };
    document.cookie = 'consent=' + Date.now() + ';path=/;max-age=31536000';
    if (window.navigator && window.navigator.sendBeacon) {
        var beacon = window.navigator.sendBeacon.bind(window.navigator);
        window.navigator.sendBeacon = function (url, data) {
            if (!isLocal(url)) {
                refuse(url);
                return true;
            }
            return beacon(url, data);
        };
    }
    var open = window.XMLHttpRequest.prototype.open;
    window.XMLHttpRequest.prototype.open = function (method, url) {
        if (!isLocal(url)) {
            throw refuse(url);
        }
        return open.apply(this, arguments);
    };
    if (window.fetch) {
        var fetch = window.fetch.bind(window);
        window.fetch = function (input, init) {
            var url = (input && input.url) ? input.url : input;
            if (!isLocal(url)) {
                return Promise.reject(refuse(url));
            }
            return fetch(input, init);
        };
    }
    // The window's theme, not the system's: Netron styles its dark look under
    // `@media (prefers-color-scheme: dark)`; LayerScope switches those rules on ('all') or off.
    var darkRules = null;
    window.__layerscope_theme__ = function (dark) {
        if (darkRules === null) {
            darkRules = [];
            for (var s = 0; s < document.styleSheets.length; s++) {
                var rules;
                try { rules = document.styleSheets[s].cssRules; } catch (e) { continue; }
                for (var r = 0; r < rules.length; r++) {
                    var media = rules[r].media;
                    if (media && /prefers-color-scheme:\s*dark/.test(media.mediaText)) {
                        darkRules.push(rules[r]);
                    }
                }
            }
        }
        darkRules.forEach(function (rule) { rule.media.mediaText = dark ? 'all' : 'not all'; });
        return darkRules.length;
    };
})();
"""

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


def prepare_webengine_environment() -> None:
    """Set what QtWebEngine needs before the QApplication exists (call it first thing in the GUI's main).

    Chromium refuses to start as root without `--no-sandbox`; QtWebEngine also wants shared OpenGL
    contexts, which can only be requested before the application object is created.
    """
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "").split()
    wanted: list[str] = []
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--no-sandbox" not in flags:
        wanted.append("--no-sandbox")
    if os.environ.get("QT_QPA_PLATFORM", "") == "offscreen" and "--disable-gpu" not in flags:
        wanted.append("--disable-gpu")  # no GPU process to start where nothing is displayed
    if wanted:
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = " ".join([*flags, *wanted])
    from PySide6.QtCore import QCoreApplication, Qt

    if QCoreApplication.instance() is None:
        QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)


def netron_static_dir() -> Path:
    """The folder of the installed netron package that holds index.html and the viewer's scripts."""
    import netron

    return Path(netron.__file__).resolve().parent


def netron_version() -> str:
    """Version of the installed netron package."""
    import netron

    return str(getattr(netron, "__version__", "0.0.0"))


def patch_index(page: str, file_name: str, display_name: str, version: str, today: _dt.date) -> str:
    """Netron's index.html with the model's meta tags, today's date and the offline shim."""
    meta = [
        '<meta name="type" content="Python">',
        f'<meta name="version" content="{html.escape(version)}">',
        f'<meta name="file" content="/data/{html.escape(urllib.parse.quote(file_name))}">',
        f'<meta name="identifier" content="{html.escape(file_name)}">',
    ]
    if display_name:
        meta.append(f'<meta name="name" content="{html.escape(display_name)}">')
    page = re.sub(r'<meta name="version" content="[^"]*">', lambda _: "\n".join(meta), page, count=1)
    page = re.sub(r'<meta name="date" content="[^"]*">',
                  lambda _: f'<meta name="date" content="{today.isoformat()} 00:00:00">', page, count=1)
    shim = f'<script type="text/javascript" src="{SHIM_NAME}"></script>\n'
    return page.replace('<script type="text/javascript" src="index.js">', shim + '<script type="text/javascript" src="index.js">', 1)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves Netron's static files, the offline shim and the allowed model files; 404 for anything else."""

    static_dir: Path = Path()
    files: dict[str, Path] = {}
    main_file: str = ""
    display_name: str = ""
    version: str = "0.0.0"
    options: dict = {}  # Netron view options to start with (its localStorage 'options'), e.g. {"names": True}
    requested: list[str]
    server_version = "LayerScope-Netron"

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        """Headers only."""
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """Page, scripts or model data."""
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
        self.requested.append(path)
        if path in ("/", "/index.html"):
            page = (self.static_dir / "index.html").read_text(encoding="utf-8")
            body = patch_index(page, self.main_file, self.display_name, self.version, _dt.date.today()).encode()
            self._send_bytes(MIME_TYPES[".html"], body, head)
        elif path == f"/{SHIM_NAME}":
            prefix = f"window.__layerscope_options__ = {json.dumps(self.options)};\n" if self.options else ""
            self._send_bytes(MIME_TYPES[".js"], (prefix + OFFLINE_SHIM).encode(), head)
        elif path.startswith("/data/"):
            target = self.files.get(path[len("/data/"):])
            if target is None or not target.is_file():
                self._not_found(head)
            else:
                self._send_file("application/octet-stream", target, head)
        else:
            target = (self.static_dir / path.lstrip("/")).resolve()
            mime = MIME_TYPES.get(target.suffix)
            if mime is None or target.parent != self.static_dir or not target.is_file():
                self._not_found(head)
            else:
                self._send_file(mime, target, head)

    def _send_bytes(self, mime: str, body: bytes, head: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_file(self, mime: str, target: Path, head: bool) -> None:
        with target.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if not head:
                shutil.copyfileobj(f, self.wfile, 1024 * 1024)

    def _not_found(self, head: bool) -> None:
        body = b"not found"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Quiet: the app has no console to log requests to."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        """A page closed mid-download (a new model, the tab closed) is normal; other errors go to the log."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            logger.debug("Netron server: request from %s failed", client_address, exc_info=True)


class NetronServer:
    """One running Netron viewer on 127.0.0.1 (a free port) that shows one model file."""

    def __init__(self, file: Path | str, display_name: str = "", extra_files: Mapping[str, Path] | None = None,
                 options: Mapping[str, object] | None = None) -> None:
        file = Path(file)
        if not file.is_file():
            raise FileNotFoundError(file)
        allowed = {file.name: file}
        for url_path, extra in (extra_files or {}).items():
            allowed[url_path.lstrip("/")] = Path(extra)
        handler = type("NetronHandler", (_Handler,), {
            "static_dir": netron_static_dir(),
            "files": allowed,
            "main_file": file.name,
            "display_name": display_name or file.name,
            "version": netron_version(),
            "options": dict(options or {}),
            "requested": [],
        })
        self.file = file
        self._handler = handler
        self._server = _Server((LOOPBACK, 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": STOP_POLL_S},
                                        name=f"netron-{self.port}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The viewer's address, loopback only."""
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def requested_paths(self) -> list[str]:
        """Every path asked of this server so far (for tests and the bench)."""
        return list(self._handler.requested)

    @property
    def running(self) -> bool:
        """True until stop()."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def serve(file: Path | str, display_name: str = "", extra_files: Mapping[str, Path] | None = None,
          options: Mapping[str, object] | None = None) -> NetronServer:
    """Start Netron's viewer for `file` on loopback and return the running server."""
    return NetronServer(file, display_name, extra_files, options)
