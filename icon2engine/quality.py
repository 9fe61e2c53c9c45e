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

import torch

from .chat import format_chat
from .config import QualityConfig  # the config lives in the torch-free icon2engine.config
from .metrics import distinct_n

__all__ = [
    "QualityConfig", "ResponseQuality", "REASONS", "measure_text", "measure_responses", "degenerate_reasons",
    "repetition", "foreign_share", "response_loglik", "QUALITY_FIELDS", "quality_columns",
]

_WORD = re.compile(r"\w+", re.UNICODE)
DIGIT_SHARE = 0.6  # more of a response's words than this without a letter: it is numbers, not an answer
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

# The reasons a response is degenerate, in the order they are checked (and counted).
REASONS = ("empty", "repetition", "distinct", "too_short", "too_long", "foreign", "incoherent")

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
QUALITY_FIELDS = ("words", "repetition", "distinct2", "length_ratio", "foreign", "loglik", "loglik_drop")


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
    )


@torch.inference_mode()
def response_loglik(lm, instructions: Sequence[str], responses: Sequence[str], *, batch_size: int = 16) -> list[float]:
    """Mean per-token log-likelihood of each response after its chat-formatted instruction, unsteered.

    An empty response gets ``-inf`` (it says nothing; no floor should let it through). Responses
    to the same instruction are scored in one batch, which runs their prompt once (the gate's
    unsteered, chosen and rejected answers; calibration's grid of settings).

    Example:
        >>> response_loglik(lm, ["Say hi."], ["Hi!"])
        [-1.7...]
    """
    tok = lm.tokenizer
    prompts: dict[str, list[int]] = {}
    answers: list[list[int]] = []
    for instr, resp in zip(instructions, responses):
        if instr not in prompts:
            prompts[instr] = tok(format_chat(tok, instr), add_special_tokens=False)["input_ids"]
        answers.append(tok(resp, add_special_tokens=False)["input_ids"] if resp.strip() else [])
    out = [float("-inf")] * len(answers)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    groups: dict[str, list[int]] = {}  # the rows of each instruction side by side, so a batch holds them together
    for i, instr in enumerate(instructions):
        if answers[i]:
            groups.setdefault(instr, []).append(i)
    order = [i for rows in groups.values() for i in rows]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        keys = [instructions[i] for i in idx]
        batch = (lm, [prompts[k] for k in keys], [answers[i] for i in idx], pad)
        shared = len(set(keys)) < len(keys) and all(len(prompts[k]) > 1 for k in keys)
        for i, value in zip(idx, _loglik_shared(*batch, keys) if shared else _loglik_full(*batch)):
            out[i] = value
    return out


def _loglik_full(lm, prompts: list[list[int]], answers: list[list[int]], pad: int) -> list[float]:
    """One forward of each left-padded prompt + response; the mean log-probability of each response."""
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
    return [float(target[r, -len(a) :].mean()) for r, a in enumerate(answers)]


def _loglik_shared(lm, prompts: list[list[int]], answers: list[list[int]], pad: int, keys: list[str]) -> list[float]:
    """As :func:`_loglik_full`, running each distinct prompt once.

    The prompts but their last token go through the decoder blocks once per distinct prompt
    (generation's shared prefill, :func:`~icon2engine.generation._shared_prefix_cache`); each row
    then runs its last prompt token and its response, right-padded, on that cache.
    """
    from .generation import _shared_prefix_cache

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)  # (batch, width), left-padded
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=lm.device)
    cached = _shared_prefix_cache(lm, {"input_ids": ids, "attention_mask": mask}, keys)  # over width - 1 positions
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
    return [float(target[r, : len(a)].mean()) for r, a in enumerate(answers)]


def measure_responses(
    lm,
    instructions: Sequence[str],
    responses: Sequence[str],
    references: Sequence[str | None],
    *,
    reference_loglik: Sequence[float | None] | None = None,
    loglik: Sequence[float] | None = None,
    config: QualityConfig | None = None,
    batch_size: int = 16,
) -> list[ResponseQuality]:
    """Every measure of each response, coherence included (``lm`` is the unsteered model).

    Args:
        references: per response, the unsteered response to its instruction (None for the
            unsteered response itself: its length ratio and log-likelihood drop are then
            unset).
        reference_loglik: the references' log-likelihoods when already known (else computed
            in the same pass as the responses', so each instruction's prompt runs once).
        loglik: the responses' log-likelihoods when already known (else computed).
    """
    config = config or QualityConfig()
    out = [measure_text(i, r, reference=ref, n=config.repetition_n) for i, r, ref in zip(instructions, responses, references)]
    todo = [k for k, ref in enumerate(references) if ref is not None] if reference_loglik is None else []
    # One list of (instruction, text) to score: the responses not yet scored, then each distinct reference.
    wanted = [] if loglik is not None else [(instructions[k], responses[k]) for k in range(len(responses))]
    refs = list(dict.fromkeys((instructions[k], references[k]) for k in todo))
    scored = response_loglik(lm, [i for i, _ in wanted + refs], [t for _, t in wanted + refs], batch_size=batch_size)
    ll = list(loglik) if loglik is not None else scored[: len(wanted)]
    if reference_loglik is None:
        by_ref = dict(zip(refs, scored[len(wanted) :]))
        ref_ll = {k: by_ref[(instructions[k], references[k])] for k in todo}
    else:
        ref_ll = dict(enumerate(reference_loglik))
    for k, q in enumerate(out):
        q.loglik = ll[k]
        base = ref_ll.get(k)
        if base is not None and math.isfinite(base) and math.isfinite(ll[k]):
            q.loglik_drop = base - ll[k]
    return out


def degenerate_reasons(q: ResponseQuality, config: QualityConfig) -> list[str]:
    """Why a response is degenerate (empty list: it is fine), each a key of :data:`REASONS`."""
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
    return out
