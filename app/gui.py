"""`python main.py [PATH [PATH2]]`: the window. `--screenshot OUT.png [--tab NAME]` renders it offscreen.

Start-up imports Qt and LayerScope's light modules only; the window paints first, then the chart
tabs are built and the model is opened in a worker (its framework imported in the loader process).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.console import EXIT_USER_ERROR, fail

HEAVY_MODULES = ("torch", "tensorflow", "keras", "transformers", "captum", "onnx", "jax")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the window."""
    from app.console import OneLineParser

    p = OneLineParser(
        prog="layerscope",
        description="Open a neural-network checkpoint and inspect it. Without PATH it opens the bundled "
                    "image CNN. Sub-commands (inspect, run, attribute) work without a window.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="model file or folder; a second PATH opens both side by side in compare mode")
    p.add_argument("--screenshot", metavar="OUT.png", type=Path,
                   help="render the window offscreen once loading finished, save it as PNG and exit")
    p.add_argument("--tab", default="overview",
                   help="tab to show: overview, memory, graph, explain (default: overview); with two paths, the "
                        "compare page: overview, memory, explain, drift")
    p.add_argument("--size", default="1500x900", help="window size for --screenshot, WxH (default 1500x900)")
    p.add_argument("--trust", action="store_true", help="allow files that pickle code (they run it when opened)")
    p.add_argument("--theme", choices=("system", "light", "dark"), help="override the remembered theme")
    p.add_argument("--layer", help="select this layer path once the model is shown")
    p.add_argument("--attribute", metavar="METHOD",
                   help="with --screenshot --tab explain: run the model and this attribution method (any of "
                        "`layerscope attribute --help`) on the default input first")
    p.add_argument("--input", metavar="INPUT",
                   help="with --attribute: the input to explain, as `run --input` takes it (an image or .npy "
                        "file, random:SHAPE, or a text); default: the bundled sample")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds --screenshot waits (default 180)")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # load in a thread, no child
    p.add_argument("--no-features", action="store_true", help=argparse.SUPPRESS)  # no Explain tab (tests, benches)
    p.add_argument("--first-paint-report", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--exit-after-first-paint", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--exit-after-tree", action="store_true", help=argparse.SUPPRESS)  # bench/launch_to_tree.py
    return p


AA_SHARE_OPENGL_CONTEXTS = 18  # Qt::AA_ShareOpenGLContexts
_SET_ATTRIBUTE = "_ZN16QCoreApplication12setAttributeEN2Qt20ApplicationAttributeEb"


def share_opengl_contexts() -> None:
    """Set Qt::AA_ShareOpenGLContexts, which QtWebEngine needs before the QApplication exists.

    Through PySide, `Qt.ApplicationAttribute` builds every enum of the Qt namespace first: ~33 ms,
    a fifth of a bare window's start-up. Where PySide's own Qt library is at hand (Linux wheels),
    Qt's function is called directly; anywhere else, or if that fails, PySide's way is used.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            from PySide6 import QtCore

            core = ctypes.CDLL(str(Path(QtCore.__file__).parent / "Qt" / "lib" / "libQt6Core.so.6"))
            set_attribute = getattr(core, _SET_ATTRIBUTE)
            set_attribute.argtypes = (ctypes.c_int, ctypes.c_bool)
            set_attribute.restype = None
            set_attribute(AA_SHARE_OPENGL_CONTEXTS, True)
            return
        except (OSError, AttributeError):
            pass
    from PySide6.QtCore import QCoreApplication, Qt

    QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)


def heavy_modules_loaded() -> list[str]:
    """Heavy frameworks present in sys.modules right now."""
    return sorted(m for m in HEAVY_MODULES if m in sys.modules)


def default_model_path() -> Path | None:
    """The bundled image CNN of the sample zoo, or None when the zoo is not built."""
    try:
        from analyzers.samples import default_model

        path = Path(default_model().file)
    except Exception:  # the zoo is optional: a missing or broken manifest means no default model
        return None
    return path if path.exists() else None


def no_display() -> str | None:
    """Why no window can be shown here (a Linux machine without a display), or None.

    Qt itself would abort with several lines about platform plugins; the user gets one sentence."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set); "
            "use the inspect, run and attribute commands, or --screenshot OUT.png.")


def missing_x11_libraries() -> str | None:
    """The libraries Qt's X11 plugin lacks, as one sentence, when the window would open on X11."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY") or platform not in ("", "xcb"):
        return None
    if os.environ.get("WAYLAND_DISPLAY") and not platform:
        return None  # Qt picks Wayland first there
    from app.qt_libraries import problem

    return problem()


def main(argv: list[str]) -> int:
    """Open the window (or render a screenshot); returns the exit code."""
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    if len(args.paths) > 2:
        return fail("give at most two paths.")
    if len(args.paths) == 2 and args.no_features:
        return fail("comparing two models needs the window's features.")
    if args.screenshot is not None or args.exit_after_first_paint or args.exit_after_tree:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif (problem := no_display()) is not None:
        return fail(problem)
    elif (problem := missing_x11_libraries()) is not None:
        return fail(problem)
    if not args.in_process and not args.exit_after_first_paint:
        from app.child_process import prespawn

        prespawn("app.loader_process")  # its imports run on the other core while Qt starts here
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    if QCoreApplication.instance() is None:  # QtWebEngine (the Graph tab, built later) needs it set now
        share_opengl_contexts()

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "layerscope"])
    if not QApplication.organizationName() or QApplication.organizationName() == "":
        app.setOrganizationName("LayerScope")
    if QApplication.applicationName() in ("", "python", "python3", "main.py"):
        app.setApplicationName("LayerScope")

    from app.main_window import MainWindow
    from app.settings import Settings

    settings = Settings()
    theme = args.theme or settings.theme()
    if theme != "system":  # a forced theme before the first paint; the platform's own look needs no work
        from app.theme import apply_theme

        apply_theme(app, theme)
    screenshot = args.screenshot is not None
    window = MainWindow(settings, isolated_loading=not args.in_process, interactive=not screenshot,
                        defer_panes=True)
    from app import crash_guard

    crash_guard.install(window.show_error)
    crash_guard.quiet_qt_noise()
    window.theme_choice = theme
    paths = [Path(p).expanduser() for p in args.paths]
    report: dict[str, object] = {}
    features: list[object] = []  # keeps the feature controllers alive with the window

    def on_first_paint() -> None:
        report["first_paint_s"] = (window.first_paint_at or time.perf_counter()) - started
        report["ready_s"] = time.perf_counter() - started  # the tree and the inspector are built too
        report["heavy_at_first_paint"] = heavy_modules_loaded()
        if args.exit_after_first_paint:
            print(json.dumps(report), flush=True)
            app.exit(0)
            return
        # After the first paint: asking Qt for the colour scheme builds its Qt namespace (~50 ms).
        from app.theme import apply_theme, follow_system, needs_work_at_start

        if window.theme_choice == "system" and needs_work_at_start(app, "system"):  # dark system, light palette
            apply_theme(app, window.theme_choice)
        follow_system(app, lambda: window.theme_choice)
        from analyzers.loaders import LoadOptions

        target = paths[0] if paths else default_model_path()
        if target is not None and not screenshot:  # the loader process reads while the features install
            window.open_path(target, LoadOptions(trust=args.trust))
        if not args.no_features:
            from app.features import install_features

            features.extend(install_features(window))
        if screenshot and not screenshot_check():  # a --screenshot run checks its --tab before it opens
            return
        if target is not None and screenshot:
            window.open_path(target, LoadOptions(trust=args.trust))
        if len(paths) == 2:
            compare = getattr(window, "compare", None)
            if compare is None:
                finish(fail("compare mode is not part of this build."))
                return
            compare.open_b(paths[1], LoadOptions(trust=args.trust))  # one window, both models side by side
        elif target is None and screenshot:
            finish(fail("no PATH given and the bundled sample models are not built (run `make samples`)."))
        elif target is None:
            window.statusBar().showMessage("Open a model with File ▸ Open file… (Ctrl+O) or drop it here.")

    def on_tree(ok: bool, message: str) -> None:
        report["tree_s"] = time.perf_counter() - started
        report["ok"], report["message"] = ok, message
        report["heavy_at_tree"] = heavy_modules_loaded()
        print(json.dumps(report), flush=True)
        app.exit(0 if ok else EXIT_USER_ERROR)

    if args.exit_after_tree:
        window.loadFinished.connect(on_tree)
    window.firstPainted.connect(on_first_paint)
    code: list[int] = []

    def finish(exit_code: int) -> None:
        if not code:  # the first outcome wins; a cancel caused by closing is not a second error
            code.append(exit_code)
            app.exit(exit_code)

    screenshot_check: Callable[[], bool] = lambda: True  # noqa: E731
    if screenshot:
        from app.screenshot import prepare_screenshot

        prepared = prepare_screenshot(window, args, finish, features)
        if isinstance(prepared, str):
            return fail(prepared)
        screenshot_check = prepared
    else:
        window.show()
    rc = app.exec()
    if args.first_paint_report is not None:
        report["heavy_at_exit"] = heavy_modules_loaded()
        args.first_paint_report.write_text(json.dumps(report))
    _close_windows(app, [window])
    return code[0] if code else rc


def _close_windows(app, windows: list) -> None:
    """Close every window (jobs, the graph server and the loader process stop) and delete them
    while the QApplication still exists: Qt objects destroyed later, in garbage-collection order,
    can crash the interpreter on its way out."""
    from PySide6.QtCore import QCoreApplication, QEvent

    from app.child_process import close_prespawned
    from app.loader_process import shutdown_shared
    from app.runner_process import shutdown_shared as shutdown_runner

    for window in windows:
        window.close()
        window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    shutdown_shared()
    shutdown_runner()
    close_prespawned()
    app.processEvents()
