"""Magpie-style self-synthesis: the model writes the user instructions itself.

The model sees its chat template only up to where a user message begins (see
:mod:`icon2engine.pre_query`) and samples, at temperature 1.0 and top_p 1.0 (the paper's
setting), until it closes the user turn. Every sample then goes through the cleaning rules of
:mod:`icon2engine.cleaning`; sampling continues batch after batch until ``n_target``
instructions pass or ``max_attempts`` samples have been drawn.

All rows of a batch share one prompt, so the prompt is run once and its cache copied to every
row, and rows that have closed their turn leave the batch: the cost follows the tokens
actually written, not the longest sample times the batch size.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch

from .chat import special_token_strings
from .cleaning import CleaningReport, CleaningRules, Deduplicator, clean_instructions
from .config import SynthesisConfig  # the config lives in the torch-free icon2engine.config
from .errors import ConfigError, InputError, SynthesisShortfall
from .generation import stop_token_ids
from .models import LoadedModel
from .pre_query import PreQuery, derive_pre_query
from .progress import NullProgress, Progress
from .stats import StageStats

__all__ = ["SynthesisConfig", "SynthesisReport", "SynthesisResult", "RawSample", "sample_user_turns", "synthesize"]


@dataclass(frozen=True)
class RawSample:
    """One sampled user turn: its text (template tokens stripped), how it ended, its length in tokens."""

    text: str
    ending: str  # "end": closed the user turn; "length": hit max_new_tokens; "special": another special token
    tokens: int


@dataclass
class SynthesisReport:
    """What synthesis did: attempts, kept, drops per reason, acceptance rate, time."""

    n_target: int
    attempts: int = 0
    cleaning: CleaningReport = field(default_factory=CleaningReport)
    reached_target: bool = False
    wall_s: float = 0.0
    tokens_out: int = 0
    pre_query: str = ""

    @property
    def kept(self) -> int:
        return min(self.cleaning.kept, self.n_target)

    @property
    def acceptance_rate(self) -> float:
        """Share of drawn samples that passed the cleaning rules."""
        return self.cleaning.acceptance_rate

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in self.cleaning.as_dict()["dropped"].items()) or "none"
        return (
            f"kept {self.kept} of {self.n_target} wanted from {self.attempts} samples "
            f"(acceptance {self.acceptance_rate:.0%}); dropped: {drops}"
        )

    def as_dict(self) -> dict:
        return {
            "n_target": self.n_target,
            "attempts": self.attempts,
            "kept": self.kept,
            "passed": self.cleaning.kept,
            "acceptance_rate": round(self.acceptance_rate, 4),
            "reached_target": self.reached_target,
            "dropped": self.cleaning.as_dict()["dropped"],
            "examples": self.cleaning.examples,
            "wall_s": round(self.wall_s, 3),
            "tokens_out": self.tokens_out,
            "instructions_per_s": round(self.kept / self.wall_s, 3) if self.wall_s else None,
            "pre_query": self.pre_query,
        }


@dataclass
class SynthesisResult:
    instructions: list[str]
    report: SynthesisReport


def _filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, idx = logits.sort(dim=-1, descending=True)  # (rows, vocab)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cum - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)


def _cache_keyword(model: torch.nn.Module) -> str:
    # transformers 5.x renamed ``past_key_values`` to ``cache`` in forward(); accept either.
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.inference_mode()
def sample_user_turns(
    lm: LoadedModel,
    pre_query: PreQuery,
    n: int,
    *,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    stats: StageStats | None = None,
) -> list[RawSample]:
    """Sample ``n`` user turns after ``pre_query`` in one batch.

    Args:
        lm: a loaded model.
        pre_query: from :func:`~icon2engine.pre_query.derive_pre_query`.
        n: rows in the batch.
        generator: a seeded CPU ``torch.Generator`` for reproducible samples.

    Returns:
        One :class:`RawSample` per row.

    Example:
        >>> samples = sample_user_turns(lm, derive_pre_query(lm.tokenizer), 8, max_new_tokens=64)
        >>> [s.ending for s in samples]
        ['end', 'end', 'length', ...]
    """
    tok = lm.tokenizer
    prompt = tok(pre_query.text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(lm.device)  # (1, p)
    limit = lm.max_positions
    if limit is not None and prompt.shape[1] + max_new_tokens > limit:
        raise InputError(
            f"the pre-query takes {prompt.shape[1]} tokens; with max_new_tokens={max_new_tokens} that exceeds the "
            f"model's context of {limit}; lower max_new_tokens"
        )
    end_ids = set(pre_query.end_token_ids) | set(stop_token_ids(lm))
    special_ids = set(getattr(tok, "all_special_ids", []) or []) | {
        int(i) for i, t in (getattr(tok, "added_tokens_decoder", None) or {}).items() if getattr(t, "special", False)
    }
    cache_kw = _cache_keyword(lm.model)
    out = lm.model(input_ids=prompt, use_cache=True)  # the shared prompt runs once
    cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    cache.batch_repeat_interleave(n)
    logits = out.logits[:, -1].float().expand(n, -1)  # (n, vocab)
    alive = list(range(n))  # batch row -> sample index
    ids: list[list[int]] = [[] for _ in range(n)]
    ending = ["length"] * n
    stats = stats if stats is not None else StageStats(stage="synthesize")
    stats.tokens_in += int(prompt.shape[1])
    marker = pre_query.end_marker if not pre_query.end_token_ids else None
    for _step in range(max_new_tokens):
        probs = _filter_top_p(logits / temperature, top_p).softmax(dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)  # (alive,)
        keep: list[int] = []
        for row, t in enumerate(nxt.tolist()):
            s = alive[row]
            if t in end_ids:
                ending[s] = "end"
            elif t in special_ids:
                ending[s] = "special"
            else:
                ids[s].append(t)
                # A multi-token end marker (templates without special tokens) is found in the text.
                if marker is not None and marker in tok.decode(ids[s][-16:]):
                    ending[s] = "end"
                else:
                    keep.append(row)
        stats.tokens_out += len(alive)
        if not keep:
            break
        if len(keep) < len(alive):
            cache.batch_select_indices(torch.tensor(keep, device=lm.device))
            alive = [alive[r] for r in keep]
        step_ids = nxt[keep].to(lm.device)[:, None]  # (alive, 1)
        logits = lm.model(input_ids=step_ids, use_cache=True, **{cache_kw: cache}).logits[:, -1].float()
    specials = special_token_strings(tok)
    samples = []
    for s in range(n):
        text = tok.decode(ids[s], skip_special_tokens=False)
        if marker is not None and marker in text:
            text = text[: text.index(marker)]
        for sp in specials:  # special tokens the template uses never belong in an instruction
            text = text.replace(sp, " ")
        samples.append(RawSample(text=text.strip(), ending=ending[s], tokens=len(ids[s])))
    return samples


def synthesize(
    lm: LoadedModel,
    n_target: int,
    config: SynthesisConfig | None = None,
    rules: CleaningRules | None = None,
    *,
    pre_query: PreQuery | None = None,
    allow_partial: bool = False,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> SynthesisResult:
    """Sample instructions from the model until ``n_target`` pass the cleaning rules.

    Args:
        lm: an instruct model (its chat template is cut to make the pre-query).
        n_target: how many clean, distinct instructions to return.
        config: batch size, attempt limit (default 4 × n_target), sampling settings.
        rules: the cleaning rules (:class:`~icon2engine.cleaning.CleaningRules`).
        pre_query: use this instead of deriving it from the tokenizer.
        allow_partial: when attempts run out first, return what was kept (``report.reached_target``
            is False) instead of raising.
        progress: one unit per kept instruction; metrics ``attempts`` and ``acceptance``.

    Returns:
        A :class:`SynthesisResult`: exactly ``n_target`` instructions (unless partial) and a report.

    Raises:
        SynthesisShortfall: attempts ran out; the error carries the report and the kept texts.
        TemplateError: the chat template cannot be cut.

    Example:
        >>> result = synthesize(lm, 64, SynthesisConfig(max_new_tokens=48))
        >>> result.report.summary()
        'kept 64 of 64 wanted from 160 samples (acceptance 40%); dropped: truncated 51, ...'
    """
    if int(n_target) < 1:
        raise ConfigError(f"n_target must be at least 1, got {n_target}")
    config = config or SynthesisConfig()
    rules = rules or CleaningRules()
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="synthesize")
    max_attempts = int(config.max_attempts) if config.max_attempts is not None else 4 * int(n_target)
    pre_query = pre_query or derive_pre_query(lm.tokenizer, config.system_prompt, name=lm.name)
    report = SynthesisReport(n_target=int(n_target), pre_query=pre_query.text)
    dedup = Deduplicator(rules.near_duplicate_jaccard)
    kept: list[str] = []
    generator = torch.Generator().manual_seed(int(config.seed))
    t0 = time.perf_counter()
    tokens_before = stats.tokens_out
    progress.start("synthesize", int(n_target))
    try:
        while len(kept) < n_target and report.attempts < max_attempts:
            size = min(int(config.batch_size), max_attempts - report.attempts)
            samples = sample_user_turns(
                lm, pre_query, size, max_new_tokens=int(config.max_new_tokens), temperature=float(config.temperature),
                top_p=float(config.top_p), generator=generator, stats=stats,
            )
            report.attempts += size
            new, _ = clean_instructions(
                [s.text for s in samples], rules, endings=[s.ending for s in samples], dedup=dedup, report=report.cleaning
            )
            new = new[: int(n_target) - len(kept)]
            kept += new
            progress.advance(len(new), attempts=report.attempts, acceptance=round(report.acceptance_rate, 4))
    finally:
        progress.finish()
        report.wall_s = time.perf_counter() - t0
        report.tokens_out = stats.tokens_out - tokens_before
        stats.add_time(report.wall_s, str(lm.device))
    report.reached_target = len(kept) >= n_target
    if not report.reached_target and not allow_partial:
        raise SynthesisShortfall(
            f"synthesis stopped after {report.attempts} samples with only {len(kept)} of {n_target} instructions "
            f"passing the cleaning rules ({report.summary()}); raise max_attempts, loosen the rules, "
            "or upload instructions",
            report=report,
            instructions=kept,
        )
    return SynthesisResult(instructions=kept, report=report)
