"""Small text metrics used to check that steered text stays fluent."""
from __future__ import annotations

import re
from typing import Sequence

__all__ = ["distinct_n", "mean_distinct_n"]

_WORD = re.compile(r"\w+|[^\w\s]")


def distinct_n(text: str, n: int = 2) -> float:
    """Share of unique n-grams among a text's word n-grams (1.0 = no repetition; 0 for empty text)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_distinct_n(texts: Sequence[str], n: int = 2) -> float:
    return sum(distinct_n(t, n) for t in texts) / len(texts) if texts else 0.0
