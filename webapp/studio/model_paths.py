"""Where team models may be loaded from: one rule for the model form and for the worker.

A local directory or .gguf file must lie under one of the operator's ICON2_MODEL_ROOTS, and never
under MEDIA_ROOT (team uploads and the runs' trained adapters: a team reaches its own adapters
through the run that made them, never by path). The path is resolved first, so `..` and
symbolic links cannot step outside. A refused path always gets the same message, whatever is
or is not at that path, so the form reveals nothing about the worker's file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

MODEL_PATH_REFUSED = (
    "This path is not in a model folder this server allows. Put the model under one of the folders "
    "your operator lists in ICON2_MODEL_ROOTS and give its absolute path."
)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def model_path_allowed(path: str) -> bool:
    """True when `path` (absolute) resolves to a place under an allowed root and outside MEDIA_ROOT."""
    raw = (path or "").strip()
    if not raw or "\x00" in raw or not os.path.isabs(os.path.expanduser(raw)):
        return False
    try:
        resolved = Path(raw).expanduser().resolve()
        roots = [Path(root).expanduser().resolve() for root in settings.ICON2_MODEL_ROOTS]
        media = Path(settings.MEDIA_ROOT).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    if _inside(resolved, media):
        return False
    return any(_inside(resolved, root) for root in roots)
