"""Evaluation: pairwise judging in both orders, win rate with a Wilson interval, projections."""
from __future__ import annotations

import pytest

from icon2engine.errors import ConfigError, InputError
from icon2engine.evaluation import EvalConfig, evaluate, mean_projection, pairwise, wilson_interval
from icon2engine.judges import BaseJudge
from icon2engine.stats import StageStats, total_stats


class FirstIsBetter(BaseJudge):
    """A judge with total position bias: it always prefers whatever is shown first."""

    name = "first"

    def score(self, instruction, response):
        return 0.0

    def compare(self, instruction, a, b):
        return 1.0


class Longer(BaseJudge):
    name = "longer"

    def score(self, instruction, response):
        return float(len(response))


def test_swapping_the_order_cancels_position_bias():
    assert pairwise(FirstIsBetter(), ["q", "r"], ["a", "b"], ["c", "d"]) == [0.0, 0.0]


def test_pairwise_prefers_the_better_response_in_both_orders():
    assert pairwise(Longer(), ["q", "q", "q"], ["long answer", "x", "same"], ["short", "longer one", "same"]) == [1.0, -1.0, 0.0]


def test_wilson_interval_brackets_the_rate_and_narrows_with_n():
    low, high = wilson_interval(12, 16)
    assert 0.45 < low < 0.75 < high < 0.95
    low2, high2 = wilson_interval(120, 160)
    assert high2 - low2 < high - low
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(16, 16)[1] == 1.0


def test_evaluate_reports_counts_rate_interval_and_projection(tiny_lm):
    import torch

    from conftest import make_tiny_lm

    other = make_tiny_lm(seed=1)
    n_layers, hidden = tiny_lm.n_layers, tiny_lm.hidden_size
    vecs = torch.nn.functional.normalize(torch.randn(n_layers, hidden), dim=-1)
    ds = _direction_set(vecs)
    rep = evaluate(tiny_lm, other, ["Describe a rainy Monday.", "Tell me about the sea.", "What is a good breakfast?"],
                   Longer(), EvalConfig(max_new_tokens=6), direction=ds)
    assert rep.n == 3 and rep.wins + rep.ties + rep.losses == 3
    assert rep.win_rate == pytest.approx((rep.wins + rep.ties / 2) / 3)
    assert rep.ci_low <= rep.win_rate <= rep.ci_high
    assert set(rep.mean_score) == {"base", "trained"} and set(rep.projection) == {"base", "trained"}
    assert rep.stats.wall_s > 0 and rep.stats.tokens_out > 0
    assert len(rep.rows) == 3 and {"base", "trained", "preference"} <= set(rep.rows[0])
    assert "rows" not in rep.summary()


def test_mean_projection_is_linear_in_the_direction(tiny_lm):
    import torch

    vecs = torch.nn.functional.normalize(torch.randn(tiny_lm.n_layers, tiny_lm.hidden_size), dim=-1)
    p = mean_projection(tiny_lm, _direction_set(vecs), ["Tell me about the sea."], ["The sea is grey."])
    q = mean_projection(tiny_lm, _direction_set(-vecs), ["Tell me about the sea."], ["The sea is grey."])
    assert p == pytest.approx(-q, rel=1e-5)


def test_no_instructions_is_an_error(tiny_lm):
    with pytest.raises(InputError, match="held-out"):
        evaluate(tiny_lm, tiny_lm, [], Longer())


def test_bad_confidence_says_what_to_change():
    with pytest.raises(ConfigError, match="confidence"):
        EvalConfig(confidence=1.5)


def test_stage_costs_add_up():
    t = total_stats([StageStats("a", 1.0, 10, 0, "cpu"), StageStats("b", 2.5, 5, 40, "cpu")], "all")
    assert (t.stage, t.wall_s, t.tokens_in, t.tokens_out, t.device) == ("all", 3.5, 15, 40, "cpu")


def _direction_set(vecs):
    from icon2engine.directions import DirectionSet

    n = vecs.shape[0]
    return DirectionSet(dimension="d", vectors=vecs, mean_norm=[1.0] * n, explained_variance=[0.5] * n,
                        separation_accuracy=[1.0] * n, mean_diff_cosine=[1.0] * n)
