"""Are the pairs preference data? Steering variants side by side on the same instructions.

Three dimensions, each with a judge that can measure it: optimism (VADER), concise vs verbose
(length, shorter is better) and formal vs casual (the formality judge). For each, the same
instructions (bench/data/pair_quality_instructions.txt, used by no test) are answered by every
steering variant of issue 12:

  paper        add γ·‖h‖·u, γ⁺ 0.05 / γ⁻ −0.05, no safeguard (the old default)
  renorm       the same, then each token's norm restored
  clamp        the projection on u clamped to γ·‖h‖ instead of moved by it
  rep_penalty  paper + repetition penalty 1.2 on both rows
  no_repeat    paper + no-repeat 3-grams on both rows
  small_neg    paper with γ⁻ −0.03
  default      the product's defaults (icon2engine defaults = the run form's): add, γ⁺ 0.08 / γ⁻ −0.03,
               no-repeat 3-grams, then the quality gate (retries at a smaller |γ|, drops)

Per variant: separation = P(judge(chosen) > judge(rejected)), the share of degenerate chosen
and rejected responses (icon2engine.quality, before any gate), and for the default the share of
pairs the gate keeps (separation then over the kept pairs).

Last line: separation_min=… degenerate_rejected_max=… degenerate_chosen_max=… pairs_kept=…
(the worst dimension at the defaults; targets ≥ 0.90, ≤ 0.05, ≤ 0.05, ≥ 0.80).

    python bench/pair_quality.py [--n 32] [--tokens 64]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path, offline hub)

from icon2engine import (
    Dimension, GenerateConfig, PromptPair, SteeringConfig, default_feature_instructions, extract_directions, get_preset,
    load_model,
)
from icon2engine.gate import GateConfig, generate_gated_pairs
from icon2engine.generation import generate_rows
from icon2engine.judges import FormalityJudge, LengthJudge, VaderJudge
from icon2engine.quality import QualityConfig, degenerate_reasons, measure_responses

DATA = Path(__file__).resolve().parent / "data" / "pair_quality_instructions.txt"

DIMENSIONS = {
    "optimism": (get_preset("optimism"), VaderJudge()),
    "concise": (
        Dimension("concise", (PromptPair(
            "You are a concise assistant. You answer in one or two short sentences and stop.",
            "You are a verbose assistant. You answer at great length, with many details, asides and digressions.",
        ),)),
        LengthJudge(shorter=True),
    ),
    "formal": (
        Dimension("formal", (PromptPair(
            "You are a formal assistant. You write in a polished, professional and courteous register.",
            "You are a casual assistant. You write like you are texting a friend: relaxed, chatty, with slang.",
        ),)),
        FormalityJudge(),
    ),
}

PAPER = SteeringConfig(0.05, -0.05)
VARIANTS = {
    "paper": (PAPER, {}),
    "renorm": (SteeringConfig(0.05, -0.05, mode="add_renorm"), {}),
    "clamp": (SteeringConfig(0.05, -0.05, mode="clamp"), {}),
    "rep_penalty": (PAPER, {"repetition_penalty": 1.2}),
    "no_repeat": (PAPER, {"no_repeat_ngram_size": 3}),
    "small_neg": (SteeringConfig(0.05, -0.03), {}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32, help="instructions (≥ 32 for the issue's figures)")
    ap.add_argument("--tokens", type=int, default=GenerateConfig().max_new_tokens, help="max new tokens per response (default: the product's)")
    ap.add_argument("--out", default="test-output/pair_quality.json", help="every pair and figure, for reading")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated fixed variants to compare "
                    "before the defaults (default: all; '' for the defaults only)")
    args = ap.parse_args()
    instructions = [line.strip() for line in DATA.read_text().splitlines() if line.strip()][: args.n]
    lm = load_model("embedded")
    qc = QualityConfig()
    defaults = SteeringConfig()  # the engine's (and the run form's) defaults
    default_gen = GenerateConfig(max_new_tokens=args.tokens)
    print(f"{len(instructions)} instructions, {args.tokens} tokens; defaults: {defaults.mode}, γ⁺ {defaults.gamma_plus}, "
          f"γ⁻ {defaults.gamma_minus}, no-repeat {default_gen.no_repeat_ngram_size}, rep. penalty {default_gen.repetition_penalty}")
    n = len(instructions)
    report: dict = {}
    headline = {"separation": [], "deg_rej": [], "deg_cho": [], "kept": []}
    print(f"{'dimension':10} {'variant':12} {'sep':>5} {'deg+':>5} {'deg-':>5} {'kept':>5} {'s':>5}")
    for name, (dim, judge) in DIMENSIONS.items():
        ds = extract_directions(lm, dim, default_feature_instructions())
        base = generate_rows(lm, instructions, GenerateConfig(max_new_tokens=args.tokens)).texts
        report[name] = {"unsteered": base}
        for variant, (steering, decoding) in VARIANTS.items():
            if variant not in args.variants.split(","):
                continue
            t0 = time.perf_counter()
            cfg = GenerateConfig(max_new_tokens=args.tokens, **decoding)
            gen = generate_rows(
                lm, instructions * 2, cfg, coefficients=[steering.gamma_plus] * n + [steering.gamma_minus] * n,
                directions=[ds], mode=steering.mode,
            )
            q = measure_responses(lm, instructions * 2, gen.texts, base * 2, config=qc)
            deg = [bool(degenerate_reasons(x, qc)) for x in q]
            scores = judge.score_many(instructions * 2, gen.texts)
            sep = sum(scores[i] > scores[n + i] for i in range(n)) / n
            row = {"separation": sep, "degenerate_chosen": sum(deg[:n]) / n, "degenerate_rejected": sum(deg[n:]) / n}
            report[name][variant] = {**row, "pairs": [
                {"instruction": instructions[i], "chosen": gen.texts[i], "rejected": gen.texts[n + i],
                 "rejected_reasons": degenerate_reasons(q[n + i], qc)} for i in range(n)]}
            print(f"{name:10} {variant:12} {sep:5.2f} {row['degenerate_chosen']:5.2f} {row['degenerate_rejected']:5.2f} "
                  f"{'':>5} {time.perf_counter() - t0:5.0f}", flush=True)
        # The defaults, through the gate exactly as the generate stage runs it.
        t0 = time.perf_counter()
        res = generate_gated_pairs(lm, ds, instructions, steering=defaults, config=default_gen, gate=GateConfig(quality=qc))
        # Degenerate shares of the first pass (before any retry): the gate's own retries show in "retries".
        deg_c = sum(1 for p in res.pairs if any(r["side"] == "chosen" for r in p.retries)) + sum(
            1 for d in res.dropped if d["reason"].startswith("chosen") or any(r["side"] == "chosen" for r in d["retries"]))
        deg_r = sum(1 for p in res.pairs if any(r["side"] == "rejected" for r in p.retries)) + sum(
            1 for d in res.dropped if d["reason"].startswith("rejected") or any(r["side"] == "rejected" for r in d["retries"]))
        kept = len(res.pairs) / n
        cs = judge.score_many([p.instruction for p in res.pairs], [p.chosen for p in res.pairs])
        rs = judge.score_many([p.instruction for p in res.pairs], [p.rejected for p in res.pairs])
        sep = sum(c > r for c, r in zip(cs, rs)) / max(1, len(res.pairs))
        report[name]["default"] = {
            "separation": sep, "degenerate_chosen": deg_c / n, "degenerate_rejected": deg_r / n, "pairs_kept": kept,
            "dropped": res.dropped_counts, "retries": res.retries,
            "pairs": [p.as_dict() for p in res.pairs], "dropped_pairs": res.dropped,
        }
        print(f"{name:10} {'default':12} {sep:5.2f} {deg_c / n:5.2f} {deg_r / n:5.2f} {kept:5.2f} {time.perf_counter() - t0:5.0f}"
              f"   dropped {res.dropped_counts or 'none'}, {res.retries} retries", flush=True)
        for p in res.pairs[:2]:
            print(f"    + {p.chosen[:140]!r}\n    - {p.rejected[:140]!r}")
        headline["separation"].append(sep)
        headline["deg_rej"].append(deg_r / n)
        headline["deg_cho"].append(deg_c / n)
        headline["kept"].append(kept)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=float))
    print(f"every pair: {out}")
    print(
        f"separation_min={min(headline['separation']):.3f} degenerate_rejected_max={max(headline['deg_rej']):.3f} "
        f"degenerate_chosen_max={max(headline['deg_cho']):.3f} pairs_kept={min(headline['kept']):.3f}"
    )


if __name__ == "__main__":
    main()
