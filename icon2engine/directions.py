"""Extract Icon² direction vectors: the first principal component of contrastive differences, per layer."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .chat import format_chat
from .config import Dimension, ExtractConfig
from .errors import InputError
from .hooks import record_block_outputs
from .models import LoadedModel
from .prefill import cache_of
from .progress import NullProgress, Progress
from .stats import StageStats

__all__ = ["DirectionSet", "direction_cosines", "extract_directions", "first_component"]


@dataclass
class DirectionSet:
    """Unit direction vectors for one dimension, one per decoder block, with diagnostics.

    Attributes:
        vectors: ``(n_layers, hidden)`` unit vectors, sign-fixed so the mean difference
            (positive minus negative) projects positive.
        mean_norm: per layer, mean ‖h‖ over real prompt tokens (γ is a fraction of this).
        explained_variance: per layer, share of variance the first component explains.
        separation_accuracy: per layer, on held-out pairs, how often proj(h+) > proj(h−) (NaN
            when there were too few pairs to hold any out).
        mean_diff_cosine: per layer, cosine between the vector and the mean difference.
    """

    dimension: str
    vectors: torch.Tensor
    mean_norm: list[float]
    explained_variance: list[float]
    separation_accuracy: list[float]
    mean_diff_cosine: list[float]
    model_name: str = ""
    model_revision: str = ""
    prompts_hash: str = ""
    n_pairs: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.vectors.shape[1])

    def diagnostics(self) -> list[dict[str, float | int | None]]:
        """Per-layer diagnostics as small JSON rows (NaN becomes None)."""
        def clean(x: float) -> float | None:
            return None if x is None or math.isnan(x) else round(float(x), 6)

        return [
            {
                "layer": i,
                "explained_variance": clean(self.explained_variance[i]),
                "separation_accuracy": clean(self.separation_accuracy[i]),
                "mean_norm": clean(self.mean_norm[i]),
                "mean_diff_cosine": clean(self.mean_diff_cosine[i]),
            }
            for i in range(self.n_layers)
        ]


def first_component(diffs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """First principal component of ``diffs`` (n, hidden), sign-fixed towards their mean.

    Centred PCA on differences that all point the same way would subtract the very axis we
    want (the mean). Flipping the sign of a random half first (as RepE does) puts the mean
    near zero while the contrast axis keeps all its variance.
    """
    from sklearn.decomposition import PCA

    mean = diffs.mean(axis=0)
    if diffs.shape[0] < 2:
        norm = np.linalg.norm(mean)
        return (mean / norm if norm > 0 else mean), 1.0
    signs = np.ones(diffs.shape[0])
    signs[rng.permutation(diffs.shape[0])[: diffs.shape[0] // 2]] = -1.0
    pca = PCA(n_components=1, svd_solver="full").fit(diffs * signs[:, None])
    u = pca.components_[0].astype(np.float64)
    u /= np.linalg.norm(u) or 1.0
    if float(u @ mean) < 0:
        u = -u
    return u, float(pca.explained_variance_ratio_[0])


def mean_direction(diffs: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
    """The unit mean difference (AxBench's DiffMean) and the share of the differences' energy
    along it; ``rng`` is unused (the signature matches :func:`first_component`)."""
    mean = diffs.mean(axis=0)  # (hidden,)
    u = mean / (np.linalg.norm(mean) or 1.0)
    total = float((diffs**2).sum()) or 1.0
    return u, float(((diffs @ u) ** 2).sum() / total)


def _last_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    # Works for either padding side: the last position whose mask is 1.
    seq = attention_mask.shape[1]
    return seq - 1 - attention_mask.flip(dims=[1]).argmax(dim=1)  # (batch,)


MIN_SHARED_PREFIX = 8  # tokens; below this a shared prefix saves less than it costs


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    first, n = seqs[0], min(len(x) for x in seqs)
    for i in range(n):
        if any(x[i] != first[i] for x in seqs):
            return i
    return n


def _states_plain(lm: LoadedModel, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One forward of left-padded prompts: (last-token states (batch, n_layers, hidden), norm sums
    per block, tokens counted); norms skip each sequence's first real token (attention sinks)."""
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids], device=lm.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=lm.device)
    first = mask.argmax(dim=1)
    real = mask.bool().clone()
    real[torch.arange(real.shape[0]), first] = False
    rows = torch.arange(mask.shape[0], device=mask.device)

    def reduce(hidden: torch.Tensor):  # hidden: (batch, seq, hidden)
        h = hidden.float()
        return h[rows, -1].cpu(), float(h.norm(dim=-1)[real].sum())

    with record_block_outputs(lm.layers, reduce=reduce) as rec:
        lm.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False)
    states = torch.stack([rec[i][0] for i in range(lm.n_layers)], dim=1)
    return states, torch.tensor([rec[i][1] for i in range(lm.n_layers)], dtype=torch.float64), int(real.sum())


def _states_shared(lm: LoadedModel, ids: list[list[int]], shared: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The same as :func:`_states_plain` for prompts whose first ``shared`` tokens are equal: those
    run once and their KV cache serves every prompt; the rest run right-padded after it. The
    prefix's token norms count once per prompt, as if each had run it."""
    n = len(ids)
    prefix = torch.tensor([ids[0][:shared]], device=lm.device)

    def prefix_norms(hidden: torch.Tensor):
        return float(hidden[0, 1:].float().norm(dim=-1).sum())  # the first token is an attention sink

    with record_block_outputs(lm.layers, reduce=prefix_norms) as rec:
        out = lm.base_model(input_ids=prefix, use_cache=True)
    prefix_sum = torch.tensor([rec[i] for i in range(lm.n_layers)], dtype=torch.float64) * n
    keyword, cache = cache_of(out)
    cache.reorder_cache(torch.zeros(n, dtype=torch.long, device=lm.device))  # one copy per prompt
    rest = [x[shared:] for x in ids]
    width = max(len(x) for x in rest)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([list(x) + [pad] * (width - len(x)) for x in rest], device=lm.device)
    tail = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rest], device=lm.device)
    mask = torch.cat([torch.ones(n, shared, dtype=tail.dtype, device=lm.device), tail], dim=1)
    positions = (shared + torch.arange(width, device=lm.device)).expand(n, width)
    last = torch.tensor([len(x) - 1 for x in rest], device=lm.device)
    rows = torch.arange(n, device=lm.device)
    real = tail.bool()

    def reduce(hidden: torch.Tensor):  # (batch, rest, hidden)
        h = hidden.float()
        return h[rows, last].cpu(), float(h.norm(dim=-1)[real].sum())

    with record_block_outputs(lm.layers, reduce=reduce) as rec:
        lm.base_model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **{keyword: cache})
    states = torch.stack([rec[i][0] for i in range(lm.n_layers)], dim=1)
    sums = prefix_sum + torch.tensor([rec[i][1] for i in range(lm.n_layers)], dtype=torch.float64)
    return states, sums, n * (shared - 1) + int(real.sum())


def _batches(ids: list[list[int]], batch_size: int, share_prefix: bool) -> list[list[int]]:
    """Batches of indices: in the given order, or (sharing) in token order, a batch closing early
    where the next prompt would shorten the beginning the batch shares by more than a tenth (so
    the positive and the negative system prompt's prompts are not mixed)."""
    if not share_prefix:
        return [list(range(start, min(start + batch_size, len(ids)))) for start in range(0, len(ids), batch_size)]
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    out: list[list[int]] = []
    batch: list[int] = []
    shared = 0
    for i in order:
        if batch:
            with_next = _common_prefix([ids[batch[0]], ids[i]])
            if len(batch) >= batch_size or (len(batch) > 1 and with_next < 0.9 * shared):
                out.append(batch)
                batch, shared = [], 0
            else:
                shared = with_next if len(batch) == 1 else min(shared, with_next)
        batch.append(i)
    if batch:
        out.append(batch)
    return out


@torch.inference_mode()
def _block_states(
    lm: LoadedModel, texts: Sequence[str], batch_size: int, progress: Progress, stats: StageStats,
    share_prefix: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-real-token output of every block for each text, and mean token norm per block.

    With ``share_prefix``, texts are batched in token order, so a batch holds prompts that begin
    alike (one system prompt, one chat template) and runs that beginning once; otherwise batches
    follow the given order and every prompt runs whole. The transformer runs without its LM head.

    Returns ``(states (n_texts, n_layers, hidden), mean_norm (n_layers,))``.
    """
    tok = lm.tokenizer
    limit = lm.max_positions
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    for x in ids:
        if limit is not None and len(x) > limit:
            raise InputError(
                f"a prompt is {len(x)} tokens long but the model's context is {limit}; "
                "shorten the instruction or the system prompt"
            )
    states = torch.empty(len(ids), lm.n_layers, lm.hidden_size)
    norm_sum = torch.zeros(lm.n_layers, dtype=torch.float64)
    norm_count = 0
    for batch in _batches(ids, batch_size, share_prefix):
        seqs = [ids[i] for i in batch]
        shared = min(_common_prefix(seqs), min(len(x) for x in seqs) - 1) if share_prefix and len(seqs) > 1 else 0
        if shared >= MIN_SHARED_PREFIX:
            got, sums, count = _states_shared(lm, seqs, shared)
        else:
            got, sums, count = _states_plain(lm, seqs)
        states[batch] = got.to(states.dtype)
        norm_sum += sums
        norm_count += count
        stats.tokens_in += sum(len(x) for x in seqs)
        progress.advance(len(batch))
    return states, (norm_sum / max(norm_count, 1)).float()


def extract_directions(
    lm: LoadedModel,
    dimension: Dimension,
    instructions: Sequence[str] | None = None,
    config: ExtractConfig | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> DirectionSet:
    """Extract one unit direction per decoder block for ``dimension``.

    For every prompt pair (P+, P−) and feature instruction d: v = h(P+ ⊕ d) − h(P− ⊕ d) at the
    last real token of each block's output; u = first principal component of the v's.

    Args:
        lm: a loaded model.
        dimension: the contrast; its ``feature_instructions`` are used when ``instructions`` is None.
        instructions: feature instructions (the paper uses 1,024).
        config: batch size, hold-out share, seed.
        progress: receives one unit per prompt processed.
        stats: optional :class:`StageStats` that accumulates tokens and wall time.

    Example:
        >>> ds = extract_directions(lm, presets.get("optimism"), default_feature_instructions())
        >>> ds.vectors.shape
        torch.Size([30, 576])
    """
    config = config or ExtractConfig()
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="extract")
    items = [s.strip() for s in (instructions if instructions is not None else dimension.feature_instructions) if s and s.strip()]
    if not items:
        raise InputError(
            f"no feature instructions for dimension {dimension.name!r}; give a list of instructions "
            "(or use icon2engine.presets.default_feature_instructions())"
        )
    n_pairs = len(items) * len(dimension.prompt_pairs)
    if n_pairs < 2:
        raise InputError("extraction needs at least 2 contrastive pairs; add instructions or prompt pairs")
    texts: list[str] = []
    for pair in dimension.prompt_pairs:
        for d in items:
            texts.append(format_chat(lm.tokenizer, d, pair.positive))
            texts.append(format_chat(lm.tokenizer, d, pair.negative))
    t0 = time.perf_counter()
    progress.start("extract", len(texts))
    try:
        states, mean_norm = _block_states(lm, texts, config.batch_size, progress, stats, share_prefix=config.share_prefix)
    finally:
        progress.finish()
    stats.add_time(time.perf_counter() - t0, str(lm.device))
    diffs = (states[0::2] - states[1::2]).double().numpy()  # (n_pairs, n_layers, hidden)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(n_pairs)
    n_hold = int(round(n_pairs * config.holdout_fraction))
    hold, train = order[:n_hold], order[n_hold:]
    if len(train) < 2:
        hold, train = order[:0], order
    vectors, evr, acc, cos = [], [], [], []
    for layer in range(lm.n_layers):
        d = diffs[:, layer, :]
        component = first_component if config.method == "pca" else mean_direction
        u, ratio = component(d, np.random.default_rng(config.seed + layer))
        if len(hold):
            u_train, _ = component(d[train], np.random.default_rng(config.seed + layer))
            acc.append(float(np.mean(d[hold] @ u_train > 0)))
        else:
            acc.append(float("nan"))
        mean = d.mean(axis=0)
        cos.append(float(u @ mean / (np.linalg.norm(mean) or 1.0)))
        vectors.append(u)
        evr.append(ratio)
    return DirectionSet(
        dimension=dimension.name,
        vectors=torch.tensor(np.stack(vectors), dtype=torch.float32),
        mean_norm=[float(x) for x in mean_norm],
        explained_variance=evr,
        separation_accuracy=acc,
        mean_diff_cosine=cos,
        model_name=lm.name,
        model_revision=lm.revision,
        prompts_hash=dimension.prompts_hash,
        n_pairs=n_pairs,
    )


def direction_cosines(sets: Sequence[DirectionSet]) -> list[list[list[float]]]:
    """Per layer, the cosine similarity of every pair of direction sets (how alike two dimensions are).

    Args:
        sets: direction sets of one model (equal number of layers and hidden size).

    Returns:
        ``out[layer][i][j]``: cosine between set i's and set j's vector at that layer, rounded to
        6 places (small JSON: an ``n_layers × n × n`` nested list).

    Example:
        >>> direction_cosines([optimism, formality])[12]  # layer 12
        [[1.0, 0.213457], [0.213457, 1.0]]
    """
    if not sets:
        raise InputError("no direction sets to compare; give at least one")
    first = sets[0]
    for ds in sets[1:]:
        if (ds.n_layers, ds.hidden_size) != (first.n_layers, first.hidden_size):
            raise InputError(
                f"direction set {ds.dimension!r} has {ds.n_layers} layers × {ds.hidden_size} but "
                f"{first.dimension!r} has {first.n_layers} × {first.hidden_size}; "
                "compare only sets extracted from the same model"
            )
    vecs = torch.stack([ds.vectors for ds in sets]).double()  # (n_sets, n_layers, hidden)
    unit = vecs / vecs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = torch.einsum("ilh,jlh->lij", unit, unit)  # (n_layers, n_sets, n_sets)
    return [[[round(float(x), 6) for x in row] for row in layer] for layer in cos.tolist()]
