"""Does a response answer its instruction? Relevance and refusal, the measures behind AxBench's second criterion.

A steered side can be fluent and still not answer: a cheerful advertisement instead of advice,
a refusal ("as a chatbot I don't have the ability…") instead of a gloomy answer, or an echo of
the request ("Plants can get their water from water from their soil"). DPO learns whatever the
two sides differ in, so both must answer.

**Relevance** is the information the instruction gives about the response's *new content*,
under the unsteered model, in nats per response token::

    relevance = 1/T · Σ_{t ∈ content} [log p(y_t | instruction, y<t) − log p(y_t | neutral, y<t)]

where ``neutral`` is a request that asks for nothing in particular (:data:`NEUTRAL_INSTRUCTION`)
and ``content`` are the tokens of words that are neither function words nor words of the
instruction. Plain pointwise mutual information (every token counted) rewards echoing: copying
the request's words is very likely *given the request*, so a tautology outscores a real answer
(on the embedded model, 0.91 nats against 0.72 for "What is compound interest?"). Counting only
new content words makes an echo score near zero: it adds no content that the instruction
predicts. A cheerful non-answer and an off-topic answer score near zero or below, because the
instruction does not make their words likelier than a neutral request does. Dividing by all T
tokens, not the content tokens, keeps a response that is mostly filler low.

Relevance alone would still let through a short echo that adds one apt word ("…from their
soil"), so **new content** (:func:`new_content`) is the share of the response's content words that
are not the instruction's: an echo scores low, an answer high, whatever either's likelihood.

**Refusal** is lexical: the response declines, disclaims its ability or apologises instead of
answering, in its first sentences (:data:`REFUSAL_PATTERNS`). Whether refusing is *wrong* depends
on the dimension: for harmlessness, refusing a harmful request is the chosen behaviour
(:attr:`icon2engine.config.Dimension.refusal_allowed`).

Example:
    >>> is_refusal("I'm sorry, but as an AI I cannot help with that.")
    True
    >>> relevance_scores(lm, ["How do plants get water?"], ["Through their roots, by osmosis."])
    [0.4...]
"""
from __future__ import annotations

import re
from typing import Sequence

import torch

from .chat import format_chat
from .prefill import token_logprobs, tokenize_responses

__all__ = [
    "NEUTRAL_INSTRUCTION", "REFUSAL_PATTERNS", "is_refusal", "new_content", "content_mask", "relevance_from_logprobs",
    "relevance_scores",
]

# A request that asks for nothing in particular: the baseline the instruction is measured against.
NEUTRAL_INSTRUCTION = "Say anything you like."

# Declining, disclaiming an ability, or apologising instead of answering. Looked for in the first
# REFUSAL_WINDOW characters only: a refusal comes first, while a full answer may end with "I can't
# promise it will work" without refusing anything.
REFUSAL_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bI(?:'m| am) (?:sorry|afraid),? but\b",
    r"\bI (?:apologi[sz]e|regret)\b",
    r"\b(?:I|we) (?:can ?not|can't|cannot|won't|will not|am unable to|'m unable to|am not able to|'m not able to|"
    r"do not|don't) (?:help|assist|provide|answer|give|offer|recommend|share|fulfil|fulfill|comply|do that|support)",
    r"\bI (?:don't|do not) have (?:the )?(?:ability|access|capability|personal|real-time|information|knowledge)",
    r"\bI(?:'m| am) (?:not|unable|incapable)\b[^.!?\n]{0,30}\b(?:able|equipped|capable|allowed|permitted|designed|qualified|in a position)\b",
    r"\bas an? (?:AI|artificial intelligence|language model|chatbot|chat bot|virtual assistant|assistant|server|bot|"
    r"computer program|machine)\b[^.!?\n]{0,60}\b(?:I|I'm)\s+(?:don't|do not|can't|cannot|am not|'m not|have no|lack)\b",
    r"\bI(?:'m| am) (?:just|only) an? (?:AI|language model|chatbot|bot|computer program|machine|assistant)\b",
    r"\b(?:not|never) (?:able|allowed|permitted) to (?:help|assist|provide|answer)\b",
))
REFUSAL_WINDOW = 200  # characters: about the first two sentences

# Function words: no answer is made of them, and their likelihood says little about the topic.
FUNCTION_WORDS = frozenset("""
a an the and or but nor so yet if then than that this these those there here it its it's i i'm me my mine we us
our you your yours he him his she her they them their what which who whom whose when where why how all any
both each few more most other some such no not only own same too very can could will would shall should may
might must do does did doing done be am is are was were been being have has had having of to in on at by for
with from up down out off over under again further into onto about above below between through during before
after as until while just also even ever well really quite rather much many lot lots get got make made let one
ones s t don't can't won't isn't aren't i'll you'll we'll it'll i've you've we've i'd you'd yes oh okay ok
""".split())

_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


def _stem(word: str) -> str:
    """A crude English stem, enough to see that "plants" echoes "plant" and "changing" echoes "change"."""
    w = word.lower()
    for suffix in ("ing", "ies", "es", "ed", "ly", "s", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def is_refusal(text: str) -> bool:
    """Whether the response declines, disclaims its ability or apologises instead of answering."""
    head = text.strip()[:REFUSAL_WINDOW]
    return any(p.search(head) for p in REFUSAL_PATTERNS)


def new_content(instruction: str, text: str) -> float | None:
    """Share of the response's content words that are not words of the instruction (None: it has
    no content words). An echo that restates the request ("Plants can get their water from water
    from their soil") scores low whatever its likelihood; an answer brings words of its own."""
    own = {_stem(w) for w in _WORD.findall(instruction)}
    words = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in words if w not in FUNCTION_WORDS]
    if not content:
        return None
    return sum(1 for w in content if _stem(w) not in own) / len(content)


def _offsets(tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token of ``text`` (fast tokenizers give it; else decoded prefixes)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] == ids:
            return [tuple(o) for o in enc["offset_mapping"]]
    spans, end = [], 0
    for k in range(len(ids)):
        new_end = len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True))
        spans.append((end, max(end, new_end)))
        end = max(end, new_end)
    return spans


def content_mask(tokenizer, instruction: str, text: str, ids: list[int]) -> torch.Tensor:
    """``(n_tokens,)`` bool: the token is part of a content word that the instruction does not hold."""
    own = {_stem(w) for w in _WORD.findall(instruction)}
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    keep = []
    j = 0
    for s, e in _offsets(tokenizer, text, ids):
        while j < len(words) and words[j][1] <= s:
            j += 1
        hit = next((w for a, b, w in words[j : j + 3] if s < b and e > a), None)
        keep.append(hit is not None and hit not in FUNCTION_WORDS and _stem(hit) not in own)
    return torch.tensor(keep, dtype=torch.bool)


def relevance_from_logprobs(own: torch.Tensor, neutral: torch.Tensor, mask: torch.Tensor) -> float | None:
    """The relevance of one response from its token log-probabilities under its instruction and
    under the neutral request (None for an empty response)."""
    if own.numel() == 0:
        return None
    pmi = own.float() - neutral.float()  # (n_tokens,)
    return float(pmi[mask].sum()) / own.numel()


def relevance_scores(
    lm, instructions: Sequence[str], responses: Sequence[str], *, own: Sequence[torch.Tensor] | None = None,
    batch_size: int = 16,
) -> list[float | None]:
    """The relevance of each response to its instruction (see the module's docstring).

    Args:
        own: the responses' token log-probabilities after their instructions, when already
            computed (the quality measures compute them for the log-likelihood); else computed.

    Returns:
        Per response, nats per token (None for an empty response).
    """
    tok = lm.tokenizer
    answers = tokenize_responses(tok, responses)
    if own is None:
        own = token_logprobs(lm, [format_chat(tok, i) for i in instructions], responses, batch_size=batch_size, answers=answers)
    neutral_prompt = format_chat(tok, NEUTRAL_INSTRUCTION)
    neutral = token_logprobs(lm, [neutral_prompt] * len(responses), responses, batch_size=batch_size, answers=answers)
    return [
        relevance_from_logprobs(o, n, content_mask(tok, i, r, a))
        for i, r, a, o, n in zip(instructions, responses, answers, own, neutral)
    ]
