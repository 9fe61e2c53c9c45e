"""Parse an uploaded instruction list (.txt, .jsonl, .csv) and say which line is wrong.

The parsing is the engine's torch-free :mod:`icon2engine.formats` (the CLI reads files with the
same code); here its errors become form errors and the studio's length limit applies.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from django.core.exceptions import ValidationError

from icon2engine.errors import InputError
from icon2engine.formats import EMPTY_FILE, INSTRUCTION_SUFFIXES, instructions_iter as _engine_iter
from webapp.limits import INSTRUCTION_MAX

ALLOWED_EXTENSIONS = INSTRUCTION_SUFFIXES
__all__ = ["ALLOWED_EXTENSIONS", "EMPTY_FILE", "instructions_count", "instructions_iter", "instructions_parse"]


def instructions_iter(*, name: str, stream: BinaryIO) -> Iterator[str]:
    """The instructions of an uploaded file, read a line at a time (a million-line file is never
    held whole); a ValidationError names the bad line when the reading reaches it."""
    try:
        texts = _engine_iter(name=name, stream=stream, max_chars=INSTRUCTION_MAX)
        yield from texts
    except InputError as error:
        raise ValidationError(str(error)) from None


def instructions_count(*, name: str, stream: BinaryIO) -> int:
    """Read the whole file once to check every line; the number of instructions (at least one)."""
    count = sum(1 for _ in instructions_iter(name=name, stream=stream))
    if not count:
        raise ValidationError(EMPTY_FILE)
    return count


def instructions_parse(*, name: str, data: bytes) -> list[str]:
    """The instructions in an uploaded file held in memory (small files), or a ValidationError."""
    instructions = list(instructions_iter(name=name, stream=io.BytesIO(data)))
    if not instructions:
        raise ValidationError(EMPTY_FILE)
    return instructions
