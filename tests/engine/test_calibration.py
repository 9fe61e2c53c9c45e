"""γ calibration: a whole table with coherence figures, a pick by the paper's rule, and clear refusals."""
from __future__ import annotations

import math

import pytest

from icon2engine import Dimension, GenerateConfig, PromptPair, SteeringConfig, extract_directions
from icon2engine.calibration import CalibrationConfig, calibrate, response_loglik
from icon2engine.errors import ConfigError, InputError
from icon2engine.gate import GateConfig
from icon2engine.judges import LengthJudge, VaderJudge
from icon2engine.quality import QualityConfig

DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
PROMPTS = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3.", "What?"]
KEYS = {
    "gamma_plus", "gamma_minus", "mean_score_chosen", "mean_score_rejected", "p_chosen_gt_rejected", "loglik_chosen",
    "loglik_rejected", "distinct2_chosen", "distinct2_rejected", "degenerate_chosen", "degenerate_rejected",
    "relevance_chosen", "relevance_rejected", "excluded_reason",
}
# A random model writes no language: with every check off, only the structure is under test.
NO_CHECKS = QualityConfig(max_repetition=None, min_distinct2=None, min_length_ratio=None, max_length_ratio=None, min_words=0,
                          max_foreign=None, max_loglik_drop=None, min_relevance=None, min_relevance_kept=None,
                          min_new_content=None, check_refusal=False)


@pytest.mark.parametrize(
    "kwargs,says",
    [
        (dict(gamma_plus_grid=()), "gamma_plus_grid is empty"),
        (dict(gamma_minus_grid=[]), "gamma_minus_grid is empty"),
        (dict(gamma_plus_grid=(0.05, 2.0)), r"gamma_plus_grid holds 2.0, outside \(0.0, 1.0\]"),
        (dict(gamma_plus_grid=(0.0,)), r"gamma_plus_grid holds 0.0, outside"),
        (dict(gamma_minus_grid=(0.05,)), r"gamma_minus_grid holds 0.05, outside \[-1.0, 0.0\]"),
        (dict(gamma_minus_grid=(float("nan"),)), "must be a finite number"),
        (dict(gamma_plus_grid=(0.05, 0.05)), "duplicates"),
        (dict(p_threshold=1.0), "p_threshold"),
        (dict(n_instructions=0), "n_instructions"),
        (dict(max_loglik_drop=-1.0), "max_loglik_drop"),
    ],
)
def test_a_grid_that_is_empty_or_out_of_range_is_refused(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        CalibrationConfig(**kwargs)


def test_the_loglik_of_an_empty_response_is_minus_infinity_and_batching_does_not_change_it(tiny_lm):
    one = response_loglik(tiny_lm, PROMPTS[:3], ["The sea.", "", "A fox and a lazy dog."], batch_size=1)
    many = response_loglik(tiny_lm, PROMPTS[:3], ["The sea.", "", "A fox and a lazy dog."], batch_size=8)
    assert one[1] == many[1] == -math.inf
    assert one[0] == pytest.approx(many[0], abs=1e-4) and one[2] == pytest.approx(many[2], abs=1e-4)
    assert one[0] < 0


def test_answers_to_one_instruction_share_its_prompt_and_score_as_if_each_ran_alone(tiny_lm, monkeypatch):
    import icon2engine.prefill as prefill

    rows = [PROMPTS[0]] * 3 + [PROMPTS[4]] * 3  # two prompts of different lengths, three answers each
    texts = ["The sea is wide.", "", "Waves, waves and more waves all day.", "What.", "A question.", "Fox fox."]
    alone = response_loglik(tiny_lm, rows, texts, batch_size=1)  # one row per forward: no prompt is shared
    calls = []
    real = prefill._logprobs_shared
    monkeypatch.setattr(prefill, "_logprobs_shared", lambda *a: calls.append(len(a[2])) or real(*a))
    shared = response_loglik(tiny_lm, rows, texts, batch_size=8)
    assert calls == [5]  # the five non-empty answers in one batch, over two prompt runs
    assert shared[1] == alone[1] == -math.inf
    assert shared == pytest.approx(alone, abs=1e-4)
    assert len(set(round(x, 3) for x in shared if x > -math.inf)) == 5  # five different answers, five scores


def test_calibration_returns_every_setting_of_the_grid(tiny_lm):
    ds = extract_directions(tiny_lm, DIM, PROMPTS[:4])
    cfg = CalibrationConfig(gamma_plus_grid=(0.1, 0.5), gamma_minus_grid=(-0.1, -0.5, 0.0), n_instructions=4,
                            max_new_tokens=6, layers=(1, 2), quality=NO_CHECKS)
    res = calibrate(tiny_lm, ds, PROMPTS, LengthJudge(), cfg)
    assert res.n_instructions == 4 and res.layers == (1, 2)
    assert [(r["gamma_plus"], r["gamma_minus"]) for r in res.table] == [
        (0.1, 0.0), (0.1, -0.1), (0.1, -0.5), (0.5, 0.0), (0.5, -0.1), (0.5, -0.5)
    ]
    assert all(set(r) == KEYS for r in res.table)
    assert all(0.0 <= r["p_chosen_gt_rejected"] <= 1.0 for r in res.table)
    assert "γ" in res.format_table() and res.as_dict()["table"] == res.table
    if res.pick is None:
        assert "p_threshold" in res.reason or "moved the wrong way" in res.reason
        with pytest.raises(InputError, match="picked no γ"):
            res.steering()


def test_calibration_runs_the_runs_own_steering_rule_safeguards_and_quality_gate(tiny_lm, monkeypatch):
    """What calibration measures is what generation will use: the run's rule, decoding safeguards
    and gate thresholds, not its own."""
    import icon2engine.calibration as calibration

    seen = []
    real = calibration.generate_rows
    monkeypatch.setattr(calibration, "generate_rows", lambda lm, rows, cfg, **kw: seen.append((cfg, kw)) or real(lm, rows, cfg, **kw))
    ds = extract_directions(tiny_lm, DIM, PROMPTS[:4])
    strict = GateConfig(quality=QualityConfig(min_words=500))  # no 6-token response has 500 words: every one fails
    res = calibrate(
        tiny_lm, ds, PROMPTS, LengthJudge(),
        CalibrationConfig(gamma_plus_grid=(0.1,), gamma_minus_grid=(-0.1,), n_instructions=3, max_new_tokens=6, seed=4),
        steering=SteeringConfig(mode="clamp", layers=(1, 2), steer_prompt=True),
        generate=GenerateConfig(no_repeat_ngram_size=4, repetition_penalty=1.3, max_new_tokens=300), gate=strict,
    )
    cfg, kw = seen[0]
    assert kw["mode"] == "clamp" and kw["steer_prompt"] is True and tuple(kw["layers"]) == (1, 2) == res.layers
    assert (cfg.no_repeat_ngram_size, cfg.repetition_penalty) == (4, 1.3)  # the run's safeguards
    assert (cfg.max_new_tokens, cfg.seed) == (6, 4)  # the sweep's own length and seed
    assert res.pick is None and "fail the quality gate" in res.reason
    assert all("empty" in r["excluded_reason"] for r in res.table)  # judged by the gate's thresholds


def test_calibration_needs_to_know_each_instructions_dimension_when_there_are_several(tiny_lm):
    ds = extract_directions(tiny_lm, DIM, PROMPTS[:4])
    other = extract_directions(tiny_lm, Dimension("other", (PromptPair("Talk about foxes.", "Talk about dogs."),)), PROMPTS[:4])
    with pytest.raises(InputError, match="say which one each instruction uses"):
        calibrate(tiny_lm, {"cheer": ds, "other": other}, PROMPTS, LengthJudge(), CalibrationConfig(n_instructions=2))


@pytest.mark.slow
def test_calibration_with_vader_picks_only_a_setting_whose_sides_still_answer(embedded_lm, optimism_directions):
    from test_behaviour_embedded import NEUTRAL

    cfg = CalibrationConfig(
        gamma_plus_grid=(0.02, 0.05, 0.2), gamma_minus_grid=(-0.02, -0.05, -0.1), n_instructions=12,
        max_new_tokens=32, batch_size=42, layers=tuple(range(8, 16)),
        p_threshold=0.4,  # 12 instructions of 32 tokens, and a win counts only when both sides pass the gate
        max_degenerate_share=0.35,  # 12 short answers: one in three may fail and be retried by the gate
    )
    res = calibrate(embedded_lm, optimism_directions, NEUTRAL, VaderJudge(), cfg)
    print("\n" + res.format_table() + f"\nbaseline {res.baseline}\npick {res.pick}\n{res.reason}")
    assert len(res.table) == 9 and all(set(r) == KEYS for r in res.table)
    assert res.pick is not None, res.reason
    row = next(r for r in res.table if (r["gamma_plus"], r["gamma_minus"]) == (res.pick["gamma_plus"], res.pick["gamma_minus"]))
    assert row["p_chosen_gt_rejected"] > 0.4 and row["excluded_reason"] is None
    assert row["degenerate_chosen"] <= cfg.max_degenerate_share and row["degenerate_rejected"] <= cfg.max_degenerate_share
    # γ = 0.2 × norm garbles SmolLM2's text and stops it answering; the gate's checks see it even where VADER likes it.
    assert all("chosen:" in (r["excluded_reason"] or "") and "degenerate" in r["excluded_reason"]
               for r in res.table if r["gamma_plus"] == 0.2)
    assert res.pick["gamma_plus"] < 0.2


def _row(gp, gm, chosen, rejected, p):
    return {"gamma_plus": gp, "gamma_minus": gm, "mean_score_chosen": chosen, "mean_score_rejected": rejected,
            "p_chosen_gt_rejected": p, "excluded_reason": None}


def test_when_the_judge_scores_the_opposite_way_the_refusal_says_so_instead_of_steer_harder():
    from icon2engine.calibration import _diagnose, _pick

    # A "concise" dimension judged by a longer-is-better length judge: chosen fell 52 → 13 words.
    table = [_row(gp, gm, chosen, 60.0, 0.0) for gp, chosen in ((0.05, 40.0), (0.1, 25.0), (0.2, 13.0))
             for gm in (-0.03, -0.1)]
    pick, generic = _pick(table, CalibrationConfig())
    assert pick is None and "widen the grids" in generic
    why = _diagnose(table, baseline_score=52.0)
    assert "chosen side moved the wrong way for the judge" in why and "52.000" in why and "13.000 at γ⁺=0.2" in why
    assert "--judge-better lower" in why and "widen" not in why
    # Steering that moved each side the judge's way, only too weakly, keeps the generic advice.
    assert _diagnose([_row(0.1, -0.1, 53.0, 51.0, 0.6)], baseline_score=52.0) is None
    assert "rejected side moved the wrong way" in _diagnose([_row(0.1, -0.1, 53.0, 58.0, 0.2)], baseline_score=52.0)
