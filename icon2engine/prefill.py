"""The shared prefill: run what a batch's rows have in common once, and score responses by prefill.

Three stages run prompts that repeat: generation (a pair's chosen and rejected rows share their
prompt), scoring (an instruction's answers share it; every answer shares the relevance measure's
neutral prompt) and extraction (a batch shares its system prompt). This module holds the pieces
they share, so none reaches into another:

- :func:`cache_of`: a forward's KV cache and the keyword the next forward takes it by;
- :func:`shared_prefix_cache`: the KV cache of each row's prompt but its last token, computed
  once per distinct prompt (generation and scoring);
- :func:`token_logprobs`: the log-probability of every token of each response after its prompt,
  unsteered, each distinct prompt run once per batch (one forward per response: prefill only).

Example:
    >>> lp = token_logprobs(lm, ["<prompt A>", "<prompt A>"], ["Yes.", "No."])
    >>> [float(x.mean()) for x in lp]
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["cache_of", "shared_prefix_cache", "token_logprobs", "tokenize_responses"]


def cache_of(out) -> tuple[str, object]:
    """The model output's KV cache and the keyword a forward takes it by (``cache`` since
    transformers renamed it, ``past_key_values`` before)."""
    renamed = "cache" in getattr(out, "__dataclass_fields__", {})
    return ("cache", out.cache) if renamed else ("past_key_values", out.past_key_values)


@torch.inference_mode()
def shared_prefix_cache(lm, enc: dict, prompts: Sequence[str]) -> dict:
    """The KV cache of each row's prompt but its last token, computed once per distinct prompt.

    Returns ``generate``'s keyword for it (``cache``; ``past_key_values`` before transformers
    renamed it), or ``{}`` when no two rows share a prompt. Positions follow the left padding as
    ``generate`` computes them, so the cached keys are the ones it would have made.
    """
    distinct = list(dict.fromkeys(prompts))
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if len(distinct) == len(prompts) or ids.shape[1] < 2:
        return {}
    first = torch.tensor([prompts.index(p) for p in distinct], device=ids.device)
    prefix_mask = mask[first, :-1]
    positions = prefix_mask.long().cumsum(-1) - 1
    positions.masked_fill_(prefix_mask == 0, 1)
    out = lm.base_model(input_ids=ids[first, :-1], attention_mask=prefix_mask, position_ids=positions, use_cache=True)
    keyword, cache = cache_of(out)
    cache.reorder_cache(torch.tensor([distinct.index(p) for p in prompts], device=ids.device))
    return {keyword: cache}


def tokenize_responses(tokenizer, responses: Sequence[str]) -> list[list[int]]:
    """Each response's token ids as scoring sees them (an empty or blank response: no tokens)."""
    return [tokenizer(r, add_special_tokens=False)["input_ids"] if r.strip() else [] for r in responses]


@torch.inference_mode()
def token_logprobs(
    lm, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 16,
    answers: Sequence[list[int]] | None = None,
) -> list[torch.Tensor]:
    """Log-probability of each response token after its (already formatted) prompt, unsteered.

    Rows with the same prompt are put side by side; a batch that repeats a prompt runs it once
    (:func:`shared_prefix_cache`), and each row then runs its last prompt token and its response.

    Args:
        prompts: per row, the prompt text exactly as the model sees it (chat template applied).
        responses: per row, the response text.
        answers: the responses' token ids when already known (:func:`tokenize_responses`).

    Returns:
        Per row, a float tensor ``(n_tokens,)`` (empty for an empty response), in the order given.
    """
    tok = lm.tokenizer
    ids_of: dict[str, list[int]] = {}
    for p in prompts:
        if p not in ids_of:
            ids_of[p] = tok(p, add_special_tokens=False)["input_ids"]
    answers = list(answers) if answers is not None else tokenize_responses(tok, responses)
    out: list[torch.Tensor] = [torch.zeros(0) for _ in answers]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    groups: dict[str, list[int]] = {}  # the rows of each prompt side by side, so a batch holds them together
    for i, p in enumerate(prompts):
        if answers[i]:
            groups.setdefault(p, []).append(i)
    order = [i for rows in groups.values() for i in rows]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        keys = [prompts[i] for i in idx]
        batch = (lm, [ids_of[k] for k in keys], [answers[i] for i in idx], pad)
        shared = len(set(keys)) < len(keys) and all(len(ids_of[k]) > 1 for k in keys)
        for i, values in zip(idx, _logprobs_shared(*batch, keys) if shared else _logprobs_full(*batch)):
            out[i] = values
    return out


def _logprobs_full(lm, prompts: list[list[int]], answers: list[list[int]], pad: int) -> list[torch.Tensor]:
    """One forward of each left-padded prompt + response; the log-probability of each response token."""
    seqs = [p + a for p, a in zip(prompts, answers)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (batch, seq), left-padded
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s)
        mask[r, width - len(s) :] = 1
    # Left padding puts every response at the end, so only the last `keep` positions need logits:
    # the vocabulary projection over the prompts would cost as much as the generation itself.
    keep = min(width, max(len(a) for a in answers) + 1)
    inputs = dict(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), use_cache=False)
    try:
        logits = lm.model(**inputs, logits_to_keep=keep).logits[:, -keep:]  # (batch, keep, vocab)
    except TypeError:  # a model class without logits_to_keep
        logits = lm.model(**inputs).logits[:, -keep:]
    logp = logits[:, :-1].float().log_softmax(dim=-1)  # (batch, keep-1, vocab): position t predicts t+1
    target = logp.gather(-1, ids[:, width - keep + 1 :, None].to(lm.device)).squeeze(-1).cpu()  # (batch, keep-1)
    return [target[r, -len(a) :].clone() for r, a in enumerate(answers)]


def _logprobs_shared(lm, prompts: list[list[int]], answers: list[list[int]], pad: int, keys: list[str]) -> list[torch.Tensor]:
    """As :func:`_logprobs_full`, running each distinct prompt once.

    The prompts but their last token go through the decoder blocks once per distinct prompt
    (:func:`shared_prefix_cache`); each row then runs its last prompt token and its response,
    right-padded, on that cache.
    """
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)  # (batch, width), left-padded
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=lm.device)
    cached = shared_prefix_cache(lm, {"input_ids": ids, "attention_mask": mask}, keys)  # over width - 1 positions
    tails = [p[-1:] + a for p, a in zip(prompts, answers)]  # last prompt token, then the response
    tw = max(len(t) for t in tails)
    tail_ids = torch.tensor([t + [pad] * (tw - len(t)) for t in tails], device=lm.device)  # (batch, tw), right-padded
    tail_mask = torch.tensor([[1] * len(t) + [0] * (tw - len(t)) for t in tails], device=lm.device)
    tail_pos = torch.tensor([[len(p) - 1 + j for j in range(tw)] for p in prompts], device=lm.device)
    logits = lm.model(
        input_ids=tail_ids, attention_mask=torch.cat([mask[:, :-1], tail_mask], dim=1), position_ids=tail_pos,
        use_cache=True, **cached,
    ).logits  # (batch, tw, vocab)
    logp = logits[:, :-1].float().log_softmax(dim=-1)  # position t predicts t+1
    target = logp.gather(-1, tail_ids[:, 1:, None]).squeeze(-1).cpu()  # (batch, tw-1)
    return [target[r, : len(a)].clone() for r, a in enumerate(answers)]
