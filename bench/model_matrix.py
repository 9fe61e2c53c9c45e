"""Every tested model family through the pipeline, on the tiny random models (icon2engine.tiny_models).

For each family: extraction, the gate on PAIRS instructions (seconds per pair, and whether the
shared prefill ran: a pair's prompt once, its KV cache copied to its rows), the same greedy text
with and without the shared prefill, one DPO step and an evaluation. The weights are random, so
the gate's language checks are off and the seconds measure the machinery, not a real model.
A family is ok when every step ran and the shared prefill gave the plain path's text.
Last line: families_ok=<n>/<total>.
"""
from __future__ import annotations

import _common  # noqa: F401  (path setup)

import tempfile
import time
import traceback

import torch

import icon2engine.generation as generation
from icon2engine import Dimension, GenerateConfig, PromptPair, SteeringConfig, extract_directions
from icon2engine.config import EvalConfig, TrainConfig
from icon2engine.evaluation import evaluate
from icon2engine.gate import GateConfig, generate_gated_pairs
from icon2engine.judges import LengthJudge
from icon2engine.quality import QualityConfig
from icon2engine.tiny_models import FAMILIES, tiny_family_model
from icon2engine.training import train_dpo

PAIRS = 8
DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
FEATURES = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."]
INSTRUCTIONS = [
    "Describe a rainy Monday, the sea and a quick brown fox, then tell me about a lazy dog.",
    "What is a good breakfast?", "Tell me about the sea.", "Describe a quick brown fox.",
    "What is a lazy dog like?", "Tell me about numbers 1 2 3.", "Describe a rainy Monday.", "What is the sea?",
][:PAIRS]
STRUCTURE = QualityConfig(  # a random model writes no language
    max_foreign=None, max_loglik_drop=None, min_length_ratio=None, max_length_ratio=None, max_repetition=None,
    min_distinct2=None, min_words=0,
    min_relevance=None, min_relevance_kept=None, min_new_content=None, min_relevance_vs_rejected=None,
)
TRAIN = [{"instruction": f"Describe a rainy Monday {i}.", "chosen": "What a lovely day, sunny and bright!",
          "rejected": "The sea is grey and the fox is lazy."} for i in range(4)]


class PrefillSpy:
    """Counts the generate calls whose rows shared a prefill (the KV cache of a common prompt)."""

    def __init__(self) -> None:
        self.calls = self.shared = 0
        self.inner = generation.shared_prefix_cache

    def __call__(self, lm, enc, prompts):
        out = self.inner(lm, enc, prompts)
        self.calls += 1
        self.shared += bool(out)
        return out


def run_family(family: str) -> dict:
    lm = tiny_family_model(family)
    ds = extract_directions(lm, DIM, FEATURES)
    spy = PrefillSpy()
    generation.shared_prefix_cache = spy
    try:
        t0 = time.perf_counter()
        res = generate_gated_pairs(lm, ds, INSTRUCTIONS, steering=SteeringConfig(0.5, -0.5),
                                   config=GenerateConfig(max_new_tokens=16, batch_size=12),
                                   gate=GateConfig(quality=STRUCTURE, max_retries=1, max_unsteered_degenerate=1.0))
        gate_s = time.perf_counter() - t0
    finally:
        generation.shared_prefix_cache = spy.inner
    rows = [t for t in INSTRUCTIONS[:2] for _ in (0, 1)]
    cfg = GenerateConfig(max_new_tokens=8, batch_size=4)
    same = [generation.generate_rows(lm, rows, cfg, coefficients=[0.5, -0.5] * 2, directions=[ds], shared_prefill=s).texts
            for s in (True, False)]
    with tempfile.TemporaryDirectory() as out:
        trained = train_dpo(lm, TRAIN, out, TrainConfig(max_steps=1, batch_size=2, max_length=64, lora_r=4))
        report = evaluate(lm, trained.lm, INSTRUCTIONS[:2], LengthJudge(), EvalConfig(max_new_tokens=6))
    return {
        "s_per_pair": gate_s / len(INSTRUCTIONS), "shared_prefill": spy.shared > 0, "prefill_calls": f"{spy.shared}/{spy.calls}",
        "same_text": same[0] == same[1], "kept": len(res.pairs), "dropped": len(res.dropped),
        "dpo_steps": trained.steps, "eval_n": report.n,
    }


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"families={len(FAMILIES)} pairs={PAIRS} threads={torch.get_num_threads()} (tiny random models: 2 blocks, width 32)")
    ok = 0
    for family in FAMILIES:
        try:
            r = run_family(family)
        except Exception as exc:  # a family that fails is reported, and the others still run
            traceback.print_exc(limit=2)
            print(f"{family:9s} FAILED {type(exc).__name__}: {exc}")
            continue
        good = r["same_text"] and r["shared_prefill"] and r["dpo_steps"] == 1 and r["eval_n"] == 2
        ok += good
        print(f"{family:9s} {'ok    ' if good else 'FAILED'} s_per_pair={r['s_per_pair']:.3f} "
              f"shared_prefill={'yes' if r['shared_prefill'] else 'no'} ({r['prefill_calls']} batches) "
              f"same_text_as_plain={'yes' if r['same_text'] else 'NO'} kept={r['kept']} dropped={r['dropped']} "
              f"dpo_steps={r['dpo_steps']} eval_n={r['eval_n']}  [{FAMILIES[family].notes}]")
    print(f"families_ok={ok}/{len(FAMILIES)}")


if __name__ == "__main__":
    main()
