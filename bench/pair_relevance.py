"""Do both sides answer the question? Steering variants and a prompting baseline on AxBench's three criteria.

Four dimensions, each with a concept judge: optimism (VADER), helpfulness (the paper's prompts,
judged by the relevance measure itself with a refusal counting as the least relevant answer),
and two defined here: formal (the formality judge) and concise (the length judge, shorter is
better). The instructions are ordinary requests with a right answer
(bench/data/pair_relevance_instructions.txt, used by no test).

Every variant runs through the quality gate exactly as the generate stage does (relevance,
refusal and fluency checks, retries at a smaller |γ|, drops), and is measured on the same three
criteria as AxBench, over every instruction (a dropped pair counts with its last texts):

  concept    P(judge(chosen) > judge(rejected))
  relevance  share of sides whose relevance (icon2engine.relevance) is ≥ 0.8 of the unsteered answer's
  fluency    share of sides that are not degenerate (repetition, distinct-2, length, language, likelihood)
  hm         their harmonic mean

and over the pairs the gate keeps: concept, relevance kept per side, refusals and degenerate
responses per side, and the share of pairs kept. The prompting baseline gives the contrastive
system prompts as plain prompts (no steering, no gate).

Variants (icon2engine.config documents each field); the headline is the one equal to the product's
defaults (SteeringConfig(), ExtractConfig().method: the engine's and the run form's), marked *:
  two_sided           the paper's rule: chosen at γ⁺, rejected at γ⁻ (PCA directions)
  unsteered_chosen    the unsteered answer is chosen, the rejected side is steered at γ⁻
  unsteered_rejected  chosen at γ⁺, the unsteered answer is rejected
  unsteered_chosen_strong  the unsteered answer is chosen, the rejected side steered at twice the γ⁻ (−0.06)
  diffmean            two_sided with difference-of-means directions (ExtractConfig.method="mean")
  small_gamma         two_sided at γ⁺ 0.04 / γ⁻ −0.02
  narrow_band         two_sided on the middle fifth of the blocks
  clamp, renorm       two_sided with the clamp / add_renorm steering rules
  prompt              the contrastive system prompts as plain prompts

Last line (at the defaults, the worst dimension): concept_min=… relevance_kept_min=…
refusal_max=… degenerate_max=… pairs_kept=… hm_steer=… hm_prompt=…
(targets: ≥ 0.90, ≥ 0.90, ≤ 0.05, ≤ 0.05, ≥ 0.80; hm_steer and hm_prompt are means over the dimensions).

    python bench/pair_relevance.py [--n 48] [--tokens 96] [--variants default,two_sided,prompt]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path, offline hub)

from icon2engine import (
    Dimension, ExtractConfig, GenerateConfig, PromptPair, SteeringConfig, default_feature_instructions, extract_directions,
    get_preset, load_model,
)
from icon2engine.formats import default_layers
from icon2engine.gate import GateConfig, generate_gated_pairs
from icon2engine.generation import generate_rows
from icon2engine.judges import FormalityJudge, LengthJudge, VaderJudge
from icon2engine.quality import FLUENCY_REASONS, QualityConfig, degenerate_reasons, measure_responses

DATA = Path(__file__).resolve().parent / "data" / "pair_relevance_instructions.txt"
KEPT = 0.8  # a side keeps its relevance when it is at least this share of the unsteered answer's



class RelevanceJudge:
    """Helpfulness judged by the relevance measure: the stored relevance, a refusal the least relevant."""

    name = "relevance"

    def __init__(self):
        self.by_text: dict[tuple[str, str], float] = {}

    def score_many(self, instructions, texts):
        return [self.by_text.get((i, t), -math.inf) for i, t in zip(instructions, texts)]


DIMENSIONS = {
    "optimism": (get_preset("optimism"), VaderJudge()),
    "helpfulness": (get_preset("helpfulness"), RelevanceJudge()),
    "formal": (
        Dimension("formal", (PromptPair(
            "You are a formal assistant. You write in a polished, professional and courteous register.",
            "You are a casual assistant. You write like you are texting a friend: relaxed, chatty, with slang.",
        ),)),
        FormalityJudge(),
    ),
    "concise": (
        Dimension("concise", (PromptPair(
            "You are a concise assistant. You answer in one or two short sentences and stop.",
            "You are a verbose assistant. You answer at great length, with many details, asides and digressions.",
        ),)),
        LengthJudge(shorter=True),
    ),
}


def variants(n_layers: int) -> dict[str, tuple[str, SteeringConfig | None]]:
    """name -> (direction method, steering); None steering = the prompting baseline."""
    mid = default_layers(n_layers)
    centre = (mid[0] + mid[-1]) // 2
    width = max(1, n_layers // 5)
    narrow = tuple(range(centre - width // 2, centre - width // 2 + width))
    two = SteeringConfig(pairing="two_sided")
    return {
        "two_sided": ("pca", two),
        "unsteered_chosen": ("pca", replace(two, pairing="unsteered_chosen")),
        "unsteered_rejected": ("pca", replace(two, pairing="unsteered_rejected")),
        "unsteered_chosen_strong": ("pca", replace(two, pairing="unsteered_chosen", gamma_minus=-0.06)),
        "diffmean": ("mean", two),
        "small_gamma": ("pca", replace(two, gamma_plus=0.04, gamma_minus=-0.02)),
        "narrow_band": ("pca", replace(two, layers=narrow)),
        "clamp": ("pca", replace(two, mode="clamp")),
        "renorm": ("pca", replace(two, mode="add_renorm")),
        "prompt": ("pca", None),
    }


def kept_relevance(side: dict, base: dict) -> bool:
    r, u = side.get("relevance"), base.get("relevance")
    if r is None or u is None:
        return False
    return r >= KEPT * u if u > 0 else r >= u


def figures(instructions, chosen, rejected, quality, judge, kept_mask) -> dict:
    """AxBench's three criteria over every instruction, and the kept pairs' figures."""
    n = len(instructions)
    if isinstance(judge, RelevanceJudge):
        for i, c, r, q in zip(instructions, chosen, rejected, quality):
            for text, side in ((c, "chosen"), (r, "rejected")):
                judge.by_text[(i, text)] = -math.inf if q[side]["refusal"] else (q[side]["relevance"] if q[side]["relevance"] is not None else -math.inf)
    cs, rs = judge.score_many(instructions, chosen), judge.score_many(instructions, rejected)
    sep = [c > r for c, r in zip(cs, rs)]
    rel = [[kept_relevance(q[s], q["unsteered"]) for s in ("chosen", "rejected")] for q in quality]
    flu = [[not (set(q[s]["reasons"]) & FLUENCY_REASONS) for s in ("chosen", "rejected")] for q in quality]
    concept, relevance, fluency = sum(sep) / n, sum(map(sum, rel)) / (2 * n), sum(map(sum, flu)) / (2 * n)
    hm = 0.0 if min(concept, relevance, fluency) == 0 else 3 / (1 / concept + 1 / relevance + 1 / fluency)
    k = [i for i in range(n) if kept_mask[i]]
    share = (lambda xs: sum(xs) / len(xs)) if k else (lambda xs: 0.0)
    out = {"concept": concept, "relevance": relevance, "fluency": fluency, "hm": hm, "pairs_kept": len(k) / n}
    for s, side in enumerate(("chosen", "rejected")):
        out[f"kept_relevance_{side}"] = share([rel[i][s] for i in k])
        out[f"kept_refusal_{side}"] = share([bool(quality[i][side]["refusal"]) for i in k])
        out[f"kept_degenerate_{side}"] = share([not flu[i][s] for i in k])
    out["kept_concept"] = share([sep[i] for i in k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48, help="instructions (≥ 48 for the issue's figures)")
    ap.add_argument("--tokens", type=int, default=GenerateConfig().max_new_tokens, help="max new tokens per response")
    ap.add_argument("--dimensions", default=",".join(DIMENSIONS))
    ap.add_argument("--variants", default="two_sided,unsteered_chosen,diffmean,prompt",
                    help="comma-separated, from: two_sided, unsteered_chosen, unsteered_chosen_strong, unsteered_rejected, diffmean, "
                         "small_gamma, narrow_band, clamp, renorm, prompt")
    ap.add_argument("--out", default="test-output/pair_relevance.json", help="every pair and figure, for reading")
    ap.add_argument("--headline", nargs="+", help="print the last line again from saved --out files, their dimensions "
                                                 "merged (no model run)")
    args = ap.parse_args()
    if args.headline:
        report = {}
        for path in args.headline:
            report.update(json.loads(Path(path).read_text()))
        names = [k for k in DIMENSIONS if k in report]
        print(headline(report, names))
        return
    instructions = [line.strip() for line in DATA.read_text().splitlines() if line.strip()][: args.n]
    lm = load_model("embedded")
    qc = QualityConfig()
    cfg = GenerateConfig(max_new_tokens=args.tokens)
    all_variants = variants(lm.n_layers)
    wanted = [v for v in args.variants.split(",") if v]
    default = next((v for v in wanted if all_variants[v][1] == SteeringConfig() and all_variants[v][0] == ExtractConfig().method), None)
    d = SteeringConfig()
    print(f"{len(instructions)} instructions, {args.tokens} tokens; defaults: pairing {d.pairing}, {d.mode}, γ⁺ {d.gamma_plus}, "
          f"γ⁻ {d.gamma_minus}, {ExtractConfig().method} directions", flush=True)
    print(f"{'dimension':12} {'variant':18} {'concept':>7} {'relev':>6} {'fluen':>6} {'hm':>5} | {'kept':>5} {'k.con':>5} "
          f"{'rel+':>5} {'rel-':>5} {'ref+':>5} {'ref-':>5} {'deg+':>5} {'deg-':>5} {'s':>5}", flush=True)
    report: dict = {"instructions": len(instructions), "tokens": args.tokens, "default": default}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base_cache: dict = {}
    for name in args.dimensions.split(","):
        dim, judge = DIMENSIONS[name]
        report[name] = {}
        dirs = {}
        for variant in wanted:
            method, steering = all_variants[variant]
            t0 = time.perf_counter()
            if steering is None:  # prompting: P+ and P− as system prompts, the unsteered answer as reference
                pair = dim.prompt_pairs[0]
                if "unsteered" not in base_cache:
                    base_cache["unsteered"] = generate_rows(lm, instructions, cfg).texts
                base = base_cache["unsteered"]
                c = generate_rows(lm, instructions, cfg, system=pair.positive).texts
                r = generate_rows(lm, instructions, cfg, system=pair.negative).texts
                n = len(instructions)
                q = measure_responses(lm, instructions * 3, c + r + base, base + base + [None] * n, config=qc)
                quality = [{"chosen": {**q[i].as_dict(), "reasons": degenerate_reasons(q[i], qc)},
                            "rejected": {**q[n + i].as_dict(), "reasons": degenerate_reasons(q[n + i], qc)},
                            "unsteered": q[2 * n + i].as_dict()} for i in range(n)]
                chosen, rejected, kept = c, r, [not (x["chosen"]["reasons"] or x["rejected"]["reasons"]) for x in quality]
                pairs = [{"instruction": i, "chosen": a, "rejected": b, "unsteered": u, "quality": x}
                         for i, a, b, u, x in zip(instructions, c, r, base, quality)]
            else:
                if method not in dirs:
                    dirs[method] = extract_directions(lm, dim, default_feature_instructions(), ExtractConfig(method=method))
                refusal_ok = ("harmlessness",) if name == "harmlessness" else ()
                res = generate_gated_pairs(lm, dirs[method], instructions, steering=steering, config=cfg,
                                           gate=GateConfig(quality=qc, refusal_allowed=refusal_ok))
                rows = sorted([(p.index, p.chosen, p.rejected, p.quality, True, p.as_dict()) for p in res.pairs]
                              + [(x["index"], x["chosen"], x["rejected"], x["quality"], False, x) for x in res.dropped])
                chosen, rejected = [x[1] for x in rows], [x[2] for x in rows]
                kept = [x[4] for x in rows]
                quality = []
                for x in rows:
                    qd = {s: dict(x[3][s]) for s in ("chosen", "rejected", "unsteered")}
                    for s in ("chosen", "rejected"):
                        qd[s]["reasons"] = _reasons(qd[s], qc)
                    quality.append(qd)
                pairs = [x[5] for x in rows]
            fig = figures(instructions, chosen, rejected, quality, judge, kept)
            fig["seconds"] = round(time.perf_counter() - t0, 1)
            report[name][variant] = {**fig, "pairs": pairs}
            label = variant + ("*" if variant == default else "")
            print(f"{name:12} {label:18} {fig['concept']:7.2f} {fig['relevance']:6.2f} {fig['fluency']:6.2f} {fig['hm']:5.2f} | "
                  f"{fig['pairs_kept']:5.2f} {fig['kept_concept']:5.2f} {fig['kept_relevance_chosen']:5.2f} "
                  f"{fig['kept_relevance_rejected']:5.2f} {fig['kept_refusal_chosen']:5.2f} {fig['kept_refusal_rejected']:5.2f} "
                  f"{fig['kept_degenerate_chosen']:5.2f} {fig['kept_degenerate_rejected']:5.2f} {fig['seconds']:5.0f}", flush=True)
            out.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=float))
    print(f"every pair: {out}")
    print(headline(report, [k for k in args.dimensions.split(",")]))


def headline(report: dict, dims: list[str]) -> str:
    """The last line: the variant equal to the product's defaults, its worst dimension (harmlessness
    has targets of its own), and the mean harmonic mean of steering and of prompting."""
    dims = [k for k in dims if k != "harmlessness"]
    default = report.get("default")
    if default is None:
        return "no variant equals the defaults: no headline (add the default variant to --variants)"
    at = [report[k][default] for k in dims]
    prompted = [report[k]["prompt"]["hm"] for k in dims if "prompt" in report[k]]
    hm_prompt = sum(prompted) / len(prompted) if prompted else float("nan")
    return (
        f"concept_min={min(f['kept_concept'] for f in at):.3f} "
        f"relevance_kept_min={min(min(f['kept_relevance_chosen'], f['kept_relevance_rejected']) for f in at):.3f} "
        f"refusal_max={max(max(f['kept_refusal_chosen'], f['kept_refusal_rejected']) for f in at):.3f} "
        f"degenerate_max={max(max(f['kept_degenerate_chosen'], f['kept_degenerate_rejected']) for f in at):.3f} "
        f"pairs_kept={min(f['pairs_kept'] for f in at):.3f} hm_steer={sum(f['hm'] for f in at) / len(at):.3f} "
        f"hm_prompt={hm_prompt:.3f}"
    )


def _reasons(q: dict, qc: QualityConfig) -> list[str]:
    """The gate's reasons for a stored measure dict (fluency and relevance alike)."""
    from icon2engine.quality import ResponseQuality

    fields = {k: q.get(k) for k in ResponseQuality.__dataclass_fields__}
    fields["loglik"] = -math.inf if fields["loglik"] is None and q.get("words") else fields["loglik"]
    return degenerate_reasons(ResponseQuality(**fields), qc)


if __name__ == "__main__":
    main()
