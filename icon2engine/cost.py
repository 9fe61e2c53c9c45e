"""What the paper's sample-and-rank baseline would have cost, estimated from Icon²'s own measured generation.

Sample-and-rank draws ``samples`` responses per instruction, scores every one with a judge and
pairs the best with the worst. Icon² generates two rows per instruction (chosen and rejected)
under the same length cap, so its measured time and output tokens per row price each sample.
"""
from __future__ import annotations

import math
import numbers
from typing import Mapping, Sequence

from .errors import ConfigError, InputError
from .stats import StageStats

__all__ = ["sample_and_rank_estimate", "merge_estimates"]

_SUMMED = ("n_instructions", "generate_s", "judge_s", "wall_s", "tokens_out")


def _measured(generate: StageStats | Mapping[str, float]) -> tuple[float, float]:
    if isinstance(generate, StageStats):
        wall, tokens = generate.wall_s, generate.tokens_out
    else:
        if "wall_s" not in generate:
            raise InputError(
                "the generation stats have no wall_s; pass the generate stage's StageStats or its as_dict()"
            )
        wall, tokens = generate["wall_s"], generate.get("tokens_out", 0)
    values = []
    for name, value in (("wall_s", wall), ("tokens_out", tokens)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"generation {name} must be a number, got {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"generation {name} must be a finite number ≥ 0, got {value!r}")
        values.append(value)
    return values[0], values[1]


def _whole(name: str, value: object, minimum: int, error: type[Exception], why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise error(f"{name} must be a whole number ≥ {minimum}{why}, got {value!r}")


def sample_and_rank_estimate(
    generate: StageStats | Mapping[str, float],
    *,
    rows_generated: int,
    n_instructions: int,
    samples: int = 5,
    judge_s_per_response: float = 0.0,
) -> dict:
    """Estimate the sample-and-rank baseline for ``n_instructions`` from a measured generate stage.

    Args:
        generate: the generate stage's :class:`StageStats` (or its ``as_dict()``): ``wall_s`` and
            ``tokens_out`` over ``rows_generated`` rows.
        rows_generated: rows that stage generated (Icon²: 2 per instruction, chosen and rejected).
        n_instructions: instructions the baseline would answer.
        samples: responses sampled per instruction (at least 2: the best and the worst).
        judge_s_per_response: seconds the judge takes to score one response (0 leaves judging out).

    Returns:
        Small JSON: ``{"samples", "n_instructions", "generate_s", "judge_s", "wall_s",
        "tokens_out", "basis"}``; ``basis`` says in one sentence how it was estimated.

    Example:
        >>> measured = StageStats("generate", wall_s=20.0, tokens_out=4000)  # 40 rows: 0.5 s, 100 tokens each
        >>> sample_and_rank_estimate(measured, rows_generated=40, n_instructions=20)["wall_s"]
        50.0
    """
    wall, tokens = _measured(generate)
    _whole("rows_generated", rows_generated, 1, InputError, " (the rows the generate stage produced)")
    _whole("n_instructions", n_instructions, 0, InputError)
    _whole("samples", samples, 2, ConfigError, " (a best and a worst response to pair)")
    try:
        judge = float(judge_s_per_response)
    except (TypeError, ValueError):
        raise ConfigError(f"judge_s_per_response must be a number of seconds, got {judge_s_per_response!r}") from None
    if not math.isfinite(judge) or judge < 0:
        raise ConfigError(f"judge_s_per_response must be a finite number of seconds ≥ 0, got {judge_s_per_response!r}")
    responses = samples * n_instructions
    generate_s = wall / rows_generated * responses
    judge_s = judge * responses
    return {
        "samples": int(samples),
        "n_instructions": int(n_instructions),
        "generate_s": round(generate_s, 3),
        "judge_s": round(judge_s, 3),
        "wall_s": round(generate_s + judge_s, 3),
        "tokens_out": int(round(tokens / rows_generated * responses)),
        "basis": (
            f"Sample-and-rank with {samples} responses per instruction, each priced at the wall time and output "
            f"tokens per row of Icon²'s own generation (same length cap), plus {judge:g} s of judging per response."
        ),
    }


def merge_estimates(parts: Sequence[Mapping]) -> dict:
    """Sum the estimates of several chunks of one run (e.g. one per generate batch of instructions).

    Args:
        parts: results of :func:`sample_and_rank_estimate`, all with the same ``samples``.

    Returns:
        One estimate of the same shape: counts, seconds and tokens added; ``basis`` kept (the
        distinct sentences, in order, when the chunks were judged at different speeds).

    Example:
        >>> merge_estimates([a, b])["wall_s"] == round(a["wall_s"] + b["wall_s"], 3)
        True
    """
    if not parts:
        raise InputError("no estimates to merge; give at least one")
    for i, part in enumerate(parts):
        missing = [k for k in ("samples", "basis", *_SUMMED) if k not in part]
        if missing:
            raise InputError(
                f"estimate #{i + 1} lacks {', '.join(missing)}; merge only results of sample_and_rank_estimate"
            )
    samples = {part["samples"] for part in parts}
    if len(samples) != 1:
        raise InputError(
            f"the estimates sample different numbers of responses ({sorted(samples)}); merge only like with like"
        )
    merged: dict = {"samples": parts[0]["samples"]}
    for key in _SUMMED:
        total = sum(part[key] for part in parts)
        merged[key] = total if key in ("n_instructions", "tokens_out") else round(total, 3)
    merged["basis"] = " ".join(dict.fromkeys(part["basis"] for part in parts))
    return merged
