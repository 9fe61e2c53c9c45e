"""The pair gate: generate pairs, measure both sides, retry a degenerate side at a smaller |γ|, drop what still fails.

Each instruction is answered three times in one batch: unsteered, at +γ⁺ and at γ⁻. The
unsteered answer is the reference for the quality measures (:mod:`icon2engine.quality`). A side
that is degenerate is generated again at ``retry_factor`` × its γ, up to ``max_retries`` times
(each retry recorded). A pair whose side still fails, or whose two sides are the same text, is
dropped with its reason; :class:`GateResult` counts the reasons. A pair whose chosen side answers
the request less than its rejected side (``less_relevant``, :func:`~icon2engine.quality.pair_reasons`)
counts as a failing chosen side: DPO would learn to answer less.

Example:
    >>> res = generate_gated_pairs(lm, ds, ["Describe a rainy Monday."], steering=SteeringConfig(0.05, -0.03))
    >>> res.pairs[0].quality["rejected"]["repetition"], res.dropped_counts
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .config import GateConfig, GenerateConfig, SteeringConfig  # configs live in the torch-free icon2engine.config
from .directions import DirectionSet
from .generation import SteeredPair, generate_rows, resolve_dimensions, resolve_layers
from .progress import NullProgress, Progress
from .errors import ModelOutputError
from .quality import FLUENCY_REASONS, degenerate_reasons, measure_responses, pair_reasons, score_texts
from .stats import StageStats

__all__ = ["GateConfig", "GateResult", "generate_gated_pairs", "drop_summary", "model_output_message"]


@dataclass
class GateResult:
    """Kept pairs (each with ``quality`` and ``retries``) and the dropped ones with their reasons."""

    pairs: list[SteeredPair]
    dropped: list[dict]
    retries: int
    rows_generated: int = 0  # unsteered + each steered side per instruction, plus every retry
    generation: dict = field(default_factory=dict)  # StageStats of the generation alone (no measuring)
    measure_s: float = 0.0  # seconds spent measuring the responses

    @property
    def dropped_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.dropped:
            counts[d["reason"]] = counts.get(d["reason"], 0) + 1
        return counts

    def summary(self) -> dict:
        """Small JSON for a stage's metrics: kept, dropped by reason, retries, two dropped examples."""
        return {
            "kept": len(self.pairs), "dropped": self.dropped_counts, "retries": self.retries,
            "examples": [{k: d[k] for k in ("instruction", "reason", "chosen", "rejected")} for d in self.dropped[:2]],
        }


def drop_summary(kept: int, dropped: Mapping[str, int], retries: int = 0) -> str:
    """One line for a stage message, e.g. '30 pairs kept, 2 dropped (rejected: repetition 2); 5 retries'."""
    n = sum(dropped.values())
    text = f"{kept} pair{'s' if kept != 1 else ''} kept"
    if n:
        text += f", {n} dropped (" + ", ".join(f"{r} {c}" for r, c in sorted(dropped.items(), key=lambda kv: -kv[1])) + ")"
    if retries:
        text += f"; {retries} side{'s' if retries != 1 else ''} regenerated at a smaller |γ|"
    return text


def model_output_message(reasons: Mapping[str, int], n: int, examples: Sequence[str] = ()) -> str:
    """Why a stage stopped when the model's unsteered answers are degenerate, and what to check."""
    bad = sum(reasons.values())
    why = ", ".join(f"{r} {c}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
    shown = "; ".join(repr(t[:80]) for t in examples if t is not None)
    return (
        f"the model's own answers are degenerate: {bad} of {n} unsteered answers ({why}), before any steering, so "
        "no γ can make fluent pairs. Likely causes: the prompt format (a model without a chat template, or one "
        "whose template is not the one it was trained with), a missing or doubled BOS token, a base model that "
        "was never instruction-tuned (Icon² needs a chat model), or a broken conversion (a GGUF whose "
        "tokenizer or weights did not convert). Check the model first: `icon2 check --model <it>` (docs/models.md), or read its "
        "unsteered answers in the playground"
        + (f". First answers: {shown}" if shown else "")
    )


def generate_gated_pairs(
    lm,
    directions: DirectionSet | Mapping[str, DirectionSet],
    instructions: Sequence[str],
    *,
    dimensions: Sequence[str] | None = None,
    steering: SteeringConfig | None = None,
    config: GenerateConfig | None = None,
    gate: GateConfig | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> GateResult:
    """Chosen and rejected responses that are both fluent answers, or a reason why not.

    Args: as :func:`~icon2engine.generation.generate_pairs`, plus ``gate`` (thresholds and retries).

    Returns:
        :class:`GateResult`. Every kept pair's ``quality`` holds the measures of its chosen,
        rejected and unsteered responses; ``gamma_plus``/``gamma_minus`` are the values that
        produced the kept text (smaller than asked when a side was retried).
    """
    steering = steering or SteeringConfig()
    config = config or GenerateConfig()
    gate = gate or GateConfig()
    progress = progress or NullProgress()
    gen_stats = StageStats(stage="generate")
    measure_s = 0.0
    by_name, dimensions = resolve_dimensions(directions, instructions, dimensions)
    names = list(by_name)
    band = resolve_layers(steering.layers, lm.n_layers)
    dir_list = [by_name[n] for n in names]
    n = len(instructions)
    qc = gate.quality

    # An instruction's unsteered, chosen and rejected rows stay side by side, so a batch runs their
    # prompt once (when generating and when scoring). Batches are kept full rather than rounded to
    # a multiple of three: on a CPU a decoding step costs nearly as much for 6 rows as for 30.
    def run(texts: list[str], coefs: list[float], didx: list[int]):
        return generate_rows(
            lm, texts, config, coefficients=coefs, directions=dir_list, direction_index=didx,
            layers=band, steer_prompt=steering.steer_prompt, mode=steering.mode, progress=progress, stats=gen_stats,
        )

    # Which sides are steered: both (the paper), or one, the other being the unsteered answer itself.
    side_gamma = (
        0.0 if steering.pairing == "unsteered_chosen" else steering.gamma_plus,
        0.0 if steering.pairing == "unsteered_rejected" else steering.gamma_minus,
    )
    per = 1 + sum(g != 0.0 for g in side_gamma)  # decoded rows per instruction
    rows, coefs, didx = [], [], []
    for text, dim in zip(instructions, dimensions):
        rows += [text] * per
        coefs += [0.0] + [g for g in side_gamma if g != 0.0]
        didx += [names.index(dim)] * per
    gen = run(rows, coefs, didx)
    unsteered = [gen.texts[per * i] for i in range(n)]
    # side texts and state: side 0 = chosen, 1 = rejected; an unsteered side is the unsteered row
    texts, tokens = [], []
    for i in range(n):
        k = per * i + 1
        t, c = [], []
        for g in side_gamma:
            j = per * i if g == 0.0 else k
            k += g != 0.0
            t.append(gen.texts[j])
            c.append(gen.new_tokens[j])
        texts.append(t)
        tokens.append(c)
    gammas = [list(side_gamma) for _ in range(n)]
    scores: dict = {}  # (instruction, text) -> prefill scores: each text is scored once, retries included
    t0 = time.perf_counter()
    score_texts(lm, rows, gen.texts, batch_size=config.batch_size, cache=scores)  # an instruction's three rows share its prompt
    ref_q = measure_responses(lm, list(instructions), unsteered, [None] * n, config=qc, cache=scores)
    measure_s += time.perf_counter() - t0
    refusal_ok = [dim in gate.refusal_allowed for dim in dimensions]  # the chosen side may refuse
    if gate.enabled:  # the model's own answers: when they are degenerate, no γ can help
        own: dict[str, int] = {}
        for q in ref_q:
            for r in [r for r in degenerate_reasons(q, qc) if r in FLUENCY_REASONS][:1]:  # its first, as checked
                own[r] = own.get(r, 0) + 1
        if n >= 2 and sum(own.values()) >= gate.max_unsteered_degenerate * n:
            raise ModelOutputError(model_output_message(own, n, unsteered[:2]))

    def reasons(i: int, s: int) -> list[str]:
        why = degenerate_reasons(quality[(i, s)], qc, refusal_ok=refusal_ok[i] and s == 0)
        if s == 0 and not why:  # the pair's own check falls on the chosen side: it answers less than the rejected one
            why = pair_reasons(quality[(i, 0)], quality[(i, 1)], qc, refusal_ok=refusal_ok[i])
        return why

    def measure(items: list[tuple[int, int]]):
        nonlocal measure_s
        t0 = time.perf_counter()
        try:
            return measure_responses(
                lm, [instructions[i] for i, _ in items], [texts[i][s] for i, s in items], [unsteered[i] for i, _ in items],
                config=qc, batch_size=config.batch_size, cache=scores,
            )
        finally:
            measure_s += time.perf_counter() - t0

    quality: dict[tuple[int, int], object] = {}
    items = [(i, s) for i in range(n) for s in (0, 1)]
    for item, q in zip(items, measure(items)):
        quality[item] = q
    history: list[list[dict]] = [[] for _ in range(n)]
    retries = 0
    if gate.enabled:
        for _attempt in range(int(gate.max_retries)):
            failing = [(i, s) for (i, s) in items if gammas[i][s] != 0.0 and reasons(i, s)]  # an unsteered side cannot retry
            if not failing:
                break
            for i, s in failing:
                history[i].append({
                    "side": ("chosen", "rejected")[s], "gamma": gammas[i][s],
                    "reasons": reasons(i, s),
                })
                gammas[i][s] = round(gammas[i][s] * gate.retry_factor, 6)
            regen = run(
                [instructions[i] for i, _ in failing], [gammas[i][s] for i, s in failing],
                [names.index(dimensions[i]) for i, _ in failing],
            )
            for k, (i, s) in enumerate(failing):
                texts[i][s] = regen.texts[k]
                tokens[i][s] = regen.new_tokens[k]
            retries += len(failing)
            for item, q in zip(failing, measure(failing)):
                quality[item] = q
    pairs: list[SteeredPair] = []
    dropped: list[dict] = []
    for i in range(n):
        chosen, rejected = texts[i]
        reason = None
        if gate.enabled:
            for s, side in enumerate(("chosen", "rejected")):
                why = reasons(i, s)
                if why:
                    reason = f"{side}: {why[0]}"
                    break
            if reason is None and chosen.strip() == rejected.strip():
                reason = "identical sides"
        q = {
            "chosen": quality[(i, 0)].as_dict(), "rejected": quality[(i, 1)].as_dict(), "unsteered": ref_q[i].as_dict(),
        }
        if reason is not None:
            dropped.append({
                "index": i, "instruction": instructions[i], "reason": reason, "chosen": chosen, "rejected": rejected,
                "retries": history[i], "quality": q,
            })
            continue
        pairs.append(SteeredPair(
            instruction=instructions[i], chosen=chosen, rejected=rejected, dimension=dimensions[i],
            gamma_plus=gammas[i][0], gamma_minus=gammas[i][1], layers=band, seed=config.seed,
            chosen_tokens=tokens[i][0], rejected_tokens=tokens[i][1],
            quality=q, retries=tuple(history[i]), unsteered=unsteered[i], index=i, steering_mode=steering.mode,
            pairing=steering.pairing,
            no_repeat_ngram_size=config.no_repeat_ngram_size, repetition_penalty=config.repetition_penalty,
        ))
    if stats is not None:  # the stage's cost: generating and measuring
        stats.tokens_in += gen_stats.tokens_in
        stats.tokens_out += gen_stats.tokens_out
        stats.add_time(gen_stats.wall_s + measure_s, gen_stats.device or str(lm.device))
    return GateResult(
        pairs=pairs, dropped=dropped, retries=retries, rows_generated=per * n + retries,
        generation=gen_stats.as_dict(), measure_s=round(measure_s, 3),
    )
