"""Cleaning rules for synthesised (or uploaded) instructions, and exact / near-exact de-duplication.

A 135M model sampled at temperature 1.0 writes many rambling or broken "instructions" (about a
third are clearly usable), so every candidate goes through these rules, in this order, and
the first rule it breaks is recorded as its drop reason:

1. ``empty``          nothing left after stripping template tokens and whitespace;
2. ``truncated``      it did not end by closing the user turn (it hit the token limit);
3. ``template_tokens`` it opened another turn or wrote another special token instead;
4. ``role_marker``    it starts like a transcript line ("assistant", "User:", "AI:", ...);
5. ``too_short`` / ``too_long``  fewer than ``min_words`` or more than ``max_words`` words
   or ``max_chars`` characters;
6. ``not_text``       less than ``min_letter_share`` of its visible characters are letters, or
   less than ``min_latin_share`` of its letters are Latin (a cheap language filter);
7. ``greeting``       only greetings and small talk ("Hi there! How are you today?");
8. ``duplicate``      the same text as a kept one after normalising case, spacing and punctuation;
9. ``near_duplicate`` word 3-gram Jaccard similarity ≥ ``near_duplicate_jaccard`` with a kept one.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .config import _finite
from .errors import ConfigError

__all__ = ["CleaningRules", "DROP_REASONS", "Deduplicator", "CleaningReport", "check_instruction", "clean_instructions"]

DROP_REASONS = (
    "empty", "truncated", "template_tokens", "role_marker", "too_short", "too_long", "not_text", "greeting",
    "duplicate", "near_duplicate",
)

_ROLE = re.compile(
    r"^\s*(?:(?:assistant|system)\b|(?:user|human|ai|bot|admin|gpt|chatbot|smollm|customer|agent|q|a)\s*:)",
    re.IGNORECASE,
)
_GREETING_WORDS = frozenset(
    "hi hello hey heya hiya greetings good morning afternoon evening day night there how are you doing today "
    "thanks thank much nice to meet i am i'm im fine well great what's whats up welcome dear all everyone "
    "bye goodbye again so very it's its is a an the and my friend buddy sir madam pleased".split()
)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


@dataclass(frozen=True)
class CleaningRules:
    """What a synthesised instruction must look like to be kept (see the module docstring for the order)."""

    min_words: int = field(default=3, metadata={"help": "fewer words than this: too_short"})
    max_words: int = field(default=60, metadata={"help": "more words than this: too_long"})
    max_chars: int = field(default=400, metadata={"help": "more characters than this: too_long"})
    min_letter_share: float = field(default=0.5, metadata={"help": "letters / visible characters, in [0, 1]"})
    min_latin_share: float = field(default=0.9, metadata={"help": "Latin letters / letters, in [0, 1]; 0 allows any script"})
    near_duplicate_jaccard: float = field(default=0.8, metadata={"help": "word 3-gram Jaccard at or above which a text is a near duplicate; 1 turns it off"})
    require_natural_end: bool = field(default=True, metadata={"help": "drop samples that hit the token limit"})
    drop_greetings: bool = True

    def __post_init__(self) -> None:
        if int(self.min_words) < 1:
            raise ConfigError(f"min_words must be at least 1, got {self.min_words}")
        if int(self.max_words) < int(self.min_words):
            raise ConfigError(f"max_words ({self.max_words}) is below min_words ({self.min_words}); raise max_words")
        if int(self.max_chars) < 1:
            raise ConfigError(f"max_chars must be at least 1, got {self.max_chars}")
        for name in ("min_letter_share", "min_latin_share", "near_duplicate_jaccard"):
            value = _finite(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if _finite("near_duplicate_jaccard", self.near_duplicate_jaccard) <= 0.0:
            raise ConfigError("near_duplicate_jaccard must be above 0 (1 turns near-duplicate detection off)")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _is_latin(ch: str) -> bool:
    return ord(ch) < 0x250 or unicodedata.name(ch, "").startswith("LATIN")


def check_instruction(text: str, rules: CleaningRules, *, ending: str = "end") -> str | None:
    """The first rule (1–7) that ``text`` breaks, or None when it passes. De-duplication is separate.

    ``ending`` is how sampling stopped: ``"end"`` (the user turn was closed), ``"length"`` (the
    token limit) or ``"special"`` (another special token); uploads leave it at ``"end"``.

    Example:
        >>> check_instruction("Hi there!", CleaningRules())
        'too_short'
        >>> check_instruction("Explain how a bicycle gear works.", CleaningRules()) is None
        True
    """
    text = text.strip()
    if not text:
        return "empty"
    if rules.require_natural_end and ending == "length":
        return "truncated"
    if ending == "special":
        return "template_tokens"
    if _ROLE.match(text):
        return "role_marker"
    n_words = len(text.split())
    if n_words < rules.min_words:
        return "too_short"
    if n_words > rules.max_words or len(text) > rules.max_chars:
        return "too_long"
    visible = [c for c in text if not c.isspace()]
    letters = [c for c in visible if c.isalpha()]
    if "\ufffd" in text or len(letters) < rules.min_letter_share * len(visible):
        return "not_text"
    if letters and sum(_is_latin(c) for c in letters) < rules.min_latin_share * len(letters):
        return "not_text"
    if rules.drop_greetings and all(w in _GREETING_WORDS for w in _words(text)):
        return "greeting"
    return None


def _normalise(text: str) -> str:
    return " ".join(_words(text))


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = _words(text)
    if len(words) < 3:
        return frozenset({tuple(words)})
    return frozenset(tuple(words[i : i + 3]) for i in range(len(words) - 2))


class Deduplicator:
    """Remembers kept texts; says whether a new one repeats one of them exactly or nearly.

    Candidates for the near check come from an inverted index on 3-grams, so a new text is
    compared only with kept texts that share at least one 3-gram (not with all of them).
    """

    def __init__(self, jaccard: float = 0.8) -> None:
        self.jaccard = jaccard
        self._exact: set[str] = set()
        self._shingles: list[frozenset] = []
        self._index: dict[tuple[str, ...], list[int]] = defaultdict(list)

    def check(self, text: str) -> str | None:
        """``"duplicate"``, ``"near_duplicate"`` or None (then call :meth:`add`)."""
        if _normalise(text) in self._exact:
            return "duplicate"
        if self.jaccard >= 1.0:
            return None
        mine = _shingles(text)
        seen: set[int] = set()
        for g in mine:
            for j in self._index.get(g, ()):
                if j in seen:
                    continue
                seen.add(j)
                other = self._shingles[j]
                if len(mine & other) / len(mine | other) >= self.jaccard:
                    return "near_duplicate"
        return None

    def add(self, text: str) -> None:
        self._exact.add(_normalise(text))
        sh = _shingles(text)
        for g in sh:
            self._index[g].append(len(self._shingles))
        self._shingles.append(sh)


@dataclass
class CleaningReport:
    """How many candidates were seen, kept and dropped (per reason), with a few examples of each."""

    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def record(self, text: str, reason: str | None) -> None:
        self.seen += 1
        if reason is None:
            self.kept += 1
            return
        self.dropped[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < self.max_examples:
            bucket.append(text[:200])

    @property
    def acceptance_rate(self) -> float:
        return self.kept / self.seen if self.seen else 0.0

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "acceptance_rate": round(self.acceptance_rate, 4),
            "dropped": {r: int(self.dropped.get(r, 0)) for r in DROP_REASONS if self.dropped.get(r)},
            "examples": self.examples,
        }


def clean_instructions(
    texts: Iterable[str],
    rules: CleaningRules | None = None,
    *,
    endings: Sequence[str] | None = None,
    dedup: Deduplicator | None = None,
    report: CleaningReport | None = None,
) -> tuple[list[str], CleaningReport]:
    """Apply the cleaning rules and de-duplication to a list of texts, in order.

    Args:
        texts: candidate instructions (stripped of template tokens already).
        rules: the rules; defaults are the ones the module docstring lists.
        endings: per text, how sampling stopped (``"end"``, ``"length"``, ``"special"``; uploads: omit).
        dedup: pass the same :class:`Deduplicator` across calls to de-duplicate a stream.
        report: pass the same :class:`CleaningReport` across calls to accumulate counts.

    Returns:
        ``(kept texts, report)``.

    Example:
        >>> kept, report = clean_instructions(["Tell me a joke about cats.", "tell me a joke about cats", "hi"])
        >>> kept, dict(report.dropped)
        (['Tell me a joke about cats.'], {'duplicate': 1, 'too_short': 1})
    """
    rules = rules or CleaningRules()
    dedup = dedup if dedup is not None else Deduplicator(rules.near_duplicate_jaccard)
    report = report if report is not None else CleaningReport()
    kept: list[str] = []
    for i, raw in enumerate(texts):
        text = raw.strip()
        ending = "end" if endings is None else endings[i]
        reason = check_instruction(text, rules, ending=ending) or dedup.check(text)
        report.record(text, reason)
        if reason is None:
            dedup.add(text)
            kept.append(text)
    return kept, report
