"""Models stay loaded in the worker process between tasks (one at a time: a GPU holds one)."""
from __future__ import annotations

import threading

from django.conf import settings

from webapp.studio.models import HUB_ID_RE

_lock = threading.Lock()
_cached: tuple[tuple, object] | None = None


def engine_spec(model_row):
    """Turn a studio ModelSpec row into the engine's ModelSpec.

    The path rule of the model form is checked again here, before anything is loaded: the row may
    have been edited in the database. A hub id must not name a path on this machine either.
    """
    from icon2engine import ModelLoadError, ModelSpec
    from webapp.studio.model_paths import MODEL_PATH_REFUSED, model_path_allowed

    if model_row.kind in ("local_dir", "gguf") and not model_path_allowed(model_row.path_or_id):
        raise ModelLoadError(MODEL_PATH_REFUSED)
    if model_row.kind == "hub" and not HUB_ID_RE.match(model_row.path_or_id or ""):
        raise ModelLoadError("This hub id is not of the form org/name.")
    source = "embedded" if model_row.kind == "embedded" else model_row.path_or_id
    return ModelSpec(
        source=source,
        revision=model_row.revision or None,
        layers_attr=model_row.layers_attr or None,
        device=settings.ICON2_DEVICE,
        allow_download=settings.ICON2_ALLOW_DOWNLOAD,
        hub_only=model_row.kind == "hub",
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
