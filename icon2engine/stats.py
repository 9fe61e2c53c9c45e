"""Compute accounting: what each stage spent (wall time, tokens, device)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["StageStats"]


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
