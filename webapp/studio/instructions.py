"""Parse an uploaded instruction list (.txt, .jsonl, .csv) and say which line is wrong."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import PurePath
from typing import BinaryIO

from django.core.exceptions import ValidationError

from webapp.limits import INSTRUCTION_MAX

ALLOWED_EXTENSIONS = (".jsonl", ".csv", ".txt")
JSON_KEYS = ("instruction", "prompt", "text")


def _lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a binary stream, read one line at a time."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\n").rstrip("\r")
        except UnicodeDecodeError:
            raise ValidationError(f"Line {number}: not valid UTF-8 text.") from None
        if "\x00" in line:
            raise ValidationError(f"Line {number}: contains a NUL character (\\0); remove it.")
        yield number, line


def _checked(number: int, text: str) -> str:
    text = text.strip()
    if len(text) > INSTRUCTION_MAX:
        raise ValidationError(f"Line {number}: the instruction is {len(text):,} characters; the limit is {INSTRUCTION_MAX:,}.")
    return text


def _parse_txt(stream: BinaryIO) -> Iterator[str]:
    for number, line in _lines(stream):
        if line.strip():
            yield _checked(number, line)


def _parse_jsonl(stream: BinaryIO) -> Iterator[str]:
    for number, line in _lines(stream):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValidationError(f"Line {number}: not valid JSON ({error.msg}).") from None
        except RecursionError:  # [[[[…]]]] nested deeper than Python's parser goes
            raise ValidationError(f"Line {number}: the JSON is nested too deeply; expected a string or an object.") from None
        if isinstance(item, dict):
            key = next((key for key in JSON_KEYS if key in item), None)
            if key is None:
                raise ValidationError(f'Line {number}: expected an object with an "instruction" field.')
            item = item[key]
        if not isinstance(item, str):
            raise ValidationError(f'Line {number}: expected a string or an object with an "instruction" field.')
        if not item.strip():
            raise ValidationError(f"Line {number}: the instruction is empty.")
        yield _checked(number, item)


def _parse_csv(stream: BinaryIO) -> Iterator[str]:
    reader = csv.reader((line + "\n" for _, line in _lines(stream)), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise ValidationError(f"Line 1: not valid CSV ({error}).") from None
    columns = [column.strip().lower() for column in header]
    if "instruction" not in columns:
        raise ValidationError('Line 1: a CSV needs a header row with an "instruction" column.')
    index = columns.index("instruction")
    start = reader.line_num + 1  # the line a row starts on (a quoted field may span lines)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                if index >= len(row) or not row[index].strip():
                    raise ValidationError(f"Line {start}: the instruction is empty.")
                yield _checked(start, row[index])
            start = reader.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise ValidationError(
                f"Line {start}: a quoted field starts here and never ends (an unbalanced \" quote); "
                "close the quote or double it (\"\") inside the text."
            ) from None
        raise ValidationError(f"Line {start}: not valid CSV ({error}).") from None


EMPTY_FILE = "The file has no instructions; it needs at least one non-empty line."


def instructions_iter(*, name: str, stream: BinaryIO) -> Iterator[str]:
    """The instructions of an uploaded file, read a line at a time (a million-line file is never
    held whole); a ValidationError names the bad line when the reading reaches it."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in ALLOWED_EXTENSIONS:
        raise ValidationError(f"Upload a .jsonl, .csv or .txt file (got {suffix or 'no extension'}).")
    parser = {".txt": _parse_txt, ".jsonl": _parse_jsonl, ".csv": _parse_csv}[suffix]
    return parser(stream)


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
