"""How good one response is as text, whatever the dimension: the measures behind the pair gate.

A steered pair teaches DPO the difference between its sides, so both must be fluent answers
to the instruction. A lexicon or reward judge happily "separates" a loop from prose, so every
response is measured here, against the unsteered response to the same instruction:

- ``repetition``: the share of the response's word n-grams (n = 3) that occur more than once
  in it. Healthy prose of this length scores under 0.15; "a product, a product, a product…"
  scores near 1.
- ``distinct2``: unique word bigrams over all bigrams (1.0 = no repetition).
- ``length_ratio``: words in the response over words in the unsteered response.
- ``foreign``: the share of words not in the instruction's script, or that are common words
  only of another language ("au claques, au claques…" in an English answer).
- ``loglik`` / ``loglik_drop``: mean per-token log-likelihood under the unsteered model, and how
  far it falls below the unsteered response's. Loops have a *high* likelihood, which is why
  this is one measure among several and never the only one.

Example:
    >>> q = measure_text("Write about rain.", "Rain, rain, rain, rain, rain, rain.", reference="Rain falls softly.")
    >>> degenerate_reasons(q, QualityConfig())
    ['repetition']
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Sequence


from .chat import format_chat
from .config import QualityConfig  # the config lives in the torch-free icon2engine.config
from .metrics import distinct_n
from .prefill import token_logprobs
from .relevance import content_repetition, is_refusal, new_content, relevance_scores

__all__ = [
    "QualityConfig", "ResponseQuality", "REASONS", "measure_text", "measure_responses", "degenerate_reasons", "pair_reasons",
    "repetition", "foreign_share", "response_loglik", "score_texts", "FLUENCY_REASONS", "QUALITY_FIELDS", "quality_columns",
]

_WORD = re.compile(r"\w+", re.UNICODE)
DIGIT_SHARE = 0.6  # more of a response's words than this without a letter: it is numbers, not an answer
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

# The reasons a response is degenerate, in the order they are checked (and counted).
# The reasons that say a text is not fluent (the rest say it does not answer: refusal, off_topic).
FLUENCY_REASONS = frozenset(("empty", "repetition", "distinct", "too_short", "too_long", "foreign", "incoherent"))
REASONS = (
    "empty", "repetition", "distinct", "too_short", "too_long", "foreign", "incoherent", "refusal", "off_topic", "echo",
    "circular",  # says nothing: circles round its own few words (content repetition), as an echo restates the request
    "less_relevant",  # a pair's reason (pair_reasons): the chosen side answers the request less than the rejected one
)

# Common words that mark a language. Small on purpose: a few are enough to tell a French or a
# German sentence from an English one, and none of them is an ordinary English word.
_STOPWORDS = {
    "en": set("the and of to is in that it you for with are this was on be as have not but they at or".split()),
    "fr": set("le la les des une est et du au aux dans pour pas que qui sur avec sont ce cette nous vous leur très".split()),
    "de": set("der die das und ist nicht ein eine mit sich auf für dem den des zu ich sie wir auch".split()),
    "es": set("el los las del una es y que en por con para muy pero sus como más este esta".split()),
    "it": set("il lo gli della che di una sono per con non anche questo questa molto nel alla".split()),
    "pt": set("os das dos uma não que em com para mais muito pelo pela seu sua também".split()),
    "nl": set("het een van en niet dat zijn voor met ook maar wij jij".split()),
}


# The per-side measures exported as dataset columns (``chosen_repetition``, ``rejected_loglik``…).
QUALITY_FIELDS = (
    "words", "repetition", "distinct2", "length_ratio", "foreign", "loglik", "loglik_drop", "relevance", "relevance_kept", "refusal", "new_content",
    "content_repetition",
)


def quality_columns(quality: dict | None) -> dict:
    """Flat dataset columns from a pair's ``{"chosen": {...}, "rejected": {...}}`` measures.

    The one definition of these columns: the command line's export and the studio's (which
    stores this dict per pair) both write exactly these.
    """
    if not quality:
        return {}
    return {f"{side}_{key}": quality.get(side, {}).get(key) for side in ("chosen", "rejected") for key in QUALITY_FIELDS}


@dataclass
class ResponseQuality:
    """The measures of one response (small JSON via :meth:`as_dict`)."""

    words: int
    repetition: float
    distinct2: float
    length_ratio: float | None
    foreign: float
    loglik: float | None = None
    loglik_drop: float | None = None
    relevance: float | None = None  # nats per token the instruction adds to its new content (icon2engine.relevance)
    relevance_kept: float | None = None  # relevance over the unsteered answer's (when that one is on topic)
    refusal: float = 0.0  # 1.0: declines, disclaims or apologises instead of answering
    new_content: float | None = None  # share of its content words that are not the instruction's (an echo: low)
    content_repetition: float | None = None  # share of its first content words that repeat an earlier one (circling: high)

    def as_dict(self) -> dict:
        def r(x):
            return None if x is None or not math.isfinite(x) else round(float(x), 4)

        return {k: (v if isinstance(v, int) else r(v)) for k, v in asdict(self).items()}


def repetition(text: str, n: int = 3) -> float:
    """Share of the word n-grams of ``text`` that occur more than once in it (0 = none repeat)."""
    words = _TOKEN.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts: dict[tuple, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    return sum(c for c in counts.values() if c > 1) / len(grams)


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ")[0] if name else "?"


def _word_script(word: str) -> str | None:
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return None
    scripts = [_script(c) for c in letters]
    return max(set(scripts), key=scripts.count)


def _language(words: Sequence[str]) -> str | None:
    """The language whose common words occur most in ``words`` (None: no evidence)."""
    hits = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(hits, key=hits.get)
    return best if hits[best] > 0 else None


def foreign_share(instruction: str, text: str) -> float:
    """Share of the response's words in another script than the instruction's, or that are
    common words only of another language than the instruction's."""
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return 0.0
    inst_words = [w.lower() for w in _WORD.findall(instruction)]
    scripts = [s for s in (_word_script(w) for w in inst_words) if s]
    script = max(set(scripts), key=scripts.count) if scripts else "LATIN"
    lang = _language(inst_words) or ("en" if script == "LATIN" else None)
    own = _STOPWORDS.get(lang, set())
    others = set().union(*(s for k, s in _STOPWORDS.items() if k != lang)) - own
    lettered = [w for w in words if _word_script(w) is not None]
    # Numbers are in no language: a numbered list is fine, an answer that is mostly digits
    # ("1,212-222-413, 423-422…") is not an answer in the instruction's language.
    digits = 1.0 - len(lettered) / len(words)
    if digits > DIGIT_SHARE or not lettered:
        return digits
    foreign = sum(1 for w in lettered if _word_script(w) != script or (script == "LATIN" and w in others))
    return foreign / len(lettered)


def measure_text(instruction: str, text: str, *, reference: str | None = None, n: int = 3) -> ResponseQuality:
    """The text-only measures of one response (no model needed); ``reference`` is the
    unsteered response to the same instruction, for the length ratio."""
    words = len(_WORD.findall(text))
    ref_words = len(_WORD.findall(reference)) if reference is not None else 0
    return ResponseQuality(
        words=words,
        repetition=repetition(text, n),
        distinct2=distinct_n(text, 2) if words > 1 else 0.0,
        length_ratio=(words / ref_words) if ref_words else None,
        foreign=foreign_share(instruction, text),
        content_repetition=content_repetition(text),
    )


def response_loglik(lm, instructions: Sequence[str], responses: Sequence[str], *, batch_size: int = 16) -> list[float]:
    """Mean per-token log-likelihood of each response after its chat-formatted instruction, unsteered.

    An empty response gets ``-inf`` (it says nothing; no floor should let it through). Responses
    to the same instruction are scored in one batch, which runs their prompt once (the gate's
    sides; calibration's grid of settings): :func:`icon2engine.prefill.token_logprobs`.

    Example:
        >>> response_loglik(lm, ["Say hi."], ["Hi!"])
        [-1.7...]
    """
    prompts = {i: format_chat(lm.tokenizer, i) for i in dict.fromkeys(instructions)}
    values = token_logprobs(lm, [prompts[i] for i in instructions], responses, batch_size=batch_size)
    return [float(v.mean()) if v.numel() else float("-inf") for v in values]


Scores = dict  # (instruction, text) -> (loglik, relevance): what the unsteered model says of a text, computed once


def score_texts(
    lm, instructions: Sequence[str], texts: Sequence[str], *, batch_size: int = 16, cache: Scores | None = None,
) -> list[tuple[float, float | None]]:
    """Per text: mean log-likelihood after its instruction and relevance to it, both under the
    unsteered model, by prefill alone (no decoding).

    Every distinct (instruction, text) is scored once, and once only across calls that share a
    ``cache`` (the gate's retries do not score the other side or the reference again). Each
    costs two prefills: the response after its instruction (the prompt shared with the
    instruction's other answers), and the instruction after the response's own content
    (:func:`icon2engine.relevance.relevance_scores`).
    """
    cache = {} if cache is None else cache
    todo = [k for k in dict.fromkeys(zip(instructions, texts)) if k not in cache]
    if todo:
        tok = lm.tokenizer
        prompts = {i: format_chat(tok, i) for i in dict.fromkeys(i for i, _ in todo)}
        own = token_logprobs(lm, [prompts[i] for i, _ in todo], [t for _, t in todo], batch_size=batch_size)
        rel = relevance_scores(lm, [i for i, _ in todo], [t for _, t in todo], batch_size=batch_size)
        for key, o, r in zip(todo, own, rel):
            cache[key] = (float(o.mean()) if o.numel() else float("-inf"), r)
    return [cache[k] for k in zip(instructions, texts)]


def _reference_floor(config: QualityConfig) -> float:
    """The relevance a reference (the unsteered answer, or the rejected side) needs before a share of it
    is acted on: ``min_reference_relevance``, and never 0, since a ratio to 0 means nothing."""
    return max(config.min_reference_relevance, 1e-9)


def measure_responses(
    lm,
    instructions: Sequence[str],
    responses: Sequence[str],
    references: Sequence[str | None],
    *,
    config: QualityConfig | None = None,
    batch_size: int = 16,
    cache: Scores | None = None,
) -> list[ResponseQuality]:
    """Every measure of each response, coherence and relevance included (``lm`` is the unsteered model).

    Args:
        references: per response, the unsteered response to its instruction (None for the
            unsteered response itself: its length ratio, log-likelihood drop and relevance kept
            are then unset).
        cache: scores already computed (:func:`score_texts`), filled in as texts are scored, so
            responses and references, and later calls sharing it, run each text once.
    """
    config = config or QualityConfig()
    out = [measure_text(i, r, reference=ref, n=config.repetition_n) for i, r, ref in zip(instructions, responses, references)]
    refs = [(i, ref) for i, ref in zip(instructions, references) if ref is not None]
    scored = score_texts(lm, list(instructions) + [i for i, _ in refs], list(responses) + [t for _, t in refs],
                         batch_size=batch_size, cache=cache)
    by_ref = dict(zip(refs, scored[len(responses):]))
    for k, q in enumerate(out):
        q.loglik, q.relevance = scored[k]
        q.refusal = 1.0 if is_refusal(responses[k]) else 0.0
        q.new_content = new_content(instructions[k], responses[k])
        if references[k] is None:
            continue
        base_ll, base_rel = by_ref[(instructions[k], references[k])]
        if math.isfinite(base_ll) and math.isfinite(q.loglik):
            q.loglik_drop = base_ll - q.loglik
        if q.relevance is not None and base_rel is not None and base_rel >= _reference_floor(config):
            q.relevance_kept = q.relevance / base_rel
    return out


def degenerate_reasons(q: ResponseQuality, config: QualityConfig, *, refusal_ok: bool = False) -> list[str]:
    """Why a response is no fluent answer to its instruction (empty list: it is fine), each a key of
    :data:`REASONS`. ``refusal_ok``: refusing is this side's concept (the chosen side of harmlessness)."""
    if q.words < max(1, config.min_words):
        return ["empty"]
    out = []
    if config.max_repetition is not None and q.repetition > config.max_repetition:
        out.append("repetition")
    if config.min_distinct2 is not None and q.distinct2 < config.min_distinct2:
        out.append("distinct")
    if q.length_ratio is not None:
        if config.min_length_ratio is not None and q.length_ratio < config.min_length_ratio:
            out.append("too_short")
        if config.max_length_ratio is not None and q.length_ratio > config.max_length_ratio:
            out.append("too_long")
    if config.max_foreign is not None and q.foreign > config.max_foreign:
        out.append("foreign")
    if config.max_loglik_drop is not None and q.loglik is not None:
        if not math.isfinite(q.loglik) or (q.loglik_drop is not None and q.loglik_drop > config.max_loglik_drop):
            out.append("incoherent")
    if config.check_refusal and q.refusal and not refusal_ok:
        out.append("refusal")
    elif q.relevance is not None and not (refusal_ok and q.refusal) and q.words >= config.min_words_relevance:
        if config.min_relevance is not None and q.relevance < config.min_relevance:
            out.append("off_topic")
        elif config.min_relevance_kept is not None and q.relevance_kept is not None and q.relevance_kept < config.min_relevance_kept:
            out.append("off_topic")
        elif config.min_new_content is not None and q.new_content is not None and q.new_content < config.min_new_content:
            out.append("echo")
    if config.max_content_repetition is not None and q.content_repetition is not None and q.content_repetition > config.max_content_repetition:
        out.append("circular")
    return out


def pair_reasons(chosen: ResponseQuality, rejected: ResponseQuality, config: QualityConfig, *, refusal_ok: bool = False) -> list[str]:
    """Why a pair teaches the wrong thing although each side passes: ``["less_relevant"]`` when the
    chosen side keeps less than ``config.min_relevance_vs_rejected`` of the rejected side's relevance
    (DPO would learn to answer less), else ``[]``. Only when both sides are long enough for relevance
    to be acted on, the rejected side's relevance is at least ``min_reference_relevance``, and the chosen side may not refuse
    (``refusal_ok``: harmlessness, whose chosen refusal is rightly less relevant)."""
    floor = config.min_relevance_vs_rejected
    if floor is None or refusal_ok or chosen.relevance is None or rejected.relevance is None:
        return []
    if min(chosen.words, rejected.words) < config.min_words_relevance or rejected.relevance < _reference_floor(config):
        return []
    return ["less_relevant"] if chosen.relevance < floor * rejected.relevance else []
