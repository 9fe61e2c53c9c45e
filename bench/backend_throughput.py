"""Pairs per second on the HF backend against the vLLM backend, on the embedded model.

In one run, on the same 64 instructions, the same optimism direction and the same lengths
(every row generates exactly NEW_TOKENS tokens): each backend generates 64 pairs (128 rows)
plain and steered (chosen +γ⁺ and rejected γ⁻ rows of each instruction side by side, one
coefficient per row). HF runs in batches of 32 rows (the default); vLLM takes all 128 requests
in one call and batches them itself. The two steered runs must give the same texts on most
rows (greedy decoding), or the figure would compare different work.
Last line: vllm_vs_hf_pairs=<vLLM steered pairs/s over HF steered> vllm_steered_vs_plain=<vLLM steered over plain>.
"""
from __future__ import annotations

import _common  # noqa: F401  (path setup)
from _common import INSTRUCTIONS, timed

import dataclasses

import torch

from icon2engine import GenerateConfig, SteeringConfig, default_feature_instructions, extract_directions, get_preset, load_model
from icon2engine.generation import generate_rows

NEW_TOKENS = 32
N_PAIRS = 64


def main() -> None:
    torch.manual_seed(0)
    lm = load_model("embedded")
    ds = extract_directions(lm, get_preset("optimism"), default_feature_instructions()[:16])
    instructions = (default_feature_instructions() + INSTRUCTIONS)[:N_PAIRS]
    assert len(set(instructions)) == N_PAIRS
    steer = SteeringConfig()
    rows = [t for t in instructions for _ in (0, 1)]
    coefs = [steer.gamma_plus, steer.gamma_minus] * N_PAIRS
    hf = GenerateConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, backend="hf")
    vl = dataclasses.replace(hf, backend="vllm")
    print(f"model={lm.name} threads={torch.get_num_threads()} pairs={N_PAIRS} new_tokens={NEW_TOKENS} "
          f"gamma=({steer.gamma_plus}, {steer.gamma_minus}) layers=middle third")
    generate_rows(lm, rows[:2], dataclasses.replace(vl, max_new_tokens=2, min_new_tokens=0))  # start the engine
    generate_rows(lm, rows[:2], dataclasses.replace(hf, max_new_tokens=2, min_new_tokens=0))  # warm-up
    figures, texts = {}, {}
    for name, config in (("hf", hf), ("vllm", vl)):
        t_plain, plain = timed(lambda: generate_rows(lm, rows, config), repeats=2)
        t_steer, steered = timed(lambda: generate_rows(lm, rows, config, coefficients=coefs, directions=[ds]), repeats=2)
        figures[name] = (N_PAIRS / t_plain, N_PAIRS / t_steer)
        texts[name] = steered.texts
        tokens = sum(steered.new_tokens)
        print(f"{name:5s} plain {N_PAIRS / t_plain:6.2f} pairs/s   steered {N_PAIRS / t_steer:6.2f} pairs/s "
              f"({tokens / t_steer:7.1f} tok/s)   steered/plain {t_plain / t_steer:.3f}")
    same = sum(a == b for a, b in zip(texts["hf"], texts["vllm"]))
    print(f"steered texts identical on {same} of {len(rows)} rows")
    if same < 0.9 * len(rows):
        raise SystemExit("the backends wrote different texts; the throughput figures would compare different work")
    ratio = figures["vllm"][1] / figures["hf"][1]
    steered_vs_plain = figures["vllm"][1] / figures["vllm"][0]
    print(f"vllm_vs_hf_pairs={ratio:.2f} vllm_steered_vs_plain={steered_vs_plain:.2f}")


if __name__ == "__main__":
    main()
