"""Uploaded instruction lists: each format parsed, each mistake reported with its line."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from webapp.studio.instructions import instructions_parse


def parse(name: str, text: str | bytes) -> list[str]:
    return instructions_parse(name=name, data=text.encode() if isinstance(text, str) else text)


def test_a_text_file_has_one_instruction_per_non_empty_line():
    assert parse("list.txt", "Write a poem.\n\n  Explain DNS.  \r\n") == ["Write a poem.", "Explain DNS."]


def test_jsonl_takes_strings_or_objects_with_an_instruction():
    assert parse("list.jsonl", '"Write a poem."\n{"instruction": "Explain DNS."}\n\n{"prompt": "Hi"}\n') == [
        "Write a poem.",
        "Explain DNS.",
        "Hi",
    ]


def test_csv_reads_the_instruction_column():
    assert parse("list.csv", "id,instruction\n1,Write a poem.\n2,\"Explain DNS, briefly.\"\n") == [
        "Write a poem.",
        "Explain DNS, briefly.",
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("list.jsonl", '"ok"\n{"instruction": "fine"}\n{broken\n', "Line 3: not valid JSON"),
        ("list.jsonl", '"ok"\n{"text": ""}\n', "Line 2: the instruction is empty."),
        ("list.jsonl", '"ok"\n\n{"other": 1}\n', 'Line 3: expected an object with an "instruction" field.'),
        ("list.jsonl", "[1, 2]\n", "Line 1: expected a string"),
        ("list.csv", "id,body\n1,What?\n", 'Line 1: a CSV needs a header row with an "instruction" column'),
        ("list.csv", "instruction,id\nfine,1\n,2\n", "Line 3: the instruction is empty."),
        ("list.txt", b"fine\n\xff\xfe broken\n", "Line 2: not valid UTF-8 text."),
    ],
    ids=["bad-json", "empty-json", "no-field", "not-a-string", "no-header", "empty-cell", "not-utf8"],
)
def test_a_bad_line_is_named(name, text, message):
    with pytest.raises(ValidationError) as error:
        parse(name, text)
    assert error.value.messages[0].startswith(message)


def test_an_empty_file_is_refused():
    with pytest.raises(ValidationError, match="at least one non-empty line"):
        parse("list.txt", "\n\n   \n")


def test_other_extensions_are_refused():
    with pytest.raises(ValidationError, match=r"Upload a \.jsonl, \.csv or \.txt file \(got \.xlsx\)"):
        parse("list.xlsx", "x")
