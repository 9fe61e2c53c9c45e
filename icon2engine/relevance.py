"""Does a response answer its instruction? Relevance and refusal, the measures behind AxBench's second criterion.

A steered side can be fluent and still not answer: a cheerful advertisement instead of advice,
a refusal ("as a chatbot I don't have the ability…") instead of a gloomy answer, or an echo of
the request ("Plants can get their water from water from their soil"). DPO learns whatever the
two sides differ in, so both must answer.

**Relevance** asks the unsteered model how well the response points back to the instruction: the
response is read, then the instruction, and relevance is the mean log-probability per instruction
token, less the same after a neutral text (:data:`NEUTRAL_TEXT`)::

    relevance = 1/|x| · [log p(x | y ⊕ CUE) − log p(x | NEUTRAL_TEXT ⊕ CUE)]

The instruction's tokens are the same for every answer to it, so the figures of an
instruction's unsteered, chosen and rejected answers compare directly. "…root hairs absorb it by
osmosis…" points to "How do plants get water?"; a cheerful non-answer's "fantastic, magic,
adventure" points nowhere. An echo that restates the request points back to it perfectly, which
is why :func:`new_content` is checked beside it.

An earlier version deleted the instruction's words from the response first, so that restating
the request could earn nothing. Read against real pairs it flagged good answers as off topic:
"Creating a budget is a crucial step…" lost "budget" and scored 0.00, an on-topic answer on
earthquakes kept 0.49 of the unsteered answer's score, and 8 of the 11 pairs it dropped in an
optimism bench were on topic. Read whole, those answers kept 0.80–1.20 of the unsteered answer's
relevance while hollow cheerful sides kept 0.30–0.64 (docs/relevance.md).

Why not the forward direction, log p(y | x) − log p(y | neutral) (pointwise mutual information)?
Measured on the embedded model it rewards echoing (copying the request is likely *given* the
request: a tautology outscores a real answer), and once a response restates the question, the
neutral-conditioned model knows the topic too, so every later token's PMI falls to zero: an
on-topic answer that begins "To get rid of fruit flies in your kitchen, …" scored 0.006.

**New content** (:func:`new_content`) is the share of the response's content words that are not
the instruction's: an echo scores low, an answer high.

**Content repetition** (:func:`content_repetition`) is the share of the response's first
:data:`CONTENT_WINDOW` content words that repeat an earlier one. A circular answer keeps
restating its own few words and says nothing ("A vaccine trains the immune system by providing a
vaccine that provides a specific beneficial action to the immune process… the immune person… the
immune individuals"): on-topic for the relevance measure, which reads aboutness, and free of the
repeated word 3-grams that the repetition measure counts, but no answer.

**Refusal** is lexical: the response declines, disclaims its ability or apologises instead of
answering, in its first sentences (:data:`REFUSAL_PATTERNS`). Whether refusing is *wrong* depends
on the dimension: for harmlessness, refusing a harmful request is the chosen behaviour
(:attr:`icon2engine.config.Dimension.refusal_allowed`).

Example:
    >>> is_refusal("I'm sorry, but as an AI I cannot help with that.")
    True
    >>> relevance_scores(lm, ["How do plants get water?"], ["Their roots absorb it by osmosis."])
    [0.6...]
"""
from __future__ import annotations

import re
from typing import Sequence

from .prefill import token_logprobs

__all__ = [
    "NEUTRAL_TEXT", "CUE", "REFUSAL_PATTERNS", "CONTENT_WINDOW", "is_refusal", "new_content", "content_repetition",
    "relevance_scores",
]

# What the stripped response is compared with: a text that points to no request.
NEUTRAL_TEXT = "Some text."
# Between the response and the instruction: asks the model which request the text answers.
CUE = "\n\nThe question this answers: "

# Declining, disclaiming an ability, or apologising instead of answering. Looked for in the first
# REFUSAL_WINDOW characters only: a refusal comes first, while a full answer may end with "I can't
# promise it will work" without refusing anything.
REFUSAL_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bI(?:'m| am) (?:sorry|afraid)\b[^.!?\n]{0,40}\bbut\b",
    r"\bI (?:apologi[sz]e|regret)\b",
    r"\b(?:I|we)(?: can ?not| can't| cannot| won't| will not| am unable to|'m unable to| am not able to|'m not able to|"
    r" do not| don't| are unable to|'re unable to) (?:help|assist|provide|answer|give|offer|recommend|share|fulfil|fulfill|"
    r"comply|do that|support|suggest|write|explain)",
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

# Content words read by content_repetition: about the first paragraph. A long answer comes back to
# its topic words in later paragraphs; a circular one repeats them from the start.
CONTENT_WINDOW = 40
MIN_CONTENT_WORDS = 8  # fewer content words than this: too short to tell circling from a short answer


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


def _content_words(text: str) -> list[str]:
    """The stems of the text's content words (not :data:`FUNCTION_WORDS`, at least three letters), in order."""
    return [_stem(w) for w in (w.lower() for w in _WORD.findall(text)) if w not in FUNCTION_WORDS and len(w) >= 3 and not w.isdigit()]


def content_repetition(text: str, window: int = CONTENT_WINDOW) -> float | None:
    """Share of the first ``window`` content words that repeat an earlier one (None: fewer than
    :data:`MIN_CONTENT_WORDS`). The embedded model's unsteered answers to 48 ordinary requests
    scored 0.18 at the median and 0.38 at most; the circular sides of a helpfulness run 0.41–0.59
    (docs/relevance.md).

    Example:
        >>> round(content_repetition("A simple meal with rice can be made with rice and eggs as a meal: a simple meal."), 2)
        0.5
    """
    words = _content_words(text)[:window]
    if len(words) < MIN_CONTENT_WORDS:
        return None
    return 1.0 - len(set(words)) / len(words)


def relevance_scores(lm, instructions: Sequence[str], responses: Sequence[str], *, batch_size: int = 16) -> list[float | None]:
    """The relevance of each response to its instruction (see the module's docstring): nats per
    instruction token, None for an empty response. One forward per response (prefill only) and
    one per distinct instruction for the neutral baseline."""
    prompts = [r.strip() + CUE for r in responses]
    own = token_logprobs(lm, prompts, list(instructions), batch_size=batch_size)
    distinct = list(dict.fromkeys(instructions))
    base = dict(zip(distinct, token_logprobs(lm, [NEUTRAL_TEXT + CUE] * len(distinct), distinct, batch_size=batch_size)))
    out: list[float | None] = []
    for i, r, o in zip(instructions, responses, own):
        if not r.strip() or o.numel() == 0:
            out.append(None)
        else:
            out.append(float(o.mean() - base[i].mean()))
    return out
