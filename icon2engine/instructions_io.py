"""Read instruction lists from files: plain text (one per line), JSONL or CSV."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .errors import InputError

__all__ = ["read_instructions", "parse_instructions"]

_JSON_KEYS = ("instruction", "prompt", "text", "question")


def parse_instructions(text: str, *, fmt: str, column: str | None = None, source: str = "upload") -> list[str]:
    """Parse instructions from file contents. ``fmt`` is ``txt``, ``jsonl`` or ``csv``.

    Errors name the source and the line, e.g. ``upload, line 7: not valid JSON``.
    """
    out: list[str] = []
    if fmt == "txt":
        out = [line.strip() for line in text.splitlines() if line.strip()]
    elif fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{source}, line {n}: not valid JSON ({exc.msg})") from None
            if isinstance(obj, str):
                value = obj
            elif isinstance(obj, dict):
                keys = (column,) if column else _JSON_KEYS
                value = next((obj[k] for k in keys if k in obj), None)
                if value is None:
                    raise InputError(f"{source}, line {n}: no {' / '.join(repr(k) for k in keys)} field")
            else:
                raise InputError(f"{source}, line {n}: expected an object or a string")
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{source}, line {n}: the instruction is empty")
            out.append(value.strip())
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise InputError(f"{source}: the CSV file has no header row")
        col = column or next((k for k in _JSON_KEYS if k in reader.fieldnames), None)
        if col is None or col not in reader.fieldnames:
            raise InputError(
                f"{source}: no column {column or 'instruction'!r} in the CSV header ({', '.join(reader.fieldnames)}); "
                "name the column that holds the instructions"
            )
        for row in reader:
            value = (row.get(col) or "").strip()
            if not value:
                raise InputError(f"{source}, line {reader.line_num}: the {col!r} cell is empty")
            out.append(value)
    else:
        raise InputError(f"{source}: unsupported format {fmt!r}; use .txt, .jsonl or .csv")
    if not out:
        raise InputError(f"{source}: no instructions found; the file is empty")
    return out


def read_instructions(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """Read a ``.txt``, ``.jsonl`` or ``.csv`` file of instructions."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"instruction file {path} does not exist")
    fmt = {".txt": "txt", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; use .txt, .jsonl or .csv")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_instructions(text, fmt=fmt, column=column, source=str(path))
