"""Shared helpers for the benchmarks (run from the repository root: python bench/NAME.py)."""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

INSTRUCTIONS = [line.strip() for line in (Path(__file__).resolve().parents[1] / "examples" / "neutral_instructions.txt").read_text().splitlines() if line.strip()]


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result
