"""Read instruction lists from files: plain text (one per line), JSONL or CSV.

The parsing itself is :func:`icon2engine.formats.instructions_iter`, which the web app's upload
form uses too, so a file the CLI reads is a file the studio accepts, with the same errors.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from .errors import InputError
from .formats import instructions_iter

__all__ = ["read_instructions", "parse_instructions"]

_SUFFIX = {"txt": ".txt", "jsonl": ".jsonl", "csv": ".csv"}


def parse_instructions(text: str, *, fmt: str, column: str | None = None, source: str = "upload") -> list[str]:
    """Parse instructions from file contents. ``fmt`` is ``txt``, ``jsonl`` or ``csv``.

    Errors name the source and the line, e.g. ``upload, line 7: not valid JSON``.
    """
    if fmt not in _SUFFIX:
        raise InputError(f"{source}: unsupported format {fmt!r}; use .txt, .jsonl or .csv")
    out = list(instructions_iter(name=f"x{_SUFFIX[fmt]}", stream=io.BytesIO(text.encode("utf-8")), column=column, source=source))
    if not out:
        raise InputError(f"{source}: no instructions found; the file is empty")
    return out


def read_instructions(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """Read a ``.txt``, ``.jsonl`` or ``.csv`` file of instructions, a line at a time."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"instruction file {path} does not exist")
    if path.suffix.lower() not in (".txt", ".jsonl", ".json", ".csv"):
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; use .txt, .jsonl or .csv")
    with path.open("rb") as stream:
        out = list(instructions_iter(name=path.name, stream=stream, column=column, source=str(path)))
    if not out:
        raise InputError(f"{path}: no instructions found; the file is empty")
    return out
