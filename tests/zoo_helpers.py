"""The bundled sample models for tests: the manifest entry, or a skip when the zoo is not built."""

from __future__ import annotations

import pytest

from analyzers.errors import LayerScopeError


def zoo_or_skip(model_id: str):
    """The manifest entry of bundled model `model_id`; skips the test when the zoo has not been built."""
    from analyzers import samples

    try:
        entry = samples.sample_model(model_id)
    except LayerScopeError as exc:
        pytest.skip(f"sample zoo not built: {exc}")
    if not entry.file.exists():
        pytest.skip(f"{entry.file.name} not built")
    return entry
