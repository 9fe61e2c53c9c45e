"""Decoding safeguards that apply to every row alike (chosen, rejected and unsteered).

``transformers``' own ``no_repeat_ngram_size`` rebuilds every row's n-gram table in Python at
every step, over the prompt too: on a CPU it made pair generation three times slower, and it
forbade an answer to reuse three words of its own question. :class:`NoRepeatNGram` does the
same ban with a few tensor operations per step, over the response only.
"""
from __future__ import annotations

import torch

__all__ = ["NoRepeatNGram", "ngram_bans"]


class NoRepeatNGram:
    """A logits processor: a token that would complete an n-gram the response already contains gets −inf.

    Args:
        n: the n-gram size (3: no three-token sequence occurs twice in a response).
        start: where the responses begin in ``input_ids`` (the padded prompt width).

    Example:
        >>> from transformers import LogitsProcessorList
        >>> lm.model.generate(**enc, logits_processor=LogitsProcessorList([NoRepeatNGram(3, enc["input_ids"].shape[1])]))
    """

    def __init__(self, n: int, start: int) -> None:
        if n < 2:
            raise ValueError(f"n must be at least 2, got {n}")
        self.n = int(n)
        self.start = int(start)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids = input_ids[:, self.start :]  # (batch, generated so far)
        k = self.n - 1
        if ids.shape[1] < self.n:
            return scores
        prefix = ids[:, -k:]  # (batch, n-1): the n-gram the next token would complete
        width = ids.shape[1] - k  # earlier windows of n-1 tokens that have a follower
        match = torch.ones((ids.shape[0], width), dtype=torch.bool, device=ids.device)
        for j in range(k):
            match &= ids[:, j : j + width] == prefix[:, j : j + 1]
        followers = ids[:, k : k + width]  # (batch, width): the token after each window
        vocab = scores.shape[-1]
        banned = torch.where(match, followers, torch.full_like(followers, vocab))
        mask = torch.zeros((ids.shape[0], vocab + 1), dtype=torch.bool, device=ids.device)
        mask.scatter_(1, banned, True)
        return scores.masked_fill(mask[:, :vocab], float("-inf"))


def ngram_bans(ids, n: int) -> set[int]:
    """The tokens :class:`NoRepeatNGram` bans after the response ``ids``, for one row in plain Python
    (the vLLM backend's logits processor applies it per request)."""
    k = n - 1
    if len(ids) < n:
        return set()
    tail = tuple(ids[-k:])
    return {ids[j + k] for j in range(len(ids) - k) if tuple(ids[j : j + k]) == tail}
