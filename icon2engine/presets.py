"""Ready-made dimensions: the paper's four criteria (Appendix E) and an easy-to-measure example.

The prompts live in ``icon2engine/data/dimensions.json`` (package data, so an installed engine
has them), which the web app also reads, so both sides offer the same text.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .config import Dimension, PromptPair
from .errors import ConfigError

__all__ = ["PRESETS_FILE", "preset_names", "get_preset", "default_feature_instructions"]

_ROOT = Path(__file__).resolve().parent
PRESETS_FILE = _ROOT / "data" / "dimensions.json"
_FEATURES_FILE = _ROOT / "data" / "feature_instructions.txt"


@lru_cache(maxsize=1)
def _load() -> dict[str, dict]:
    data = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    return {d["key"]: d for d in data["dimensions"]}


def preset_names() -> list[str]:
    """Keys of the available presets: helpfulness, honesty, harmlessness, general, optimism."""
    return list(_load())


def get_preset(key: str) -> Dimension:
    """Return a preset as a :class:`Dimension`, e.g. ``get_preset("general")``."""
    presets = _load()
    if key not in presets:
        raise ConfigError(f"no preset dimension {key!r}; choose one of {', '.join(presets)}")
    d = presets[key]
    return Dimension(
        name=d["key"],
        description=d.get("description", ""),
        prompt_pairs=tuple(PromptPair(p["positive"], p["negative"]) for p in d["prompt_pairs"]),
        refusal_allowed=bool(d.get("refusal_allowed", False)),
    )


def default_feature_instructions() -> list[str]:
    """48 everyday, emotionally neutral instructions used to extract directions when a dimension has none."""
    return [line.strip() for line in _FEATURES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
