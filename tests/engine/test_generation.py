from __future__ import annotations

import math

import pytest
import torch

from icon2engine import (
    ConfigError, Dimension, GenerateConfig, InputError, PromptPair, SteeringConfig, default_layers,
    extract_directions, generate_pairs, generate_rows,
)

DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
PROMPTS = ["Describe the sea.", "Tell me about a quick brown fox and a lazy dog.", "What?", "Numbers 1 2 3 4 5 6 7."]


@pytest.fixture
def directions(tiny_lm):
    return extract_directions(tiny_lm, DIM, ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."])


def test_batched_greedy_generation_equals_one_at_a_time(tiny_lm, directions):
    steering = SteeringConfig(0.3, -0.3, layers=(1, 2))
    batched = generate_pairs(tiny_lm, directions, PROMPTS, steering=steering, config=GenerateConfig(max_new_tokens=12, batch_size=8))
    single = generate_pairs(tiny_lm, directions, PROMPTS, steering=steering, config=GenerateConfig(max_new_tokens=12, batch_size=2))
    assert [(p.chosen, p.rejected) for p in batched] == [(p.chosen, p.rejected) for p in single]


def test_steering_changes_the_text_and_zero_steering_equals_plain_generation(tiny_lm, directions):
    cfg = GenerateConfig(max_new_tokens=12, batch_size=8)
    plain = generate_rows(tiny_lm, PROMPTS, cfg)
    zero = generate_rows(tiny_lm, PROMPTS, cfg, coefficients=[0.0] * 4, directions=[directions], layers=(1, 2))
    assert plain.texts == zero.texts
    pairs = generate_pairs(tiny_lm, directions, PROMPTS, steering=SteeringConfig(1.0, -1.0, layers=(0, 1, 2, 3)), config=cfg)
    assert any(p.chosen != p.rejected for p in pairs)
    assert any(p.chosen != t for p, t in zip(pairs, plain.texts))


def test_the_stored_prompt_is_the_plain_instruction(tiny_lm, directions):
    pairs = generate_pairs(tiny_lm, directions, PROMPTS[:2], config=GenerateConfig(max_new_tokens=4))
    assert [p.instruction for p in pairs] == PROMPTS[:2]
    assert all("cheerful" not in p.instruction for p in pairs)
    assert pairs[0].layers == default_layers(tiny_lm.n_layers)


def test_the_default_band_is_the_middle_third():
    assert default_layers(30) == tuple(range(10, 20))
    assert default_layers(32) == tuple(range(10, 21))


def test_seeded_sampling_is_reproducible(tiny_lm, directions):
    cfg = GenerateConfig(max_new_tokens=10, do_sample=True, temperature=1.0, top_p=1.0, seed=7)
    a = generate_pairs(tiny_lm, directions, PROMPTS, config=cfg)
    b = generate_pairs(tiny_lm, directions, PROMPTS, config=cfg)
    assert [p.chosen for p in a] == [p.chosen for p in b]


@pytest.mark.parametrize("gp,gm", [(math.nan, -0.05), (math.inf, -0.05), (0.05, -math.inf), (5.0, -0.05), (0.05, 0.5), (0.0, -0.1)])
def test_gamma_that_is_not_finite_or_absurd_is_refused(gp, gm):
    with pytest.raises(ConfigError, match="gamma"):
        SteeringConfig(gp, gm)


def test_a_layer_outside_the_model_is_refused(tiny_lm, directions):
    with pytest.raises(ConfigError, match=r"outside the model, which has blocks 0..3"):
        generate_pairs(tiny_lm, directions, PROMPTS, steering=SteeringConfig(layers=(2, 9)))


def test_empty_instructions_are_refused(tiny_lm, directions):
    with pytest.raises(InputError, match="no instructions"):
        generate_pairs(tiny_lm, directions, [])
    with pytest.raises(InputError, match="#2 is empty"):
        generate_pairs(tiny_lm, directions, ["fine", "   "])


def test_an_instruction_longer_than_the_context_is_refused(tiny_lm, directions):
    long = "fox " * 400  # the tiny model's context is 256 positions
    with pytest.raises(InputError, match="exceeds the model's context of 256"):
        generate_pairs(tiny_lm, directions, ["short", long], config=GenerateConfig(max_new_tokens=8))


def test_vectors_from_another_model_are_refused(tiny_lm, directions):
    from dataclasses import replace

    other = replace(directions, vectors=torch.zeros(7, 64))
    with pytest.raises(InputError, match="extract the vectors with this model"):
        generate_pairs(tiny_lm, other, PROMPTS)


def test_the_no_repeat_safeguard_bans_a_repeated_token_trigram_in_the_response_only():
    from icon2engine.decoding import NoRepeatNGram

    ids = torch.tensor([[7, 8, 1, 2, 3, 1, 2], [7, 8, 5, 6, 7, 8, 5]])  # (batch, seq): 2 prompt tokens, then the response
    out = NoRepeatNGram(3, start=2)(ids, torch.zeros(2, 12))
    assert torch.isinf(out[0, 3]) and torch.isinf(out[0]).sum() == 1  # "1 2" was followed by 3 before
    assert not torch.isinf(out[1]).any()  # "8 5" occurs only across the prompt boundary, never inside the response


def test_greedy_generation_with_the_safeguard_repeats_no_token_trigram(tiny_lm):
    from transformers import LogitsProcessorList

    from icon2engine.chat import format_chat
    from icon2engine.decoding import NoRepeatNGram

    tok = tiny_lm.tokenizer
    enc = tok([format_chat(tok, p) for p in PROMPTS], return_tensors="pt", padding=True, add_special_tokens=False)
    width = enc["input_ids"].shape[1]
    out = tiny_lm.model.generate(**enc, max_new_tokens=24, min_new_tokens=24, do_sample=False,
                                 logits_processor=LogitsProcessorList([NoRepeatNGram(3, width)]))
    for row in out[:, width:].tolist():  # (batch, new)
        grams = [tuple(row[i : i + 3]) for i in range(len(row) - 2)]
        assert len(grams) == len(set(grams)), row
    # generate_rows wires it in: the random model loops without it, so the texts differ.
    guarded = generate_rows(tiny_lm, PROMPTS, GenerateConfig(max_new_tokens=24, no_repeat_ngram_size=3, min_new_tokens=24))
    plain = generate_rows(tiny_lm, PROMPTS, GenerateConfig(max_new_tokens=24, no_repeat_ngram_size=0, min_new_tokens=24))
    assert plain.texts != guarded.texts


@pytest.mark.parametrize("mode", ["add", "add_renorm", "clamp"])
@pytest.mark.parametrize("safeguards", [{}, {"no_repeat_ngram_size": 3, "repetition_penalty": 1.3}])
def test_one_shared_prefill_per_pair_gives_the_same_greedy_text(tiny_lm, directions, monkeypatch, mode, safeguards):
    from icon2engine import generation

    calls = []
    real = generation.shared_prefix_cache
    monkeypatch.setattr(generation, "shared_prefix_cache", lambda *a: calls.append(real(*a)) or calls[-1])
    steering = SteeringConfig(0.3, -0.3, layers=(1, 2), mode=mode)
    cfg = GenerateConfig(max_new_tokens=12, batch_size=4, **safeguards)
    rows = [t for t in PROMPTS for _ in (0, 1)]
    coefs = [0.3, -0.3] * len(PROMPTS)
    kwargs = dict(coefficients=coefs, directions=[directions], layers=(1, 2), mode=mode)
    shared = generate_rows(tiny_lm, rows, cfg, **kwargs)
    assert calls and all(calls)  # every batch held pairs, so every batch shared its prompts
    separate = generate_rows(tiny_lm, rows, cfg, shared_prefill=False, **kwargs)
    assert shared.texts == separate.texts and shared.new_tokens == separate.new_tokens
    pairs = generate_pairs(tiny_lm, directions, PROMPTS, steering=steering, config=cfg)
    assert [t for p in pairs for t in (p.chosen, p.rejected)] == shared.texts


def test_rows_with_distinct_prompts_build_no_shared_cache(tiny_lm):
    from icon2engine.prefill import shared_prefix_cache

    enc = tiny_lm.tokenizer(PROMPTS[:2], return_tensors="pt", padding=True, add_special_tokens=False)
    assert shared_prefix_cache(tiny_lm, dict(enc), PROMPTS[:2]) == {}
