"""Wires the Explain tab to live models: run and attribute in "model" jobs of the window's JobRunner.

The live model is opened on the first Run/Attribute (in the job, off the GUI thread) and kept until
the model, its options or the device change. Only model-pool threads touch it: that pool has one
thread, so two jobs never hook the same module at once.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QInputDialog, QVBoxLayout, QWidget

from analyzers.errors import LayerScopeError
from analyzers.inputs import (
    ModelInput,
    Preprocess,
    image_input,
    npy_input,
    random_for,
    sample_input,
    sample_label,
    text_for,
)
from analyzers.loaders import LoadOptions
from analyzers.runtime import LayerRef, zoo_entry
from analyzers.tasks import CancelToken, Progress, Steps

if TYPE_CHECKING:
    from widgets.run_panel import AttributeSettings, InputChoice, RunPanel, RunSettings

RUN_LABEL = "Explain: running the model"
ATTRIBUTE_LABEL = "Explain: attribution"
CONV_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D")


@dataclass(frozen=True)
class RunOutcome:
    """What a Run job hands back to the GUI thread."""

    result: Any  # analyzers.runtime.RunResult
    layers: list[LayerRef]
    default_layer: str | None
    labels: tuple[str, ...]
    notes: list[str]


@dataclass(frozen=True)
class AttributeOutcome:
    """What an Attribute job hands back: the map, the optional randomisation check, the live model's layers."""

    attribution: Any  # analyzers.attribution.Attribution
    sanity: Any  # analyzers.sanity.RandomizationCheck | None
    layers: list[LayerRef]
    default_layer: str | None


def summary_input_kind(summary: Any) -> str:
    """A guess of what a summarised model takes, before it is loaded: image, text or unknown."""
    if summary is None:
        return "unknown"
    if summary.source.format == "hf" or (summary.config or {}).get("vocab_size"):
        return "text"
    for node, _ in summary.walk():
        if node.type in CONV_TYPES:
            return "image"
        if node.type == "Embedding":
            return "text"
    return "unknown"


def summary_is_module(summary: Any) -> bool:
    """True when the checkpoint pickles a whole module (its code comes with it; no architecture needed)."""
    return summary.source.format == "pytorch-module"


def summary_layers(summary: Any) -> list[LayerRef]:
    """The summary's layers as picker entries (the live model's list replaces them after a run)."""
    out = []
    for node, _ in summary.walk():
        if not node.path:
            continue
        kind = "conv" if node.type in CONV_TYPES else "embedding" if node.type == "Embedding" else "other"
        out.append(LayerRef(node.path, node.type, kind))
    return out


def arch_classes(py_file: Path) -> list[str]:
    """Class names defined at the top of a Python file, read with `ast` (nothing is imported or run)."""
    try:
        tree = ast.parse(Path(py_file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise LayerScopeError(f"{Path(py_file).name}: it could not be read as Python ({exc}).") from None
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


class RunController(QObject):
    """Runs the Explain tab's requests on the window's model-job pool and paints the results."""

    def __init__(self, window: Any, panel: RunPanel | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.jobs = window.jobs
        self.page = QWidget()
        QVBoxLayout(self.page).setContentsMargins(0, 0, 0, 0)
        self._panel: RunPanel | None = None
        self.tab_index = window.add_tab("Explain", self.page)
        self._model: tuple[Path, LoadOptions] | None = None
        self._job: int | None = None
        self._live: Any = None  # touched only inside model jobs
        self._live_key: tuple | None = None
        self._devices_listed = False
        self.last_run: RunOutcome | None = None
        self.last_attribution: AttributeOutcome | None = None
        window.modelChanged.connect(self.on_model_changed)
        window.layerSelected.connect(self.on_layer_selected)
        window.tabs.currentChanged.connect(self._on_tab_changed)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.cancelled.connect(self._on_cancelled)
        self.actions = self._install_menu()
        if panel is not None:
            self._attach(panel)
        if getattr(window, "current_summary", None) is not None:
            self.on_model_changed(window.current_summary)

    @property
    def panel(self) -> RunPanel:
        """The Explain tab's panel, built on first use (it imports pyqtgraph, which start-up does not need)."""
        if self._panel is None:
            from widgets.run_panel import RunPanel

            self._attach(RunPanel())
        assert self._panel is not None
        return self._panel

    def _attach(self, panel: RunPanel) -> None:
        self._panel = panel
        self.page.layout().addWidget(panel)
        panel.runRequested.connect(self.run)
        panel.attributeRequested.connect(self.attribute)
        panel.cancelRequested.connect(self.cancel)
        panel.attachArchitectureRequested.connect(self.attach_architecture)

    def _install_menu(self) -> list[QAction]:
        menu = self.window.menuBar().addMenu("E&xplain")
        items = [("&Run the model", "Ctrl+Shift+R", self._click_run),
                 ("&Attribute", "Ctrl+Shift+A", self._click_attribute),
                 ("Attach &architecture…", None, self.attach_architecture)]
        actions = []
        for text, shortcut, slot in items:
            action = QAction(text, self.window)
            if shortcut:
                action.setShortcut(shortcut)
            action.triggered.connect(slot)
            menu.addAction(action)
            actions.append(action)
        return actions

    def _click_run(self) -> None:
        if self.panel.run_button.isEnabled():
            self.panel.run_button.click()

    def _click_attribute(self) -> None:
        if self.panel.attribute_button.isEnabled():
            self.panel.attribute_button.click()

    # --- the window's model ------------------------------------------------------------------------

    def on_model_changed(self, summary: Any) -> None:
        """A new model (or none): reset the panel from the summary and the sample manifest; no framework yet."""
        path = getattr(self.window, "current_path", None)
        options = getattr(self.window, "current_options", None) or LoadOptions()
        if summary is None or path is None:
            self._model = None
            if self._panel is not None:
                self._panel.set_model("", "unknown", [], None, [], ())
            return
        self._model = (Path(path), options)
        entry = zoo_entry(Path(path))
        samples: list[tuple[str, str]] = []
        preprocess = None
        labels: tuple[str, ...] = ()
        kind = summary_input_kind(summary)
        if entry is not None:
            kind = entry.input.kind
            samples = [(sample_label(entry, s), str(i)) for i, s in enumerate(entry.samples)]
            preprocess = Preprocess.from_spec(entry.input) if kind == "image" else None
            labels = tuple(entry.labels)
        elif kind == "image":
            preprocess = Preprocess(layout="NHWC" if summary.source.framework == "keras" else "NCHW")
        weights_only = summary.source.format in ("pytorch", "safetensors") and summary.source.framework == "torch" \
            and not summary_is_module(summary)
        missing_arch = weights_only and not options.arch and not (entry is not None and entry.arch)
        name = f"{Path(path).name} ({summary.source.format})"
        bundled_arch = entry is not None and bool(entry.arch)  # the sample manifest names the class already
        self.panel.set_model(name, kind, samples, preprocess, summary_layers(summary), labels,
                             weights_only and not bundled_arch)
        if missing_arch:
            self.panel.show_status("This file holds weights only: attach its architecture to run it.")
        self._list_devices_if_visible()

    def _on_tab_changed(self, _index: int) -> None:
        self._list_devices_if_visible()

    def _list_devices_if_visible(self) -> None:
        """List devices (which imports torch) only once the user looks at the Explain tab."""
        if self._devices_listed or self._model is None:
            return
        if self.window.tabs.currentIndex() != self.tab_index:
            return
        self._devices_listed = True
        self.jobs.submit(self._device_steps, "Listing devices", "io", on_done=self._on_devices)

    def on_layer_selected(self, path: str) -> None:
        """The tree's selection becomes the Grad-CAM layer when it is one of this model's layers."""
        if self._panel is not None:
            self._panel.select_layer(path)

    # --- requests --------------------------------------------------------------------------------

    def run(self, settings: RunSettings) -> int | None:
        """Start a Run job (predict + latency + memory)."""
        if self._model is None:
            self.window.show_error("Open a model first.")
            return None
        path, options = self._model
        self.panel.set_busy(True, "Running the model…")
        self._job = self.jobs.submit(partial(self._run_steps, path, options, settings), RUN_LABEL, "model",
                                     on_done=self._on_run_done, on_error=self._on_error)
        return self._job

    def attribute(self, settings: AttributeSettings) -> int | None:
        """Start an Attribute job (the map, then the randomisation check when asked)."""
        if self._model is None:
            self.window.show_error("Open a model first.")
            return None
        path, options = self._model
        self.panel.set_busy(True, "Computing the attribution…")
        self._job = self.jobs.submit(partial(self._attribute_steps, path, options, settings), ATTRIBUTE_LABEL, "model",
                                     on_done=self._on_attribute_done, on_error=self._on_error)
        return self._job

    def cancel(self) -> None:
        """Cancel the running Explain job (the hooks it placed are removed as its thread stops)."""
        if self._job is not None:
            self.jobs.cancel(self._job)

    def attach_architecture(self) -> None:
        """Ask for a .py file, a class in it and constructor arguments; reopen the model with them."""
        if self._model is None:
            self.window.show_error("Open a state_dict first, then attach the architecture that builds it.")
            return
        start = str(self._model[0].parent)
        file, _ = QFileDialog.getOpenFileName(self.page, "Python file with the model class", start,
                                              "Python files (*.py)")
        if not file:
            return
        try:
            classes = arch_classes(Path(file))
        except LayerScopeError as exc:
            self.window.show_error(str(exc))
            return
        if not classes:
            self.window.show_error(f"{Path(file).name} defines no class.")
            return
        cls, ok = QInputDialog.getItem(self.page, "Attach architecture", "Class", classes, 0, False)
        if not ok:
            return
        kwargs_text, ok = QInputDialog.getText(self.page, "Attach architecture",
                                               "Constructor arguments (JSON object)", text="{}")
        if ok:
            self.apply_architecture(Path(file), cls, kwargs_text)

    def apply_architecture(self, file: Path, cls: str, kwargs_text: str = "{}") -> None:
        """Reopen the current model with `--arch file.py:cls` and the JSON constructor arguments."""
        try:
            kwargs = json.loads(kwargs_text or "{}")
        except json.JSONDecodeError as exc:
            self.window.show_error(f"The constructor arguments are not valid JSON ({exc.msg}).")
            return
        if not isinstance(kwargs, dict):
            self.window.show_error("The constructor arguments must be a JSON object, e.g. {\"num_classes\": 10}.")
            return
        if self._model is None:
            self.window.show_error("Open a state_dict first, then attach the architecture that builds it.")
            return
        path, options = self._model
        self.window.open_path(path, LoadOptions(options.trust, f"{Path(file).resolve()}:{cls}", kwargs,
                                                options.names_only))

    # --- job bodies (model-pool thread) ------------------------------------------------------------

    def _ensure_live(self, path: Path, options: LoadOptions, device: str) -> Steps[Any]:
        from analyzers.runtime import open_live_model

        key = (str(path), options.trust, options.arch, json.dumps(options.arch_kwargs, sort_keys=True), device)
        if self._live is not None and self._live_key == key:
            return self._live
        if self._live is not None:
            self._live.close()
            self._live = self._live_key = None
        live = yield from open_live_model(path, options, device)
        self._live, self._live_key = live, key
        return live

    def _input(self, live: Any, choice: InputChoice) -> ModelInput:
        from analyzers.runtime import ensure_input_fits

        if choice.kind == "sample":
            if live.sample is None:
                raise LayerScopeError("This model has no bundled samples; pick an image, a text, a .npy or random.")
            samples = live.sample.samples
            index = int(choice.value or 0)
            inp = sample_input(live.sample, samples[index] if 0 <= index < len(samples) else None)
        elif choice.kind == "image":
            if not choice.value:
                raise LayerScopeError("Choose an image file first.")
            inp = image_input(Path(choice.value), choice.preprocess or Preprocess.for_hint(live.hint))
        elif choice.kind == "text":
            inp = text_for(choice.value, live.hint, live.encoder)
        elif choice.kind == "npy":
            if not choice.value:
                raise LayerScopeError("Choose a .npy file first.")
            inp = npy_input(Path(choice.value), live.hint)
        else:
            inp = random_for(live.hint, choice.value or None, choice.seed, live.vocab_size())
        ensure_input_fits(live, inp)
        return inp

    def _run_steps(self, path: Path, options: LoadOptions, settings: RunSettings, token: CancelToken
                   ) -> Steps[RunOutcome]:
        live = yield from self._ensure_live(path, options, settings.device)
        inp = self._input(live, settings.input)
        result = yield from live.run(inp, settings.top_k, 2, settings.runs, token)
        return RunOutcome(result, live.layers(), live.default_layer(), live.labels, [*live.notes, *inp.notes])

    def _attribute_steps(self, path: Path, options: LoadOptions, settings: AttributeSettings, token: CancelToken
                         ) -> Steps[AttributeOutcome]:
        from analyzers.attribution import attribute
        from analyzers.sanity import randomization_check

        live = yield from self._ensure_live(path, options, settings.run.device)
        inp = self._input(live, settings.run.input)
        result = yield from attribute(live, inp, settings.request, token, settings.run.top_k)
        sanity = None
        if settings.sanity:
            sanity = yield from randomization_check(live, result, settings.sanity_layers, settings.request.seed, token)
        return AttributeOutcome(result, sanity, live.layers(), live.default_layer())

    @staticmethod
    def _device_steps(_token: CancelToken) -> Steps[list[tuple[str, str]]]:
        from analyzers.runtime.devices import torch_devices

        yield Progress(0, None, "Listing devices")
        return [(d.name, d.description) for d in torch_devices()]

    # --- results (GUI thread) ---------------------------------------------------------------------

    def _on_devices(self, devices: list[tuple[str, str]]) -> None:
        self.panel.set_devices(devices)

    def _refresh_layers(self, layers: list[LayerRef], default: str | None) -> None:
        chosen = self.panel.layer.currentData()
        self.panel.set_layers(layers)
        if chosen is not None:
            self.panel.select_layer(chosen)

    def _on_run_done(self, outcome: RunOutcome) -> None:
        self._job = None
        self.last_run = outcome
        self.panel.set_busy(False, "")
        self._refresh_layers(outcome.layers, outcome.default_layer)
        if outcome.labels and not self.panel.labels:
            self.panel.set_labels(outcome.labels)
        r = outcome.result
        self.panel.show_prediction(r.prediction, r.device, outcome.notes)
        self.panel.show_timing(r.timing)

    def _on_attribute_done(self, outcome: AttributeOutcome) -> None:
        self._job = None
        self.last_attribution = outcome
        self.panel.set_busy(False, "")
        self._refresh_layers(outcome.layers, outcome.default_layer)
        self.panel.show_attribution(outcome.attribution)
        if outcome.sanity is not None:
            self.panel.show_sanity(outcome.sanity)

    def _on_error(self, message: str) -> None:
        self._job = None
        self.panel.set_busy(False, message)
        self.window.show_error(message)

    def _on_progress(self, job_id: int, progress: Progress) -> None:
        if job_id == self._job and self._panel is not None:
            self.panel.show_status(progress.text)

    def _on_cancelled(self, job_id: int) -> None:
        if job_id == self._job and self._panel is not None:
            self._job = None
            self.panel.set_busy(False, "Cancelled.")


def install(window: Any) -> RunController:
    """Add the Explain tab and its menu to `window` (a MainWindow); returns the controller."""
    return RunController(window)
