"""Attribution on Keras models: each method's GradientTape steps (analyzers/methods/), dispatched here.

Each method is a step generator: it checks the cancel token and yields progress between chunks of
path points / samples / occluded windows, so a long run stays responsive without threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analyzers.errors import LayerScopeError
from analyzers.explain.attribution import AttributionRequest, RawAttribution
from analyzers.explain.inputs import ModelInput
from analyzers.methods import KerasCall, method_class
from analyzers.tasks import CancelToken, Steps

if TYPE_CHECKING:
    from analyzers.runtime.keras_runtime import KerasLiveModel


def run(live: KerasLiveModel, inp: ModelInput, req: AttributionRequest, token: CancelToken | None
        ) -> Steps[RawAttribution]:
    """Dispatch `req` (target resolved) to its method; returns the map with the batch axis kept."""
    cls = method_class(req.method)
    if cls.keras_unavailable:
        raise LayerScopeError(cls.keras_unavailable)
    params = cls.parameters(req)
    if live.is_text(inp):
        layer = live.layer(req.layer or "")
        ids = np.asarray(inp.array)
        base_ids = np.asarray(inp.baseline_ids if inp.baseline_ids is not None else np.zeros_like(ids), dtype=ids.dtype)
        params["layer"] = req.layer
        params["baseline"] = "padding tokens"
        call = KerasCall(live, inp, ids, base_ids, req, token, params)
        return (yield from cls.keras_text_run(call, layer, ids, base_ids))
    x = np.asarray(inp.array, dtype=np.float32)
    base = np.asarray(req.baselines if req.baselines is not None else np.zeros_like(x), dtype=np.float32)
    return (yield from cls.keras_run(KerasCall(live, inp, x, base, req, token, params)))
