"""The reward-hacking warning fires on the signature the paper describes and stays quiet otherwise."""
from __future__ import annotations

from icon2engine.reward_hacking import side_gaps, training_warnings


def _curve(accuracies):
    return [{"step": i + 1, "loss": 0.6, "accuracy": a} for i, a in enumerate(accuracies)]


HEALTHY_PAIRS = [
    {"chosen_words": 60 + i % 7, "rejected_words": 58 + (i * 3) % 9, "chosen_repetition": 0.05, "rejected_repetition": 0.08}
    for i in range(20)
]


def test_accuracy_at_one_within_the_first_tenth_of_the_steps_is_flagged():
    warnings = training_warnings(_curve([0.5, 1.0] + [0.75] * 18), total_steps=20, pairs=HEALTHY_PAIRS)
    assert [w["kind"] for w in warnings] == ["early_accuracy"]
    assert "step 2 of 20" in warnings[0]["message"] and warnings[0]["step"] == 2


def test_a_healthy_curve_that_climbs_slowly_raises_nothing():
    climb = [0.25, 0.5, 0.5, 0.5, 0.75, 0.5, 0.75, 0.75, 1.0, 0.75, 1.0, 1.0] + [1.0] * 8
    assert training_warnings(_curve(climb), total_steps=20, pairs=HEALTHY_PAIRS) == []


def test_pairs_that_differ_mostly_in_length_or_repetition_are_flagged():
    longer = [{**p, "chosen_words": 90, "rejected_words": 40} for p in HEALTHY_PAIRS]
    looping = [{**p, "rejected_repetition": 0.7} for p in HEALTHY_PAIRS]
    assert [w["kind"] for w in training_warnings(_curve([0.5] * 20), total_steps=20, pairs=longer)] == ["length"]
    assert [w["kind"] for w in training_warnings(_curve([0.5] * 20), total_steps=20, pairs=looping)] == ["repetition"]
    assert side_gaps(looping)["rejected_repeats_more"] == 1.0 and side_gaps(HEALTHY_PAIRS)["chosen_longer"] == 0.0


def test_pairs_without_measures_are_not_judged():
    assert side_gaps([{"chosen": "x"}])["pairs"] == 0
    assert training_warnings([], total_steps=0, pairs=[{"chosen": "x"}]) == []
