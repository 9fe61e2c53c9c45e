"""Every common family through the whole pipeline, on tiny random models built from configs (no download).

Each family's tiny model (``icon2engine.tiny_models``) writes its own prompt format, so these
tests also take Gemma's no-system-role template, Llama's and OPT's BOS, and the base models'
fallback template through extraction, the gate (shared-prefill KV cache against the plain path),
a DPO step and evaluation. The weights are random: these tests check structure, not quality.
"""
from __future__ import annotations

import math

import pytest
import torch

from icon2engine import Dimension, GenerateConfig, PromptPair, SteeringConfig, extract_directions
from icon2engine.chat import format_chat
from icon2engine.config import EvalConfig, TrainConfig
from icon2engine.evaluation import evaluate
from icon2engine.gate import GateConfig, generate_gated_pairs
from icon2engine.generation import generate_rows
from icon2engine.judges import LengthJudge
from icon2engine.prefill import shared_prefix_cache
from icon2engine.quality import QualityConfig
from icon2engine.tiny_models import FAMILIES, tiny_family_model
from icon2engine.training import train_dpo

DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
FEATURES = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."]
# The first is longer than the 40-token sliding window of the tiny Mistral and Gemmas, so their
# windowed caches are exercised; the feature prompts fit in it, so every block sees the system prompt.
PROMPTS = ["Describe a rainy Monday, the sea and a quick brown fox, then tell me about a lazy dog.",
           "What is a good breakfast?"]
# A random model writes no language, so the language and fluency checks are off: the gate runs
# its whole course (measures, the unsteered answers' check, drops of identical sides) on any text.
STRUCTURE = QualityConfig(
    max_foreign=None, max_loglik_drop=None, min_length_ratio=None, max_length_ratio=None, max_repetition=None,
    min_distinct2=None, min_words=0,
    min_relevance=None, min_relevance_kept=None, min_new_content=None, min_relevance_vs_rejected=None,
)
PAIRS = [
    {"instruction": f"Describe a rainy Monday {i}.", "chosen": "What a lovely day, sunny and bright!",
     "rejected": "The sea is grey and the fox is lazy."}
    for i in range(4)
]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_goes_through_extraction_the_gate_a_dpo_step_and_evaluation(family, tmp_path):
    lm = tiny_family_model(family)
    assert lm.n_layers == 2 and lm.hidden_size == 32
    prompt = format_chat(lm.tokenizer, "Hi.")
    if lm.tokenizer.add_bos_token:  # the family's BOS, once
        ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ids[0] == lm.tokenizer.bos_token_id and ids.count(lm.tokenizer.bos_token_id) == 1

    ds = extract_directions(lm, DIM, FEATURES)
    assert tuple(ds.vectors.shape) == (2, 32) and torch.isfinite(ds.vectors).all()
    assert all(n > 0 and math.isfinite(n) for n in ds.mean_norm)

    # The shared prefill (a pair's prompt run once, its KV cache copied to both rows) gives the
    # same greedy text as running every row's prompt, sliding windows and hybrid caches included.
    rows, coefs = [p for p in PROMPTS for _ in (0, 1)], [0.5, -0.5] * len(PROMPTS)
    config = GenerateConfig(max_new_tokens=8, batch_size=4)
    shared = generate_rows(lm, rows, config, coefficients=coefs, directions=[ds], shared_prefill=True)
    plain = generate_rows(lm, rows, config, coefficients=coefs, directions=[ds], shared_prefill=False)
    assert shared.texts == plain.texts and shared.new_tokens == plain.new_tokens
    prompts = [format_chat(lm.tokenizer, p) for p in rows]
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert shared_prefix_cache(lm, dict(enc), prompts), "the shared prefill was not used"

    res = generate_gated_pairs(lm, ds, PROMPTS, steering=SteeringConfig(0.5, -0.5), config=GenerateConfig(max_new_tokens=12),
                               gate=GateConfig(quality=STRUCTURE, max_retries=1, max_unsteered_degenerate=1.0))
    assert len(res.pairs) + len(res.dropped) == len(PROMPTS)
    assert all(set(p.quality) == {"chosen", "rejected", "unsteered"} for p in res.pairs)

    trained = train_dpo(lm, PAIRS, tmp_path / "run", TrainConfig(max_steps=1, batch_size=2, max_length=64, lora_r=4))
    assert trained.steps == 1 and trained.lm is not None and trained.lm.n_layers == 2

    report = evaluate(lm, trained.lm, PROMPTS, LengthJudge(), EvalConfig(max_new_tokens=6), direction=ds)
    assert report.n == len(PROMPTS) and report.wins + report.ties + report.losses == len(PROMPTS)
    assert set(report.projection) == {"base", "trained"}
