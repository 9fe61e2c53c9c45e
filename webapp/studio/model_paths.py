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


def reward_model_problem(path: str) -> str | None:
    """Why a folder is not a sequence-classification model (read from its config.json), or None.

    A folder this host cannot see is let through when launch checks are off (the web and the
    workers on separate file systems): the worker checks again before it loads."""
    import json

    folder = Path(path)
    if not folder.is_dir():
        if not settings.ICON2_LAUNCH_CHECKS:
            return None
        return f"{path} is not a folder on this server; give the reward model's folder."
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{path} has no readable config.json, so it is not a Hugging Face model folder."
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        named = ", ".join(map(str, architectures)) or "none"
        return (f"{path} is not a sequence-classification model (its architectures: {named}); a reward model "
                "scores a whole answer, e.g. LlamaForSequenceClassification.")
    return None
