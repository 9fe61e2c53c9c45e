"""Behaviour on the embedded model: DPO with LoRA on steered optimistic/pessimistic pairs makes the
trained model's own (unsteered) answers to held-out neutral instructions more positive."""
from __future__ import annotations

import time

import pytest

from icon2engine import GenerateConfig, SteeringConfig, generate_pairs
from icon2engine.evaluation import EvalConfig, evaluate
from icon2engine.judges import VaderJudge
from icon2engine.training import TrainConfig, train_dpo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # ~3 min quiet; 15+ on 2 cores shared with benchmarks

TOPICS = [
    "a rainy afternoon", "a train journey", "a new job", "moving house", "a dentist appointment", "a long queue",
    "a garden in spring", "an old bicycle", "a birthday party", "a football match", "a grocery list", "a library",
    "a mountain hike", "a power cut", "a traffic jam", "a museum visit", "a cup of coffee", "a job interview",
    "a snowy street", "a city park", "a lost umbrella", "an exam", "a weekend at home", "a wedding",
    "a hospital waiting room", "a school reunion", "a late bus", "a cooking class", "a village fair",
    "a phone call from a friend", "a delayed flight", "a Monday morning",
]
TRAIN = [f"Tell me about {t}." for t in TOPICS] + [f"Write two sentences about {t}." for t in TOPICS]  # 64
HELD_OUT = [
    "Describe a ride on a city bus.", "What do you think of winter evenings?", "Tell me about a normal school day.",
    "Describe an open-plan office.", "What is it like to wait at an airport?", "Write a short note about a family dinner.",
    "Describe a small town's main street.", "Tell me about doing the laundry.", "What happens at a weekly team meeting?",
    "Describe a supermarket on Saturday.", "Write about a walk to the train station.",
    "What is your view of long summer holidays?", "Describe the view from an office window.",
    "Tell me about cooking pasta.", "Describe the neighbour's cat.", "What is a good breakfast before work?",
]


def test_dpo_on_steered_pairs_makes_unsteered_answers_more_positive(embedded_lm, optimism_directions, tmp_path):
    assert not set(TRAIN) & set(HELD_OUT) and len(TRAIN) >= 64 and len(HELD_OUT) == 16
    t0 = time.perf_counter()
    pairs = generate_pairs(
        embedded_lm, optimism_directions, TRAIN,
        steering=SteeringConfig(0.05, -0.05, layers=tuple(range(8, 16))),
        config=GenerateConfig(max_new_tokens=40, batch_size=32),
    )
    pairs = [p for p in pairs if p.chosen.strip() != p.rejected.strip()]
    t_gen = time.perf_counter() - t0
    res = train_dpo(
        embedded_lm, pairs, tmp_path / "run",
        TrainConfig(max_steps=24, batch_size=4, max_length=96, learning_rate=2e-4, lora_r=8, lora_alpha=16),
    )
    t_train = time.perf_counter() - t0 - t_gen
    t1 = time.perf_counter()
    rep = evaluate(embedded_lm, res.lm, HELD_OUT, VaderJudge(), EvalConfig(max_new_tokens=40),
                   direction=optimism_directions)
    t_all = time.perf_counter() - t0
    print(f"\npairs {len(pairs)} gen {t_gen:.0f}s train {t_train:.0f}s ({res.steps} steps) "
          f"evaluate {time.perf_counter() - t1:.0f}s total {t_all:.0f}s")
    print(f"mean VADER base {rep.mean_score['base']:.3f} trained {rep.mean_score['trained']:.3f}; "
          f"win rate {rep.win_rate:.2f} [{rep.ci_low:.2f}, {rep.ci_high:.2f}] w/t/l {rep.wins}/{rep.ties}/{rep.losses}; "
          f"projection base {rep.projection['base']:.2f} trained {rep.projection['trained']:.2f}")
    print("last step:", res.log[-1])
    assert len(pairs) >= 60
    assert res.log[-1]["accuracy"] >= 0.5
    assert rep.mean_score["trained"] > rep.mean_score["base"]
    assert rep.win_rate > 0.6
    assert rep.projection["trained"] > rep.projection["base"]
