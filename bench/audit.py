"""Bias audit on the embedded model: the paper's four presets and optimism against the reference bank.

For each preset: its direction's cosine with every reference over the default band and the share
the references explain together; the largest overlap is printed. Then optimism (the preset most
tied to a reference) is orthogonalised against its flagged references, pairs are generated with
the original and the orthogonalised direction on the same instructions, and the dimension's own
judge (VADER, optimism's preset judge) says how often chosen beats rejected before and after.
The pairs' side gaps (icon2engine.audit.pair_gaps) are printed for both.

    python bench/audit.py [--n 16] [--out test-output/audit.json]

Last line: max_overlap=<largest |cosine| over the presets> orthogonalised_separation=<share of
the orthogonalised optimism pairs whose chosen side VADER scores higher>.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path, offline)

from icon2engine import GenerateConfig, SteeringConfig, default_feature_instructions, extract_directions, get_preset, load_model
from icon2engine.audit import audit_verdict, direction_overlap, orthogonalise, pair_gaps, reference_bank, reference_directions
from icon2engine.gate import generate_gated_pairs
from icon2engine.judges import VaderJudge

PRESETS = ("helpfulness", "honesty", "harmlessness", "general", "optimism")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="instructions to generate optimism pairs for")
    parser.add_argument("--cache", default="test-output/reference_cache")
    parser.add_argument("--out", default="test-output/audit.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    lm = load_model("embedded")
    refs = reference_directions(lm, cache_dir=args.cache)
    names = {r.key: r.name for r in reference_bank()}
    print(f"references ready in {time.perf_counter() - t0:.0f}s", flush=True)
    feats = default_feature_instructions()
    report: dict = {"presets": {}}
    directions = {}
    print(f"{'preset':13} " + " ".join(f"{names[k][:10]:>10}" for k in refs) + "  explained  largest")
    for key in PRESETS:
        ds = extract_directions(lm, get_preset(key), feats)
        directions[key] = ds
        ov = direction_overlap(ds, refs)
        report["presets"][key] = ov
        print(f"{key:13} " + " ".join(f"{ov['cosines'][k]:+10.2f}" for k in refs)
              + f"  {ov['explained']:9.2f}  {names[ov['largest']]} {ov['cosines'][ov['largest']]:+.2f}", flush=True)
    max_overlap = max(abs(ov["cosines"][ov["largest"]]) for ov in report["presets"].values())

    from _common import INSTRUCTIONS

    instructions = INSTRUCTIONS[: args.n]
    judge = VaderJudge()
    optimism = directions["optimism"]
    flagged = report["presets"]["optimism"]["flagged"] or [report["presets"]["optimism"]["largest"]]
    cleaned = orthogonalise(optimism, refs, flagged)
    report["orthogonalised"] = {"against": flagged, "overlap": direction_overlap(cleaned, refs)}
    config = GenerateConfig(max_new_tokens=64)
    separation = {}
    for label, ds in (("original", optimism), ("orthogonalised", cleaned)):
        res = generate_gated_pairs(lm, ds, instructions, steering=SteeringConfig(), config=config)
        rows = [{"instruction": p.instruction, "chosen": p.chosen, "rejected": p.rejected} for p in res.pairs]
        cs = judge.score_many([r["instruction"] for r in rows], [r["chosen"] for r in rows])
        rs = judge.score_many([r["instruction"] for r in rows], [r["rejected"] for r in rows])
        sep = sum(c > r for c, r in zip(cs, rs)) / max(1, len(rows))
        separation[label] = sep
        gaps = pair_gaps(rows, judge=judge, judge_measure="sentiment") if rows else None
        ov = direction_overlap(ds, refs)
        report[label] = {"separation": sep, "pairs_kept": len(rows), "gaps": gaps, "overlap": ov,
                         "verdict": audit_verdict("Optimism", ov, gaps, names), "pairs": rows}
        print(f"optimism {label:15} pairs {len(rows)}/{len(instructions)}  separation {sep:.2f}  "
              f"sentiment overlap {ov['cosines']['sentiment']:+.2f}", flush=True)
        print(f"    verdict: {report[label]['verdict']}")
        if gaps:
            print("    chosen − rejected: " + ", ".join(f"{k} {v['mean']:+.3f}" for k, v in gaps["gaps"].items()))
        for r in rows[:2]:
            print(f"    + {r['chosen'][:120]!r}\n    - {r['rejected'][:120]!r}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=float))
    print(f"every figure and pair: {out} ({time.perf_counter() - t0:.0f}s)")
    print(f"max_overlap={max_overlap:.3f} orthogonalised_separation={separation['orthogonalised']:.3f}")


if __name__ == "__main__":
    main()
