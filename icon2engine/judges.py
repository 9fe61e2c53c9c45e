"""Judges behind one small interface: score a response, or compare two for one instruction.

- :class:`VaderJudge`: sentiment lexicon (VADER compound, −1..1); measurable, for "optimism".
  It saturates near +1 and scores much gloomy text 0.0: fine for a smoke test, weak alone.
- :class:`LengthJudge`: words in the response (or closeness to a target length).
- :class:`RewardModelJudge`: any Hugging Face sequence-classification model from a local path.
- :class:`LLMJudge`: an OpenAI-compatible ``/chat/completions`` endpoint (through the one safe
  client, :mod:`icon2engine.endpoints`; no extra dependency), with timeouts and retries.

``compare`` returns a number in [−1, 1]: +1 when ``a`` is better, −1 when ``b`` is, 0 for a tie.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from .config import _finite
from .endpoints import LOOPBACK_HOSTS, EndpointError, EndpointPolicy, EndpointRefused, request_json, url_origin, url_problem
from .errors import ConfigError, JudgeError

__all__ = [
    "Judge", "BaseJudge", "VaderJudge", "LengthJudge", "FormalityJudge", "RewardModelJudge", "LLMJudge", "JudgeConfig", "make_judge",
    "JUDGE_KINDS", "JUDGE_DIRECTIONS", "OrientedJudge", "SelfJudge",
]

JUDGE_KINDS = ("lexicon", "length", "formality", "reward_model", "llm", "self")
JUDGE_ALIASES = {"vader": "lexicon"}  # the lexicon judge's first name, still accepted
JUDGE_DIRECTIONS = ("higher", "lower")


@runtime_checkable
class Judge(Protocol):
    name: str

    def score(self, instruction: str, response: str) -> float:
        """How good ``response`` is for ``instruction`` (higher is better)."""

    def score_many(self, instructions: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Scores for aligned lists (batched where the judge can)."""

    def compare(self, instruction: str, a: str, b: str) -> float:
        """In [−1, 1]: +1 when ``a`` is better, −1 when ``b`` is, 0 for a tie."""


class BaseJudge:
    """Defaults: ``score_many`` loops over ``score``; ``compare`` is the sign of the score difference."""

    name = "judge"

    def score(self, instruction: str, response: str) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_many(self, instructions: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(instructions) != len(responses):
            raise ValueError("score_many needs as many instructions as responses")
        return [self.score(i, r) for i, r in zip(instructions, responses)]

    def compare(self, instruction: str, a: str, b: str) -> float:
        sa, sb = self.score(instruction, a), self.score(instruction, b)
        return 0.0 if sa == sb else (1.0 if sa > sb else -1.0)


class VaderJudge(BaseJudge):
    """VADER compound sentiment of the response (−1 gloomy … +1 cheerful); ignores the instruction.

    Example:
        >>> VaderJudge().score("How is the weather?", "What a lovely, sunny day!") > 0.5
        True
    """

    name = "vader"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise JudgeError("the VADER judge needs the vaderSentiment package; pip install vaderSentiment") from exc
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, instruction: str, response: str) -> float:
        return float(self._analyzer.polarity_scores(response)["compound"])


class LengthJudge(BaseJudge):
    """Longer is better (words); with ``shorter=True`` shorter is better; with ``target``,
    closer to ``target`` words is better.

    Example:
        >>> LengthJudge().score("", "three short words")
        3.0
        >>> LengthJudge(shorter=True).score("", "three short words")
        -3.0
        >>> LengthJudge(target=10).score("", "three short words")
        -7.0
    """

    name = "length"

    def __init__(self, target: int | None = None, *, shorter: bool = False) -> None:
        if target is not None and int(target) < 1:
            raise ConfigError(f"target length must be at least 1 word, got {target}")
        self.target = None if target is None else int(target)
        self.shorter = bool(shorter)
        if self.shorter:
            self.name = "length (shorter is better)"

    def score(self, instruction: str, response: str) -> float:
        n = len(response.split())
        if self.target is not None:
            return float(-abs(n - self.target))
        return float(-n if self.shorter else n)


_INFORMAL = re.compile(
    r"\b(?:hey|hi|yeah|yep|nope|gonna|wanna|gotta|kinda|sorta|lol|omg|cool|awesome|super|totally|stuff|guys|"
    r"dude|okay|ok|wow|oh|ya|y'all|pretty much)\b|\w'(?:s|re|ve|ll|d|m|t)\b|n't\b|!|:\)|😊|😀|🙂",
    re.IGNORECASE,
)
_FORMAL = re.compile(
    r"\b(?:therefore|furthermore|moreover|however|consequently|regarding|accordingly|nevertheless|additionally|"
    r"thus|hence|shall|whereas|respectfully|sincerely|kindly|request|ensure|appropriate|subsequently|"
    r"dear|regards|please find|in accordance)\b",
    re.IGNORECASE,
)


class FormalityJudge(BaseJudge):
    """How formal a response reads, from −1 (casual) to +1 (formal); ignores the instruction.

    Counts casual markers (contractions, "hey", "gonna", exclamation marks, emoticons) against
    formal ones ("therefore", "regarding", "sincerely"…), per 100 words, and adds the share of
    long words, so plain neutral prose sits near 0.

    Example:
        >>> FormalityJudge().score("", "Hey, that's gonna be awesome!") < 0 < FormalityJudge().score(
        ...     "", "Furthermore, we shall ensure the appropriate arrangements are made.")
        True
    """

    name = "formality"

    def score(self, instruction: str, response: str) -> float:
        words = re.findall(r"[\w']+", response)
        if not words:
            return 0.0
        per100 = 100.0 / len(words)
        casual = len(_INFORMAL.findall(response)) * per100
        formal = len(_FORMAL.findall(response)) * per100
        long_share = sum(len(w) >= 8 for w in words) / len(words)
        raw = 0.25 * (formal - casual) + 2.0 * (long_share - 0.15)
        return float(max(-1.0, min(1.0, raw)))


class RewardModelJudge(BaseJudge):
    """A Hugging Face sequence-classification reward model loaded from a local directory.

    The score is the logit of label 0 when the model has one label (the usual reward-model
    head), else the logit of ``positive_label``. The conversation is rendered with the reward
    model's chat template when it has one, else as ``instruction\\n\\nresponse``.

    Example:
        >>> judge = RewardModelJudge("/models/my-reward-model")
        >>> judge.score_many(["Say hi."], ["Hello there!"])
    """

    name = "reward_model"

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", batch_size: int = 8, max_length: int = 1024,
                 positive_label: int = 1) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path).expanduser()
        if not (path / "config.json").exists():
            raise JudgeError(
                f"reward model path {path} has no config.json; give a local folder with a Hugging Face "
                "sequence-classification model (config.json, weights, tokenizer)"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError ... for unusable folders
            raise JudgeError(f"could not load a sequence-classification reward model from {path}: {exc}") from exc
        self.model.to(torch.device(device)).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        n_labels = int(getattr(self.model.config, "num_labels", 1))
        self.label = 0 if n_labels == 1 else int(positive_label)
        self.name = f"reward_model:{path.name}"

    def _text(self, instruction: str, response: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], tokenize=False
            )
        return f"{instruction}\n\n{response}"

    def score(self, instruction: str, response: str) -> float:
        return self.score_many([instruction], [response])[0]

    def score_many(self, instructions: Sequence[str], responses: Sequence[str]) -> list[float]:
        import torch

        if len(instructions) != len(responses):
            raise ValueError("score_many needs as many instructions as responses")
        texts = [self._text(i, r) for i, r in zip(instructions, responses)]
        out: list[float] = []
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[start : start + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                    max_length=self.max_length, add_special_tokens=False,
                )
                logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits  # (batch, n_labels)
                out += [float(x) for x in logits[:, self.label].float().cpu()]
        return out


_SCORE_SYSTEM = (
    "You are a strict grader. You read an instruction and an assistant's response, and rate how well the response "
    "meets this criterion: {criterion}. You answer with one integer from 1 (not at all) to 10 (fully) and nothing else."
)
_SCORE_TURN = "[Instruction]\n{instruction}\n\n[Response]\n{response}\n\nScore (1-10):"
_COMPARE_SYSTEM = (
    "You are a strict grader. You read an instruction and two assistant responses, A and B, and decide which better "
    "meets this criterion: {criterion}. You answer with exactly one of: A, B, tie, and nothing else."
)
_COMPARE_TURN = "[Instruction]\n{instruction}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\nBetter (A, B or tie):"
# Worked turns that show the answer format only: their content says nothing about any criterion,
# so they teach small judges the format without biasing what "better" means.
_SCORE_SHOTS = (
    (("Say something.", "(a response that fully meets the criterion)"), "10"),
    (("Say something.", "(a response that does not meet the criterion at all)"), "1"),
)
_COMPARE_SHOTS = (
    (("Say something.", "(a response that meets the criterion)", "(a response that does not)"), "A"),
    (("Say something.", "(a response that does not meet the criterion)", "(a response that does)"), "B"),
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
LLM_PROTOCOLS = ("pairwise", "scores")
_VERDICT = re.compile(r"^\W*(?:(?:response|answer|better)\W*)?(a|b|tie)\b", re.IGNORECASE)


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def _quoted(answer: str, a: str, b: str) -> float | None:
    """A judge that answers by repeating one response's opening has picked that response."""
    said = _words(answer)
    if len(said) < 8:
        return None
    in_a, in_b = _words(a).startswith(said), _words(b).startswith(said)
    if in_a != in_b:
        return 1.0 if in_a else -1.0
    return None


def _chat(system: str, turn: str, shots, fields: tuple[str, ...], **values) -> list[dict]:
    messages = [{"role": "system", "content": system.format(criterion=values["criterion"])}]
    for args, answer in shots:
        messages += [{"role": "user", "content": turn.format(**dict(zip(fields, args)))},
                     {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": turn.format(**{k: values[k] for k in fields})})
    return messages


class LLMJudge(BaseJudge):
    """An LLM behind an OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, OpenAI ...).

    Args:
        base_url: e.g. ``http://localhost:8000/v1`` (``/chat/completions`` is appended).
        model: the model name the server expects.
        api_key: sent as a Bearer token when given.
        criterion: what "better" means, in words (the dimension's description).
        timeout: seconds per request; retries: extra attempts after a timeout, a connection
            error or a 5xx/429 answer (with a short back-off).
        protocol: how ``compare`` asks. ``pairwise`` (default) shows both responses and asks for
            A, B or tie; an answer that repeats the opening of exactly one response picks it.
            ``scores`` rates each response from 1 to 10 and compares the ratings: two requests
            per comparison, for small judges that cannot hold the pairwise format.
        allowed_hosts: host names and address ranges the endpoint may be on besides public
            addresses (default: this machine's loopback); see :class:`~icon2engine.endpoints.EndpointPolicy`.
        key_origin: the ``scheme://host:port`` the key was saved for (default: ``base_url``'s);
            the key is sent nowhere else.

    Example:
        >>> judge = LLMJudge("http://localhost:8000/v1", "qwen2.5-7b-instruct", criterion="cheerful and optimistic")
        >>> judge.compare("Describe Monday.", "A fresh start!", "Another dreary week.")
        1.0
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, criterion: str = "helpful, honest and harmless",
                 timeout: float = 30.0, retries: int = 2, backoff: float = 0.5, protocol: str = "pairwise",
                 allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, key_origin: str | None = None) -> None:
        if not base_url or not re.match(r"^https?://", base_url):
            raise ConfigError(f"LLM judge base_url must start with http:// or https://, got {base_url!r}")
        problem = url_problem(base_url)
        if problem:
            raise ConfigError(f"LLM judge base_url {base_url!r}: {problem}")
        if not model:
            raise ConfigError("LLM judge needs a model name (the one the server expects)")
        if not 0 < _finite("timeout", timeout) <= 600:
            raise ConfigError(f"timeout must be in (0, 600] seconds, got {timeout}")
        if int(retries) < 0:
            raise ConfigError(f"retries must be 0 or more, got {retries}")
        if protocol not in LLM_PROTOCOLS:
            raise ConfigError(f"LLM judge protocol must be one of {', '.join(LLM_PROTOCOLS)}, got {protocol!r}")
        self.protocol = protocol
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.criterion = model, api_key, criterion
        # A key given here is for this base URL; a stored key carries the origin it was saved for.
        self.key_origin = key_origin if key_origin is not None else url_origin(base_url)
        self.policy = EndpointPolicy(allowed_hosts=tuple(allowed_hosts), timeout=float(timeout))
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.name = f"llm:{model}"
        self.answered = 0  # verdicts the server gave (a count, for logs and tests)

    def _ask(self, messages: list[dict]) -> str:
        payload = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": 8}
        last: EndpointError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                answer = request_json("POST", self.url, policy=self.policy, payload=payload,
                                      api_key=self.api_key, key_origin=self.key_origin)
                text = str(answer["choices"][0]["message"]["content"])
                self.answered += 1
                return text
            except EndpointRefused as exc:
                raise JudgeError(f"LLM judge at {self.url} was not asked: {exc}") from None
            except EndpointError as exc:
                if exc.status in (401, 403):
                    raise JudgeError(f"LLM judge at {self.url} refused the API key (HTTP {exc.status}); check api_key") from None
                if exc.status == 404:
                    raise JudgeError(
                        f"LLM judge at {self.url} answered 404; check base_url (it usually ends in /v1) and the model name"
                    ) from None
                if exc.status is not None and exc.status < 300:
                    raise JudgeError(
                        f"LLM judge at {self.url} did not answer in the OpenAI chat format ({exc}); "
                        "check that base_url points at an OpenAI-compatible server"
                    ) from None
                last = exc
                if not exc.retryable:
                    break
            except (KeyError, IndexError, TypeError) as exc:
                raise JudgeError(
                    f"LLM judge at {self.url} did not answer in the OpenAI chat format ({exc!r}); "
                    "check that base_url points at an OpenAI-compatible server"
                ) from None
        raise JudgeError(
            f"LLM judge at {self.url} is unreachable or failing after {self.retries + 1} attempt(s) ({last}); "
            "check base_url, that the server is running, and the timeout"
        )

    def score(self, instruction: str, response: str) -> float:
        answer = self._ask(_chat(_SCORE_SYSTEM, _SCORE_TURN, _SCORE_SHOTS, ("instruction", "response"),
                                 criterion=self.criterion, instruction=instruction, response=response))
        match = _NUMBER.search(answer)
        if not match:
            raise JudgeError(f"LLM judge answered {answer[:80]!r} instead of a score from 1 to 10")
        return min(10.0, max(1.0, float(match.group())))

    def compare(self, instruction: str, a: str, b: str) -> float:
        if self.protocol == "scores":
            first, second = self.score(instruction, a), self.score(instruction, b)
            return 1.0 if first > second else -1.0 if first < second else 0.0
        answer = self._ask(_chat(_COMPARE_SYSTEM, _COMPARE_TURN, _COMPARE_SHOTS, ("instruction", "a", "b"),
                                 criterion=self.criterion, instruction=instruction, a=a, b=b))
        match = _VERDICT.match(answer.strip())
        if match:
            return {"a": 1.0, "b": -1.0, "tie": 0.0}[match.group(1).lower()]
        quoted = _quoted(answer, a, b)
        if quoted is None:
            raise JudgeError(f"LLM judge answered {answer[:80]!r} instead of A, B or tie "
                             "(a small judge model may do better with protocol 'scores')")
        return quoted


_SELF_SCORE = (
    "Here is an instruction and a response.\n\nInstruction: {instruction}\n\nResponse: {response}\n\n"
    "Is the response {criterion}? Answer with one word: Yes or No."
)
_SELF_COMPARE = (
    "Here is an instruction and two responses.\n\nInstruction: {instruction}\n\nResponse A: {a}\n\n"
    "Response B: {b}\n\nWhich response is more {criterion}? Answer with one letter: A or B."
)


class SelfJudge(BaseJudge):
    """The run's own model as the judge: it reads a question and the next token decides.

    ``score`` is log P(Yes) − log P(No) for "Is the response <criterion>?"; ``compare`` asks which
    of two responses is more <criterion>, in both orders (A/B and B/A), and averages, so a model
    that always says "A" scores a tie. No text is generated: one forward pass per question.

    Example:
        >>> judge = SelfJudge(load_model("embedded"), criterion="optimistic")
        >>> judge.compare("Describe the sea.", "It is lovely!", "It is grim.")  # in [-1, 1]
    """

    def __init__(self, lm, *, criterion: str = "helpful, honest and harmless", batch_size: int = 8) -> None:
        if not str(criterion or "").strip():
            raise ConfigError("the self judge needs a criterion, e.g. 'helpful, honest and harmless'")
        self.lm, self.criterion, self.batch_size = lm, str(criterion).strip(), int(batch_size)
        self.name = f"self:{lm.name}"
        tok = lm.tokenizer
        self._ids = {word: tok.encode(word, add_special_tokens=False)[0] for word in ("Yes", "No", "A", "B")}

    def _next_logprobs(self, questions: Sequence[str], words: tuple[str, str]) -> list[tuple[float, float]]:
        import torch

        from .chat import format_chats

        ids = [self._ids[w] for w in words]
        out: list[tuple[float, float]] = []
        for start in range(0, len(questions), self.batch_size):
            prompts = format_chats(self.lm.tokenizer, list(questions[start:start + self.batch_size]))
            enc = self.lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.lm.device)
            with torch.no_grad():
                logits = self.lm.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)[:, ids]
            out.extend((float(a), float(b)) for a, b in logprobs.tolist())
        return out

    def score_many(self, instructions: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(instructions) != len(responses):
            raise ValueError("score_many needs as many instructions as responses")
        questions = [_SELF_SCORE.format(instruction=i, response=r, criterion=self.criterion) for i, r in zip(instructions, responses)]
        return [yes - no for yes, no in self._next_logprobs(questions, ("Yes", "No"))]

    def score(self, instruction: str, response: str) -> float:
        return self.score_many([instruction], [response])[0]

    def compare(self, instruction: str, a: str, b: str) -> float:
        import math

        questions = [_SELF_COMPARE.format(instruction=instruction, a=x, b=y, criterion=self.criterion) for x, y in ((a, b), (b, a))]
        (a1, b1), (a2, b2) = self._next_logprobs(questions, ("A", "B"))

        def share_first(first: float, second: float) -> float:  # P(first) among {first, second}
            return 1.0 / (1.0 + math.exp(second - first))

        # P(a better) in the a/b order, and in the b/a order (where a is "B"); mapped to [−1, 1].
        return round(share_first(a1, b1) + share_first(b2, a2) - 1.0, 6)


class OrientedJudge(BaseJudge):
    """Another judge's scores turned so that higher is better: negated (``better="lower"``), or
    the distance to a ``target`` score, negated (nearer is better).

    Example:
        >>> OrientedJudge(VaderJudge(), better="lower").score("", "Great news!") < 0
        True
        >>> OrientedJudge(LengthJudge(), target=5).score("", "three short words")
        -2.0
    """

    def __init__(self, inner: BaseJudge, *, better: str = "higher", target: float | None = None) -> None:
        if better not in JUDGE_DIRECTIONS:
            raise ConfigError(f"judge better must be higher or lower, got {better!r}")
        self.inner, self.better, self.target = inner, better, target
        how = f"nearest {target:g}" if target is not None else f"{better} is better"
        self.name = f"{inner.name} ({how})"

    def _turn(self, score: float) -> float:
        if self.target is not None:
            return -abs(score - self.target)
        return -score if self.better == "lower" else score

    def score(self, instruction: str, response: str) -> float:
        return self._turn(self.inner.score(instruction, response))

    def score_many(self, instructions: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [self._turn(s) for s in self.inner.score_many(instructions, responses)]

    def compare(self, instruction: str, a: str, b: str) -> float:
        if self.target is None:
            verdict = self.inner.compare(instruction, a, b)
            return -verdict if self.better == "lower" else verdict
        return BaseJudge.compare(self, instruction, a, b)


@dataclass(frozen=True)
class JudgeConfig:
    """Which judge to use; the fields that a kind does not use are ignored."""

    kind: str = field(default="lexicon", metadata={"help": "lexicon (VADER; 'vader' also works), length, formality, "
                                                            "reward_model, llm or self (the run's own model)",
                                                    "cli": {"aliases": ["--judge"], "choices": (*JUDGE_KINDS, *JUDGE_ALIASES)}})
    path: str | None = field(default=None, metadata={"help": "reward_model: local model folder"})
    base_url: str | None = field(default=None, metadata={"help": "llm: OpenAI-compatible base URL, e.g. http://localhost:8000/v1",
                                                         "cli": {"aliases": ["--judge-url"]}})
    model: str | None = field(default=None, metadata={"help": "llm: model name"})
    api_key_env: str | None = field(default="ICON2_JUDGE_API_KEY", metadata={"help": "llm: environment variable holding the key",
                                                                                                "cli": {"aliases": ["--judge-key-env"]}})
    api_key: str | None = field(default=None, repr=False, metadata={"help": "llm: the key itself (else api_key_env)",
                                                                    "cli": False})  # never on a command line
    criterion: str = field(default="helpful, honest and harmless", metadata={"help": "llm: what 'better' means",
                                                                              "cli": {"aliases": ["--criterion"]}})
    timeout: float = 30.0
    retries: int = 2
    target_words: int | None = field(default=None, metadata={"help": "length: target length (None = longer is better)"})
    better: str = field(default="higher", metadata={"help": "higher or lower: which scores are better (lower: a length "
                                                              "judge for a 'concise' dimension)",
                                                    "cli": {"choices": ("higher", "lower")}})
    target: float | None = field(default=None, metadata={"help": "a score to aim for: nearer is better (overrides better)"})
    protocol: str = field(default="pairwise", metadata={"help": "llm: pairwise (A, B or tie) or scores (rate each "
                                                                 "response 1-10, for small judge models)",
                                                    "cli": {"choices": ("pairwise", "scores")}})
    allowed_hosts: tuple[str, ...] = field(default=LOOPBACK_HOSTS, metadata={
        "help": "llm: host names and address ranges the endpoint may be on besides public addresses, "
                "e.g. localhost,127.0.0.0/8,10.0.0.0/8 (private, loopback and link-local ones are refused otherwise)"})
    api_key_origin: str | None = field(default=None, metadata={
        "help": "llm: the scheme://host:port the api_key was saved for (default: base_url's); the key goes nowhere else",
        "cli": False})

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", JUDGE_ALIASES.get(self.kind, self.kind))
        if self.kind not in JUDGE_KINDS:
            raise ConfigError(f"judge kind must be one of {', '.join(JUDGE_KINDS)}, got {self.kind!r}")
        if self.better not in JUDGE_DIRECTIONS:
            raise ConfigError(f"judge better must be higher or lower, got {self.better!r}")
        if self.target is not None:
            _finite("judge target", self.target)
        if self.kind == "reward_model" and not self.path:
            raise ConfigError("a reward_model judge needs path = the local folder of the model")
        if self.protocol not in LLM_PROTOCOLS:
            raise ConfigError(f"judge protocol must be one of {', '.join(LLM_PROTOCOLS)}, got {self.protocol!r}")
        if self.kind == "llm" and not (self.base_url and self.model):
            raise ConfigError("an llm judge needs base_url (e.g. http://localhost:8000/v1) and model")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))  # a list from a pipeline file


def make_judge(config: JudgeConfig | str, *, lm=None) -> BaseJudge:
    """Build a judge from its config (or just its kind); the ``self`` judge needs the loaded model.

    Example:
        >>> make_judge("lexicon").score("", "Great news!")
    """
    if isinstance(config, str):
        config = JudgeConfig(kind=config)
    if config.kind == "self":
        if lm is None:
            raise ConfigError("the self judge asks the run's own model; pass lm= (a LoadedModel)")
        judge = SelfJudge(lm, criterion=config.criterion)
        return OrientedJudge(judge, better=config.better, target=config.target) if (
            config.target is not None or config.better == "lower") else judge
    if config.kind == "length" and config.target is None:
        return LengthJudge(config.target_words, shorter=config.better == "lower")
    judge = _make_base_judge(config)
    if config.target is not None or config.better == "lower":
        return OrientedJudge(judge, better=config.better, target=config.target)
    return judge


def _make_base_judge(config: JudgeConfig) -> BaseJudge:
    if config.kind == "lexicon":
        return VaderJudge()
    if config.kind == "length":
        return LengthJudge(config.target_words)
    if config.kind == "formality":
        return FormalityJudge()
    if config.kind == "reward_model":
        return RewardModelJudge(config.path)
    key = config.api_key or (os.environ.get(config.api_key_env) if config.api_key_env else None)
    return LLMJudge(config.base_url, config.model, key, criterion=config.criterion, timeout=config.timeout, retries=config.retries,
                    protocol=config.protocol, allowed_hosts=config.allowed_hosts, key_origin=config.api_key_origin)
