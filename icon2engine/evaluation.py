"""Evaluate a trained model against its base: pairwise judge, both orders, win rate with a Wilson interval,
and the projection of each model's hidden states onto the direction vector.

Ties count half a win in ``win_rate`` and its interval (AlpacaEval's convention); wins, ties and
losses are also reported separately.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from .chat import format_chat
from .config import EvalConfig, GenerateConfig, QualityConfig, SteeringConfig  # configs live in the torch-free icon2engine.config
from .directions import DirectionSet
from .errors import InputError
from .generation import generate_rows, resolve_layers
from .judges import Judge
from .models import LoadedModel
from .progress import NullProgress, Progress
from .quality import FLUENCY_REASONS, degenerate_reasons, measure_responses
from .stats import StageStats

__all__ = ["EvalConfig", "EvalReport", "evaluate", "wilson_interval", "pairwise", "mean_projection", "answering_figures"]

RELEVANCE_TIE = 0.02  # nats per token: closer than this, two answers are equally relevant (a tie)
LESS_HELPFUL_WIN = 0.45  # the trained model loses on relevance below this share (ties half)
MORE_OFTEN = 0.05  # refusing or degenerating this much more often than the base is flagged


@dataclass
class EvalReport:
    """Counts, win rate and interval of trained vs base, mean judge scores, projections, and per-instruction rows."""

    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float
    ci_low: float
    ci_high: float
    judge: str
    mean_score: dict[str, float]
    projection: dict[str, float]
    rows: list[dict]
    stats: StageStats
    answering: dict = field(default_factory=dict)  # does the trained model still answer? see answering_figures

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("rows")
        d["stats"] = self.stats.as_dict()
        return d


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (``successes`` may be fractional: ties count half).

    Example:
        >>> wilson_interval(12, 16)
        (0.505..., 0.898...)
    """
    if n <= 0:
        return (0.0, 1.0)
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pairwise(judge: Judge, instructions: Sequence[str], a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Per instruction, in [−1, 1]: how much better ``a`` is than ``b``, judged in both orders
    (``compare(a, b)`` and ``−compare(b, a)`` averaged) to cancel position bias."""
    out = []
    for text, x, y in zip(instructions, a, b):
        out.append((float(judge.compare(text, x, y)) - float(judge.compare(text, y, x))) / 2)
    return out


@torch.inference_mode()
def mean_projection(
    lm: LoadedModel, direction: DirectionSet, instructions: Sequence[str], responses: Sequence[str],
    layers: Sequence[int] | None = None, batch_size: int = 16,
) -> float:
    """Mean of h^l · u^l over the response tokens and the given blocks (default: the middle third).

    The model reads each instruction and response (chat template applied); larger means its
    states lie further along the direction (e.g. more optimistic).
    """
    band = resolve_layers(layers, lm.n_layers)
    tok = lm.tokenizer
    total, count = 0.0, 0
    u = direction.vectors.float()  # (n_layers, hidden)
    for start in range(0, len(instructions), batch_size):
        texts = instructions[start : start + batch_size]
        resps = responses[start : start + batch_size]
        prompts = [format_chat(tok, t) for t in texts]
        for prompt, resp in zip(prompts, resps):
            if not resp.strip():
                continue
            p_len = len(tok(prompt, add_special_tokens=False)["input_ids"])
            enc = tok(prompt + resp, return_tensors="pt", add_special_tokens=False).to(lm.device)
            out = lm.model(**enc, output_hidden_states=True)
            for layer in band:
                h = out.hidden_states[layer + 1][0, p_len:].float().cpu()  # (response_tokens, hidden)
                if h.shape[0] == 0:
                    continue
                total += float((h @ u[layer]).sum())
                count += h.shape[0]
    return total / count if count else 0.0


def answering_figures(base: LoadedModel, instructions: Sequence[str], base_texts: Sequence[str],
                      trained_texts: Sequence[str], *, batch_size: int = 16, concept_win: float | None = None) -> tuple[dict, list[dict]]:
    """Does the trained model answer as well as its base? Relevance, refusals and degenerate
    responses of both, measured under the base model (icon2engine.quality), and a plain warning.

    Returns:
        ``({"relevance_win", "relevance": {base, trained}, "refusal": {...}, "degenerate": {...},
        "warning"}, per-instruction rows)``. ``relevance_win`` counts a trained answer more
        relevant than the base's as a win, within :data:`RELEVANCE_TIE` as half; a refusal is the
        least relevant answer.
    """
    n = len(instructions)
    q = measure_responses(base, list(instructions) * 2, list(base_texts) + list(trained_texts),
                          [None] * n + list(base_texts), batch_size=batch_size)
    qb, qt = q[:n], q[n:]

    def rel(x) -> float:
        return -math.inf if x.refusal or x.relevance is None else x.relevance

    wins = 0.0
    rows = []
    for b, t in zip(qb, qt):
        rb, rt = rel(b), rel(t)
        win = 0.5 if rb == rt or abs(rt - rb) <= RELEVANCE_TIE else float(rt > rb)
        wins += win
        rows.append({"relevance_base": b.relevance, "relevance_trained": t.relevance, "refusal_base": bool(b.refusal),
                     "refusal_trained": bool(t.refusal), "relevance_win": win})

    def share(xs, test) -> float:
        return sum(1 for x in xs if test(x)) / n

    def degenerate(x) -> bool:  # fluency alone: relevance and refusals have figures of their own
        return bool(set(degenerate_reasons(x, QualityConfig())) & FLUENCY_REASONS)

    out = {
        "relevance_win": wins / n,
        "relevance": {k: sum(x.relevance or 0.0 for x in v) / n for k, v in (("base", qb), ("trained", qt))},
        "refusal": {k: share(v, lambda x: x.refusal) for k, v in (("base", qb), ("trained", qt))},
        "degenerate": {k: share(v, degenerate) for k, v in (("base", qb), ("trained", qt))},
    }
    problems = []
    if out["relevance_win"] < LESS_HELPFUL_WIN:
        problems.append(f"its answers are less relevant to the instructions than the base model's "
                        f"(it wins {out['relevance_win']:.0%} on relevance, ties half)")
    if out["refusal"]["trained"] > out["refusal"]["base"] + MORE_OFTEN:
        problems.append(f"it refuses more often ({out['refusal']['trained']:.0%} against {out['refusal']['base']:.0%})")
    if out["degenerate"]["trained"] > out["degenerate"]["base"] + MORE_OFTEN:
        problems.append(f"more of its answers are degenerate ({out['degenerate']['trained']:.0%} against "
                        f"{out['degenerate']['base']:.0%})")
    lead = ("The trained model wins on the dimension, but" if concept_win is not None and concept_win > 0.5
            else "The trained model answers worse than its base:")
    out["warning"] = f"{lead} {'; '.join(problems)}. Read its answers before using it; the pairs likely taught it " \
                     "something besides the dimension." if problems else None
    return out, rows


def evaluate(
    base: LoadedModel,
    trained: LoadedModel,
    instructions: Sequence[str],
    judge: Judge,
    config: EvalConfig | None = None,
    *,
    direction: DirectionSet | None = None,
    steering: SteeringConfig | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> EvalReport:
    """Compare the trained model with its base on held-out instructions.

    Args:
        base, trained: the two models (same tokenizer).
        instructions: held-out instructions, never trained on.
        judge: any engine judge; compared in both orders.
        direction: if given, the mean projection of each model's states onto it is reported.
        steering: if given with ``direction``, the steered base (γ⁺ of ``steering``) is generated
            and scored as a third system.

    Returns:
        :class:`EvalReport`: trained-vs-base wins/ties/losses, ``win_rate`` (ties count half) with
        a Wilson interval, mean judge score per system, mean projection per system.

    Example:
        >>> rep = evaluate(lm, res.lm, held_out, VaderJudge(), direction=ds)
        >>> rep.win_rate, rep.ci_low, rep.mean_score
    """
    config = config or EvalConfig()
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="evaluate")
    instructions = list(instructions)
    if not instructions:
        raise InputError("no held-out instructions to evaluate on; give at least one")
    gen = GenerateConfig(max_new_tokens=config.max_new_tokens, batch_size=config.batch_size)
    responses = {
        "base": generate_rows(base, instructions, gen, stats=stats).texts,
        "trained": generate_rows(trained, instructions, gen, stats=stats).texts,
    }
    if steering is not None and direction is not None:
        responses["steered"] = generate_rows(
            base, instructions, gen, coefficients=[steering.gamma_plus] * len(instructions),
            directions=[direction], layers=steering.layers, steer_prompt=steering.steer_prompt, stats=stats,
        ).texts
    t0 = time.perf_counter()
    progress.start("evaluate", len(instructions))
    try:
        scores = {k: judge.score_many(instructions, v) for k, v in responses.items()}
        prefs = []
        for i, text in enumerate(instructions):
            prefs += pairwise(judge, [text], [responses["trained"][i]], [responses["base"][i]])
            progress.advance(1)
        projection = {}
        if direction is not None:
            for k, v in responses.items():
                projection[k] = mean_projection(base if k != "trained" else trained, direction, instructions, v,
                                                config.layers, config.batch_size)
    finally:
        progress.finish()
        stats.add_time(time.perf_counter() - t0, str(base.device))
    wins = sum(p > 0 for p in prefs)
    losses = sum(p < 0 for p in prefs)
    ties = len(prefs) - wins - losses
    rate = (wins + ties / 2) / len(prefs)
    low, high = wilson_interval(wins + ties / 2, len(prefs), config.confidence)
    t0 = time.perf_counter()
    answering, answer_rows = answering_figures(base, instructions, responses["base"], responses["trained"],
                                               batch_size=config.batch_size, concept_win=rate)
    stats.add_time(time.perf_counter() - t0, str(base.device))
    rows = [
        {"instruction": t, **{k: responses[k][i] for k in responses}, **{f"score_{k}": scores[k][i] for k in scores},
         "preference": prefs[i], **answer_rows[i]}
        for i, t in enumerate(instructions)
    ]
    return EvalReport(
        n=len(prefs), wins=wins, ties=ties, losses=losses, win_rate=rate, ci_low=low, ci_high=high,
        judge=getattr(judge, "name", type(judge).__name__),
        mean_score={k: sum(v) / len(v) for k, v in scores.items()}, projection=projection, rows=rows, stats=stats,
        answering=answering,
    )
