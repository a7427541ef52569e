"""Window features, one module per tab or exporter, each with `install(window)` (napari's plug-in shape).

A new tab is a new module here plus its line in FEATURE_MODULES; the window installs them right after
its first paint, in this order.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

FEATURE_MODULES = ("app.features.explain", "app.features.attention", "app.features.report",
                   "app.features.shapes", "app.features.weights", "app.features.compare")


def install_features(window: Any) -> list[Any]:
    """Install every feature module present in this build into `window`; returns their controllers."""
    controllers = []
    for name in FEATURE_MODULES:
        if importlib.util.find_spec(name) is not None:
            controllers.append(importlib.import_module(name).install(window))
    return controllers


def any_features() -> bool:
    """True when at least one feature module is present (a build without them has only the core tabs)."""
    return any(importlib.util.find_spec(m) is not None for m in FEATURE_MODULES)
