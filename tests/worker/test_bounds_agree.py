"""One source of truth for a run's settings: every Run field the engine also bounds takes its
bounds from the engine (icon2engine.config.BOUNDS), and here each is tried at both edges, and just
beyond each, through the worker's own builders of the engine's configs: what the form accepts the
stages accept, and what the form refuses the engine refuses too. The defaults agree as well.

(A learning rate of 1.0 used to pass the form and fail the run after generation and review.)"""
from __future__ import annotations

import math
from dataclasses import fields

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from icon2engine.config import BOUNDS, ConfigError, FilterConfig, GenerateConfig, SteeringConfig, TrainConfig
from webapp.studio.models import Run
from webapp.studio.validators import GreaterThanValidator, LessThanValidator
from worker.stages import run_generate_config, run_train_config


def _steering(run: Run):
    return SteeringConfig(run.gamma_plus_effective, run.gamma_minus_effective)  # as worker.stages.generate builds it


def _filter(run: Run):
    return FilterConfig(keep_fraction=run.keep_fraction)


# Run field -> (the engine's name for it, the config class, how the worker builds that config from a run)
SHARED = {
    "gamma_plus": ("gamma_plus", SteeringConfig, _steering),
    "gamma_minus": ("gamma_minus", SteeringConfig, _steering),
    "keep_fraction": ("keep_fraction", FilterConfig, _filter),
    "max_new_tokens": ("max_new_tokens", GenerateConfig, run_generate_config),
    "temperature": ("temperature", GenerateConfig, run_generate_config),
    "top_p": ("top_p", GenerateConfig, run_generate_config),
    "repetition_penalty": ("repetition_penalty", GenerateConfig, run_generate_config),
    "no_repeat_ngram_size": ("no_repeat_ngram_size", GenerateConfig, run_generate_config),
    "dpo_beta": ("beta", TrainConfig, run_train_config),
    "dpo_learning_rate": ("learning_rate", TrainConfig, run_train_config),
    "dpo_max_length": ("max_length", TrainConfig, run_train_config),
}
# Bounded by the form alone (the engine only asks for a positive number): every value the form
# allows must still be one training accepts.
FORM_ONLY = {"dpo_epochs": ("epochs", TrainConfig, run_train_config),
             "dpo_batch_size": ("batch_size", TrainConfig, run_train_config),
             "dpo_lora_r": ("lora_r", TrainConfig, run_train_config)}
SEED = ("seed", GenerateConfig)


def _edges(field: str) -> tuple[tuple[float, bool], tuple[float, bool]]:
    """The form's (low, open?) and (high, open?) edges, read from the field's validators."""
    low = high = None
    for v in Run._meta.get_field(field).validators:
        if isinstance(v, (MinValueValidator, GreaterThanValidator)):
            low = (v.limit_value, isinstance(v, GreaterThanValidator))
        elif isinstance(v, (MaxValueValidator, LessThanValidator)):
            high = (v.limit_value, isinstance(v, LessThanValidator))
    assert low is not None and high is not None, f"{field} is not bounded on both sides in the form"
    return low, high


def _form_accepts(field: str, value) -> bool:
    try:
        Run._meta.get_field(field).run_validators(value)
    except ValidationError:
        return False
    return True


def _engine_accepts(field: str, value, build) -> bool:
    try:
        build(Run(**{field: value}))
    except ConfigError:
        return False
    return True


def _probes(field: str) -> list:
    """Both edges, and a step beyond and within each (the smallest step the field's type allows)."""
    (low, _), (high, _) = _edges(field)
    integer = Run._meta.get_field(field).get_internal_type().endswith("IntegerField")
    out = []
    for edge, outward in ((low, -1), (high, 1)):
        step = 1 if integer else max(abs(edge) * 1e-6, 1e-12)
        out += [edge, edge + outward * step, edge - outward * step]
    return [v for v in out if not (integer and v < 0)]  # a negative count is refused by the column itself


@pytest.mark.parametrize("field", SHARED)
def test_the_form_and_the_engine_agree_at_both_edges_of(field):
    name, _, build = SHARED[field]
    bound = BOUNDS[name]
    (low, low_open), (high, high_open) = _edges(field)
    assert (low, low_open, high, high_open) == (bound.low, bound.low_open, bound.high, bound.high_open)
    for value in _probes(field):
        assert _form_accepts(field, value) == _engine_accepts(field, value, build) == (value in bound), (field, value)


@pytest.mark.parametrize("field", FORM_ONLY)
def test_every_value_the_form_allows_is_one_training_accepts(field):
    _, _, build = FORM_ONLY[field]
    for value in _probes(field):
        if _form_accepts(field, value):
            assert _engine_accepts(field, value, build), (field, value)


@pytest.mark.parametrize("field", [*SHARED, *FORM_ONLY, SEED[0]])
def test_a_new_run_has_the_engines_default_for(field):
    name, config = (SHARED.get(field) or FORM_ONLY.get(field) or SEED)[:2]
    default = next(f.default for f in fields(config) if f.name == name)
    assert math.isclose(Run._meta.get_field(field).default, default), (field, default)


def test_the_forms_help_text_states_the_engines_range():
    assert BOUNDS["temperature"].text("t") in Run._meta.get_field("temperature").help_text
    assert BOUNDS["gamma_minus"].text("γ⁻") in Run._meta.get_field("gamma_minus").help_text


def test_a_learning_rate_training_refuses_is_refused_by_the_form():
    with pytest.raises(ValidationError, match="less than or equal to 0.01"):
        Run._meta.get_field("dpo_learning_rate").run_validators(1.0)
