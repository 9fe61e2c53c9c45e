"""Parse an uploaded instruction list (.txt, .jsonl, .csv) and say which line is wrong."""

from __future__ import annotations

import csv
import io
import json
from pathlib import PurePath

from django.core.exceptions import ValidationError

from webapp.limits import INSTRUCTION_MAX

ALLOWED_EXTENSIONS = (".jsonl", ".csv", ".txt")
JSON_KEYS = ("instruction", "prompt", "text")


def _lines(data: bytes) -> list[str]:
    lines = data.split(b"\n")
    decoded = []
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise ValidationError(f"Line {number}: not valid UTF-8 text.") from None
        if "\x00" in line:
            raise ValidationError(f"Line {number}: contains a NUL character (\\0); remove it.")
        decoded.append(line)
    return decoded


def _checked(number: int, text: str) -> str:
    text = text.strip()
    if len(text) > INSTRUCTION_MAX:
        raise ValidationError(f"Line {number}: the instruction is {len(text):,} characters; the limit is {INSTRUCTION_MAX:,}.")
    return text


def _parse_txt(data: bytes) -> list[str]:
    return [_checked(number, line) for number, line in enumerate(_lines(data), start=1) if line.strip()]


def _parse_jsonl(data: bytes) -> list[str]:
    instructions = []
    for number, line in enumerate(_lines(data), start=1):
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
        instructions.append(_checked(number, item))
    return instructions


def _parse_csv(data: bytes) -> list[str]:
    text = "\n".join(_lines(data))
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as error:
        raise ValidationError(f"Line 1: not valid CSV ({error}).") from None
    columns = [column.strip().lower() for column in header]
    if "instruction" not in columns:
        raise ValidationError('Line 1: a CSV needs a header row with an "instruction" column.')
    index = columns.index("instruction")
    instructions = []
    start = reader.line_num + 1  # the line a row starts on (a quoted field may span lines)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                if index >= len(row) or not row[index].strip():
                    raise ValidationError(f"Line {start}: the instruction is empty.")
                instructions.append(_checked(start, row[index]))
            start = reader.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise ValidationError(
                f"Line {start}: a quoted field starts here and never ends (an unbalanced \" quote); "
                "close the quote or double it (\"\") inside the text."
            ) from None
        raise ValidationError(f"Line {start}: not valid CSV ({error}).") from None
    return instructions


def instructions_parse(*, name: str, data: bytes) -> list[str]:
    """The instructions in an uploaded file, or a ValidationError naming the bad line."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in ALLOWED_EXTENSIONS:
        raise ValidationError(f"Upload a .jsonl, .csv or .txt file (got {suffix or 'no extension'}).")
    parser = {".txt": _parse_txt, ".jsonl": _parse_jsonl, ".csv": _parse_csv}[suffix]
    instructions = parser(data)
    if not instructions:
        raise ValidationError("The file has no instructions; it needs at least one non-empty line.")
    return instructions
