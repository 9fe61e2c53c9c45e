"""Bias audit: what a direction really moves, before anyone trains on it (the paper's open question 3).

A direction named "helpfulness" may mostly encode the base model's sentiment, and DPO on its
pairs would then teach cheerfulness. The audit answers two questions:

1. **Overlap.** How far does the dimension's direction point along reference directions for
   properties that often ride along with a preference (sentiment, length, formality, refusal,
   confidence)? The references are contrast dimensions extracted exactly like the user's
   (``data/reference_dimensions.json``), cached per model. Reported per reference: the mean
   cosine over the steered band; together: the share of the direction's length² that lies in the
   references' span (1.0 = the references explain it entirely).
2. **What the pairs differ in.** Over generated pairs: the chosen − rejected gaps in length,
   sentiment, formality, repetition and the judge's verdict, and how well the side gaps alone
   predict which side the judge prefers (a small logistic model, cross-validated accuracy).

The remedy, :func:`orthogonalise`, projects chosen references out of the direction.

Example:
    >>> refs = reference_directions(lm, cache_dir="cache/refs")
    >>> overlap = direction_overlap(ds, refs)
    >>> overlap["largest"], overlap["cosines"]["sentiment"]
    ('sentiment', 0.75)
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .config import Dimension, ExtractConfig, PromptPair
from .directions import DirectionSet, extract_directions
from .errors import InputError
from .generation import resolve_layers
from .presets import default_feature_instructions
from .progress import NullProgress, Progress
from .quality import repetition

__all__ = [
    "REFERENCES_FILE", "OVERLAP_FLAG", "PREDICT_FLAG", "GAP_FEATURES", "Reference", "reference_bank",
    "reference_directions", "direction_overlap", "orthogonalise", "pair_gaps", "audit_verdict",
]

REFERENCES_FILE = Path(__file__).resolve().parent / "data" / "reference_dimensions.json"
# |cosine| over the band at or above this: the direction rides along with the reference. On the
# embedded model the optimism preset scores 0.75 with sentiment, helpfulness 0.25, and a
# cooking-vs-sport dimension −0.15 (bench/audit.py prints them all).
OVERLAP_FLAG = 0.5
# One side gap alone predicts the judge's preference this often (held out): the pairs teach it.
PREDICT_FLAG = 0.9
GAP_FEATURES = ("length", "sentiment", "formality", "repetition")
MIN_PREDICT_PAIRS = 10  # fewer non-tied pairs than this: no prediction figure


@dataclass(frozen=True)
class Reference:
    key: str
    name: str
    about: str
    measure: str | None  # the pair-gap feature that measures the same property, if any
    dimension: Dimension


def reference_bank() -> list[Reference]:
    """The shipped reference contrasts, in file order."""
    data = json.loads(REFERENCES_FILE.read_text(encoding="utf-8"))
    return [
        Reference(
            key=r["key"], name=r["name"], about=r["about"], measure=r.get("measure"),
            dimension=Dimension(name=r["key"], description=r["about"],
                                prompt_pairs=tuple(PromptPair(p["positive"], p["negative"]) for p in r["prompt_pairs"])),
        )
        for r in data["references"]
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-80:] or "model"


def reference_directions(
    lm, *, cache_dir: str | Path | None = None, keys: Sequence[str] | None = None,
    config: ExtractConfig | None = None, progress: Progress | None = None,
) -> dict[str, DirectionSet]:
    """The reference directions for ``lm``, keyed by reference key; extracted once and cached.

    The cache file names the model, its revision, its shape and the reference's prompts hash,
    so a changed model or an edited reference is extracted again.
    """
    from .vector_io import load_directions, save_directions

    bank = {r.key: r for r in reference_bank()}
    unknown = [k for k in (keys or ()) if k not in bank]
    if unknown:
        raise InputError(f"no reference dimension {', '.join(map(repr, unknown))}; choose from {', '.join(bank)}")
    progress = progress or NullProgress()
    feats = default_feature_instructions()
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / _slug(f"{lm.name}-{lm.revision[:12]}-{lm.n_layers}x{lm.hidden_size}")
        folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, DirectionSet] = {}
    for key in keys or list(bank):
        dim = bank[key].dimension
        path = folder / f"{key}-{dim.prompts_hash[:12]}.safetensors" if folder is not None else None
        if path is not None and path.exists():
            out[key] = load_directions(path)
            continue
        ds = extract_directions(lm, dim, feats, config or ExtractConfig(), progress=progress)
        if path is not None:
            save_directions(ds, path)
        out[key] = ds
    return out


def _band(direction: DirectionSet, layers: Sequence[int] | None) -> list[int]:
    return list(resolve_layers(layers, direction.n_layers))


def _check_shape(direction: DirectionSet, references: Mapping[str, DirectionSet]) -> None:
    for key, ref in references.items():
        if (ref.n_layers, ref.hidden_size) != (direction.n_layers, direction.hidden_size):
            raise InputError(
                f"reference {key!r} has {ref.n_layers} layers × {ref.hidden_size}, the direction "
                f"{direction.n_layers} × {direction.hidden_size}: extract the references from the same model"
            )


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _span_projection(u: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """The projection of ``u`` (hidden,) onto the span of the rows of ``refs`` (k, hidden)."""
    q, _ = np.linalg.qr(refs.T)  # (hidden, k) orthonormal basis of the span
    return q @ (q.T @ u)


def direction_overlap(
    direction: DirectionSet, references: Mapping[str, DirectionSet], layers: Sequence[int] | None = None,
) -> dict:
    """How far ``direction`` points along each reference over the steered band (small JSON).

    Returns ``{"layers", "cosines": {key: mean cosine}, "per_layer": {key: [...]}, "explained":
    share of ‖u‖² in the references' span (mean over the band), "largest": the key of the largest
    |cosine|, "flagged": keys with |cosine| ≥ OVERLAP_FLAG}``.
    """
    if not references:
        raise InputError("no reference directions to compare with")
    _check_shape(direction, references)
    band = _band(direction, layers)
    u = _unit(direction.vectors[band].double())
    per_layer = {k: [round(float(x), 6) for x in (u * _unit(r.vectors[band].double())).sum(-1)] for k, r in references.items()}
    cosines = {k: round(float(np.mean(v)), 4) for k, v in per_layer.items()}
    explained = []
    for i, layer in enumerate(band):
        refs = np.stack([_unit(r.vectors[layer].double()).numpy() for r in references.values()])
        p = _span_projection(u[i].numpy(), refs)
        explained.append(float(p @ p))
    largest = max(cosines, key=lambda k: abs(cosines[k]))
    return {
        "layers": band, "cosines": cosines, "per_layer": per_layer, "explained": round(float(np.mean(explained)), 4),
        "largest": largest, "flagged": [k for k, c in cosines.items() if abs(c) >= OVERLAP_FLAG],
    }


def orthogonalise(direction: DirectionSet, references: Mapping[str, DirectionSet], keys: Sequence[str]) -> DirectionSet:
    """``direction`` with the span of the chosen references projected out at every layer, renormalised.

    The sign convention (positive side projects positive) is kept; ``extra["orthogonalised_against"]``
    records the keys. A layer whose vector lay entirely in the span would become zero: refused.
    """
    if not keys:
        raise InputError("say which reference directions to project out")
    missing = [k for k in keys if k not in references]
    if missing:
        raise InputError(f"no reference direction {', '.join(map(repr, missing))} to project out")
    _check_shape(direction, {k: references[k] for k in keys})
    out = []
    for layer in range(direction.n_layers):
        u = direction.vectors[layer].double().numpy()
        refs = np.stack([_unit(references[k].vectors[layer].double()).numpy() for k in keys])
        rest = u - _span_projection(u, refs)
        norm = float(np.linalg.norm(rest))
        if norm < 1e-6 * (float(np.linalg.norm(u)) or 1.0):
            raise InputError(f"layer {layer}: the direction lies entirely in the references' span; nothing is left")
        out.append(rest / norm)
    extra = {**direction.extra, "orthogonalised_against": list(keys)}
    return replace(direction, vectors=torch.tensor(np.stack(out), dtype=torch.float32), extra=extra)


# What the pairs differ in ------------------------------------------------------------------------


def _side_measures():
    from .judges import FormalityJudge, VaderJudge

    vader, formal = VaderJudge(), FormalityJudge()

    def measure(text: str) -> dict[str, float]:
        return {"words": float(len(text.split())), "sentiment": vader.score("", text),
                "formality": formal.score("", text), "repetition": repetition(text)}

    return measure


def _features(pairs: Sequence[Mapping]) -> np.ndarray:
    """(n, 4) chosen − rejected gaps: relative length, sentiment, formality, repetition."""
    measure = _side_measures()
    rows = []
    for p in pairs:
        c, r = measure(str(p["chosen"])), measure(str(p["rejected"]))
        length = (c["words"] - r["words"]) / max(c["words"], r["words"], 1.0)
        rows.append([length, c["sentiment"] - r["sentiment"], c["formality"] - r["formality"], c["repetition"] - r["repetition"]])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(GAP_FEATURES))


def _predict_accuracy(x: np.ndarray, prefers_chosen: np.ndarray, seed: int) -> float | None:
    """Held-out accuracy of a no-intercept logistic model telling, from side gaps alone, which side
    the judge prefers. Each pair is shown in a random order (gaps negated when swapped), so the
    classes are balanced and "always chosen" predicts nothing."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n = len(prefers_chosen)
    if n < MIN_PREDICT_PAIRS:
        return None
    rng = np.random.default_rng(seed)
    swap = rng.permutation(n) < n // 2
    xs = np.where(swap[:, None], -x, x)
    y = np.where(swap, ~prefers_chosen, prefers_chosen).astype(int)
    scale = np.sqrt((xs ** 2).mean(axis=0))
    xs = xs / np.where(scale > 0, scale, 1.0)
    minority = int(min(y.sum(), n - y.sum()))
    if minority < 2:
        return None
    folds = StratifiedKFold(n_splits=min(5, minority), shuffle=True, random_state=seed)
    model = LogisticRegression(fit_intercept=False, C=1.0)
    return round(float(cross_val_score(model, xs, y, cv=folds, scoring="accuracy").mean()), 4)


def pair_gaps(
    pairs: Sequence[Mapping], *, judge=None, preferences: Sequence[float | None] | None = None,
    judge_measure: str | None = None, seed: int = 0,
) -> dict:
    """The chosen − rejected gaps over ``pairs`` (dicts with instruction, chosen, rejected) and how
    much of the judge's preference the side gaps alone predict (small JSON).

    Args:
        judge: compares the sides (``compare(instruction, chosen, rejected)`` in [−1, 1]).
        preferences: the judge's verdicts already at hand, one per pair (None = not judged);
            used instead of ``judge``.
        judge_measure: the gap feature the judge itself measures ("sentiment" for the lexicon
            judge…): a flag on it says what the judge is built to see, and is marked expected.
    """
    if not pairs:
        raise InputError("no pairs to audit: generate pairs first")
    if preferences is None:
        preferences = [float(judge.compare(str(p.get("instruction", "")), str(p["chosen"]), str(p["rejected"])))
                       for p in pairs] if judge is not None else [None] * len(pairs)
    if len(preferences) != len(pairs):
        raise InputError(f"{len(preferences)} judge verdicts for {len(pairs)} pairs")
    x = _features(pairs)
    gaps = {name: {"mean": round(float(x[:, j].mean()), 4), "chosen_higher": round(float((x[:, j] > 0).mean()), 4)}
            for j, name in enumerate(GAP_FEATURES)}
    judged = [(i, float(v)) for i, v in enumerate(preferences) if v is not None and math.isfinite(float(v))]
    decided = [(i, v) for i, v in judged if v != 0]
    out: dict = {"pairs": len(pairs), "gaps": gaps, "judge": None, "prediction": None, "flags": []}
    if judged:
        out["judge"] = {"mean": round(float(np.mean([v for _, v in judged])), 4),
                        "prefers_chosen": round(sum(v > 0 for _, v in judged) / len(judged), 4), "judged": len(judged)}
    if decided:
        idx = np.array([i for i, _ in decided])
        label = np.array([v > 0 for _, v in decided])
        prediction = {"pairs": len(decided), "all": _predict_accuracy(x[idx], label, seed)}
        for j, name in enumerate(GAP_FEATURES):
            prediction[name] = _predict_accuracy(x[idx][:, [j]], label, seed)
        out["prediction"] = prediction
        for name in GAP_FEATURES:
            acc = prediction[name]
            if acc is not None and acc >= PREDICT_FLAG:
                out["flags"].append({"feature": name, "accuracy": acc, "expected": name == judge_measure})
    return out


def audit_verdict(name: str, overlap: Mapping | None, gaps: Mapping | None, names: Mapping[str, str] | None = None) -> str:
    """One plain sentence for the top of the audit, e.g. "Helpfulness overlaps Sentiment at 0.52:
    its pairs differ mostly in sentiment." """
    names = names or {r.key: r.name for r in reference_bank()}
    parts = []
    if overlap:
        key = overlap["largest"]
        cos = overlap["cosines"][key]
        if abs(cos) >= OVERLAP_FLAG:
            parts.append(f"{name} overlaps {names.get(key, key)} at {cos:.2f}")
        else:
            parts.append(f"{name} overlaps no reference much (largest: {names.get(key, key)} at {cos:.2f})")
    if gaps and gaps.get("prediction"):
        pred = gaps["prediction"]
        best = max(GAP_FEATURES, key=lambda f: pred.get(f) or 0.0)
        acc = pred.get(best)
        flags = {f["feature"]: f for f in gaps.get("flags", [])}
        if best in flags:
            note = "; the judge measures that itself" if flags[best]["expected"] else ""
            parts.append(f"its pairs differ mostly in {best} ({best} alone predicts the judge's choice in {acc:.0%} of pairs{note})")
        elif acc is not None:
            parts.append(f"no single side gap predicts the judge's choice (best: {best}, {acc:.0%})")
    elif gaps:
        parts.append("too few judged pairs to say what they differ in")
    if not parts:
        return f"{name}: nothing to audit yet."
    sentence = ": ".join(parts) if len(parts) == 2 and "differ" in parts[1] else "; ".join(parts)
    remedy = ""
    if overlap and abs(overlap["cosines"][overlap["largest"]]) >= OVERLAP_FLAG:
        key = overlap["largest"]
        remedy = (f" Pairs along it teach {names.get(key, key).lower()} as much as {name.lower()}: orthogonalise the "
                  f"direction against {names.get(key, key)} (the remedy, or icon2 audit --orthogonalise {key}) and "
                  "generate again.")
    return sentence[0].upper() + sentence[1:] + "." + remedy
