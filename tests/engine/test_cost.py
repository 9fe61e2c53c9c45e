from __future__ import annotations

import json
import math

import pytest

from icon2engine import ConfigError, InputError, StageStats, merge_estimates, sample_and_rank_estimate

# Icon² generated 40 rows (20 instructions × chosen and rejected) in 20 s, 4,000 new tokens: 0.5 s and 100 tokens a row.
MEASURED = StageStats("generate", wall_s=20.0, tokens_in=900, tokens_out=4000, device="cpu")


def test_each_sampled_response_costs_what_an_icon2_row_cost_plus_its_judging():
    est = sample_and_rank_estimate(MEASURED, rows_generated=40, n_instructions=20, samples=5, judge_s_per_response=0.2)
    assert est["samples"] == 5 and est["n_instructions"] == 20
    assert est["generate_s"] == 50.0  # 5 × 20 responses × 0.5 s
    assert est["judge_s"] == 20.0  # 100 responses × 0.2 s
    assert est["wall_s"] == 70.0
    assert est["tokens_out"] == 10_000
    assert "5 responses per instruction" in est["basis"] and "0.2 s of judging" in est["basis"]
    assert json.loads(json.dumps(est)) == est


def test_the_stats_as_a_dict_give_the_same_estimate():
    a = sample_and_rank_estimate(MEASURED, rows_generated=40, n_instructions=7, samples=3)
    b = sample_and_rank_estimate(MEASURED.as_dict(), rows_generated=40, n_instructions=7, samples=3)
    assert a == b
    assert a["judge_s"] == 0.0 and a["wall_s"] == a["generate_s"] == 10.5


def test_estimates_of_chunks_merge_into_the_estimate_of_the_whole():
    first = sample_and_rank_estimate(StageStats("generate", 6.0, 0, 300), rows_generated=12, n_instructions=6,
                                     judge_s_per_response=0.1)
    second = sample_and_rank_estimate(StageStats("generate", 4.0, 0, 200), rows_generated=8, n_instructions=4,
                                      judge_s_per_response=0.1)
    whole = sample_and_rank_estimate(StageStats("generate", 10.0, 0, 500), rows_generated=20, n_instructions=10,
                                     judge_s_per_response=0.1)
    assert merge_estimates([first, second]) == whole
    assert merge_estimates([first]) == first


def test_merging_keeps_every_distinct_basis_and_refuses_unlike_estimates():
    fast = sample_and_rank_estimate(MEASURED, rows_generated=40, n_instructions=2, judge_s_per_response=0.0)
    slow = sample_and_rank_estimate(MEASURED, rows_generated=40, n_instructions=2, judge_s_per_response=1.0)
    assert merge_estimates([fast, slow, fast])["basis"] == f"{fast['basis']} {slow['basis']}"
    three = sample_and_rank_estimate(MEASURED, rows_generated=40, n_instructions=2, samples=3)
    with pytest.raises(InputError, match="different numbers of responses"):
        merge_estimates([fast, three])
    with pytest.raises(InputError, match="no estimates"):
        merge_estimates([])
    with pytest.raises(InputError, match="lacks wall_s"):
        merge_estimates([{k: v for k, v in fast.items() if k != "wall_s"}])


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(rows_generated=0), InputError, "rows_generated must be a whole number ≥ 1"),
        (dict(rows_generated=2.5), InputError, "rows_generated"),
        (dict(n_instructions=-1), InputError, "n_instructions must be a whole number ≥ 0"),
        (dict(samples=1), ConfigError, "samples must be a whole number ≥ 2"),
        (dict(judge_s_per_response=-0.1), ConfigError, "judge_s_per_response must be a finite number"),
        (dict(judge_s_per_response=math.inf), ConfigError, "judge_s_per_response must be a finite number"),
        (dict(judge_s_per_response=math.nan), ConfigError, "judge_s_per_response must be a finite number"),
        (dict(judge_s_per_response="slow"), ConfigError, "judge_s_per_response must be a number"),
    ],
)
def test_values_that_make_no_estimate_are_refused(kwargs, error, message):
    args = dict(rows_generated=40, n_instructions=20) | kwargs
    with pytest.raises(error, match=message):
        sample_and_rank_estimate(MEASURED, **args)


def test_generation_stats_without_a_usable_time_are_refused():
    with pytest.raises(InputError, match="no wall_s"):
        sample_and_rank_estimate({"tokens_out": 5}, rows_generated=1, n_instructions=1)
    with pytest.raises(InputError, match="wall_s must be a finite number"):
        sample_and_rank_estimate({"wall_s": math.nan}, rows_generated=1, n_instructions=1)
