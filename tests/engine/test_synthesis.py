"""Magpie synthesis: cleaning rules, sampling mechanics on the tiny model, and the embedded model's yield."""
from __future__ import annotations

import pytest
import torch

from icon2engine.cleaning import DROP_REASONS, CleaningRules, check_instruction, clean_instructions
from icon2engine.errors import ConfigError, SynthesisShortfall
from icon2engine.pre_query import derive_pre_query, special_token_strings
from icon2engine.synthesis import SynthesisConfig, sample_user_turns, synthesize


@pytest.mark.parametrize(
    "text,ending,reason",
    [
        ("   ", "end", "empty"),
        ("Explain how tides work and why there are two a day", "length", "truncated"),
        ("Explain how tides work.", "special", "template_tokens"),
        ("assistant\nSure, here is", "end", "role_marker"),
        ("User: what is a tide?", "end", "role_marker"),
        ("Tides?", "end", "too_short"),
        ("word " * 61, "end", "too_long"),
        ("12 + 34 = 46; 7 * 8 = 56 ???", "end", "not_text"),
        ("Объясни, как работают приливы и отливы.", "end", "not_text"),
        ("Hello there! How are you doing today?", "end", "greeting"),
        ("Explain how tides work.", "end", None),
    ],
)
def test_each_cleaning_rule_names_its_reason(text, ending, reason):
    assert check_instruction(text, CleaningRules(), ending=ending) == reason


def test_duplicates_and_near_duplicates_are_dropped_and_counted():
    kept, report = clean_instructions([
        "Write a short poem about the sea at night.",
        "write a short poem about the SEA at night!",
        "Write a short poem about the sea at night, please.",
        "Write a short story about a lighthouse keeper.",
    ])
    assert kept == ["Write a short poem about the sea at night.", "Write a short story about a lighthouse keeper."]
    assert dict(report.dropped) == {"duplicate": 1, "near_duplicate": 1}
    assert report.acceptance_rate == 0.5


def test_rules_that_make_no_sense_are_refused():
    with pytest.raises(ConfigError, match="max_words"):
        CleaningRules(min_words=10, max_words=5)
    with pytest.raises(ConfigError, match="min_letter_share"):
        CleaningRules(min_letter_share=1.5)
    with pytest.raises(ConfigError, match="top_p"):
        SynthesisConfig(top_p=0.0)


def test_greedy_sampling_after_the_pre_query_equals_plain_generate(tiny_lm):
    """The shared-prompt cache copied to every row gives what generate() gives."""
    pq = derive_pre_query(tiny_lm.tokenizer)
    ids = tiny_lm.tokenizer(pq.text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ref = tiny_lm.model.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)[0, ids.shape[1]:]
    samples = sample_user_turns(tiny_lm, pq, 3, max_new_tokens=10, temperature=1e-6)
    specials = set(tiny_lm.tokenizer.all_special_ids)
    expected = [t for t in ref.tolist() if t not in specials]
    assert len(expected) == len(ref)  # this seeded random model writes no special token in 10 steps
    assert {s.text for s in samples} == {tiny_lm.tokenizer.decode(expected).strip()}
    assert all(s.ending == "length" and s.tokens == 10 for s in samples)


def test_seeded_synthesis_is_reproducible_and_every_sample_is_accounted_for(tiny_lm):
    cfg = SynthesisConfig(max_attempts=24, batch_size=8, max_new_tokens=12, seed=3)
    rules = CleaningRules(min_words=1, require_natural_end=False, min_letter_share=0.0, min_latin_share=0.0, drop_greetings=False)
    a = synthesize(tiny_lm, 4, cfg, rules, allow_partial=True)
    b = synthesize(tiny_lm, 4, cfg, rules, allow_partial=True)
    assert a.instructions == b.instructions
    r = a.report
    assert r.cleaning.seen == r.attempts <= 24
    assert r.cleaning.kept + sum(r.cleaning.dropped.values()) == r.attempts
    assert set(r.cleaning.dropped) <= set(DROP_REASONS)
    specials = special_token_strings(tiny_lm.tokenizer)
    assert all(not any(s in text for s in specials) for text in a.instructions)


def test_running_out_of_attempts_is_an_error_that_carries_the_report(tiny_lm):
    with pytest.raises(SynthesisShortfall, match=r"only \d+ of 50 instructions.*raise max_attempts") as info:
        synthesize(tiny_lm, 50, SynthesisConfig(max_attempts=8, batch_size=8, max_new_tokens=6))
    assert info.value.report.attempts == 8
    assert info.value.report.reached_target is False


def test_a_random_model_mostly_fails_the_rules_and_the_report_says_why(tiny_lm):
    result = synthesize(tiny_lm, 2, SynthesisConfig(max_attempts=16, batch_size=16, max_new_tokens=8), allow_partial=True)
    d = result.report.as_dict()
    assert d["attempts"] == 16 and d["reached_target"] in (True, False)
    assert sum(d["dropped"].values()) + d["passed"] == 16
    assert "truncated" in d["dropped"]  # 8 random tokens rarely close the turn


# What a kept instruction must satisfy on the embedded model; the test checks each kept one.
STATED_RULES = CleaningRules(min_words=3, max_words=60, max_chars=400, min_letter_share=0.5, min_latin_share=0.9)


@pytest.mark.slow
def test_the_embedded_model_writes_64_clean_instructions_within_4x_attempts(embedded_lm):
    torch.manual_seed(0)
    result = synthesize(embedded_lm, 64, SynthesisConfig(batch_size=64, max_new_tokens=48, seed=0), STATED_RULES)
    report = result.report
    print("\nsynthesis:", report.summary(), f"{report.wall_s:.1f}s")
    assert len(result.instructions) == 64 and report.reached_target
    assert report.attempts <= 4 * 64
    assert 0 < report.acceptance_rate <= 1 and report.as_dict()["acceptance_rate"] == round(report.acceptance_rate, 4)
    specials = special_token_strings(embedded_lm.tokenizer)
    for text in result.instructions:
        assert text == text.strip() and text
        assert not any(s in text for s in specials), text
        assert 3 <= len(text.split()) <= 60 and len(text) <= 400, text
        assert check_instruction(text, STATED_RULES) is None, text
    normalised = [" ".join(t.lower().split()) for t in result.instructions]
    assert len(set(normalised)) == 64
