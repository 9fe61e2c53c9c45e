"""Preset dimensions, read from the engine's icon2engine/data/dimensions.json (the same file the
engine reads; the web process does not import the engine's presets module)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class PresetDimension:
    key: str
    name: str
    description: str
    paper: bool
    prompt_pairs: tuple[tuple[str, str], ...]
    judge: dict  # how it is measured: {"kind": "lexicon"} or {"kind": "llm", "fallback": "self", "criterion": …}
    refusal_allowed: bool = False  # declining is the preferred behaviour (harmlessness)


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[PresetDimension, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        PresetDimension(
            key=item["key"],
            name=item["name"],
            description=item.get("description", ""),
            paper=bool(item.get("paper", False)),
            prompt_pairs=tuple((pair["positive"], pair["negative"]) for pair in item["prompt_pairs"]),
            judge=dict(item.get("judge") or {"kind": "lexicon"}),
            refusal_allowed=bool(item.get("refusal_allowed", False)),
        )
        for item in data["dimensions"]
    )


def preset_list() -> tuple[PresetDimension, ...]:
    return _load(Path(settings.ICON2_PRESETS_PATH))


def preset_get(key: str) -> PresetDimension | None:
    return next((preset for preset in preset_list() if preset.key == key), None)
