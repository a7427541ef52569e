"""The Graph tab: Netron's viewer in a QWebEngineView that may talk to this machine's loopback only.

Plain data in: a URL to show (`set_url`), a reason when there is no graph (`set_message`), a busy
text (`set_busy`). Intent out: `openInBrowserRequested`. The web view is created on the first URL
and loads it when the tab is first shown, so start-up never waits for Chromium. Every request the
page makes passes a `LoopbackOnlyInterceptor`, which records it and blocks any host that is not
this machine; the page may not navigate away from loopback or open windows. When QtWebEngine is
missing, the tab says so and offers "Open in browser".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QEvent, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "qrc"})
POLL_MS = 150
EMPTY_GRAPH_SETTLE_S = 1.5  # Netron's 'default' page without nodes this long: a model with nothing to draw
GRAPH_TIMEOUT_S = 180.0

# What Netron's page shows: its body class ('welcome spinner' while loading, 'default' with a graph,
# 'alert' with an error), the number of drawn nodes, the message text, and what the offline shim refused.
PAGE_PROBE = """(function () {
    var body = document.body;
    var text = document.getElementById('message-text');
    return JSON.stringify({
        cls: body ? body.className : '',
        nodes: document.querySelectorAll('#canvas .node').length,
        message: text ? text.innerText : '',
        blocked: window.__layerscope_blocked__ || []
    });
})()"""

NO_WEB_ENGINE = ("The graph needs QtWebEngine (the PySide6-Addons package), which is not available here; "
                 "open Netron's viewer in your browser instead.")


def web_engine_importable() -> bool:
    """True when PySide6's QtWebEngine widgets can be imported in this installation."""
    try:
        import PySide6.QtWebEngineCore  # noqa: F401
        import PySide6.QtWebEngineWidgets  # noqa: F401
    except ImportError:
        return False
    return True


def is_loopback(url: QUrl) -> bool:
    """True for URLs that stay on this machine (loopback hosts, data:/blob:/about: pages)."""
    scheme = url.scheme().lower()
    if scheme in LOCAL_SCHEMES:
        return True
    return scheme in ("http", "https", "ws", "wss") and url.host().lower() in LOOPBACK_HOSTS


def _make_web_view(owner: QWidget, parent: QWidget, on_request: Callable[[str, bool], None]) -> QWidget:
    """A QWebEngineView on a private off-the-record profile whose every request must stay on loopback.

    The profile belongs to `owner`, created after `parent`, so Qt deletes the page before its profile.
    """
    from PySide6.QtWebEngineCore import (
        QWebEnginePage,
        QWebEngineProfile,
        QWebEngineSettings,
        QWebEngineUrlRequestInterceptor,
    )
    from PySide6.QtWebEngineWidgets import QWebEngineView

    class LoopbackOnlyInterceptor(QWebEngineUrlRequestInterceptor):
        """Records every URL the page requests and blocks the ones that would leave the machine."""

        def interceptRequest(self, info) -> None:  # noqa: N802 - Qt's name
            """Called by QtWebEngine for every request of the page."""
            url = info.requestUrl()
            allowed = is_loopback(url)
            if not allowed:
                info.block(True)
            on_request(url.toString(), allowed)

    class LoopbackPage(QWebEnginePage):
        """A page that stays on loopback: no navigation elsewhere, no pop-up windows, a quiet console."""

        def acceptNavigationRequest(self, url, nav_type, is_main_frame) -> bool:  # noqa: N802 - Qt's name
            """Refuse navigation to any host that is not this machine."""
            if not is_loopback(QUrl(url)):
                on_request(QUrl(url).toString(), False)
                return False
            return True

        def createWindow(self, window_type):  # noqa: N802 - Qt's name
            """Netron's links open new windows; none are opened."""
            return None

        def javaScriptConsoleMessage(self, level, message, line, source) -> None:  # noqa: N802 - Qt's name
            """Netron's console chatter stays out of the terminal."""

    profile = QWebEngineProfile(owner)  # no storage name: off the record, nothing written to disk
    interceptor = LoopbackOnlyInterceptor(profile)
    profile.setUrlRequestInterceptor(interceptor)
    profile.setHttpCacheType(QWebEngineProfile.HttpCacheType.MemoryHttpCache)
    view = QWebEngineView(parent)
    page = LoopbackPage(profile, view)
    settings = page.settings()
    settings.setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessRemoteUrls, False)
    settings.setAttribute(QWebEngineSettings.WebAttribute.PluginsEnabled, False)
    view.setPage(page)
    view._layerscope_keep = (profile, interceptor, page)  # Python owners of the Qt objects
    return view


class GraphView(QWidget):
    """Shows Netron's page for a model, or a busy text, or the reason why there is no graph."""

    openInBrowserRequested = Signal()
    stateChanged = Signal(str)  # "idle" | "busy" | "loading" | "graph" | "message" | "error"
    shown = Signal()  # the tab became visible (the controller prepares the graph lazily)

    def __init__(self, parent: QWidget | None = None, use_web_engine: bool | None = None) -> None:
        super().__init__(parent)
        self._web_wanted = web_engine_importable() if use_web_engine is None else use_web_engine
        self._web = None
        self._url = ""
        self._pending_url = ""
        self._state = "idle"
        self._requests: list[tuple[str, bool]] = []
        self._last_probe: dict = {}
        self._load_started = 0.0
        self._default_since = 0.0
        self._loading_url = QUrl()
        self._quit_hooked = False

        self._stack = QStackedLayout(self)
        # Every page stays visible and the current one is raised: Chromium draws a hidden page's graph
        # only half-way (no animation frames), so the web view loads under the opaque status page.
        self._stack.setStackingMode(QStackedLayout.StackingMode.StackAll)
        self._status = QWidget(self)
        self._status.setAutoFillBackground(True)
        status_layout = QVBoxLayout(self._status)
        status_layout.addStretch(2)
        self._text = QLabel(self._status)
        self._text.setWordWrap(True)
        self._text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._text.setObjectName("graphMessage")
        status_layout.addWidget(self._text)
        self._busy = QProgressBar(self._status)
        self._busy.setRange(0, 0)
        self._busy.setTextVisible(False)
        self._busy.setMaximumWidth(280)
        status_layout.addWidget(self._busy, 0, Qt.AlignmentFlag.AlignHCenter)
        self._browser_button = QPushButton("Open in browser", self._status)
        self._browser_button.clicked.connect(self.openInBrowserRequested)
        status_layout.addWidget(self._browser_button, 0, Qt.AlignmentFlag.AlignHCenter)
        status_layout.addStretch(3)
        self._stack.addWidget(self._status)

        self._graph_page = QWidget(self)
        graph_layout = QVBoxLayout(self._graph_page)
        graph_layout.setContentsMargins(0, 0, 0, 0)
        graph_layout.setSpacing(0)
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 3, 6, 3)
        self._note = QLabel(self._graph_page)
        self._note.setWordWrap(True)
        self._note.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._note.setObjectName("graphNote")
        bar.addWidget(self._note, 1)
        self._bar_button = QPushButton("Open in browser", self._graph_page)
        self._bar_button.clicked.connect(self.openInBrowserRequested)
        bar.addWidget(self._bar_button)
        graph_layout.addLayout(bar)
        self._graph_layout = graph_layout
        self._stack.addWidget(self._graph_page)

        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._probe_page)
        self.set_message("No model is open.")

    # --- plain data in ---------------------------------------------------------------------------

    def set_url(self, url: str) -> None:
        """Show Netron's page at `url`; it loads now if the tab is visible, else when it is first shown."""
        self._url = url
        if not self._web_wanted:
            self._show_status(NO_WEB_ENGINE, busy=False, browser=True, state="message")
            return
        self._pending_url = url
        self._show_status("Loading Netron's graph…", busy=True, browser=False, state="loading")
        if self.isVisible():
            self._load_pending()

    def set_message(self, text: str, can_open_in_browser: bool = False) -> None:
        """Say why there is no graph (or why it is shown elsewhere); nothing loads."""
        self._stop_loading()
        self._show_status(text, busy=False, browser=can_open_in_browser, state="message")

    def set_busy(self, text: str) -> None:
        """Show that the graph is being prepared."""
        self._stop_loading()
        self._show_status(text, busy=True, browser=False, state="busy")

    def set_note(self, text: str) -> None:
        """One line above the graph saying what Netron is shown (a weights-free stand-in ...)."""
        self._note.setText(text)
        self._note.setToolTip(text)

    def set_error(self, text: str) -> None:
        """An error as one sentence in place of the graph."""
        self._stop_loading()
        self._show_status(text, busy=False, browser=False, state="error")

    # --- read back (window, tests) -------------------------------------------------------------

    @property
    def state(self) -> str:
        """What the tab shows: idle, busy, loading, graph, message or error."""
        return self._state

    @property
    def url(self) -> str:
        """The last URL given to set_url ("" when none)."""
        return self._url

    @property
    def message(self) -> str:
        """The text shown in place of the graph."""
        return self._text.text()

    @property
    def note(self) -> str:
        """The line shown above the graph."""
        return self._note.text()

    @property
    def web_engine_enabled(self) -> bool:
        """True when the graph is embedded with QtWebEngine (False: the browser fallback)."""
        return self._web_wanted

    @property
    def browser_offered(self) -> bool:
        """True when an "Open in browser" button is on screen."""
        page = self._stack.currentWidget()
        button = self._browser_button if page is self._status else self._bar_button
        return not button.isHidden()

    def requested_urls(self) -> list[str]:
        """Every URL the embedded page asked for, allowed or blocked, in order."""
        return [url for url, _ in self._requests]

    def blocked_urls(self) -> list[str]:
        """URLs the interceptor or the navigation filter refused."""
        return [url for url, allowed in self._requests if not allowed]

    def refused_by_page(self) -> list[str]:
        """URLs the offline shim inside Netron's page refused before any request was made."""
        return list(self._last_probe.get("blocked", []))

    def run_javascript(self, script: str, callback: Callable[[object], None]) -> None:
        """Evaluate `script` in Netron's page and pass the result to `callback` (for tests and checks)."""
        if self._web is None:
            callback(None)
            return
        self._web.page().runJavaScript(script, 0, callback)

    def web_view(self) -> QWidget | None:
        """The embedded QWebEngineView, once created."""
        return self._web

    def release_web(self) -> None:
        """Delete the web view and its page, then their profile, now (QtWebEngine wants this order)."""
        import shiboken6

        self._poll.stop()
        web, self._web = self._web, None
        if web is None:
            return
        profile = web._layerscope_keep[0]
        web._layerscope_keep = ()
        if shiboken6.isValid(web):
            shiboken6.delete(web)  # deletes the page, its child
        if shiboken6.isValid(profile):
            shiboken6.delete(profile)  # and the interceptor, its child
        if self._state == "graph":
            self._show_status("The graph was closed.", busy=False, browser=False, state="message")

    # --- internals -------------------------------------------------------------------------------

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Load a waiting page and tell the controller the tab is visible."""
        super().showEvent(event)
        if self._pending_url and self._state == "loading":
            self._load_pending()
        self.shown.emit()

    def _show_status(self, text: str, busy: bool, browser: bool, state: str) -> None:
        self._text.setText(text)
        self._busy.setVisible(busy)
        self._browser_button.setVisible(browser)
        self._stack.setCurrentWidget(self._status)
        self._set_state(state)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(state)

    def _stop_loading(self) -> None:
        self._poll.stop()
        self._pending_url = ""
        if self._web is not None and self._web.url() != QUrl("about:blank"):
            self._web.setUrl(QUrl("about:blank"))  # frees the previous graph's page

    def _ensure_web(self):
        if self._web is None:
            app = QCoreApplication.instance()
            if app is not None and not self._quit_hooked:
                app.aboutToQuit.connect(self.release_web)
                self._quit_hooked = True
            self._web = _make_web_view(self, self._graph_page, self._on_request)
            self._web.page().loadingChanged.connect(self._on_loading_changed)
            self._graph_layout.addWidget(self._web, 1)
        return self._web

    def _load_pending(self) -> None:
        url, self._pending_url = self._pending_url, ""
        if not url:
            return
        web = self._ensure_web()
        self._last_probe = {}
        self._load_started = time.monotonic()
        self._default_since = 0.0
        self._loading_url = QUrl(url)
        web.load(self._loading_url)

    def _on_request(self, url: str, allowed: bool) -> None:
        self._requests.append((url, allowed))

    def _on_loading_changed(self, info) -> None:
        from PySide6.QtWebEngineCore import QWebEngineLoadingInfo

        if self._state != "loading" or info.url().toString().rstrip("/") != self._loading_url.toString().rstrip("/"):
            return
        status = info.status()
        if status == QWebEngineLoadingInfo.LoadStatus.LoadSucceededStatus:
            self._poll.start()
        elif status == QWebEngineLoadingInfo.LoadStatus.LoadFailedStatus:
            self.set_error(f"Netron's viewer did not load from the local server ({info.errorString() or 'no answer'}).")

    def _probe_page(self) -> None:
        if self._web is None or self._state != "loading":
            self._poll.stop()
            return
        self._web.page().runJavaScript(PAGE_PROBE, 0, self._on_probe)

    def _on_probe(self, result: object) -> None:
        if self._state != "loading" or not isinstance(result, str):
            return
        try:
            probe = json.loads(result)
        except ValueError:
            return
        self._last_probe = probe
        classes = str(probe.get("cls", "")).split()
        now = time.monotonic()
        if "alert" in classes:
            message = " ".join(str(probe.get("message", "")).split()) or "it reported an error"
            self._poll.stop()
            self._show_status(f"Netron could not draw this model: {message.rstrip('.')}.", busy=False,
                              browser=False, state="error")
        elif "default" in classes and (probe.get("nodes", 0) or self._default_since and
                                       now - self._default_since >= EMPTY_GRAPH_SETTLE_S):
            self._show_graph()
        elif "default" in classes:
            self._default_since = self._default_since or now
        elif classes == ["welcome"]:  # Netron gave up on the file without an alert: its start page
            self._default_since = self._default_since or now
            if now - self._default_since >= EMPTY_GRAPH_SETTLE_S:
                self._poll.stop()
                self._show_status("Netron did not recognise the file as a model it can draw.", busy=False,
                                  browser=True, state="message")
        elif now - self._load_started > GRAPH_TIMEOUT_S:
            self._show_graph()

    def _show_graph(self) -> None:
        self._poll.stop()
        self._bar_button.setVisible(True)
        self._stack.setCurrentWidget(self._graph_page)
        self.apply_theme()
        self._set_state("graph")

    def is_dark(self) -> bool:
        """True when the window's palette is dark (the theme the graph follows)."""
        return self.palette().color(QPalette.ColorRole.Window).lightness() < 128

    def apply_theme(self) -> None:
        """Netron's page in the window's theme (its dark rules switched on or off by the page's shim)."""
        if self._web is not None and self._state in ("graph", "loading"):
            dark = "true" if self.is_dark() else "false"
            self._web.page().runJavaScript(f"window.__layerscope_theme__ && window.__layerscope_theme__({dark})", 0,
                                           lambda _result: None)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Follow the window's theme switches."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.apply_theme()
