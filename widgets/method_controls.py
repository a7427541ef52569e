"""The Explain tab's method parameters, one control per `Param` the methods declare (analyzers/methods/).

Nothing here knows a method by name: a new method file brings its controls with it. Shared names
(`baseline` for IG, GradientShap, Occlusion, DeepLIFT) share one control.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget

from analyzers.methods import all_params, method_class, methods
from analyzers.methods.base import Param
from widgets.controls import SteadyComboBox

INT_LIMIT = 2**31 - 1


def _make(param: Param, parent: QWidget) -> QWidget:
    """The control for one parameter, at its default."""
    if param.kind == "bool":
        box = QCheckBox(param.help, parent)
        box.setChecked(bool(param.default))
        return box
    if param.kind in ("choice", "method"):
        combo = SteadyComboBox(parent)
        if param.kind == "method":
            for key, cls in methods().items():
                if key != "smoothgrad" and not cls.keras_unavailable and not cls.torch_unavailable:
                    combo.addItem(cls.title, key)
                elif key != "smoothgrad":
                    combo.addItem(f"{cls.title} (PyTorch only)", key)
        else:
            for choice in param.choices:
                combo.addItem(choice, choice)
        index = combo.findData(param.default)
        combo.setCurrentIndex(max(0, index))
        return combo
    if param.kind == "int":
        spin = QSpinBox(parent)
        low = 0 if param.auto else int(param.minimum if param.minimum is not None else 0)
        spin.setRange(low, int(min(param.maximum if param.maximum is not None else INT_LIMIT, INT_LIMIT)))
        if param.auto:
            spin.setSpecialValueText("auto")
        spin.setValue(0 if param.default is None else int(param.default))
        return spin
    spin = QDoubleSpinBox(parent)
    spin.setDecimals(3)
    spin.setRange(float(param.minimum if param.minimum is not None else -1e9),
                  float(param.maximum if param.maximum is not None else 1e9))
    spin.setSingleStep(param.step or 0.1)
    spin.setValue(float(param.default))
    return spin


class MethodControls:
    """A control per method parameter in `form`; shows those of the chosen method, reads their values."""

    def __init__(self, parent: QWidget, form: QFormLayout) -> None:
        self.params = all_params()
        self.widgets: dict[str, QWidget] = {}
        self.rows: dict[str, tuple[QLabel, QWidget]] = {}
        for name, param in self.params.items():
            widget = _make(param, parent)
            widget.setToolTip(param.help)
            label = QLabel("" if param.kind == "bool" else (param.label or name), parent)
            form.addRow(label, widget)
            self.widgets[name] = widget
            self.rows[name] = (label, widget)

    def __getitem__(self, name: str) -> QWidget:
        return self.widgets[name]

    def names_for(self, method: str, base: str | None = None) -> set[str]:
        """The parameters of `method` (and of SmoothGrad's base method)."""
        names = set(method_class(method).params)
        if base is not None and "smooth_base" in names:
            names |= set(method_class(base).params)
        return names

    def show_for(self, method: str, base: str | None = None) -> None:
        """Show the rows of `method`'s parameters only."""
        shown = self.names_for(method, base)
        for name, (label, widget) in self.rows.items():
            label.setVisible(name in shown)
            widget.setVisible(name in shown)

    def value(self, name: str) -> Any:
        """The value of one control, typed as its Param says (0 in an 'auto' spin box is None)."""
        param, widget = self.params[name], self.widgets[name]
        if param.kind == "bool":
            return widget.isChecked()
        if param.kind in ("choice", "method"):
            return widget.currentData()
        value = widget.value()
        if param.auto and not value:
            return None
        return int(value) if param.kind == "int" else float(value)

    def values_for(self, method: str, base: str | None = None) -> dict[str, Any]:
        """The values of `method`'s parameters (SmoothGrad's base's too)."""
        return {name: self.value(name) for name in self.names_for(method, base)}

    def base_combo(self) -> QWidget | None:
        """The control that picks SmoothGrad's base method, if a method has one."""
        for name, param in self.params.items():
            if param.kind == "method":
                return self.widgets[name]
        return None
