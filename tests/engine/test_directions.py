from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icon2engine import Dimension, ExtractConfig, InputError, PromptPair, extract_directions
from icon2engine.config import ConfigError
from icon2engine.directions import first_component

DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
INSTR = ["Describe a rainy Monday.", "Tell me about the sea.", "What is a good breakfast?", "The quick brown fox.",
         "Numbers 0 1 2 3.", "Tell me about the fox.", "Describe the sea.", "What is a dog?"]


def _same_signed_differences(seed=0, n=64, hidden=32):
    rng = np.random.default_rng(seed)
    axis = np.zeros(hidden)
    axis[0] = 1.0
    # Every difference points along +axis with similar length, plus isotropic noise.
    return rng.normal(3.0, 0.3, size=(n, 1)) * axis + rng.normal(0, 1.0, size=(n, hidden)), axis


def test_centred_pca_on_same_signed_differences_loses_the_axis():
    """The failure the sign flip exists for: plain centred PCA does not find the mean difference."""
    from sklearn.decomposition import PCA

    diffs, axis = _same_signed_differences()
    u = PCA(n_components=1).fit(diffs).components_[0]
    assert abs(u @ axis) < 0.6


def test_the_random_sign_flip_recovers_the_axis_and_the_sign_points_to_the_mean():
    diffs, axis = _same_signed_differences()
    u, ratio = first_component(diffs, np.random.default_rng(0))
    assert u @ axis > 0.95
    assert math.isclose(np.linalg.norm(u), 1.0, rel_tol=1e-6)
    assert 0 < ratio <= 1
    u_neg, _ = first_component(-diffs, np.random.default_rng(0))
    assert u_neg @ axis < -0.95


def test_extracted_vectors_are_unit_agree_with_the_mean_difference_and_carry_diagnostics(tiny_lm):
    ds = extract_directions(tiny_lm, DIM, INSTR, ExtractConfig(batch_size=3, holdout_fraction=0.25))
    assert ds.vectors.shape == (tiny_lm.n_layers, tiny_lm.hidden_size)
    torch.testing.assert_close(ds.vectors.norm(dim=1), torch.ones(tiny_lm.n_layers))
    assert all(c > 0 for c in ds.mean_diff_cosine)
    assert all(n > 0 for n in ds.mean_norm)
    assert all(0 <= a <= 1 for a in ds.separation_accuracy)
    assert ds.n_pairs == len(INSTR)
    assert len(ds.diagnostics()) == tiny_lm.n_layers


def test_batch_size_does_not_change_the_vectors(tiny_lm):
    a = extract_directions(tiny_lm, DIM, INSTR, ExtractConfig(batch_size=1))
    b = extract_directions(tiny_lm, DIM, INSTR, ExtractConfig(batch_size=16))
    torch.testing.assert_close(a.vectors, b.vectors, atol=1e-4, rtol=1e-3)


def test_a_shared_prompt_beginning_runs_once_and_gives_the_vectors_and_norms_of_whole_prompts(tiny_lm, monkeypatch):
    from icon2engine import directions as module

    calls = []
    real = module._states_shared
    monkeypatch.setattr(module, "_states_shared", lambda *a: calls.append(a[2]) or real(*a))
    shared = extract_directions(tiny_lm, DIM, INSTR, ExtractConfig(batch_size=8))
    assert calls and min(calls) >= module.MIN_SHARED_PREFIX  # the system prompt and template ran once per batch
    whole = extract_directions(tiny_lm, DIM, INSTR, ExtractConfig(batch_size=2, share_prefix=False))
    torch.testing.assert_close(shared.vectors, whole.vectors, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(shared.mean_norm, whole.mean_norm, atol=1e-4, rtol=1e-4)


def test_empty_or_one_sided_inputs_are_refused(tiny_lm):
    with pytest.raises(InputError, match="no feature instructions"):
        extract_directions(tiny_lm, DIM, ["  ", ""])
    with pytest.raises(InputError, match="at least 2"):
        extract_directions(tiny_lm, DIM, ["only one"])
    with pytest.raises(ConfigError, match="negative system prompt .* empty"):
        PromptPair("You are kind.", " ")
    with pytest.raises(ConfigError, match="no prompt pairs"):
        Dimension("x", ())


@pytest.mark.slow
def test_on_the_embedded_model_the_middle_layers_separate_held_out_pairs(optimism_directions):
    acc = optimism_directions.separation_accuracy
    assert min(acc[8:16]) >= 0.9
    assert min(optimism_directions.mean_diff_cosine[8:16]) > 0.9
    # Hidden-state norms grow with depth (≈50 at block 0 to ≈700 at block 29 on SmolLM2).
    assert optimism_directions.mean_norm[0] < optimism_directions.mean_norm[15] < optimism_directions.mean_norm[29]


def _set(vectors, name="d"):
    from icon2engine import DirectionSet

    n = vectors.shape[0]
    return DirectionSet(name, vectors, [1.0] * n, [0.5] * n, [1.0] * n, [1.0] * n)


def test_direction_cosines_are_one_on_the_diagonal_symmetric_and_minus_one_for_a_negated_set():
    from icon2engine import direction_cosines

    vecs = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    other = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    cos = direction_cosines([_set(vecs, "a"), _set(other, "b"), _set(-vecs, "not a")])
    assert len(cos) == 3 and all(len(m) == 3 and all(len(row) == 3 for row in m) for m in cos)
    for layer, m in enumerate(cos):
        assert [m[i][i] for i in range(3)] == [1.0, 1.0, 1.0]
        assert all(m[i][j] == m[j][i] for i in range(3) for j in range(3))
        assert m[0][2] == -1.0
        assert m[0][1] == pytest.approx(float(vecs[layer] @ other[layer]), abs=2e-6)
        assert -1.0 < m[0][1] < 1.0


def test_direction_cosines_refuse_sets_of_different_models():
    from icon2engine import direction_cosines

    with pytest.raises(InputError, match="same model"):
        direction_cosines([_set(torch.ones(3, 16)), _set(torch.ones(4, 16), "deeper")])
    with pytest.raises(InputError, match="no direction sets"):
        direction_cosines([])
