"""Whatever the run form allows, the stages accept: the DPO settings at the edges of the web's
validators build the engine's training config (a learning rate of 1.0 used to pass the form and
fail the run after generation and review)."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from webapp.studio.models import Run
from worker.stages import run_train_config

DPO_FIELDS = ("dpo_beta", "dpo_learning_rate", "dpo_epochs", "dpo_batch_size", "dpo_lora_r", "dpo_max_length")


def _bound(field: str, kind) -> float | None:
    for validator in Run._meta.get_field(field).validators:
        if isinstance(validator, kind):
            return validator.limit_value
    return None


@pytest.mark.parametrize("field", DPO_FIELDS)
def test_the_forms_largest_and_smallest_dpo_settings_are_ones_training_accepts(field):
    high = _bound(field, MaxValueValidator)
    assert high is not None, f"{field} has no upper bound in the form"
    for value in (high, _bound(field, MinValueValidator)):
        if value is not None:
            run_train_config(Run(**{field: value}))  # raises ConfigError if training would refuse it


def test_a_learning_rate_training_refuses_is_refused_by_the_form():
    with pytest.raises(ValidationError, match="less than or equal to 0.01"):
        Run._meta.get_field("dpo_learning_rate").run_validators(1.0)
