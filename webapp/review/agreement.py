"""Agreement between annotators (percent and Cohen's kappa) and with the steering direction."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from sklearn.metrics import cohen_kappa_score


@dataclass(frozen=True)
class PairwiseAgreement:
    a: str
    b: str
    n: int
    percent: float | None
    kappa: float | None


def two_rater_agreement(a: Sequence[str], b: Sequence[str]) -> tuple[float | None, float | None]:
    """Percent agreement (0–100) and Cohen's kappa for two raters' labels on the same items.

    Kappa is None where it is undefined (fewer than two items, or both raters used one label)."""
    if len(a) != len(b):
        raise ValueError("Both raters must label the same items.")
    if not a:
        return None, None
    percent = 100.0 * sum(x == y for x, y in zip(a, b)) / len(a)
    if len(a) < 2 or len(set(a) | set(b)) < 2:
        return percent, None
    kappa = float(cohen_kappa_score(list(a), list(b)))
    return percent, (None if math.isnan(kappa) else kappa)


def run_agreement(labels: Mapping[int, Mapping[str, str]]) -> dict:
    """Agreement over items labelled by several people.

    Args:
        labels: item id → {annotator name → label}; skips must already be left out.
    Returns:
        {"pairs": [PairwiseAgreement…], "percent": overall percent agreement over every shared
        item of every two annotators, "kappa": mean kappa weighted by shared items, "n": comparisons}.
    """
    people = sorted({name for item in labels.values() for name in item})
    pairs: list[PairwiseAgreement] = []
    for a, b in combinations(people, 2):
        shared = [item for item in labels.values() if a in item and b in item]
        la, lb = [item[a] for item in shared], [item[b] for item in shared]
        percent, kappa = two_rater_agreement(la, lb)
        pairs.append(PairwiseAgreement(a=a, b=b, n=len(shared), percent=percent, kappa=kappa))
    n = sum(p.n for p in pairs)
    agree = sum(p.n * p.percent / 100 for p in pairs if p.percent is not None)
    weighted = [(p.n, p.kappa) for p in pairs if p.kappa is not None]
    kappa = sum(w * k for w, k in weighted) / sum(w for w, _ in weighted) if weighted else None
    return {"pairs": pairs, "percent": (100.0 * agree / n) if n else None, "kappa": kappa, "n": n}


def judge_agreement(items: Sequence[tuple[str, float]]) -> dict:
    """How often the judge picks the side people settled on.

    Args:
        items: (the people's outcome, "confirm" or "swap"; the judge's verdict in [−1, 1], > 0
            for chosen) per pair.
    Returns:
        {"n", "percent", "kappa", "ties"}: a judge tie counts as its own label (it disagrees).
    """
    people = ["chosen" if outcome == "confirm" else "rejected" for outcome, _ in items]
    judge = ["chosen" if v > 0 else "rejected" if v < 0 else "tie" for _, v in items]
    percent, kappa = two_rater_agreement(people, judge)
    return {"n": len(items), "percent": percent, "kappa": kappa, "ties": judge.count("tie")}


def steering_agreement(orders: Sequence[str]) -> dict:
    """How often people preferred the γ⁺ response, among verdicts that chose a side."""
    confirm = sum(o == "confirm" for o in orders)
    swap = sum(o == "swap" for o in orders)
    decided = confirm + swap
    return {
        "confirm": confirm,
        "swap": swap,
        "tie": sum(o == "tie" for o in orders),
        "both_bad": sum(o == "both_bad" for o in orders),
        "percent": (100.0 * confirm / decided) if decided else None,
    }
