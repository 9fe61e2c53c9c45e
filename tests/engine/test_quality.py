"""The quality measures on hand-written texts: loops are caught, healthy prose is not."""
from __future__ import annotations

import math

import pytest

from icon2engine.errors import ConfigError
from icon2engine.quality import (
    QualityConfig, ResponseQuality, degenerate_reasons, foreign_share, measure_text, quality_columns, repetition,
)

INSTRUCTION = "Tell me about a new product launch."
HEALTHY = (
    "The launch went better than anyone expected. The team had spent months testing the design, and the first "
    "customers said the setup took less than five minutes. Sales in the first week doubled the forecast, and the "
    "support line stayed quiet."
)
LOOPS = [
    "A new product, a conference, and a product, a product, a product, a product, a product, a product.",
    "A new idea? A new idea? A new idea? A new idea? A new idea? A new idea?",
    "The launch was au claques, au claques, au claques, au claques, au claques, au claques.",
    # a loop that no-repeat-3-gram decoding allows: no exact 3-gram repeats, the bigrams still do
    "The general office is a general office, and a general public office. The general office is a general "
    "general office. A general complaint to the general public office.",
]
CONFIG = QualityConfig()


def _q(text: str, reference: str | None = HEALTHY) -> ResponseQuality:
    return measure_text(INSTRUCTION, text, reference=reference)


def test_healthy_prose_is_not_degenerate():
    q = _q(HEALTHY)
    assert q.repetition < 0.1 and q.distinct2 > 0.9 and q.length_ratio == pytest.approx(1.0) and q.foreign == 0.0
    assert degenerate_reasons(q, CONFIG) == []


@pytest.mark.parametrize("text", LOOPS)
def test_each_loop_is_degenerate_for_repetition_or_distinct_bigrams(text):
    reasons = degenerate_reasons(_q(text), CONFIG)
    assert {"repetition", "distinct"} & set(reasons), reasons


def test_repetition_is_the_share_of_word_trigrams_that_occur_more_than_once():
    assert repetition("a b c a b c") == pytest.approx(2 / 4)  # (a b c) twice of 4 trigrams
    assert repetition("one two three four") == 0.0
    assert repetition("too short") == 0.0


def test_french_or_another_script_in_an_english_answer_counts_as_foreign():
    assert foreign_share(INSTRUCTION, "Le produit est très bon et la vie est belle dans les magasins.") > 0.3
    assert foreign_share(INSTRUCTION, "Новый продукт вышел вчера вечером.") == 1.0
    assert foreign_share(INSTRUCTION, "1,212-222-413, 423-422, 2,232,412, 200,001") == 1.0
    assert foreign_share(INSTRUCTION, HEALTHY) == 0.0
    numbered = "Here are some ideas:\n\n1. Plan ahead\n2. Sleep well\n3. Eat well\n4. Walk daily\n5. Call a friend"
    assert foreign_share(INSTRUCTION, numbered) == 0.0  # a numbered list is not another language
    assert "foreign" in degenerate_reasons(_q("Le produit est très bon et la vie est belle dans les magasins."), CONFIG)


def test_a_french_instruction_makes_english_the_foreign_language():
    assert foreign_share("Décris une journée de pluie dans la ville.", "La pluie tombe sur la ville et les rues sont vides.") < 0.1
    assert foreign_share("Décris une journée de pluie dans la ville.", "The rain falls on the city and the streets are empty.") > 0.2


def test_length_against_the_unsteered_answer_catches_stubs_and_run_ons():
    assert "too_short" in degenerate_reasons(_q("Sales doubled, it seems."), CONFIG)
    assert "too_long" in degenerate_reasons(_q(HEALTHY, reference="Sales doubled."), CONFIG)
    assert degenerate_reasons(_q("", reference=HEALTHY), CONFIG) == ["empty"]
    assert _q(HEALTHY, reference=None).length_ratio is None


def test_coherence_fails_a_response_far_less_likely_than_the_unsteered_one():
    q = _q(HEALTHY)
    q.loglik, q.loglik_drop = -3.5, 2.6
    assert degenerate_reasons(q, CONFIG) == ["incoherent"]
    q.loglik_drop = 0.4
    assert degenerate_reasons(q, CONFIG) == []
    q.loglik = -math.inf  # an empty-to-the-tokenizer answer has no likelihood at all
    assert degenerate_reasons(q, CONFIG) == ["incoherent"]


def test_a_check_can_be_turned_off():
    off = QualityConfig(max_repetition=None, min_distinct2=None, max_content_repetition=None)
    assert degenerate_reasons(_q(LOOPS[1]), off) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(max_repetition=1.5), "max_repetition"), (dict(min_length_ratio=3.0, max_length_ratio=2.0), "below"),
     (dict(max_loglik_drop=0), "max_loglik_drop"), (dict(repetition_n=1), "repetition_n")],
)
def test_bad_thresholds_are_refused_with_what_to_change(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QualityConfig(**kwargs)


def test_quality_columns_flatten_both_sides_with_one_name_per_measure():
    q = {"chosen": _q(HEALTHY).as_dict(), "rejected": _q(LOOPS[0]).as_dict()}
    cols = quality_columns(q)
    assert cols["chosen_repetition"] < 0.1 < cols["rejected_repetition"]
    assert set(cols) == {f"{s}_{k}" for s in ("chosen", "rejected")
                         for k in ("words", "repetition", "distinct2", "length_ratio", "foreign", "loglik", "loglik_drop",
                                   "relevance", "relevance_kept", "refusal", "new_content", "content_repetition")}
    assert {"chosen_relevance", "rejected_relevance", "chosen_refusal", "rejected_refusal"} <= set(cols)
    assert quality_columns(None) == {}
