"""Does the consistency score mean something? AUC on a labelled pool, paper vs centred score.

The pool (bench/data/consistency_pool.jsonl): 24 instructions where "optimistic vs
pessimistic" matters (job loss, illness, the future ...) and 24 where it does not
(arithmetic, code, facts), in mixed registers ("Can you ...", imperatives, questions).
Each is scored against the optimism direction (extracted from 32 neutral feature
instructions) and the AUC says how well the score ranks loaded above neutral.

Variants: the paper's raw score (mean over all layers of h·u) and the centred score (subtract
each layer's mean instruction state first), each on the chat-formatted user turn (default) and
on the bare text; plus the raw score over layers 10-15 only, the setting tried by hand.
Within one dimension centring subtracts a constant, so its AUC equals the paper's; it
matters when several dimensions compete for the max, which the second part shows: with
optimism, helpfulness and harmlessness directions, which dimension wins each instruction.
Last line: auc_centred=<x> auc_paper=<y> auc_bare_text=<z>.
"""
from __future__ import annotations

import _common  # noqa: F401  (path setup)

import json
from collections import Counter
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from icon2engine import default_feature_instructions, extract_directions, get_preset, load_model
from icon2engine.filtering import FilterConfig, score_instructions

POOL = Path(__file__).resolve().parent / "data" / "consistency_pool.jsonl"


def main() -> None:
    torch.manual_seed(0)
    pool = [json.loads(line) for line in POOL.read_text().splitlines() if line.strip()]
    texts, labels = [p["instruction"] for p in pool], [p["loaded"] for p in pool]
    lm = load_model("embedded")
    feats = default_feature_instructions()[:32]
    dirs = {name: extract_directions(lm, get_preset(name), feats) for name in ("optimism", "helpfulness", "harmlessness")}
    opt = dirs["optimism"]
    print(f"model={lm.name} pool={len(texts)} ({sum(labels)} loaded, {len(labels) - sum(labels)} neutral)")
    results = {}
    for label, cfg in [
        ("centred, chat turn (default)", FilterConfig()),
        ("paper, chat turn", FilterConfig(method="paper")),
        ("centred, bare text", FilterConfig(chat_template=False)),
        ("paper, bare text", FilterConfig(method="paper", chat_template=False)),
        ("paper, bare text, layers 10-15", FilterConfig(method="paper", chat_template=False, layers=tuple(range(10, 16)))),
        ("paper, chat turn, layers 10-15", FilterConfig(method="paper", layers=tuple(range(10, 16)))),
    ]:
        sc = score_instructions(lm, opt, texts, cfg)
        results[label] = auc = roc_auc_score(labels, sc.best)
        ranked = sorted(zip(sc.best, texts, labels), reverse=True)
        print(f"AUC {auc:.3f}  {label:34s} top: {ranked[0][1][:48]!r}  bottom: {ranked[-1][1][:48]!r}")
    print("\nwinner among optimism / helpfulness / harmlessness (max over dimensions):")
    for method in ("paper", "centred"):
        sc = score_instructions(lm, dirs, texts, FilterConfig(method=method))
        loaded = Counter(w for w, y in zip(sc.winner, labels) if y)
        neutral = Counter(w for w, y in zip(sc.winner, labels) if not y)
        print(f"  {method:8s} loaded: {dict(loaded)}  neutral: {dict(neutral)}")
    print(
        f"auc_centred={results['centred, chat turn (default)']:.3f} auc_paper={results['paper, chat turn']:.3f} "
        f"auc_bare_text={results['paper, bare text']:.3f}"
    )


if __name__ == "__main__":
    main()
