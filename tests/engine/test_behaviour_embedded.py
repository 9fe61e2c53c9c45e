"""Behaviour on the real embedded model (SmolLM2-135M-Instruct): steering moves the text the intended way."""
from __future__ import annotations

import pytest

from icon2engine import GenerateConfig, SteeringConfig, generate_pairs
from icon2engine.metrics import distinct_n

NEUTRAL = [
    "Describe a rainy Monday morning.", "Tell me about your neighbour's cat.", "What is a good breakfast before work?",
    "Describe a ride on a city bus.", "Write a few sentences about autumn.", "What do you think of winter evenings?",
    "Tell me about a normal school day.", "Describe an open-plan office.", "What is it like to wait at an airport?",
    "Write a short note about a family dinner.", "Describe a small town's main street.", "Tell me about doing the laundry.",
    "What happens at a weekly team meeting?", "Describe a supermarket on Saturday.",
    "Write about a walk to the train station.", "What is your view of long summer holidays?",
    "Describe the view from an office window.", "Tell me about cooking pasta.",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pairs(embedded_lm, optimism_directions):
    return generate_pairs(
        embedded_lm, optimism_directions, NEUTRAL,
        steering=SteeringConfig(0.05, -0.05, layers=tuple(range(8, 16))),
        config=GenerateConfig(max_new_tokens=48, batch_size=36),
    )


def test_chosen_responses_are_more_cheerful_than_rejected_ones(pairs):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    wins = [vader.polarity_scores(p.chosen)["compound"] > vader.polarity_scores(p.rejected)["compound"] for p in pairs]
    assert len(pairs) >= 16
    assert sum(wins) / len(wins) >= 0.85, [(p.chosen[:80], p.rejected[:80]) for p, w in zip(pairs, wins) if not w]


def test_chosen_responses_stay_fluent(pairs):
    assert all(p.chosen.strip() for p in pairs)
    assert all(p.rejected.strip() for p in pairs)
    assert sum(distinct_n(p.chosen, 2) for p in pairs) / len(pairs) >= 0.6


def test_each_pair_records_how_it_was_made(pairs):
    p = pairs[0]
    assert (p.gamma_plus, p.gamma_minus, p.layers) == (0.05, -0.05, tuple(range(8, 16)))
    assert p.instruction == NEUTRAL[0]
    assert 0 < p.chosen_tokens <= 48


def test_a_shared_prefill_per_pair_gives_the_embedded_models_greedy_text_exactly(embedded_lm, optimism_directions):
    from icon2engine import GenerateConfig, generate_rows

    rows = [t for t in NEUTRAL[:8] for _ in (0, 1)]
    kwargs = dict(coefficients=[0.08, -0.03] * 8, directions=[optimism_directions])
    cfg = GenerateConfig(max_new_tokens=32, batch_size=16)
    shared = generate_rows(embedded_lm, rows, cfg, **kwargs)
    separate = generate_rows(embedded_lm, rows, cfg, shared_prefill=False, **kwargs)
    assert shared.texts == separate.texts
    assert all(shared.texts[i] != shared.texts[i + 1] for i in range(0, 16, 2))  # the pair's rows were steered apart
