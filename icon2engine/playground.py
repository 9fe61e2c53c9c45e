"""Steering playground: one instruction answered unsteered, steered up and steered down, side by side."""
from __future__ import annotations

import math
from typing import Callable, Sequence

from .config import MAX_ABS_GAMMA, GenerateConfig
from .directions import DirectionSet
from .errors import ConfigError, InputError
from .generation import generate_rows, resolve_layers
from .models import LoadedModel
from .stats import StageStats

__all__ = ["SIDES", "compare_steering"]

SIDES = ("unsteered", "plus", "minus")  # row order of the batch: coefficients 0, +γ, −γ


def compare_steering(
    lm: LoadedModel,
    direction: DirectionSet,
    instruction: str,
    *,
    gamma: float,
    layers: Sequence[int] | None = None,
    max_new_tokens: int = 96,
    on_update: Callable[[dict[str, str]], None] | None = None,
    stats: StageStats | None = None,
) -> dict[str, str]:
    """Answer ``instruction`` three times in one greedy batch: unsteered, at +γ and at −γ.

    Args:
        lm: the model ``direction`` was extracted from.
        direction: the dimension to steer along.
        instruction: a plain user message.
        gamma: steering strength in (0, 1], a fraction of each layer's mean hidden-state norm
            (as everywhere in the engine; ≈0.05 is subtle on SmolLM2, ≥0.2 strains the text).
        layers: decoder blocks to steer; None = the middle third (:func:`default_layers`).
        max_new_tokens: length limit of each response.
        on_update: called after every decoding step with ``{"unsteered"|"plus"|"minus": text so
            far}`` for the responses still being written.
        stats: optional :class:`StageStats` that accumulates tokens and wall time.

    Returns:
        ``{"unsteered": ..., "plus": ..., "minus": ...}``, each response stripped.

    Example:
        >>> compare_steering(lm, ds, "Describe a rainy Monday.", gamma=0.1)["plus"]
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError("the instruction is empty; write an instruction to compare the steered answers on")
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise ConfigError(f"gamma must be a number, got {gamma!r}") from None
    if not math.isfinite(g) or not 0.0 < g <= MAX_ABS_GAMMA:
        raise ConfigError(
            f"gamma={gamma} is out of range; it is a fraction of the layer norm, use a value in (0, {MAX_ABS_GAMMA}] "
            "(0.05 is subtle, 0.2 is strong)"
        )
    if layers is not None and not list(layers):
        raise ConfigError("layers is empty; give at least one decoder block index or leave it unset (middle third)")
    band = resolve_layers(layers, lm.n_layers)
    config = GenerateConfig(max_new_tokens=max_new_tokens, batch_size=len(SIDES))

    def forward(update: dict[int, str]) -> None:
        on_update({SIDES[row]: text for row, text in update.items()})

    gen = generate_rows(
        lm,
        [instruction] * len(SIDES),
        config,
        coefficients=[0.0, g, -g],
        directions=[direction],
        layers=band,
        stats=stats,
        on_step=forward if on_update is not None else None,
    )
    return dict(zip(SIDES, gen.texts))
