"""Formats the engine and the web app share: one source of truth, torch-free and Django-free.

The web app imports this module (and only this and other torch-free modules) from the engine;
``tests/engine/test_import_isolation.py`` checks that importing it pulls in neither torch nor
transformers.

- instruction files (.txt, .jsonl, .csv): :func:`instructions_iter` reads a binary stream a line
  at a time and names the bad line (the upload form and ``icon2 … --instructions`` use it);
- the TRL conversational preference row and its ``prompt_id``: :func:`trl_row`;
- the default steered band: :func:`default_layers` (the middle third of the blocks);
- centred top-k selection over arrays: :func:`top_k` and :func:`centred_top_k`;
- on/off switches in the environment: :func:`parse_flag` (1/0, true/false, yes/no, on/off).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import Any

import numpy as np

from .errors import ConfigError, InputError

__all__ = [
    "INSTRUCTION_KEYS", "INSTRUCTION_SUFFIXES", "EMPTY_FILE", "instructions_iter", "prompt_id", "trl_row",
    "default_layers", "parse_layers", "top_k", "centred_top_k", "parse_flag", "env_flag",
]

# Instruction files ---------------------------------------------------------------------------

INSTRUCTION_SUFFIXES = (".jsonl", ".csv", ".txt")
INSTRUCTION_KEYS = ("instruction", "prompt", "text", "question")  # a JSONL field or a CSV column, first found
EMPTY_FILE = "The file has no instructions; it needs at least one non-empty line."


class _Where:
    def __init__(self, source: str | None) -> None:
        self.source = source

    def __call__(self, number: int) -> str:
        return f"{self.source}, line {number}" if self.source else f"Line {number}"


def _lines(stream: Iterable[bytes], where: _Where) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a binary stream, read one line at a time."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\n").rstrip("\r")
        except UnicodeDecodeError:
            raise InputError(f"{where(number)}: not valid UTF-8 text.") from None
        if "\x00" in line:
            raise InputError(f"{where(number)}: contains a NUL character (\\0); remove it.")
        yield number, line


def _checked(number: int, text: str, where: _Where, max_chars: int | None) -> str:
    text = text.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON can spell a lone UTF-16 surrogate ("\ud800"); UTF-8 cannot hold it
        raise InputError(f"{where(number)}: contains a lone UTF-16 surrogate (an escape such as \\ud800 "
                         "without its pair); fix or remove it.") from None
    if max_chars is not None and len(text) > max_chars:
        raise InputError(f"{where(number)}: the instruction is {len(text):,} characters; the limit is {max_chars:,}.")
    return text


def _parse_txt(stream, where, column, max_chars) -> Iterator[str]:
    for number, line in _lines(stream, where):
        if line.strip():
            yield _checked(number, line, where, max_chars)


def _parse_jsonl(stream, where, column, max_chars) -> Iterator[str]:
    keys = (column,) if column else INSTRUCTION_KEYS
    for number, line in _lines(stream, where):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{where(number)}: not valid JSON ({error.msg}).") from None
        except RecursionError:  # [[[[…]]]] nested deeper than Python's parser goes
            raise InputError(f"{where(number)}: the JSON is nested too deeply; expected a string or an object.") from None
        except ValueError:  # Python reads integers of at most 4,300 digits (sys.set_int_max_str_digits)
            raise InputError(f"{where(number)}: a number too long to read (more than 4,300 digits); "
                             "expected a string or an object.") from None
        if isinstance(item, dict):
            key = next((key for key in keys if key in item), None)
            if key is None:
                raise InputError(f'{where(number)}: expected an object with an "{keys[0]}" field.')
            item = item[key]
        if not isinstance(item, str):
            raise InputError(f'{where(number)}: expected a string or an object with an "{keys[0]}" field.')
        if not item.strip():
            raise InputError(f"{where(number)}: the instruction is empty.")
        yield _checked(number, item, where, max_chars)


def _parse_csv(stream, where, column, max_chars) -> Iterator[str]:
    reader = csv.reader((line + "\n" for _, line in _lines(stream, where)), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise InputError(f"{where(1)}: not valid CSV ({error}).") from None
    columns = [c.strip().lower() for c in header]
    wanted = (column.strip().lower(),) if column else INSTRUCTION_KEYS
    name = next((c for c in wanted if c in columns), None)
    if name is None:
        raise InputError(f'{where(1)}: a CSV needs a header row with an "{wanted[0]}" column '
                         f"(this one has {', '.join(repr(c) for c in columns) or 'none'}).")
    index = columns.index(name)
    start = reader.line_num + 1  # the line a row starts on (a quoted field may span lines)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):  # a blank row is skipped, as a blank line is
                if index >= len(row) or not row[index].strip():
                    raise InputError(f"{where(start)}: the instruction is empty.")
                yield _checked(start, row[index], where, max_chars)
            start = reader.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise InputError(
                f"{where(start)}: a quoted field starts here and never ends (an unbalanced \" quote); "
                "close the quote or double it (\"\") inside the text."
            ) from None
        raise InputError(f"{where(start)}: not valid CSV ({error}).") from None


def instructions_iter(
    *, name: str, stream: Iterable[bytes], column: str | None = None, source: str | None = None,
    max_chars: int | None = None,
) -> Iterator[str]:
    """The instructions of a ``.txt`` (one per non-empty line), ``.jsonl`` (strings, or objects
    with an instruction / prompt / text / question field) or ``.csv`` file (that column; blank
    rows skipped), read a line at a time, so a million-line file is never held whole.

    ``column`` names the JSONL field or CSV column; ``source`` (a path) prefixes error messages,
    which otherwise start "Line N:". Raises :class:`InputError` naming the bad line when the
    reading reaches it; an empty result is the caller's to refuse (:data:`EMPTY_FILE`).
    """
    suffix = PurePath(name).suffix.lower()
    if suffix == ".json":
        suffix = ".jsonl"
    parser = {".txt": _parse_txt, ".jsonl": _parse_jsonl, ".csv": _parse_csv}.get(suffix)
    if parser is None:
        raise InputError(f"Upload a .jsonl, .csv or .txt file (got {suffix or 'no extension'}).")
    return parser(stream, _Where(source), column, max_chars)


# The TRL row -----------------------------------------------------------------------------------


def prompt_id(prompt: str) -> str:
    """SHA-256 of the prompt text: the same instruction has the same id in every export."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def trl_row(prompt: str, chosen: str, rejected: str, **columns) -> dict:
    """One row in TRL's conversational preference format (``prompt``, ``chosen``, ``rejected`` as
    message lists) with ``prompt_id`` and the given provenance columns after them."""
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": prompt_id(prompt),
        **columns,
    }


# Layers and selection --------------------------------------------------------------------------


def default_layers(n_layers: int) -> tuple[int, ...]:
    """The middle third of the decoder blocks (the paper steers layers 10–20 of 32)."""
    start = n_layers // 3
    stop = max(start + 1, (2 * n_layers) // 3)
    return tuple(range(start, stop))


def parse_layers(value: Any) -> tuple[int, ...] | None:
    """Accept ``None``, ``[8, 9, 10]``, ``"8-15"`` or ``"8,9,12"``."""
    if value in (None, "", "auto"):
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(x) for x in value)
    text = str(value).strip()
    try:
        if "-" in text and "," not in text:
            a, b = (int(x) for x in text.split("-", 1))
        else:
            return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"cannot read layers {value!r}; write e.g. 8-15 or 8,9,10") from None
    if b < a:
        raise ConfigError(f"layer range {text!r} ends before it starts; write it as START-END")
    return tuple(range(a, b + 1))


def top_k(consistency: np.ndarray, index: np.ndarray, keep: int | None = None, keep_fraction: float | None = None) -> dict:
    """Rank by consistency, most consistent first, ties broken by ``index``, and keep the first
    ``keep`` (or ``round(n * keep_fraction)``, at least one).

    Returns ``{"order" (positions, best first), "rank" (each row's place), "kept" (bool), "keep",
    "threshold"}``: the threshold is the last kept consistency (None when nothing is kept).
    """
    consistency = np.asarray(consistency, dtype=np.float64)
    n = len(consistency)
    order = np.lexsort((np.asarray(index), -consistency))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    if keep is None:
        keep = max(1, int(round(n * keep_fraction))) if n else 0
    keep = min(keep, n)
    return {"order": order, "rank": rank, "kept": rank < keep, "keep": keep,
            "threshold": float(consistency[order[keep - 1]]) if keep else None}


def centred_top_k(raw: np.ndarray, index: np.ndarray, keep: int | None = None, keep_fraction: float | None = None) -> dict:
    """Centre each dimension's raw scores on the pool's mean, take each instruction's best
    dimension (the first of equals) as its winner and that score as its consistency, then
    :func:`top_k`. ``raw`` is (n, n_dims). Centring keeps a dimension whose direction has a large
    offset from winning every instruction; with one dimension the order is the raw one.

    Returns :func:`top_k`'s dict with ``"consistency"`` and ``"winner"`` (column of ``raw``) added.
    """
    raw = np.asarray(raw, dtype=np.float64)
    raw = raw[:, None] if raw.ndim == 1 else raw
    n = raw.shape[0]
    centred = raw - raw.mean(axis=0) if n else raw
    winner = centred.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    consistency = centred[np.arange(n), winner] if n else np.zeros(0)
    return {**top_k(consistency, index, keep, keep_fraction), "consistency": consistency, "winner": winner}


# Switches ---------------------------------------------------------------------------------------

FLAG_TRUE = frozenset({"1", "true", "yes", "on"})
FLAG_FALSE = frozenset({"0", "false", "no", "off"})


def parse_flag(name: str, value: str) -> bool:
    """An on/off value as people write it (any case); anything else is a :class:`ConfigError`
    naming the variable, never a silent "off"."""
    lowered = value.strip().lower()
    if lowered in FLAG_TRUE:
        return True
    if lowered in FLAG_FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off.")


def env_flag(name: str, default: bool = False) -> bool:
    """:func:`parse_flag` of an environment variable; unset or blank gives ``default``."""
    value = os.environ.get(name)
    return default if value is None or not value.strip() else parse_flag(name, value)
