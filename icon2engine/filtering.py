"""Consistency filtering: keep the instructions where a dimension matters most.

The paper's score: consistency_{i,c} = mean over layers l of h^l(d_i) · u_c^l, the raw dot
product of the instruction's last-token state with the dimension's direction;
consistency_i = max over c, remembering the winning c*.

``method="centred"`` (the default) first subtracts each layer's mean instruction state m^l
(over the pool being scored, or ``reference_means``): mean_l (h^l − m^l) · u_c^l. Within one
dimension this is the paper's score minus a constant, so the ranking and any AUC are the same;
what changes is the max over dimensions. Each direction has its own offset mean_l m^l · u_c^l
(≈ 25 for "optimism" on SmolLM2, against a spread of ≈ 9 between instructions), so with the
raw score the dimension with the largest offset wins almost every instruction whatever it
says. ``bench/consistency_auc.py`` measures both.

"The instruction alone" is rendered as a user turn with the model's chat template and no
system prompt (the last token is then where the answer would start, as in extraction); on
SmolLM2 this ranks emotionally loaded instructions far better than the bare text does
(AUC ≈ 0.94 against ≈ 0.62, same bench). ``chat_template=False`` scores the bare text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from .chat import format_chat, with_bos
from .config import METHODS, FilterConfig, _check_keep  # the config lives in the torch-free icon2engine.config
from .directions import DirectionSet, _block_states
from .errors import ConfigError, InputError
from .models import LoadedModel
from .progress import NullProgress, Progress
from .stats import StageStats

__all__ = ["FilterConfig", "ConsistencyScores", "Selection", "score_instructions", "select_top", "METHODS"]


@dataclass
class ConsistencyScores:
    """Every instruction's score on every dimension (kept or not), for the histogram and later thresholds.

    Attributes:
        scores: ``(n_instructions, n_dimensions)`` under ``method``.
        paper_scores: ``(n_instructions, n_dimensions)`` the paper's raw score, always kept.
        layer_means: ``(n_layers, hidden)`` the mean instruction state the centred score subtracted.
    """

    instructions: list[str]
    dimensions: list[str]
    scores: np.ndarray
    paper_scores: np.ndarray
    method: str
    layers: tuple[int, ...]
    layer_means: torch.Tensor

    @property
    def best(self) -> np.ndarray:
        """``(n,)`` consistency_i = max over dimensions."""
        return self.scores.max(axis=1)

    @property
    def winner(self) -> list[str]:
        """Per instruction, the dimension c* that gave the max."""
        return [self.dimensions[j] for j in self.scores.argmax(axis=1)]

    def rows(self) -> list[dict]:
        """One small JSON row per instruction: score, winning dimension, every dimension's score."""
        best, win = self.best, self.winner
        return [
            {
                "instruction": text,
                "score": round(float(best[i]), 6),
                "dimension": win[i],
                "scores": {d: round(float(self.scores[i, j]), 6) for j, d in enumerate(self.dimensions)},
                "paper_scores": {d: round(float(self.paper_scores[i, j]), 6) for j, d in enumerate(self.dimensions)},
            }
            for i, text in enumerate(self.instructions)
        ]


@dataclass
class Selection:
    """The kept instructions, best first."""

    indices: list[int]
    instructions: list[str]
    dimensions: list[str]
    scores: list[float]
    threshold: float

    def as_rows(self) -> list[dict]:
        return [
            {"instruction": t, "dimension": d, "score": round(s, 6)}
            for t, d, s in zip(self.instructions, self.dimensions, self.scores)
        ]


def _as_list(directions: DirectionSet | Mapping[str, DirectionSet] | Sequence[DirectionSet]) -> list[DirectionSet]:
    if isinstance(directions, DirectionSet):
        return [directions]
    if isinstance(directions, Mapping):
        return list(directions.values())
    return list(directions)


def score_instructions(
    lm: LoadedModel,
    directions: DirectionSet | Mapping[str, DirectionSet] | Sequence[DirectionSet],
    instructions: Sequence[str],
    config: FilterConfig | None = None,
    *,
    reference_means: torch.Tensor | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> ConsistencyScores:
    """Score every instruction on every dimension.

    Args:
        lm: the model the directions were extracted from.
        directions: one direction set or several (one per dimension).
        instructions: the pool (synthesised or uploaded).
        config: method (``"centred"`` default, or ``"paper"``), layers, chat rendering.
        reference_means: ``(n_layers, hidden)`` mean instruction states to centre with; by
            default the pool's own (so a pool's centred scores average zero per dimension).

    Returns:
        :class:`ConsistencyScores` (both the chosen and the paper's score for every instruction).

    Example:
        >>> sc = score_instructions(lm, {"optimism": ds}, pool)
        >>> select_top(sc, keep_fraction=0.1).instructions[:3]
    """
    config = config or FilterConfig()
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="filter")
    sets = _as_list(directions)
    if not sets:
        raise InputError("no direction sets to score against; extract directions first")
    names = [ds.dimension for ds in sets]
    if len(set(names)) != len(names):
        raise InputError(f"two direction sets share a dimension name ({', '.join(names)}); give each its own")
    for ds in sets:
        if ds.n_layers != lm.n_layers or ds.hidden_size != lm.hidden_size:
            raise InputError(
                f"direction set {ds.dimension!r} has {ds.n_layers} layers × {ds.hidden_size} but the model has "
                f"{lm.n_layers} × {lm.hidden_size}; extract the vectors with this model"
            )
    items = list(instructions)
    if not items:
        raise InputError("no instructions to score; synthesise or upload some first")
    for i, text in enumerate(items):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"instruction #{i + 1} is empty; remove it")
    layers = tuple(range(lm.n_layers)) if config.layers is None else config.layers
    bad = [x for x in layers if not 0 <= x < lm.n_layers]
    if bad:
        raise ConfigError(f"layer(s) {bad} are outside the model, which has blocks 0..{lm.n_layers - 1}")
    if reference_means is not None and tuple(reference_means.shape) != (lm.n_layers, lm.hidden_size):
        raise InputError(f"reference_means must be (n_layers, hidden) = ({lm.n_layers}, {lm.hidden_size})")
    texts = [format_chat(lm.tokenizer, t) if config.chat_template else with_bos(lm.tokenizer, t) for t in items]
    U = torch.stack([ds.vectors for ds in sets]).double()[:, list(layers)]  # (n_dims, n_sel, hidden)
    proj_chunks = []
    state_sum = torch.zeros(lm.n_layers, lm.hidden_size, dtype=torch.float64)
    t0 = time.perf_counter()
    progress.start("filter", len(texts))
    try:
        chunk = max(int(config.batch_size), 256)  # keep states of one chunk only: (chunk, n_layers, hidden)
        for start in range(0, len(texts), chunk):
            states, _ = _block_states(lm, texts[start : start + chunk], int(config.batch_size), progress, stats)
            states = states.double()  # (chunk, n_layers, hidden)
            state_sum += states.sum(dim=0)
            proj_chunks.append(torch.einsum("nlh,dlh->ndl", states[:, list(layers)], U))  # (chunk, n_dims, n_sel)
    finally:
        progress.finish()
        stats.add_time(time.perf_counter() - t0, str(lm.device))
    proj = torch.cat(proj_chunks)  # (n, n_dims, n_sel)
    paper = proj.mean(dim=2)  # (n, n_dims)
    means = reference_means.double() if reference_means is not None else state_sum / len(texts)  # (n_layers, hidden)
    offset = torch.einsum("lh,dlh->dl", means[list(layers)], U).mean(dim=1)  # (n_dims,)
    scores = paper - offset[None, :] if config.method == "centred" else paper
    return ConsistencyScores(
        instructions=items,
        dimensions=names,
        scores=scores.numpy(),
        paper_scores=paper.numpy(),
        method=config.method,
        layers=layers,
        layer_means=means.float(),
    )


def select_top(
    scores: ConsistencyScores, keep_fraction: float | None = None, threshold: float | None = None
) -> Selection:
    """Keep the top ``keep_fraction`` of instructions (round(n · fraction) of them, at least one) or
    every instruction scoring at least ``threshold``; best first, ties in input order. Moving the
    threshold needs no recomputation.

    Example:
        >>> sel = select_top(sc, keep_fraction=0.1)
        >>> len(sel.indices) == round(0.1 * len(sc.instructions))
        True
    """
    _check_keep(keep_fraction, threshold)
    best = scores.best
    order = sorted(range(len(best)), key=lambda i: (-best[i], i))
    if keep_fraction is not None:
        k = max(1, min(len(order), int(round(keep_fraction * len(order)))))
        chosen = order[:k]
        cut = float(best[chosen[-1]])
    else:
        chosen = [i for i in order if best[i] >= threshold]
        cut = float(threshold)
    win = scores.winner
    return Selection(
        indices=chosen,
        instructions=[scores.instructions[i] for i in chosen],
        dimensions=[win[i] for i in chosen],
        scores=[float(best[i]) for i in chosen],
        threshold=cut,
    )
