"""Parse an uploaded instruction list (.txt, .jsonl, .csv) and say which line is wrong."""

from __future__ import annotations

import csv
import io
import json
from pathlib import PurePath

from django.core.exceptions import ValidationError

ALLOWED_EXTENSIONS = (".jsonl", ".csv", ".txt")
JSON_KEYS = ("instruction", "prompt", "text")


def _lines(data: bytes) -> list[str]:
    lines = data.split(b"\n")
    decoded = []
    for number, raw in enumerate(lines, start=1):
        try:
            decoded.append(raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r"))
        except UnicodeDecodeError:
            raise ValidationError(f"Line {number}: not valid UTF-8 text.") from None
    return decoded


def _parse_txt(data: bytes) -> list[str]:
    return [line.strip() for line in _lines(data) if line.strip()]


def _parse_jsonl(data: bytes) -> list[str]:
    instructions = []
    for number, line in enumerate(_lines(data), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValidationError(f"Line {number}: not valid JSON ({error.msg}).") from None
        if isinstance(item, dict):
            key = next((key for key in JSON_KEYS if key in item), None)
            if key is None:
                raise ValidationError(f'Line {number}: expected an object with an "instruction" field.')
            item = item[key]
        if not isinstance(item, str):
            raise ValidationError(f'Line {number}: expected a string or an object with an "instruction" field.')
        if not item.strip():
            raise ValidationError(f"Line {number}: the instruction is empty.")
        instructions.append(item.strip())
    return instructions


def _parse_csv(data: bytes) -> list[str]:
    text = "\n".join(_lines(data))
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return []
    columns = [column.strip().lower() for column in header]
    if "instruction" not in columns:
        raise ValidationError('Line 1: a CSV needs a header row with an "instruction" column.')
    index = columns.index("instruction")
    instructions = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            number = reader.line_num
            if index >= len(row) or not row[index].strip():
                raise ValidationError(f"Line {number}: the instruction is empty.")
            instructions.append(row[index].strip())
    except csv.Error as error:
        raise ValidationError(f"Line {reader.line_num}: not valid CSV ({error}).") from None
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
