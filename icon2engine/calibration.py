"""γ calibration without training (paper, Appendix J).

On a sample of instructions (default 100): generate a chosen response for every γ⁺ of a grid
and a rejected one for every γ⁻, score every response with a judge, and tabulate every
(γ⁺, γ⁻) setting. The pick: γ⁺ = the highest mean judge score of the chosen side; γ⁻ = the
value nearest zero whose P(score(chosen) > score(rejected)) exceeds ``p_threshold`` (0.9).

Calibration measures what the run will actually use: responses are generated with the run's
own steering rule, layers and decoding safeguards (``steering``, ``generate``), and every
response goes through the run's quality gate checks (``gate.quality``: fluency, relevance to
its instruction, refusal; :func:`icon2engine.quality.degenerate_reasons`). A side whose share
of failing responses exceeds ``max_degenerate_share`` makes its settings excluded: kept in the
table with ``excluded_reason``, never picked. So γ⁺ is the one that maximises the concept while
relevance and fluency stay above the gate's floors (the paper's Appendix J picks the peak of the
chosen side's judged quality, not the widest separation). ``max_loglik_drop``, ``min_loglik`` and
``min_distinct2`` add floors of their own when set (off by default).

Chosen responses do not depend on γ⁻ (nor rejected ones on γ⁺), so a G⁺ × G⁻ table costs
(|G⁺| + |G⁻| + 1) responses per instruction (the +1 is the unsteered baseline), not 2·|G⁺|·|G⁻|.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from .config import CalibrationConfig, GateConfig, GenerateConfig, SteeringConfig  # configs live in the torch-free icon2engine.config
from .directions import DirectionSet
from .errors import InputError
from .generation import generate_rows, resolve_layers
from .judges import BaseJudge
from .metrics import distinct_n
from .models import LoadedModel
from .progress import NullProgress, Progress
from .quality import degenerate_reasons, measure_responses, response_loglik
from .stats import StageStats

__all__ = ["CalibrationConfig", "CalibrationResult", "calibrate", "response_loglik"]


@dataclass
class CalibrationResult:
    """The whole table (one row per (γ⁺, γ⁻)), the pick and why.

    ``pick`` is ``{"gamma_plus", "gamma_minus", "p_chosen_gt_rejected", "mean_score_chosen"}`` or None
    when no setting qualifies (``reason`` says what to change).
    """

    table: list[dict]
    pick: dict | None
    reason: str
    baseline: dict
    judge: str
    layers: tuple[int, ...]
    n_instructions: int
    examples: list[dict] = field(default_factory=list)

    def steering(self) -> SteeringConfig:
        """The pick as a :class:`SteeringConfig` (raises when there is none)."""
        if self.pick is None:
            raise InputError(f"calibration picked no γ: {self.reason}")
        return SteeringConfig(self.pick["gamma_plus"], self.pick["gamma_minus"], layers=self.layers)

    def as_dict(self) -> dict:
        return {
            "pick": self.pick, "reason": self.reason, "baseline": self.baseline, "judge": self.judge,
            "layers": list(self.layers), "n_instructions": self.n_instructions, "table": self.table,
            "examples": self.examples,
        }

    def format_table(self) -> str:
        """A plain-text table for terminals and reports."""
        head = f"{'γ+':>6} {'γ-':>6} {'score+':>7} {'P(+>-)':>7} {'ll+':>6} {'ll-':>6} {'d2+':>5} {'d2-':>5}  excluded"
        lines = [head]
        for r in self.table:
            lines.append(
                f"{r['gamma_plus']:6.3f} {r['gamma_minus']:6.3f} {r['mean_score_chosen']:7.3f} {r['p_chosen_gt_rejected']:7.3f} "
                f"{r['loglik_chosen']:6.2f} {r['loglik_rejected']:6.2f} {r['distinct2_chosen']:5.2f} {r['distinct2_rejected']:5.2f}  "
                f"{r['excluded_reason'] or ''}"
            )
        return "\n".join(lines)


def _by_name(directions: DirectionSet | Mapping[str, DirectionSet]) -> dict[str, DirectionSet]:
    return {directions.dimension: directions} if isinstance(directions, DirectionSet) else dict(directions)


def sample_positions(pool_size: int, n_instructions: int, seed: int) -> list[int]:
    """The positions in a pool of ``pool_size`` that :func:`calibrate` samples (seeded, sorted):
    a caller holding only a count (the studio's worker) reads just those instructions."""
    n = min(int(n_instructions), int(pool_size))
    if n >= pool_size:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(pool_size, size=n, replace=False).tolist())


def calibrate(
    lm: LoadedModel,
    directions: DirectionSet | Mapping[str, DirectionSet],
    instructions: Sequence[str],
    judge: BaseJudge,
    config: CalibrationConfig | None = None,
    *,
    dimensions: Sequence[str] | None = None,
    steering: SteeringConfig | None = None,
    generate: GenerateConfig | None = None,
    gate: GateConfig | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> CalibrationResult:
    """Sweep γ⁺ × γ⁻ on a sample of instructions and pick a setting (paper, Appendix J).

    Args:
        lm: the model the directions come from.
        directions: one direction set, or several by dimension name.
        instructions: the pool to sample ``config.n_instructions`` from (seeded).
        judge: scores every response (:mod:`icon2engine.judges`).
        config: the grids, sample size, threshold and coherence floors.
        dimensions: per instruction, which dimension steers it (the filter's winner); may be
            omitted with one direction set.
        steering: the run's steering rule (mode, prompt steering) and, unless ``config.layers``
            is set, its layers; its γ values are what is being chosen, so they are not used.
        generate: the run's decoding settings (safeguards such as no-repeat n-grams and the
            repetition penalty); ``config`` sets the length, batch and seed of the sweep.
        gate: the run's quality gate: its checks decide which responses fail (relevance and
            refusals included) and which dimensions may refuse on the chosen side.

    Returns:
        :class:`CalibrationResult` with the whole table, the pick and the unsteered baseline.

    Example:
        >>> res = calibrate(lm, ds, pool, VaderJudge(), CalibrationConfig(n_instructions=12))
        >>> print(res.format_table()); res.pick
        {'gamma_plus': 0.1, 'gamma_minus': -0.05, ...}
    """
    config = config or CalibrationConfig()
    steering = steering or SteeringConfig()
    gate = gate or GateConfig()
    qc = config.quality or gate.quality
    decoding = replace(generate or GenerateConfig(), max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                       seed=config.seed)
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="calibrate")
    by_name = _by_name(directions)
    names = list(by_name)
    if not names:
        raise InputError("no direction sets given; extract directions first")
    items = [t for t in instructions]
    if not items:
        raise InputError("no instructions to calibrate on; give at least one")
    if dimensions is None:
        if len(names) != 1:
            raise InputError(f"several dimensions ({', '.join(names)}): say which one each instruction uses")
        dimensions = [names[0]] * len(items)
    if len(dimensions) != len(items):
        raise InputError("dimensions needs one entry per instruction")
    unknown = sorted(set(dimensions) - set(names))
    if unknown:
        raise InputError(f"no direction set for dimension(s) {', '.join(unknown)}")
    band = resolve_layers(config.layers if config.layers is not None else steering.layers, lm.n_layers)
    chosen_idx = sample_positions(len(items), int(config.n_instructions), config.seed)
    n = len(chosen_idx)
    sample = [items[i] for i in chosen_idx]
    sample_dims = [dimensions[i] for i in chosen_idx]
    gammas = [0.0, *config.gamma_plus_grid, *config.gamma_minus_grid]  # one response per (instruction, γ)
    rows, coefs, didx = [], [], []
    for text, dim in zip(sample, sample_dims):
        for g in gammas:
            rows.append(text)
            coefs.append(g)
            didx.append(names.index(dim))
    gen = generate_rows(
        lm, rows, decoding, coefficients=coefs, directions=[by_name[x] for x in names], direction_index=didx, layers=band,
        steer_prompt=steering.steer_prompt, mode=steering.mode, progress=progress, stats=stats,
    )
    t0 = time.perf_counter()
    progress.start("calibrate: judge", len(rows))
    try:
        scores = np.array(judge.score_many(rows, gen.texts), dtype=float).reshape(n, len(gammas))  # (n, n_gammas)
        progress.advance(len(rows))
    finally:
        progress.finish()
    k = len(gammas)
    # Every response is measured against the unsteered answer to its own instruction (column 0).
    refs = [None if j == 0 else gen.texts[i * k] for i in range(n) for j in range(k)]
    quality = measure_responses(lm, rows, gen.texts, refs, config=qc, batch_size=config.batch_size)
    loglik = np.array([q.loglik for q in quality]).reshape(n, k)
    relevance = np.array([q.relevance if q.relevance is not None else 0.0 for q in quality]).reshape(n, k)
    distinct = np.array([distinct_n(t, 2) for t in gen.texts]).reshape(n, k)
    stats.add_time(time.perf_counter() - t0, str(lm.device))
    col = {g: j for j, g in enumerate(gammas)}

    refusal_ok = [d in gate.refusal_allowed for d in sample_dims]

    def response_failures(q, i: int, g: float) -> list[str]:
        """Why one response fails the coherence floor: per response, never averaged over a side."""
        chosen_side = g > 0
        out = list(degenerate_reasons(q, qc, refusal_ok=chosen_side and refusal_ok[i]))
        ll = q.loglik if q.loglik is not None else -math.inf
        if config.min_loglik is not None and ll < config.min_loglik:
            out.append("incoherent")
        if config.max_loglik_drop is not None and (not math.isfinite(ll) or (q.loglik_drop or 0.0) > config.max_loglik_drop):
            out.append("incoherent")
        if config.min_distinct2 is not None and q.distinct2 < config.min_distinct2:
            out.append("distinct")
        return sorted(set(out))

    bad = [[response_failures(quality[i * k + j], i, gammas[j]) if j else [] for j in range(k)] for i in range(n)]  # (n, k) lists

    def side(g: float) -> dict:
        j = col[g]
        ll = loglik[:, j]
        reasons: dict[str, int] = {}
        for i in range(n):
            for r in bad[i][j]:
                reasons[r] = reasons.get(r, 0) + 1
        return {
            "score": float(scores[:, j].mean()),
            "loglik": float(np.mean(np.where(np.isfinite(ll), ll, -50.0))),  # an empty response counts as -50
            "distinct2": float(distinct[:, j].mean()),
            "relevance": float(relevance[:, j].mean()),
            "degenerate": sum(1 for i in range(n) if bad[i][j]) / n,
            "reasons": reasons,
        }

    base = side(0.0)
    floors = [f for f in (config.min_loglik, None if config.max_loglik_drop is None else base["loglik"] - config.max_loglik_drop) if f is not None]
    loglik_floor = max(floors) if floors else None

    def failures(label: str, s: dict) -> list[str]:
        if s["degenerate"] <= config.max_degenerate_share:
            return []
        why = ", ".join(f"{r} {c}" for r, c in sorted(s["reasons"].items(), key=lambda kv: -kv[1]))
        return [f"{label}: {s['degenerate']:.0%} of responses degenerate ({why}) > {config.max_degenerate_share:.0%}"]

    table = []
    for gp in config.gamma_plus_grid:
        c = side(gp)
        for gm in config.gamma_minus_grid:
            r = side(gm)
            # A win counts only when both responses are fluent: a loop losing to prose is no evidence.
            fluent = np.array([not bad[i][col[gp]] and not bad[i][col[gm]] for i in range(n)])
            wins = (scores[:, col[gp]] > scores[:, col[gm]]) & fluent  # (n,) ties do not count as wins
            excluded = failures("chosen", c) + failures("rejected", r)
            table.append({
                "gamma_plus": gp, "gamma_minus": gm,
                "mean_score_chosen": round(c["score"], 6), "mean_score_rejected": round(r["score"], 6),
                "p_chosen_gt_rejected": round(float(wins.mean()), 6),
                "loglik_chosen": round(c["loglik"], 4), "loglik_rejected": round(r["loglik"], 4),
                "distinct2_chosen": round(c["distinct2"], 4), "distinct2_rejected": round(r["distinct2"], 4),
                "relevance_chosen": round(c["relevance"], 4), "relevance_rejected": round(r["relevance"], 4),
                "degenerate_chosen": round(c["degenerate"], 4), "degenerate_rejected": round(r["degenerate"], 4),
                "excluded_reason": "; ".join(excluded) or None,
            })
    pick, reason = _pick(table, config)
    if pick is None and any(not r["excluded_reason"] for r in table):  # the judge had fluent answers to go on
        reason = _diagnose(table, base["score"]) or reason
    examples = [
        {"instruction": sample[i], **{f"gamma={g:+.3f}": gen.texts[i * len(gammas) + j] for j, g in enumerate(gammas)}}
        for i in range(min(3, n))
    ]
    return CalibrationResult(
        table=table, pick=pick, reason=reason,
        baseline={
            "mean_score": round(base["score"], 6), "loglik": round(base["loglik"], 4), "distinct2": round(base["distinct2"], 4),
            "loglik_floor": None if loglik_floor is None else round(loglik_floor, 4),
        },
        judge=getattr(judge, "name", type(judge).__name__), layers=band, n_instructions=n, examples=examples,
    )


def _diagnose(table: list[dict], baseline_score: float) -> str | None:
    """When no γ passes, what the table itself shows: a side that the judge scores as moving the
    wrong way (the steering worked, the judge measures the opposite) says so, instead of advice
    to steer harder."""
    by_plus: dict[float, float] = {r["gamma_plus"]: r["mean_score_chosen"] for r in table}
    by_minus: dict[float, float] = {r["gamma_minus"]: r["mean_score_rejected"] for r in table}
    strongest_plus, strongest_minus = max(by_plus), min(by_minus)
    chosen_wrong = by_plus[strongest_plus] < baseline_score
    rejected_wrong = by_minus[strongest_minus] > baseline_score
    if not (chosen_wrong or rejected_wrong):
        return None
    parts = []
    if chosen_wrong:
        parts.append(f"the chosen side moved the wrong way for the judge: its mean score fell from {baseline_score:.3f} "
                     f"(unsteered) to {by_plus[strongest_plus]:.3f} at γ⁺={strongest_plus}")
    if rejected_wrong:
        parts.append(f"the rejected side moved the wrong way for the judge: its mean score rose from {baseline_score:.3f} "
                     f"(unsteered) to {by_minus[strongest_minus]:.3f} at γ⁻={strongest_minus}")
    return (
        "; ".join(parts) + ". The steering changes the text, but this judge scores the opposite of "
        "the dimension: if lower scores are better for it (a length judge for a 'concise' dimension), say so "
        "(--judge-better lower), or choose a judge that measures the dimension."
    )


def _pick(table: list[dict], config: CalibrationConfig) -> tuple[dict | None, str]:
    usable_plus = sorted(
        {r["gamma_plus"]: r["mean_score_chosen"] for r in table if not (r["excluded_reason"] or "").startswith("chosen")}.items(),
        key=lambda kv: (-kv[1], kv[0]),
    )
    if not usable_plus:
        return None, ("every γ⁺ makes too many chosen responses fail the quality gate (degenerate, off-topic or refusing: "
                      "see each row's reasons); use smaller γ⁺ values, another layer band, or the audit's remedy")
    for gp, mean_score in usable_plus:
        ok = [r for r in table if r["gamma_plus"] == gp and not r["excluded_reason"] and r["p_chosen_gt_rejected"] > config.p_threshold]
        if ok:
            best = min(ok, key=lambda r: abs(r["gamma_minus"]))
            why = (
                f"γ⁺={gp} has the highest mean judge score ({mean_score:.3f}) among coherent settings; γ⁻={best['gamma_minus']} "
                f"is the one nearest zero with P(chosen > rejected) = {best['p_chosen_gt_rejected']:.2f} > {config.p_threshold}"
            )
            if gp != usable_plus[0][0]:
                why += f" (γ⁺={usable_plus[0][0]} scored higher but no γ⁻ separated enough with it)"
            return {
                "gamma_plus": gp, "gamma_minus": best["gamma_minus"],
                "p_chosen_gt_rejected": best["p_chosen_gt_rejected"], "mean_score_chosen": best["mean_score_chosen"],
            }, why
    return None, (
        f"no coherent setting makes P(chosen > rejected) exceed {config.p_threshold}; widen the grids (stronger γ⁻), "
        "use more steering layers, or lower p_threshold"
    )
