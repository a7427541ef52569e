"""`--screenshot OUT.png`: wait until the window shows the model (and the tab, graph or attribution asked
for), save it, exit. Used by the README's pictures, the end-to-end tests and a user's scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from app.console import fail
from app.features import any_features

SETTLE_MS = 400  # after loading, let charts and layouts finish before grabbing


def prepare_screenshot(window, args: argparse.Namespace, finish: Callable[[int], None],
                        features: list[object]) -> str | Callable[[], bool]:
    """Arrange for the window to be saved once the model (and the requested tab) finished loading.

    Returns the one-sentence problem with the arguments, or a check to run once the features are
    installed (their tabs exist only then): it says whether the requested tab exists.
    """
    from PySide6.QtCore import QTimer

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        return f"--size must look like 1500x900, not '{args.size}'."
    known = [window.tabs.tabText(i).lower() for i in range(window.tabs.count())]
    index = window.tab_index(args.tab)  # -1 for a feature's tab, which exists after the first paint
    pair = len(getattr(args, "paths", None) or []) == 2  # compare mode: --tab names a page of the compare view
    if pair:
        from widgets.compare_view import TAB_NAMES

        if args.tab.strip().lower() not in [t.lower() for t in TAB_NAMES]:
            return f"there is no compare page '{args.tab}'; choose one of {', '.join(t.lower() for t in TAB_NAMES)}."
        index = 0

    def check_tab() -> bool:
        nonlocal index
        if pair:
            return True
        index = window.tab_index(args.tab)
        if index < 0:
            names = ", ".join(window.tabs.tabText(i).lower() for i in range(window.tabs.count()))
            finish(fail(f"there is no tab '{args.tab}'; choose one of {names}."))
            return False
        window.tabs.setCurrentIndex(index)
        return True

    if index < 0 and not any_features():
        return f"there is no tab '{args.tab}'; choose one of {', '.join(known)}."
    out: Path = args.screenshot
    if out.parent and not out.parent.exists():
        return f"{out}: the folder {out.parent} does not exist."
    window.resize(width, height)
    if index >= 0:
        window.tabs.setCurrentIndex(index)
    window.show()

    grabbed = False

    def grab() -> None:
        nonlocal grabbed
        if grabbed:  # a later state change of the Graph tab (as the window closes) must not grab again
            return
        grabbed = True
        window.repaint()
        if window.grab().save(str(out), "PNG"):
            print(f"Saved {out}", file=sys.stderr)
            finish(0)
        else:
            finish(fail(f"{out}: the screenshot could not be written."))

    def when_tab_ready() -> None:
        if window.views_pending():
            QTimer.singleShot(50, when_tab_ready)
            return
        if pair:
            _compare_then(window, args, lambda: QTimer.singleShot(SETTLE_MS, grab), finish)
            return
        if args.layer:
            window.select_layer(args.layer)
        if args.attribute:
            _explain_then(window, features, args.attribute, lambda: QTimer.singleShot(SETTLE_MS, grab), finish,
                          args.input)
            return
        graph = window.graph_view
        if window.current_tab_title() != "Graph" or graph is None:
            QTimer.singleShot(SETTLE_MS, grab)
            return
        if graph.state in ("graph", "message", "error"):
            QTimer.singleShot(SETTLE_MS * 2, grab)
            return
        graph.stateChanged.connect(lambda state: state in ("graph", "message", "error")
                                   and QTimer.singleShot(SETTLE_MS * 2, grab))

    def on_loaded(ok: bool, message: str) -> None:
        if not ok:
            finish(fail(message or "the model could not be opened."))
            return
        window.ensure_views()
        window.tabs.setCurrentIndex(index)
        when_tab_ready()

    window.loadFinished.connect(on_loaded)
    timer = QTimer(window)
    timer.setSingleShot(True)
    timer.timeout.connect(lambda: finish(fail(f"timed out after {args.timeout:g} s waiting for the window.")))
    timer.start(int(args.timeout * 1000))
    return check_tab


def _compare_then(window, args: argparse.Namespace, then: Callable[[], None], finish: Callable[[int], None]) -> None:
    """Once both models are aligned: show the compare page asked for; Drift computes the drift and Explain runs
    both models (and `--attribute METHOD` on both) first."""
    from PySide6.QtCore import QTimer

    compare = getattr(window, "compare", None)
    if compare is None:
        finish(fail("compare mode is not part of this build."))
        return
    if compare.pending():
        QTimer.singleShot(50, lambda: _compare_then(window, args, then, finish))
        return
    if not compare.active or compare.view is None:
        finish(fail(window.last_error or "the second model could not be opened."))
        return
    tab = args.tab.strip().lower()
    compare.view.show_tab(tab)

    def done(result: object) -> None:
        if result is None:
            finish(fail(window.last_error or f"the compare {tab} job failed."))
        else:
            then()

    if tab == "drift":
        compare.driftFinished.connect(done)
        compare.compute_drift()
    elif tab == "explain":
        compare.explainFinished.connect(done)
        value = args.input or ""
        kind = "auto" if value else "sample"
        compare.run_both({"kind": kind, "value": value, "method": args.attribute, "sign": None})
    else:
        then()


def _choose_input(panel, value: str) -> None:
    """Put `value` (as `run --input` takes it) into the Explain panel's input picker."""
    if value == "random" or value.startswith("random:"):
        source, field = "random", panel.shape
        value = value.partition(":")[2]
    elif value.lower().endswith(".npy"):
        source, field = "npy", panel.npy_path
    elif Path(value).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"):
        source, field = "image", panel.image_path
    else:
        source, field = "text", None
    panel.source.setCurrentIndex(panel.source.findData(source))
    if field is None:
        panel.text.setPlainText(value)
    else:
        field.setText(value)


def _explain_then(window, features: list[object], method: str, then: Callable[[], None],
                  finish: Callable[[int], None], input_value: str | None = None) -> None:
    """Press Run, then Attribute with `method` on the Explain tab, and call `then` when both are shown."""
    from app.features.explain import RunController

    controller = next((f for f in features if isinstance(f, RunController)), None)
    if controller is None or window.current_tab_title() != "Explain":
        finish(fail("--attribute needs --tab explain."))
        return
    panel = controller.panel
    index = panel.method.findData(method)
    if index < 0:
        choices = ", ".join(str(panel.method.itemData(i)) for i in range(panel.method.count()))
        finish(fail(f"unknown attribution method '{method}'; choose one of {choices}."))
        return
    panel.method.setCurrentIndex(index)
    if input_value:
        _choose_input(panel, input_value)
    buttons = [panel.run_button, panel.attribute_button]
    pressed: list[object] = []

    def press_next() -> None:
        if not buttons:
            controller.requestEnded.disconnect(on_end)
            then()
            return
        button = buttons.pop(0)
        pressed.append(button)
        if not button.isEnabled():
            finish(fail(f"the Explain tab cannot {button.text().lower()} this model."))
            return
        button.click()

    def on_end() -> None:
        session = controller.session
        done = session.last_attribution if pressed[-1] is panel.attribute_button else session.last_run
        if done is None:  # failed or cancelled: the error dialog said why
            finish(fail(window.last_error or "the Explain tab's job failed."))
            return
        press_next()

    controller.requestEnded.connect(on_end)
    press_next()
