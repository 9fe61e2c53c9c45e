"""Row ids from URLs, forms and query strings, bounded to what the database can hold.

An id above the 64-bit integer range made SQLite raise OverflowError (a 500). The `<id:…>` path
converter matches 1–18 digits only, so a longer one is simply not found (404), and `id_parse`
turns a form or query value into an id or None, never raising.
"""

from __future__ import annotations

from django.urls import register_converter

MAX_DIGITS = 18  # every 18-digit number fits a signed 64-bit integer (SQLite, PostgreSQL bigint)


def id_parse(value: object) -> int | None:
    """The id written in `value`, or None when it is not 1–18 ASCII digits."""
    text = str(value if value is not None else "").strip()
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


class IdConverter:
    regex = f"[0-9]{{1,{MAX_DIGITS}}}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
