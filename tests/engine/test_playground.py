from __future__ import annotations

import math

import pytest
import torch

from icon2engine import ConfigError, DirectionSet, InputError, StageStats, compare_steering, generate_rows
from icon2engine.config import GenerateConfig


def _random_directions(lm, seed=0):
    gen = torch.Generator().manual_seed(seed)
    vecs = torch.randn(lm.n_layers, lm.hidden_size, generator=gen)
    vecs = vecs / vecs.norm(dim=1, keepdim=True)  # (n_layers, hidden) unit rows
    n = lm.n_layers
    return DirectionSet(dimension="d", vectors=vecs, mean_norm=[8.0] * n, explained_variance=[0.5] * n,
                        separation_accuracy=[1.0] * n, mean_diff_cosine=[1.0] * n)


def test_it_answers_unsteered_plus_and_minus_and_streams_what_it_returns(tiny_lm):
    ds = _random_directions(tiny_lm)
    updates: list[dict[str, str]] = []
    stats = StageStats("playground")
    out = compare_steering(tiny_lm, ds, "Describe the sea.", gamma=1.0, layers=[1, 2], max_new_tokens=10,
                           on_update=updates.append, stats=stats)
    assert list(out) == ["unsteered", "plus", "minus"]
    assert len(updates) > 1
    last: dict[str, str] = {}
    for update in updates:
        assert set(update) <= set(out)
        last.update(update)
    assert {side: text.strip() for side, text in last.items()} == out
    assert stats.tokens_out > 0 and stats.wall_s > 0


def test_the_unsteered_answer_is_plain_generation(tiny_lm):
    ds = _random_directions(tiny_lm)
    out = compare_steering(tiny_lm, ds, "Tell me about a fox.", gamma=0.5, max_new_tokens=8)
    plain = generate_rows(tiny_lm, ["Tell me about a fox."], GenerateConfig(max_new_tokens=8))
    assert out["unsteered"] == plain.texts[0]


@pytest.mark.parametrize("gamma", [0.0, -0.1, 1.5, math.nan, math.inf, "strong"])
def test_a_gamma_outside_zero_to_one_is_refused(tiny_lm, gamma):
    with pytest.raises(ConfigError, match="gamma"):
        compare_steering(tiny_lm, _random_directions(tiny_lm), "Describe the sea.", gamma=gamma)


def test_bad_instructions_lengths_layers_and_directions_are_refused(tiny_lm):
    ds = _random_directions(tiny_lm)
    with pytest.raises(InputError, match="instruction is empty"):
        compare_steering(tiny_lm, ds, "   ", gamma=0.1)
    with pytest.raises(ConfigError, match="max_new_tokens must be between 1 and 32768"):
        compare_steering(tiny_lm, ds, "Describe the sea.", gamma=0.1, max_new_tokens=0)
    with pytest.raises(ConfigError, match=r"outside the model, which has blocks 0..3"):
        compare_steering(tiny_lm, ds, "Describe the sea.", gamma=0.1, layers=[2, 7])
    with pytest.raises(ConfigError, match="layers is empty"):
        compare_steering(tiny_lm, ds, "Describe the sea.", gamma=0.1, layers=[])
    other = DirectionSet("x", torch.ones(3, 8), [1.0] * 3, [0.5] * 3, [1.0] * 3, [1.0] * 3)
    with pytest.raises(InputError, match="extract the vectors with this model"):
        compare_steering(tiny_lm, other, "Describe the sea.", gamma=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("instruction", ["Describe a rainy Monday morning.", "Tell me about your weekend plans."])
def test_on_the_embedded_model_the_three_answers_differ_and_plus_is_the_more_optimistic(
    embedded_lm, optimism_directions, instruction
):
    from icon2engine import VaderJudge

    # Measured at γ=0.05, 48 tokens: VADER plus ≈ 0.97, minus ≈ -0.5 and 0.0 (the text stays readable).
    out = compare_steering(embedded_lm, optimism_directions, instruction, gamma=0.05, max_new_tokens=48)
    assert len({out["unsteered"], out["plus"], out["minus"]}) == 3
    judge = VaderJudge()
    assert judge.score(instruction, out["plus"]) - judge.score(instruction, out["minus"]) > 0.5
