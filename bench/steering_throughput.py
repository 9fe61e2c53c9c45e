"""Steered generation throughput on the embedded model.

Measures, in one run and on the same prompts, generated tokens per second for:
  (a) plain batched generation, no steering;
  (b) our bidirectional steered generation: chosen (+γ) and rejected (−γ) rows of each
      instruction in one batch, one per-row coefficient;
  (c) the naive way: one prompt at a time with a hook, chosen then rejected.
at batch sizes 1, 8 and 32. Every row generates exactly NEW_TOKENS tokens so the work is equal.
At batch 32, (b) is also run without the shared prefill (each row runs its own prompt) and must
give the same texts; shared_prefill_speedup is pairs/s with the shared prefill over without.
Last line: steered_vs_plain=<b/a> steered_vs_naive=<b/c> shared_prefill_speedup=<x> at batch 32.
"""
from __future__ import annotations

import _common  # noqa: F401  (path setup)
from _common import INSTRUCTIONS, timed

import torch

from icon2engine import GenerateConfig, SteeringConfig, default_feature_instructions, extract_directions, get_preset, load_model
from icon2engine.generation import generate_rows

NEW_TOKENS = 32
NAIVE_ROWS = 8  # (c) is slow; its tokens/s is measured on fewer rows


def main() -> None:
    torch.manual_seed(0)
    lm = load_model("embedded")
    ds = extract_directions(lm, get_preset("optimism"), default_feature_instructions()[:16])
    layers = tuple(range(8, 16))
    steer = SteeringConfig(0.05, -0.05, layers=layers)
    print(f"model={lm.name} threads={torch.get_num_threads()} new_tokens={NEW_TOKENS} layers={layers[0]}-{layers[-1]}")
    results = {}
    for batch in (1, 8, 32):
        cfg = GenerateConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, batch_size=batch)
        n_pairs = max(1, batch // 2)
        instr = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(n_pairs)]
        rows = [t for t in instr for _ in (0, 1)][:batch] if batch > 1 else instr[:1]
        coefs = [steer.gamma_plus, steer.gamma_minus] * n_pairs if batch > 1 else [steer.gamma_plus]
        coefs = coefs[: len(rows)]
        plain = lambda: generate_rows(lm, rows, cfg)
        steered = lambda: generate_rows(lm, rows, cfg, coefficients=coefs, directions=[ds], layers=layers)
        generate_rows(lm, rows[:1], GenerateConfig(max_new_tokens=2))  # warm-up
        t_a, out_a = timed(plain)
        t_b, out_b = timed(steered)
        tok_a, tok_b = sum(out_a.new_tokens) / t_a, sum(out_b.new_tokens) / t_b
        results[batch] = (tok_a, tok_b)
        print(f"batch={batch:2d}  (a) plain {tok_a:7.1f} tok/s   (b) steered {tok_b:7.1f} tok/s   b/a={tok_b / tok_a:.3f}")
        if batch == 32:
            unshared = lambda: generate_rows(lm, rows, cfg, coefficients=coefs, directions=[ds], layers=layers,
                                             shared_prefill=False)
            t_u, out_u = timed(unshared)
            t_b, out_b = timed(steered)  # again, beside it, so the two are measured under the same load
            if out_u.texts != out_b.texts:
                raise SystemExit("the shared prefill changed the text; it must not")
            speedup = t_u / t_b
            print(f"batch=32  (b) without the shared prefill: {sum(out_u.new_tokens) / t_u:7.1f} tok/s; "
                  f"with it {sum(out_b.new_tokens) / t_b:7.1f} tok/s; same texts")
    # (c): one prompt at a time, each with its own hook, chosen then rejected.
    cfg1 = GenerateConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, batch_size=1)
    naive_instr = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(NAIVE_ROWS // 2)]

    def naive():
        tokens = 0
        for text in naive_instr:
            for gamma in (steer.gamma_plus, steer.gamma_minus):
                tokens += sum(generate_rows(lm, [text], cfg1, coefficients=[gamma], directions=[ds], layers=layers).new_tokens)
        return tokens

    t_c, tokens_c = timed(naive, repeats=1)
    tok_c = tokens_c / t_c
    print(f"(c) naive, one prompt at a time with a hook: {tok_c:.1f} tok/s over {NAIVE_ROWS} rows")
    a32, b32 = results[32]
    print(f"steered_vs_plain={b32 / a32:.3f} steered_vs_naive={b32 / tok_c:.2f} shared_prefill_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
