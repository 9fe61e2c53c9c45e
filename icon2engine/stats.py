"""Compute accounting: what each stage spent (wall time, tokens, device)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

__all__ = ["StageStats", "total_stats"]


@dataclass
class StageStats:
    """Accumulates a stage's cost; ``as_dict()`` is small JSON for the database."""

    stage: str
    wall_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    device: str = ""

    def add_time(self, seconds: float, device: str) -> None:
        self.wall_s += seconds
        self.device = device

    def as_dict(self) -> dict[str, float | int | str]:
        d = asdict(self)
        d["wall_s"] = round(d["wall_s"], 3)
        return d


def total_stats(stages: Iterable[StageStats], name: str = "total") -> StageStats:
    """Sum of several stages' cost (the device of the last one that ran).

    Example:
        >>> total_stats([StageStats("extract", 1.0, 10), StageStats("generate", 2.0, 5, 40)]).wall_s
        3.0
    """
    total = StageStats(stage=name)
    for st in stages:
        total.wall_s += st.wall_s
        total.tokens_in += st.tokens_in
        total.tokens_out += st.tokens_out
        total.device = st.device or total.device
    return total
