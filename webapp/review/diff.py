"""Word-level differences between two responses, as HTML with <del>/<ins> marks."""
from __future__ import annotations

import difflib
import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(left: str, right: str) -> tuple[SafeString, SafeString]:
    """Both texts with the words only one side has wrapped: <del> on the left, <ins> on the right.

    Whitespace is kept as it is, so line breaks survive (the template uses white-space: pre-wrap)."""
    a, b = _TOKENS.findall(left), _TOKENS.findall(right)
    out_a: list[str] = []
    out_b: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        chunk_a, chunk_b = escape("".join(a[i1:i2])), escape("".join(b[j1:j2]))
        if tag == "equal":
            out_a.append(chunk_a)
            out_b.append(chunk_b)
            continue
        if chunk_a:
            out_a.append(f"<del>{chunk_a}</del>")
        if chunk_b:
            out_b.append(f"<ins>{chunk_b}</ins>")
    return mark_safe("".join(out_a)), mark_safe("".join(out_b))
