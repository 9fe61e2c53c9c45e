"""Consistency filtering: every instruction scored on every dimension, exact top fractions, and a score that means something."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from icon2engine import Dimension, PromptPair, extract_directions
from icon2engine.errors import ConfigError, InputError
from icon2engine.filtering import FilterConfig, score_instructions, select_top

POOL_FILE = Path(__file__).resolve().parents[2] / "bench" / "data" / "consistency_pool.jsonl"
CHEER = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
FOX = Dimension("fox", (PromptPair("Talk about a quick brown fox.", "Talk about a lazy dog."),))
FEATURES = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."]
POOL = [f"Tell me about {w} number {i}." for i, w in enumerate(["the sea", "a fox", "a dog", "numbers", "the sky"] * 4)]


@pytest.fixture
def two_dims(tiny_lm):
    return {d.name: extract_directions(tiny_lm, d, FEATURES) for d in (CHEER, FOX)}


def test_every_instruction_keeps_a_score_per_dimension_and_its_winner(tiny_lm, two_dims):
    sc = score_instructions(tiny_lm, two_dims, POOL)
    assert sc.scores.shape == sc.paper_scores.shape == (20, 2)
    assert sc.dimensions == ["cheer", "fox"]
    rows = sc.rows()
    assert len(rows) == 20 and set(rows[0]["scores"]) == {"cheer", "fox"}
    for row, best, win in zip(rows, sc.best, sc.winner):
        assert row["dimension"] == win == max(row["scores"], key=row["scores"].get)
        assert row["score"] == pytest.approx(float(best), abs=1e-5)


def test_centring_subtracts_one_constant_per_dimension(tiny_lm, two_dims):
    centred = score_instructions(tiny_lm, two_dims, POOL)
    paper = score_instructions(tiny_lm, two_dims, POOL, FilterConfig(method="paper"))
    np.testing.assert_allclose(centred.paper_scores, paper.scores, rtol=1e-6)
    diff = paper.scores - centred.scores  # (n, dims): the same offset for every instruction
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(centred.scores.mean(axis=0), 0.0, atol=1e-6)  # centred on the pool itself


def test_reference_means_replace_the_pools_own(tiny_lm, two_dims):
    zero = torch.zeros(tiny_lm.n_layers, tiny_lm.hidden_size)
    sc = score_instructions(tiny_lm, two_dims, POOL, reference_means=zero)
    np.testing.assert_allclose(sc.scores, sc.paper_scores, rtol=1e-6)
    with pytest.raises(InputError, match="reference_means must be"):
        score_instructions(tiny_lm, two_dims, POOL, reference_means=torch.zeros(3, 3))


@pytest.mark.parametrize("fraction,expected", [(0.1, 2), (0.25, 5), (0.5, 10), (1.0, 20), (0.01, 1)])
def test_filtering_keeps_exactly_the_requested_fraction_ordered_by_score(tiny_lm, two_dims, fraction, expected):
    sc = score_instructions(tiny_lm, two_dims, POOL)
    sel = select_top(sc, keep_fraction=fraction)
    assert len(sel.instructions) == expected
    assert sel.scores == sorted(sel.scores, reverse=True)
    assert min(sel.scores) >= np.delete(sc.best, sel.indices).max(initial=-np.inf)
    assert sel.dimensions == [sc.winner[i] for i in sel.indices]


def test_a_threshold_can_be_moved_later_without_rescoring(tiny_lm, two_dims):
    sc = score_instructions(tiny_lm, two_dims, POOL)
    for cut in np.quantile(sc.best, [0.2, 0.5, 0.9]):
        sel = select_top(sc, threshold=float(cut))
        assert len(sel.instructions) == int((sc.best >= cut).sum())
        assert all(s >= cut for s in sel.scores)


def test_bad_filter_settings_are_refused(tiny_lm, two_dims):
    sc = score_instructions(tiny_lm, two_dims, POOL[:4])
    with pytest.raises(ConfigError, match="exactly one of keep_fraction"):
        select_top(sc, keep_fraction=0.1, threshold=0.0)
    with pytest.raises(ConfigError, match="exactly one of keep_fraction"):
        select_top(sc)
    with pytest.raises(ConfigError, match=r"keep_fraction must be in \(0, 1\]"):
        select_top(sc, keep_fraction=1.5)
    with pytest.raises(ConfigError, match="method must be one of centred, paper"):
        FilterConfig(method="cosine")
    with pytest.raises(ConfigError, match="outside the model"):
        score_instructions(tiny_lm, two_dims, POOL[:4], FilterConfig(layers=(0, 9)))
    with pytest.raises(InputError, match="no instructions"):
        score_instructions(tiny_lm, two_dims, [])


def _auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


@pytest.mark.slow
def test_the_score_ranks_emotionally_loaded_instructions_above_arithmetic_code_and_facts(embedded_lm, optimism_directions):
    pool = [json.loads(line) for line in POOL_FILE.read_text().splitlines() if line.strip()]
    texts, labels = [p["instruction"] for p in pool], [p["loaded"] for p in pool]
    default = score_instructions(embedded_lm, optimism_directions, texts)
    paper = score_instructions(embedded_lm, optimism_directions, texts, FilterConfig(method="paper"))
    bare = score_instructions(embedded_lm, optimism_directions, texts, FilterConfig(method="paper", chat_template=False))
    auc_default, auc_paper, auc_bare = _auc(labels, default.best), _auc(labels, paper.best), _auc(labels, bare.best)
    print(f"\nAUC centred={auc_default:.3f} paper={auc_paper:.3f} paper-bare-text={auc_bare:.3f}")
    assert FilterConfig().method == "centred"
    assert auc_default >= auc_paper - 1e-9 and auc_default > 0.5
    assert auc_default >= 0.8  # measured 0.94 with 32 feature instructions
    top = select_top(default, keep_fraction=0.25)
    assert sum(labels[i] for i in top.indices) >= 10  # of the 12 kept, most are loaded
