"""Field validators for open intervals and finite floats (Django ships only closed bounds)."""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError
from django.core.validators import BaseValidator
from django.utils.deconstruct import deconstructible


@deconstructible
class GreaterThanValidator(BaseValidator):
    message = "Must be greater than %(limit_value)s."
    code = "greater_than"

    def compare(self, a, b) -> bool:
        return a <= b


@deconstructible
class LessThanValidator(BaseValidator):
    message = "Must be less than %(limit_value)s."
    code = "less_than"

    def compare(self, a, b) -> bool:
        return a >= b


def validate_finite(value: float) -> None:
    if value is not None and not math.isfinite(value):
        raise ValidationError("Must be a finite number (not NaN or infinity).", code="not_finite")
