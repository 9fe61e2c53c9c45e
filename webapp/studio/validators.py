"""Field validators for open intervals and finite floats (Django ships only closed bounds)."""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError
from django.core.validators import BaseValidator, MaxValueValidator, MinValueValidator
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


def bound_validators(bound) -> list:
    """Django validators for an engine :class:`icon2engine.config.Bound` (a value must be finite and
    inside it), so the run form refuses exactly what the engine's configs refuse."""
    low = GreaterThanValidator(bound.low) if bound.low_open else MinValueValidator(bound.low)
    high = LessThanValidator(bound.high) if bound.high_open else MaxValueValidator(bound.high)
    return [validate_finite, low, high]
