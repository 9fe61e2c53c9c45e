"""Progress is a parameter: the engine reports through this small protocol.

The command line passes a :class:`TqdmProgress`, the worker one that writes to the
database and the channel layer, tests a :class:`RecordingProgress`. A reporter may raise
:class:`~icon2engine.errors.StopRequested` from ``advance`` to stop the stage between
batches (cancellation).
"""
from __future__ import annotations

import sys
from typing import Any, Protocol, runtime_checkable

__all__ = ["Progress", "NullProgress", "TqdmProgress", "RecordingProgress"]


@runtime_checkable
class Progress(Protocol):
    def start(self, stage: str, total: int | None) -> None:
        """A stage begins; ``total`` is the number of work units (None if unknown)."""

    def advance(self, n: int = 1, **metrics: Any) -> None:
        """``n`` more units are done; ``metrics`` are small JSON-able numbers."""

    def finish(self) -> None:
        """The stage ended (successfully or not)."""


class NullProgress:
    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **metrics: Any) -> None:
        pass

    def finish(self) -> None:
        pass


class TqdmProgress:
    """Draws a progress bar on stderr (used by the command line)."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, stage: str, total: int | None) -> None:
        from tqdm import tqdm

        self.finish()
        self._bar = tqdm(total=total, desc=stage, file=sys.stderr, dynamic_ncols=True)

    def advance(self, n: int = 1, **metrics: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(n)
        if metrics:
            self._bar.set_postfix({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class RecordingProgress:
    """Keeps every event in memory (for tests and notebooks)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, stage: str, total: int | None) -> None:
        self.events.append(("start", {"stage": stage, "total": total}))

    def advance(self, n: int = 1, **metrics: Any) -> None:
        self.events.append(("advance", {"n": n, **metrics}))

    def finish(self) -> None:
        self.events.append(("finish", None))

    @property
    def done(self) -> int:
        return sum(e[1]["n"] for e in self.events if e[0] == "advance")
