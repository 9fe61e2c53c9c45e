"""How long a piece of text a person may type, and the one check every service applies.

Forms show these limits (max_length) and services enforce them again, because the admin, the
review API and tests call services directly. NUL bytes are refused everywhere: PostgreSQL would
reject them later, in the middle of a stage.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

NAME_MAX = 120  # teams, projects, models, runs, tokens
DIMENSION_NAME_MAX = 80
DESCRIPTION_MAX = 2_000
PROMPT_MAX = 4_000  # one system prompt of a contrast pair
FEATURE_INSTRUCTIONS_MAX = 200_000  # the optional extraction instructions, one per line
RATIONALE_MAX = 2_000  # a reviewer's reason, a lead's note
RESPONSE_MAX = 20_000  # an edited response
INSTRUCTION_MAX = 20_000  # one uploaded instruction


def text_check(value: str, *, field: str, label: str, max_length: int) -> str:
    """`value`, or a ValidationError on `field` when it is too long or holds a NUL byte."""
    value = value or ""
    if "\x00" in value:
        raise ValidationError({field: f"The {label} contains a NUL character (\\0); remove it."})
    if len(value) > max_length:
        raise ValidationError({field: f"The {label} is {len(value):,} characters long; the limit is {max_length:,}."})
    return value
