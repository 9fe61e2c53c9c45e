"""The engine's progress protocol, as the worker implements it: throttled writes to the
database (which also carry the heartbeat) and a notification to the run's channel group."""
from __future__ import annotations

import time
from typing import Any

from icon2engine import StopRequested


class ChunkProgress:
    """Reports a chunk's progress. ``scale`` converts engine units to stage items (a pair is
    two generated rows). Raises StopRequested from ``advance`` once the run is cancelled, so
    work stops within one batch."""

    def __init__(self, chunk, *, scale: float = 1.0, heartbeat=None, percent: bool = False, curve: bool = False) -> None:
        from django.conf import settings

        self.chunk = chunk
        self.scale = scale
        self.interval_s = settings.ICON2_PROGRESS_INTERVAL_MS / 1000
        self.percent = percent  # the engine's total (e.g. training steps) maps onto the chunk's 0..size
        self.heartbeat = heartbeat
        self.done_units = 0
        self.base = 0  # items finished by earlier engine stages within this chunk
        self._last = 0.0
        self._metrics: dict[str, Any] = {}
        self.curve: list[dict] | None = [] if curve else None  # every logged point (training), for live charts

    def start(self, stage: str, total: int | None) -> None:
        self.base += int(self.done_units * self.scale)
        self.done_units = 0
        if self.percent and total:
            self.base, self.scale = 0, self.chunk.size / total

    def advance(self, n: int = 1, **metrics: Any) -> None:
        from webapp.jobs.services import chunk_progress

        self.done_units += n
        self._metrics.update(metrics)
        if self.curve is not None and "loss" in metrics:
            self.curve.append({"step": len(self.curve) + 1, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}})
        if self.heartbeat is not None and self.heartbeat.cancelled:
            raise StopRequested("the run was cancelled")
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        done = min(self.chunk.size, self.base + int(self.done_units * self.scale))
        metrics = dict(self._metrics)
        if self.curve:
            metrics["curve"] = self.curve[-200:]
        if chunk_progress(chunk=self.chunk, done=done, metrics=metrics or None):
            raise StopRequested("the run was cancelled")

    def finish(self) -> None:
        pass
