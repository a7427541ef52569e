"""The report's HTML in the Chromium engine the app ships (QtWebEngine): printed to PDF, or loaded and checked.

One layout for screen and paper: the PDF is the same page printed (A4 or Letter). The page is loaded from
a file on an off-the-record profile whose request interceptor blocks and counts every request that is
not the page itself, so a report can be shown to make no network request.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError, sentence

PAGE_SIZES = ("A4", "Letter")
LOAD_TIMEOUT_MS = 60_000
# What Chromium and Qt's renderer say on a machine without a GPU or a system bus: nothing for the user.
ENGINE_NOISE = ("Failed to connect to the bus", "QRhiGles2", "Failed to create RHI", "dbus", "sandbox",
                "Release of profile requested", "gpu_init", "viz_main_impl", "command_buffer", "Fontconfig",
                "shared_image", "egl", "EGL", "angle", "GLES")


@dataclass
class PageCheck:
    """What loading a report page showed: console messages, requests blocked, and a screenshot."""

    loaded: bool
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for besides itself
    screenshot: Any = None  # QImage
    rows: int = -1  # rows of the layer table, counted in the page


def _app() -> Any:
    from PySide6.QtWidgets import QApplication

    from app.netron_service import prepare_webengine_environment

    if QApplication.instance() is None:
        import atexit

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        prepare_webengine_environment()
        app = QApplication(["layerscope-report"])
        atexit.register(_quiet_teardown)
        return app
    return QApplication.instance()


def _quiet_teardown() -> None:
    """A command-line process that started the browser engine only to print: once Python exits, Chromium's
    and Qt's teardown notices ('Release of profile requested ...') say nothing to the user."""
    import sys

    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _page(html_file: Path, parent: Any = None) -> tuple[Any, Any, PageCheck]:
    """A QWebEnginePage on a private profile loading `html_file`, with its requests and console recorded."""
    from PySide6.QtCore import QUrl
    from PySide6.QtWebEngineCore import QWebEnginePage, QWebEngineProfile, QWebEngineUrlRequestInterceptor

    check = PageCheck(False)
    page_url = QUrl.fromLocalFile(str(html_file.resolve())).toString()

    class Interceptor(QWebEngineUrlRequestInterceptor):
        def interceptRequest(self, info: Any) -> None:  # noqa: N802 - Qt's name
            url = info.requestUrl().toString()
            if url != page_url and not url.startswith("data:"):
                check.requests.append(url)
                info.block(True)

    class Page(QWebEnginePage):
        def javaScriptConsoleMessage(self, level: Any, message: str, line: int, source: str) -> None:  # noqa: N802
            if level == QWebEnginePage.JavaScriptConsoleMessageLevel.ErrorMessageLevel:
                check.console_errors.append(f"{message} (line {line})")

    profile = QWebEngineProfile(parent)
    interceptor = Interceptor(profile)
    profile.setUrlRequestInterceptor(interceptor)
    page = Page(profile, profile)  # the page dies with its profile, never after it
    from PySide6.QtWebEngineCore import QWebEngineSettings

    # A file page may not reach remote URLs by default, which would hide such a request from the count: let it
    # ask, so the interceptor sees (and blocks) every request the page makes.
    page.settings().setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessRemoteUrls, True)
    page.own_profile = profile  # the wrapper keeps the (parentless) profile alive as long as the page is used
    page.own_interceptor = interceptor  # and the interceptor's Python override (a collected wrapper is bypassed)
    return page, QUrl.fromLocalFile(str(html_file.resolve())), check


def _dispose(app: Any, page: Any) -> None:
    """Delete the page, then its profile (Qt warns, and can crash, when a profile outlives its pages' end)."""
    profile = page.own_profile
    page.own_profile = page.own_interceptor = None
    page.deleteLater()
    app.processEvents()
    profile.deleteLater()
    app.processEvents()


def _wait(app: Any, done: dict, timeout_ms: int) -> None:
    from PySide6.QtCore import QDeadlineTimer, QEventLoop

    deadline = QDeadlineTimer(timeout_ms)
    while not done.get("ok") and not deadline.hasExpired():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)


def print_pdf(html: str, target: Path, page_size: str = "A4") -> Path:
    """Print `html` to `target` (atomically) through QtWebEngine; one sentence when it cannot. What the engine
    says on stderr about a missing GPU or system bus is kept off the user's terminal."""
    from analyzers.runtime.tf_import import native_stderr_filtered

    with native_stderr_filtered(ENGINE_NOISE):
        return _print_pdf(html, target, page_size)


def _print_pdf(html: str, target: Path, page_size: str) -> Path:
    from PySide6.QtCore import QMarginsF
    from PySide6.QtGui import QPageLayout, QPageSize

    from analyzers.report.formats import write_atomic

    if page_size not in PAGE_SIZES:
        raise LayerScopeError(f"The page size must be one of {', '.join(PAGE_SIZES)}, not '{page_size}'.")
    app = _app()
    with tempfile.TemporaryDirectory(prefix="layerscope-report-") as tmp:
        html_file = Path(tmp) / "report.html"
        html_file.write_text(html, encoding="utf-8")
        page, url, check = _page(html_file)
        state: dict = {}
        page.loadFinished.connect(lambda ok: state.update(ok=True, loaded=ok))
        page.load(url)
        _wait(app, state, LOAD_TIMEOUT_MS)
        if not state.get("loaded"):
            raise LayerScopeError(sentence(target, "the report page could not be laid out for printing"))
        size = QPageSize(QPageSize.PageSizeId.A4 if page_size == "A4" else QPageSize.PageSizeId.Letter)
        layout = QPageLayout(size, QPageLayout.Orientation.Portrait, QMarginsF(12, 12, 12, 12),
                             QPageLayout.Unit.Millimeter)

        def write(tmp_path: Path) -> None:
            printed: dict = {}
            page.pdfPrintingFinished.connect(lambda path, ok: printed.update(ok=True, written=ok))
            page.printToPdf(str(tmp_path), layout)
            _wait(app, printed, LOAD_TIMEOUT_MS)
            if not printed.get("written") or not tmp_path.stat().st_size:
                raise LayerScopeError(sentence(target, "the browser engine could not print the report"))

        try:
            return write_atomic(target, write)
        finally:
            _dispose(app, page)


def check_page(html_file: Path, size: tuple[int, int] = (1200, 1600)) -> PageCheck:
    """Load a report page in a view, count its requests and console errors, count its layer rows and grab
    a screenshot (what the tests look at)."""
    from analyzers.runtime.tf_import import native_stderr_filtered

    with native_stderr_filtered(ENGINE_NOISE + ("GPUInfo",)):
        return _check_page(html_file, size)


def _check_page(html_file: Path, size: tuple[int, int]) -> PageCheck:
    from PySide6.QtWebEngineWidgets import QWebEngineView

    app = _app()
    view = QWebEngineView()
    page, url, check = _page(html_file, view)
    view.setPage(page)
    view.resize(*size)
    view.show()
    state: dict = {}
    page.loadFinished.connect(lambda ok: state.update(ok=True, loaded=ok))
    page.load(url)
    _wait(app, state, LOAD_TIMEOUT_MS)
    check.loaded = bool(state.get("loaded"))
    counted: dict = {}
    page.runJavaScript("document.querySelectorAll('table.layers tbody tr').length",
                       0, lambda n: counted.update(ok=True, n=n))
    _wait(app, counted, 10_000)
    check.rows = int(counted.get("n", -1) or 0)
    settle: dict = {}
    from PySide6.QtCore import QTimer

    QTimer.singleShot(500, lambda: settle.update(ok=True))
    _wait(app, settle, 5_000)
    check.screenshot = view.grab().toImage()
    view.close()
    view.setPage(None)
    _dispose(app, page)
    view.deleteLater()
    app.processEvents()
    return check
