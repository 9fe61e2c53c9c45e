"""Magpie synthesis + consistency scoring throughput on the embedded model.

Measures clean instructions per second, synthesised (sampled at temperature 1.0 until the user
turn closes, then cleaned and de-duplicated) and scored against the optimism direction:
  (a) batched: 64 samples drawn together (shared prompt cache, finished rows leave the batch),
      scoring 16 at a time;
  (b) one at a time: batch size 1 for both.
Both use the same cleaning rules and max_new_tokens; (b) runs on fewer instructions (it is slow).
Last line: batched_vs_single=<(a) instructions/s ÷ (b) instructions/s>.
"""
from __future__ import annotations

import _common  # noqa: F401  (path setup)

import time

import torch

from icon2engine import default_feature_instructions, extract_directions, get_preset, load_model
from icon2engine.filtering import FilterConfig, score_instructions
from icon2engine.synthesis import SynthesisConfig, synthesize

MAX_NEW_TOKENS = 48
N_BATCHED = 64
N_SINGLE = 6


def run(lm, ds, n: int, batch: int, score_batch: int, seed: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = synthesize(lm, n, SynthesisConfig(batch_size=batch, max_new_tokens=MAX_NEW_TOKENS, seed=seed, max_attempts=8 * n))
    t_synth = time.perf_counter() - t0
    score_instructions(lm, ds, result.instructions, FilterConfig(batch_size=score_batch))
    total = time.perf_counter() - t0
    r = result.report
    return n / total, {
        "kept": n, "attempts": r.attempts, "acceptance": round(r.acceptance_rate, 3), "synth_s": round(t_synth, 1),
        "score_s": round(total - t_synth, 1), "tokens_out": r.tokens_out, "dropped": r.as_dict()["dropped"],
    }


def main() -> None:
    torch.manual_seed(0)
    lm = load_model("embedded")
    ds = extract_directions(lm, get_preset("optimism"), default_feature_instructions()[:16])
    print(f"model={lm.name} threads={torch.get_num_threads()} max_new_tokens={MAX_NEW_TOKENS}")
    synthesize(lm, 1, SynthesisConfig(batch_size=4, max_new_tokens=4), allow_partial=True)  # warm-up
    rate_b, info_b = run(lm, ds, N_BATCHED, 64, 16, seed=1)
    print(f"(a) batched:        {rate_b:.3f} instructions/s  {info_b}")
    rate_s, info_s = run(lm, ds, N_SINGLE, 1, 1, seed=2)
    print(f"(b) one at a time:  {rate_s:.3f} instructions/s  {info_s}")
    print(f"batched_vs_single={rate_b / rate_s:.2f}")


if __name__ == "__main__":
    main()
