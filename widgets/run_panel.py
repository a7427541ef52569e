"""The Explain tab: pick an input and a method, run the model, read the prediction and the map.

Plain data in (set_model, show_run, show_attribution ...), user intent out as signals carrying
plain dataclasses (RunSettings, AttributeSettings); it never touches a model.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from analyzers.explain.attribution import AttributionRequest
from analyzers.explain.display import default_sign, output_position
from analyzers.explain.inputs import Preprocess
from analyzers.explain.requests import AttributeSettings, InputChoice, RunSettings
from analyzers.summary.memory import human_bytes
from widgets.controls import SideBySide, SteadyComboBox
from widgets.method_controls import MethodControls
from widgets.output_views import OutputImageView, VectorPanel
from widgets.saliency_view import SaliencyPanel
from widgets.token_view import TokenView

SOURCES = (("sample", "Bundled sample"), ("image", "Image file"), ("text", "Text"), ("random", "Random tensor"),
           ("npy", ".npy array"))


class RunPanel(QWidget):
    """Input picker, preprocessing, device, method and parameters on the left; results and the map on the right."""

    runRequested = Signal(object)  # RunSettings
    attributeRequested = Signal(object)  # AttributeSettings
    cancelRequested = Signal()
    attachArchitectureRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: tuple[str, ...] = ()
        self._raw_output = False  # the last prediction was an unlabeled output (its target: the largest element)
        self._build_inputs()
        self._build_method()
        self._build_results()
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.model_label)
        left_layout.addWidget(self.arch_button)
        left_layout.addWidget(self.input_box)
        left_layout.addWidget(self.pre_box)
        left_layout.addWidget(self.method_box)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", self)
        self.attribute_button = QPushButton("Attribute", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        for b in (self.run_button, self.attribute_button, self.cancel_button):
            buttons.addWidget(b)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.status)
        left_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.results_box)
        right_layout.addWidget(self.maps, 1)
        # side by side when the tab is wide enough, else the controls above the results
        self.splitter = SideBySide(scroll, right, self)
        self.controls_scroll = scroll
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.run_button.clicked.connect(self._emit_run)
        self.attribute_button.clicked.connect(self._emit_attribute)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.arch_button.clicked.connect(self.attachArchitectureRequested)
        self.set_model("", "unknown", [], None, [], ())

    # --- building -------------------------------------------------------------------------------

    def _build_inputs(self) -> None:
        self.model_label = QLabel("No model open.", self)
        self.model_label.setWordWrap(True)
        self.arch_button = QPushButton("Attach architecture…", self)
        self.arch_button.setToolTip("A state_dict holds weights only: pick the .py file and class that build it")
        self.input_box = QGroupBox("Input", self)
        self.source = SteadyComboBox(self)
        for key, title in SOURCES:
            self.source.addItem(title, key)
        self.sample = SteadyComboBox(self)
        self.image_path = QLineEdit(self)
        self.image_path.setPlaceholderText("PNG or JPEG file")
        image_browse = QPushButton("Browse…", self)
        image_browse.clicked.connect(lambda: self._browse(self.image_path, "Images (*.png *.jpg *.jpeg *.bmp)"))
        self.text = QPlainTextEdit(self)
        self.text.setPlaceholderText("A sentence; for question answering: question || context")
        self.text.setMaximumHeight(90)
        self.shape = QLineEdit(self)
        self.shape.setPlaceholderText("e.g. 1x28x28 (empty: the model's input shape)")
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.npy_path = QLineEdit(self)
        self.npy_path.setPlaceholderText(".npy file (the batch axis is added)")
        npy_browse = QPushButton("Browse…", self)
        npy_browse.clicked.connect(lambda: self._browse(self.npy_path, "NumPy arrays (*.npy)"))
        self.source_pages = QStackedWidget(self)
        for widgets in ((self.sample,), (self.image_path, image_browse), (self.text,),
                        (self.shape, QLabel("seed", self), self.seed), (self.npy_path, npy_browse)):
            page = QWidget(self)
            row = QHBoxLayout(page)
            row.setContentsMargins(0, 0, 0, 0)
            for w in widgets:
                row.addWidget(w)
            self.source_pages.addWidget(page)
        self.source.currentIndexChanged.connect(self._on_source)
        self.device = SteadyComboBox(self)
        self.set_devices([("auto", "best available"), ("cpu", "CPU")])
        self.top_k = QSpinBox(self)
        self.top_k.setRange(1, 100)
        self.top_k.setValue(5)
        form = QFormLayout(self.input_box)
        form.addRow("Source", self.source)
        form.addRow(self.source_pages)
        form.addRow("Device", self.device)
        form.addRow("Top-k", self.top_k)

        self.pre_box = QGroupBox("Image preprocessing", self)
        self.pre_h, self.pre_w = QSpinBox(self), QSpinBox(self)
        for s in (self.pre_h, self.pre_w):
            s.setRange(0, 4096)
            s.setSpecialValueText("keep")
        self.pre_channels = SteadyComboBox(self)
        self.pre_channels.addItems(["1", "3"])
        self.pre_layout = SteadyComboBox(self)
        self.pre_layout.addItems(["NCHW", "NHWC"])
        self.pre_scale = QDoubleSpinBox(self)
        self.pre_scale.setDecimals(6)
        self.pre_scale.setRange(0.0, 1000.0)
        self.pre_mean, self.pre_std = QLineEdit(self), QLineEdit(self)
        self.pre_invert = QCheckBox("invert (255 − p)", self)
        size_row = QHBoxLayout()
        size_row.addWidget(self.pre_h)
        size_row.addWidget(QLabel("×", self))
        size_row.addWidget(self.pre_w)
        pre_form = QFormLayout(self.pre_box)
        pre_form.addRow("Size H × W", size_row)
        pre_form.addRow("Channels", self.pre_channels)
        pre_form.addRow("Layout", self.pre_layout)
        pre_form.addRow("Scale", self.pre_scale)
        pre_form.addRow("Mean", self.pre_mean)
        pre_form.addRow("Std", self.pre_std)
        pre_form.addRow(self.pre_invert)
        self._auto_invert = False
        self.set_preprocess(Preprocess())

    def _build_method(self) -> None:
        from analyzers.methods import methods

        self.method_box = QGroupBox("Attribution", self)
        self.method = SteadyComboBox(self)
        for key, cls in methods().items():
            self.method.addItem(cls.title, key)
            self.method.setItemData(self.method.count() - 1, cls.summary, Qt.ItemDataRole.ToolTipRole)
        self.method.setCurrentIndex(max(0, self.method.findData("ig")))
        self.target = SteadyComboBox(self)
        self.layer = SteadyComboBox(self)
        self.method_seed = QSpinBox(self)
        self.method_seed.setRange(0, 2**31 - 1)
        self.sanity = QCheckBox("Randomisation check", self)
        self.sanity.setToolTip("Adebayo et al.: recompute the map with the top layers re-initialised and report the "
                               "rank correlation with this one")
        self.sanity_layers = QSpinBox(self)
        self.sanity_layers.setRange(1, 100)
        self.sanity_layers.setValue(1)
        self.sanity_layers.setSuffix(" top layer(s)")
        form = QFormLayout(self.method_box)
        form.addRow("Method", self.method)
        form.addRow("Target", self.target)
        self.controls = MethodControls(self, form)  # one row per method parameter, from the method classes
        self._layer_label = QLabel("Layer", self)
        form.addRow(self._layer_label, self.layer)
        self._seed_label = QLabel("Seed", self)
        form.addRow(self._seed_label, self.method_seed)
        sanity_row = QHBoxLayout()
        sanity_row.addWidget(self.sanity)
        sanity_row.addWidget(self.sanity_layers)
        form.addRow(sanity_row)
        self.method.currentIndexChanged.connect(self._on_method)
        base = self.controls.base_combo()
        if base is not None:
            base.currentIndexChanged.connect(self._on_method)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self._on_method()

    def _build_results(self) -> None:
        self.results_box = QGroupBox("Result", self)
        self.device_label = QLabel("", self)
        self.latency_label = QLabel("", self)
        self.memory_label = QLabel("", self)
        self.answer_label = QLabel("", self)
        for label in (self.device_label, self.latency_label, self.memory_label, self.answer_label):
            label.setWordWrap(True)  # long figures wrap instead of widening the whole tab
        self.answer_label.setWordWrap(True)
        self.sanity_label = QLabel("", self)
        self.sanity_label.setWordWrap(True)
        self.notes_label = QLabel("", self)
        self.notes_label.setWordWrap(True)
        self.top = QTableWidget(0, 4, self)
        self.top.setHorizontalHeaderLabels(["#", "Label", "Probability", "Score"])
        self.top.verticalHeader().setVisible(False)
        header = self.top.horizontalHeader()
        for column in (0, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.top.setMaximumHeight(170)
        self.top.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.output_image = OutputImageView(self)  # a raw output that is a picture (a generator's image)
        self.output_image.setFixedHeight(170)
        self.output_image.setToolTip("The model's output; click a pixel to explain it (Target)")
        self.output_image.pixelClicked.connect(self.select_output_target)
        form = QFormLayout(self.results_box)
        form.addRow("Device", self.device_label)
        form.addRow("Latency", self.latency_label)
        form.addRow("Peak memory", self.memory_label)
        form.addRow("Answer", self.answer_label)
        form.addRow("Output", self.output_image)
        form.addRow(self.top)
        form.addRow("Sanity", self.sanity_label)
        form.addRow(self.notes_label)
        form.setRowVisible(self.output_image, False)
        self._results_form = form
        self.saliency = SaliencyPanel(self)
        self.tokens = TokenView(self)
        self.vector = VectorPanel(self)  # a vector input (a latent): one bar per dimension
        self.maps = QStackedWidget(self)
        self.maps.addWidget(self.saliency)
        self.maps.addWidget(self.tokens)
        self.maps.addWidget(self.vector)

    # --- plain data in --------------------------------------------------------------------------

    def set_model(self, name: str, kind: str, samples: list[tuple[str, str]], preprocess: Preprocess | None,
                  layers: list[Any], labels: tuple[str, ...], needs_arch: bool = False) -> None:
        """A new model: its input kind, bundled samples (label, value), preprocessing, layers and class labels;
        `needs_arch` shows "Attach architecture…" (a weights-only checkpoint)."""
        self.model_label.setText(name or "No model open.")
        self.arch_button.setVisible(needs_arch)
        self.sample.clear()
        for label, value in samples:
            self.sample.addItem(label, value)
        keys = [k for k, _ in SOURCES]
        if samples:
            self.source.setCurrentIndex(keys.index("sample"))
        elif kind in ("text", "qa"):
            self.source.setCurrentIndex(keys.index("text"))
        elif kind == "image":
            self.source.setCurrentIndex(keys.index("image"))
        else:
            self.source.setCurrentIndex(keys.index("random"))
        self.pre_box.setVisible(kind in ("image", "unknown", "tensor"))
        if preprocess is not None:
            self.set_preprocess(preprocess)
        self.set_layers(layers)
        self.set_labels(labels)
        self.clear_results()
        enabled = bool(name)
        for b in (self.run_button, self.attribute_button):
            b.setEnabled(enabled)

    def set_labels(self, labels: tuple[str, ...], count: int | None = None) -> None:
        """Class labels for the target picker ("predicted" first); indices only when unlabeled."""
        self.labels = tuple(labels)
        current = self.target.currentData()
        self.target.clear()
        self.target.addItem(self._default_target_text(), None)
        names = list(labels) or [str(i) for i in range(min(count or 0, 1000))]
        for i, label in enumerate(names):
            self.target.addItem(f"{i}: {label}" if labels else label, i)
        index = self.target.findData(current)
        self.target.setCurrentIndex(max(0, index))

    def set_layers(self, layers: list[Any], default: str | None = None) -> None:
        """Layers for Grad-CAM (paths with their types); convolutions listed first, the default selected."""
        self.layer.clear()
        self.layer.addItem("default (last convolution)", None)
        convs = [layer for layer in layers if getattr(layer, "kind", "") == "conv"]
        others = [layer for layer in layers if getattr(layer, "kind", "") != "conv"]
        for layer in [*convs, *others]:
            self.layer.addItem(f"{layer.path}  ({layer.type})", layer.path)
        if default is not None:
            self.select_layer(default)

    def select_layer(self, path: str) -> bool:
        """Pick `path` as the Grad-CAM layer (the tree's selection); False when it is not a layer here."""
        index = self.layer.findData(path)
        if index >= 0:
            self.layer.setCurrentIndex(index)
        return index >= 0

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """Devices the selector offers as (name, description); "auto" is always first."""
        current = self.device.currentData()
        self.device.clear()
        names = [n for n, _ in devices]
        if "auto" not in names:
            self.device.addItem("auto — best available", "auto")
        for name, description in devices:
            self.device.addItem(f"{name} — {description}" if description else name, name)
        index = self.device.findData(current)
        self.device.setCurrentIndex(max(0, index))

    def set_preprocess(self, pre: Preprocess) -> None:
        """Fill the preprocessing panel."""
        h, w = pre.size or (0, 0)
        self.pre_h.setValue(h)
        self.pre_w.setValue(w)
        self.pre_channels.setCurrentText(str(pre.channels))
        self.pre_layout.setCurrentText(pre.layout)
        self.pre_scale.setValue(pre.scale)
        self.pre_mean.setText(",".join(f"{v:g}" for v in pre.mean))
        self.pre_std.setText(",".join(f"{v:g}" for v in pre.std))
        self.pre_invert.setChecked(pre.invert)
        self._auto_invert = pre.auto_invert

    def set_busy(self, busy: bool, text: str = "") -> None:
        """Disable Run/Attribute while a job runs; Cancel is enabled then."""
        self.run_button.setEnabled(not busy)
        self.attribute_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.status.setText(text)

    def show_status(self, text: str) -> None:
        """One line under the buttons (progress, errors)."""
        self.status.setText(text)

    def clear_results(self) -> None:
        """Forget the last result."""
        for label in (self.device_label, self.latency_label, self.memory_label, self.answer_label, self.sanity_label,
                      self.notes_label):
            label.setText("")
        self.top.setRowCount(0)
        self._raw_output = False
        self.target.setItemText(0, self._default_target_text())
        self._show_output(None)
        self.saliency.clear()
        self.tokens.clear_tokens()
        self.vector.clear()

    def show_prediction(self, prediction: Any, device: str, notes: list[str] | None = None) -> None:
        """Top-k classes (or positions for QA, or the raw output summarised) and the device that ran."""
        self.device_label.setText(device)
        self.sanity_label.setText("")  # a new result: the last attribution's checks no longer apply
        answer = getattr(prediction, "answer", None)
        self.answer_label.setText(f"“{answer.text}” (tokens {answer.start}–{answer.end})" if answer else "")
        raw = prediction.kind == "raw"
        self._show_output(getattr(prediction, "values", None) if raw else None)
        self._results_form.setRowVisible(self.top, not raw)
        self._raw_output = raw
        self.target.setItemText(0, self._default_target_text())
        if raw:
            o = prediction.output
            self.top.setRowCount(0)
            self.answer_label.setText(f"output {list(o.shape)}: min {o.min:.4g}, max {o.max:.4g}, mean {o.mean:.4g}, "
                                      f"std {o.std:.4g}")
        else:
            self.top.setRowCount(len(prediction.top))
            for row, c in enumerate(prediction.top):
                for col, text in enumerate((str(c.index), c.label, f"{100 * c.probability:.2f} %", f"{c.score:.4g}")):
                    item = QTableWidgetItem(text)
                    if col != 1:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.top.setItem(row, col, item)
        self.notes_label.setText("\n".join(notes or []))

    def show_timing(self, timing: Any) -> None:
        """Latency (median after warm-up) and peak memory."""
        self.latency_label.setText(f"{timing.median_ms:.3f} ms median of {timing.runs} runs "
                                   f"(after {timing.warmup} warm-up; min {timing.min_ms:.3f}, max {timing.max_ms:.3f})")
        self.memory_label.setText(f"{human_bytes(timing.peak_bytes)} ({timing.memory_kind})")

    def show_attribution(self, attribution: Any) -> None:
        """The map over the input (or coloured tokens), with the method, target and IG completeness."""
        from analyzers.explain.sanity import completeness_sentence

        a = attribution
        self.show_prediction(a.prediction, a.device)
        sign = default_sign(a.method, a.parameters)
        raw = a.prediction.kind == "raw"
        target = f"{a.target_label} (flat index {a.target})" if raw else f"target {a.target} ({a.target_label})"
        from analyzers.methods import method_class

        caption = (f"{method_class(a.method).title} for {target} on {a.device}: "
                   f"{a.seconds:.2f} s, {a.forwards} forward passes.")
        if a.delta is not None:
            caption += f" Convergence δ = {a.delta:.3g}."
        caption = " ".join((caption, *a.notes, *a.input.notes))
        # Every attribution replaces the Sanity row: IG's completeness must not stay beside a Grad-CAM map.
        self.sanity_label.setText(completeness_sentence(a) if a.completeness is not None else "")
        if raw:
            self.output_image.mark(a.target)
        if a.tokens:
            self.tokens.set_tokens(a.tokens, a.map, sign, caption=caption)
            self.maps.setCurrentWidget(self.tokens)
        elif a.map.ndim == 1:  # a vector input (a latent): a one-pixel-high heat strip says nothing
            self.vector.set_map(a.map, caption)
            self.maps.setCurrentWidget(self.vector)
        else:
            self.saliency.set_map(a.map, a.input.display, a.input.layout, sign, caption)
            self.maps.setCurrentWidget(self.saliency)

    def _default_target_text(self) -> str:
        return "largest output" if self._raw_output else "predicted class"

    def _show_output(self, values: Any) -> None:
        """The raw output as a picture when it is image-like; the row is hidden otherwise."""
        shown = self.output_image.set_output(values)
        self._results_form.setRowVisible(self.output_image, shown)

    def select_output_target(self, index: int) -> None:
        """Make output element `index` (a clicked pixel) the attribution target."""
        found = self.target.findData(index)
        if found < 0:
            self.target.addItem(output_position(index, self.output_image.shape), index)
            found = self.target.count() - 1
        self.target.setCurrentIndex(found)
        self.output_image.mark(index)

    def show_sanity(self, check: Any) -> None:
        """The randomisation check's rank correlation and verdict, below IG's completeness."""
        text = (f"Re-initialised {', '.join(check.layers)}: Spearman {check.spearman_abs:.3f} (|map|), "
                f"{check.spearman_signed:.3f} (signed). {check.verdict}")
        previous = self.sanity_label.text()
        self.sanity_label.setText(f"{previous}\n{text}" if previous else text)

    # --- user intent out -------------------------------------------------------------------------

    def input_choice(self) -> InputChoice:
        """The input as picked now."""
        kind = self.source.currentData()
        value = {"sample": str(self.sample.currentIndex()), "image": self.image_path.text().strip(),
                 "text": self.text.toPlainText(), "random": self.shape.text().strip(),
                 "npy": self.npy_path.text().strip()}[kind]
        return InputChoice(kind, value, self.seed.value(), self.preprocess() if kind == "image" else None)

    def preprocess(self) -> Preprocess:
        """The preprocessing panel's values (mean/std fields that do not parse keep 0 / 1)."""
        size = (self.pre_h.value(), self.pre_w.value()) if self.pre_h.value() and self.pre_w.value() else None
        return Preprocess(size=size, channels=int(self.pre_channels.currentText()), layout=self.pre_layout.currentText(),
                          scale=self.pre_scale.value(), mean=_floats(self.pre_mean.text(), 0.0),
                          std=_floats(self.pre_std.text(), 1.0), invert=self.pre_invert.isChecked(),
                          auto_invert=self._auto_invert and not self.pre_invert.isChecked())

    def run_settings(self) -> RunSettings:
        """What Run would ask for now."""
        return RunSettings(self.input_choice(), self.device.currentData() or "auto", self.top_k.value())

    def _smooth_base(self) -> str | None:
        base = self.controls.base_combo()
        return base.currentData() if base is not None else None

    def attribution_request(self) -> AttributionRequest:
        """The attribution the method panel describes."""
        method = self.method.currentData()
        return AttributionRequest(method, self.target.currentData(), layer=self.layer.currentData(),
                                  seed=self.method_seed.value(),
                                  params=self.controls.values_for(method, self._smooth_base()))

    def attribute_settings(self) -> AttributeSettings:
        """What Attribute would ask for now."""
        return AttributeSettings(self.run_settings(), self.attribution_request(), self.sanity.isChecked(),
                                 self.sanity_layers.value())

    def _emit_run(self) -> None:
        self.runRequested.emit(self.run_settings())

    def _emit_attribute(self) -> None:
        self.attributeRequested.emit(self.attribute_settings())

    def _on_source(self, index: int) -> None:
        # Only the visible page counts towards the height, so a one-line choice leaves no gap.
        for i in range(self.source_pages.count()):
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            self.source_pages.widget(i).setSizePolicy(policy, policy)
        self.source_pages.setCurrentIndex(index)
        self.source_pages.adjustSize()

    def _on_method(self, *_: object) -> None:
        from analyzers.methods import method_class

        method = self.method.currentData() or "ig"
        base = self._smooth_base()
        self.controls.show_for(method, base)
        cls = method_class(method)
        uses_layer = cls.uses_layer(AttributionRequest(method, params=self.controls.values_for(method, base)))
        for widget in (self._layer_label, self.layer):
            widget.setVisible(uses_layer)
        seeded = cls.uses_seed or (base is not None and "smooth_base" in cls.params and method_class(base).uses_seed)
        for widget in (self._seed_label, self.method_seed):
            widget.setVisible(seeded)

    def _browse(self, target: QLineEdit, pattern: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose an input", target.text(), pattern)
        if path:
            target.setText(path)


def _floats(text: str, default: float) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        return (default,)
    return values or (default,)
