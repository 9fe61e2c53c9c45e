"""Signs that DPO is learning a shortcut instead of the dimension (the paper's Appendix I).

When the two sides of the pairs differ trivially (one loops, one is longer), DPO separates them
almost at once: reward accuracy near 1.0 within a few steps. This module looks at the training
curve and at the pairs' own measures (:func:`icon2engine.quality.quality_columns`) and says, in
plain words, when a run shows that signature.

Example:
    >>> training_warnings([{"step": 1, "accuracy": 1.0}], total_steps=20, pairs=[])
    [{'kind': 'early_accuracy', ...}]
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

__all__ = ["EARLY_FRACTION", "EARLY_ACCURACY", "training_warnings", "side_gaps"]

EARLY_FRACTION = 0.1  # "early" = the first 10% of the optimiser steps
EARLY_ACCURACY = 0.98  # the paper saw 0.99 by step 150 when the pairs differed trivially
LENGTH_GAP = 0.25  # sides whose word counts differ by a quarter or more differ in length
LENGTH_SHARE = 0.8  # … in this share of pairs, always the same way: the pairs teach length
REPETITION_GAP = 0.2  # one side repeats 20 points more of its 3-grams than the other
REPETITION_SHARE = 0.5  # … in half the pairs: the pairs teach "do not repeat"


def side_gaps(pairs: Sequence[Mapping]) -> dict:
    """How the chosen and rejected sides differ, over pairs carrying quality columns.

    Returns shares of pairs: chosen longer / shorter by ≥ LENGTH_GAP, rejected / chosen more
    repetitive by ≥ REPETITION_GAP (None when the pairs carry no measures).
    """
    rows = [p for p in pairs if p.get("chosen_words") is not None and p.get("rejected_words") is not None]
    if not rows:
        return {"pairs": 0, "chosen_longer": None, "chosen_shorter": None, "rejected_repeats_more": None,
                "chosen_repeats_more": None}
    longer = shorter = rej_rep = cho_rep = 0
    for p in rows:
        c, r = float(p["chosen_words"]), float(p["rejected_words"])
        gap = (c - r) / max(c, r, 1.0)
        longer += gap >= LENGTH_GAP
        shorter += gap <= -LENGTH_GAP
        rep = float(p.get("rejected_repetition") or 0.0) - float(p.get("chosen_repetition") or 0.0)
        rej_rep += rep >= REPETITION_GAP
        cho_rep += rep <= -REPETITION_GAP
    n = len(rows)
    return {"pairs": n, "chosen_longer": longer / n, "chosen_shorter": shorter / n,
            "rejected_repeats_more": rej_rep / n, "chosen_repeats_more": cho_rep / n}


def training_warnings(curve: Sequence[Mapping], *, total_steps: int, pairs: Sequence[Mapping] = ()) -> list[dict]:
    """Reward-hacking warnings for a training run: ``[{"kind", "message"}]`` (empty when healthy).

    Args:
        curve: logged training points, each with ``step`` and ``accuracy`` (reward accuracy).
        total_steps: the run's optimiser steps.
        pairs: the trained pairs with their quality columns (``chosen_words``, ``rejected_repetition``…).
    """
    out: list[dict] = []
    early = max(1, math.ceil(EARLY_FRACTION * max(1, int(total_steps))))
    for i, point in enumerate(curve):
        step = int(point.get("step", i + 1))
        acc = point.get("accuracy", point.get("rewards/accuracies"))
        if step <= early and acc is not None and float(acc) >= EARLY_ACCURACY:
            out.append({
                "kind": "early_accuracy",
                "message": (
                    f"Reward accuracy reached {float(acc):.2f} at step {step} of {total_steps} (within the first "
                    f"{EARLY_FRACTION:.0%}). DPO told the sides apart almost at once. That is the signature of pairs "
                    "that differ in something trivial (a loop, the length: see the gaps below), and also of a small "
                    "set of very consistent pairs. Read some pairs, and judge the model by its held-out win rate, "
                    "not by this curve."
                ),
                "step": step,
            })
            break
    gaps = side_gaps(pairs)
    if gaps["pairs"]:
        for key, what in (("chosen_longer", "longer"), ("chosen_shorter", "shorter")):
            if gaps[key] >= LENGTH_SHARE:
                out.append({"kind": "length", "message": (
                    f"In {gaps[key]:.0%} of the pairs the chosen answer is {what} than the rejected one by a quarter "
                    "or more: the pairs teach length as much as the dimension.")})
        for key, side in (("rejected_repeats_more", "rejected"), ("chosen_repeats_more", "chosen")):
            if gaps[key] >= REPETITION_SHARE:
                out.append({"kind": "repetition", "message": (
                    f"In {gaps[key]:.0%} of the pairs the {side} answer repeats itself much more than the other: "
                    "the pairs teach 'do not repeat' rather than the dimension.")})
    return out
