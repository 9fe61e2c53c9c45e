"""Models stay loaded in the worker process between tasks (one at a time: a GPU holds one)."""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_cached: tuple[tuple, object] | None = None


def engine_spec(model_row):
    """Turn a studio ModelSpec row into the engine's ModelSpec."""
    from icon2engine import ModelSpec

    source = "embedded" if model_row.kind == "embedded" else model_row.path_or_id
    return ModelSpec(
        source=source,
        revision=model_row.revision or None,
        layers_attr=model_row.layers_attr or None,
        device=os.environ.get("ICON2_DEVICE", "auto"),
        allow_download=os.environ.get("ICON2_ALLOW_DOWNLOAD") == "1",
    )


def get_model(model_row):
    global _cached
    from icon2engine import load_model

    spec = engine_spec(model_row)
    key = (spec.source, spec.revision, spec.layers_attr, spec.device)
    with _lock:
        if _cached is None or _cached[0] != key:
            _cached = None  # free the old one first
            _cached = (key, load_model(spec))
        return _cached[1]
