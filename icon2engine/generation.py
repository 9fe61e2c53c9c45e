"""Steered generation: chosen (+γ⁺) and rejected (γ⁻) responses of one instruction in one batch."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import torch

from .chat import end_of_turn_ids, format_chat
from .config import GenerateConfig, SteeringConfig, generation_backend
from .directions import DirectionSet
from .formats import default_layers
from .errors import ConfigError, InputError
from .decoding import NoRepeatNGram
from .hooks import add_to_block_outputs
from .models import LoadedModel
from .prefill import shared_prefix_cache
from .progress import NullProgress, Progress
from .stats import StageStats

log = logging.getLogger(__name__)

__all__ = [
    "Generation", "SteeredPair", "default_layers", "resolve_layers", "stop_token_ids", "generate_rows", "generate_pairs",
]


@dataclass
class Generation:
    """Texts generated for a list of rows, in the order the rows were given."""

    texts: list[str]
    prompt_tokens: list[int]
    new_tokens: list[int]


@dataclass(frozen=True)
class SteeredPair:
    """One preference pair. ``instruction`` is the plain user message (never a system prompt)."""

    instruction: str
    chosen: str
    rejected: str
    dimension: str
    gamma_plus: float
    gamma_minus: float
    layers: tuple[int, ...]
    seed: int
    chosen_tokens: int = 0
    rejected_tokens: int = 0
    quality: dict | None = None  # measures of chosen, rejected and unsteered (icon2engine.quality), when gated
    retries: tuple[dict, ...] = ()  # each regeneration of a degenerate side: side, γ tried, reasons
    unsteered: str | None = None  # the unsteered answer the sides were measured against
    index: int | None = None  # position among the instructions given (gated pairs skip dropped ones)
    steering_mode: str = "add"
    pairing: str = "two_sided"  # which sides were steered (SteeringConfig.pairing), provenance
    no_repeat_ngram_size: int = 0  # decoding safeguards, the same on both sides (provenance)
    repetition_penalty: float = 1.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["retries"] = list(self.retries)
        return d


def resolve_layers(layers: Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    if layers is None:
        return default_layers(n_layers)
    bad = [x for x in layers if not 0 <= int(x) < n_layers]
    if bad:
        raise ConfigError(f"layer(s) {bad} are outside the model, which has blocks 0..{n_layers - 1}")
    return tuple(int(x) for x in layers)


def stop_token_ids(lm: LoadedModel) -> list[int]:
    """Token ids that end an answer: the model's EOS (tokenizer and generation config) and the
    chat template's end-of-turn token (``<end_of_turn>``, ``<|eot_id|>``), which a converted model's
    generation config often lacks."""
    ids: set[int] = set(end_of_turn_ids(lm.tokenizer))
    gen_eos = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, lm.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def _check_directions(lm: LoadedModel, directions: Sequence[DirectionSet]) -> None:
    for ds in directions:
        if ds.n_layers != lm.n_layers or ds.hidden_size != lm.hidden_size:
            raise InputError(
                f"direction set {ds.dimension!r} has {ds.n_layers} layers × {ds.hidden_size} but the model has "
                f"{lm.n_layers} × {lm.hidden_size}; extract the vectors with this model"
            )


@torch.inference_mode()
def generate_rows(
    lm: LoadedModel,
    instructions: Sequence[str],
    config: GenerateConfig,
    *,
    coefficients: Sequence[float] | None = None,
    directions: Sequence[DirectionSet] = (),
    direction_index: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    steer_prompt: bool = False,
    mode: str = "add",
    system: str | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
    on_step: Callable[[dict[int, str]], None] | None = None,
    shared_prefill: bool = True,
) -> Generation:
    """Generate one response per row; row r is steered by ``coefficients[r]`` along
    ``directions[direction_index[r]]`` at ``layers`` (γ relative to each layer's mean norm).

    With no coefficients (or all zero) no hook is installed: plain batched generation.
    Rows are batched in order of prompt length to waste little on padding; results come
    back in the order given. Greedy decoding gives the same text batched or one at a time.

    Args:
        on_step: called after every decoding step with ``{row: response text so far}`` (row in
            the order given, text not yet stripped) for the rows of the current batch that had
            not finished; a row's last text, stripped, is what ``texts`` holds. See
            :class:`~icon2engine.streaming.RowStreamer`.
        shared_prefill: when steering is decode-only (``steer_prompt=False``), rows of a batch
            with the same prompt (a pair's chosen and rejected) share it exactly: the prompt but
            its last token runs once, unsteered, and its KV cache is copied to each row; the
            steered decoding starts at the last prompt token, as it would without sharing.
    """
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="generate")
    n = len(instructions)
    if n == 0:
        raise InputError("no instructions to generate for; give at least one")
    coefficients = list(coefficients) if coefficients is not None else [0.0] * n
    direction_index = list(direction_index) if direction_index is not None else [0] * n
    if len(coefficients) != n or len(direction_index) != n:
        raise ValueError("coefficients and direction_index need one entry per instruction")
    steering = any(c != 0.0 for c in coefficients)
    if steering:
        if not directions:
            raise InputError("steering needs at least one direction set")
        _check_directions(lm, directions)
    band = resolve_layers(layers, lm.n_layers)
    tok = lm.tokenizer
    for i, text in enumerate(instructions):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"instruction #{i + 1} is empty; remove it or write an instruction")
    prompts = [format_chat(tok, text, system) for text in instructions]
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    limit = lm.max_positions
    if limit is not None:
        for i, length in enumerate(lengths):
            if length + config.max_new_tokens > limit:
                raise InputError(
                    f"instruction #{i + 1} takes {length} tokens; with max_new_tokens={config.max_new_tokens} that "
                    f"exceeds the model's context of {limit}; shorten it or lower max_new_tokens"
                )
    eos = stop_token_ids(lm)
    backend = generation_backend(config)
    if backend == "vllm" and (on_step is not None or lm.path is None):
        log.info("generating on hf, not vllm: %s", "tokens stream to the caller" if on_step is not None
                 else f"{lm.name} is not a folder of weights")
    elif backend == "vllm":
        from . import vllm_backend  # continuous batching; the same rows, steering and safeguards

        return vllm_backend.generate_rows(
            lm, instructions, config, coefficients=coefficients, directions=directions, direction_index=direction_index,
            band=band, steer_prompt=steer_prompt, mode=mode, system=system, eos=eos, lengths=lengths,
            progress=progress, stats=stats,
        )
    # Longest first so that memory trouble shows on the first batch; stable keeps pair rows adjacent.
    order = sorted(range(n), key=lambda i: -lengths[i])
    texts: list[str] = [""] * n
    new_tokens = [0] * n
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if eos else 0)
    from transformers import GenerationConfig, LogitsProcessorList

    from .streaming import RowStreamer  # imports transformers, which the engine loads only when it generates

    gen_kwargs = dict(
        max_new_tokens=int(config.max_new_tokens),
        min_new_tokens=int(config.min_new_tokens) or None,
        do_sample=bool(config.do_sample),
        pad_token_id=pad_id,
        eos_token_id=eos or None,
        repetition_penalty=float(config.repetition_penalty) if config.repetition_penalty != 1.0 else None,
    )
    if config.do_sample:
        gen_kwargs.update(temperature=float(config.temperature), top_p=float(config.top_p), top_k=0)
    generation_config = GenerationConfig(**gen_kwargs)
    if steering:
        stacked = torch.stack([ds.vectors for ds in directions]).float()  # (n_dirs, n_layers, hidden)
        norms = torch.tensor([ds.mean_norm for ds in directions], dtype=torch.float32)  # (n_dirs, n_layers)
    t0 = time.perf_counter()
    progress.start("generate", n)
    try:
        for batch_no, start in enumerate(range(0, n, config.batch_size)):
            rows = order[start : start + config.batch_size]
            enc = tok([prompts[r] for r in rows], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(lm.device) for k, v in enc.items()}
            deltas: dict[int, torch.Tensor] = {}
            if steering and any(coefficients[r] != 0.0 for r in rows):
                coef = torch.tensor([coefficients[r] for r in rows], dtype=torch.float32)  # (batch,)
                didx = torch.tensor([direction_index[r] for r in rows])  # (batch,)
                for layer in band:
                    scale = coef * norms[didx, layer]  # (batch,)
                    deltas[layer] = (scale[:, None] * stacked[didx, layer]).to(lm.device)  # (batch, hidden)
            if config.do_sample:
                torch.manual_seed(config.seed + batch_no)
            stream = {} if on_step is None else {"streamer": RowStreamer(tok, rows, eos, on_step)}
            if config.no_repeat_ngram_size:  # over each response only, the same rule on every row
                stream["logits_processor"] = LogitsProcessorList([NoRepeatNGram(config.no_repeat_ngram_size, enc["input_ids"].shape[1])])
            if shared_prefill and not steer_prompt:
                stream.update(shared_prefix_cache(lm, enc, [prompts[r] for r in rows]))
            with add_to_block_outputs(lm.layers, deltas, prompt_too=steer_prompt, mode=mode):
                out = lm.model.generate(**enc, generation_config=generation_config, **stream)
            gen = out[:, enc["input_ids"].shape[1] :].cpu()  # (batch, new)
            for row, seq in zip(rows, gen):
                ids = seq.tolist()
                count = len(ids)
                for j, t in enumerate(ids):
                    if t in eos:
                        count = j + 1
                        break
                new_tokens[row] = count
                texts[row] = tok.decode(ids[:count], skip_special_tokens=True).strip()
            stats.tokens_in += int(enc["attention_mask"].sum())
            stats.tokens_out += sum(new_tokens[r] for r in rows)
            progress.advance(len(rows))
    finally:
        progress.finish()
        stats.add_time(time.perf_counter() - t0, str(lm.device))
    return Generation(texts=texts, prompt_tokens=lengths, new_tokens=new_tokens)


def resolve_dimensions(
    directions: DirectionSet | Mapping[str, DirectionSet], instructions: Sequence[str], dimensions: Sequence[str] | None
) -> tuple[dict[str, DirectionSet], list[str]]:
    """Direction sets by name and, per instruction, the one that steers it; errors say what to fix."""
    by_name = {directions.dimension: directions} if isinstance(directions, DirectionSet) else dict(directions)
    if not by_name:
        raise InputError("no direction sets given; extract directions first")
    names = list(by_name)
    if dimensions is None:
        if len(names) != 1:
            raise InputError(f"several dimensions ({', '.join(names)}): say which one each instruction uses")
        dimensions = [names[0]] * len(instructions)
    if len(dimensions) != len(instructions):
        raise InputError("dimensions needs one entry per instruction")
    unknown = sorted(set(dimensions) - set(names))
    if unknown:
        raise InputError(f"no direction set for dimension(s) {', '.join(unknown)}")
    if not instructions:
        raise InputError("no instructions to generate pairs for; give at least one")
    for i, text in enumerate(instructions):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"instruction #{i + 1} is empty; remove it or write an instruction")
    return by_name, list(dimensions)


def generate_pairs(
    lm: LoadedModel,
    directions: DirectionSet | Mapping[str, DirectionSet],
    instructions: Sequence[str],
    *,
    dimensions: Sequence[str] | None = None,
    steering: SteeringConfig | None = None,
    config: GenerateConfig | None = None,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> list[SteeredPair]:
    """Generate a chosen (+γ⁺) and a rejected (γ⁻) response for each instruction.

    Args:
        lm: the loaded model the directions were extracted from.
        directions: one :class:`DirectionSet`, or several by dimension name.
        instructions: plain user instructions (stored as the prompt as they are).
        dimensions: per instruction, which dimension to steer along (the filter's winner c*);
            may be omitted when there is one direction set.
        steering: γ⁺, γ⁻ and the layer band (default: the middle third).
        config: decoding settings; a pair's two rows always share a batch.

    Example:
        >>> pairs = generate_pairs(lm, ds, ["Describe a rainy Monday."], steering=SteeringConfig(0.05, -0.05))
        >>> pairs[0].chosen, pairs[0].rejected
    """
    steering = steering or SteeringConfig()
    config = config or GenerateConfig()
    by_name, dimensions = resolve_dimensions(directions, instructions, dimensions)
    names = list(by_name)
    band = resolve_layers(steering.layers, lm.n_layers)
    rows, coefs, didx = [], [], []
    for text, dim in zip(instructions, dimensions):
        rows += [text, text]
        coefs += [steering.gamma_plus, steering.gamma_minus]
        didx += [names.index(dim)] * 2
    # An even batch keeps chosen and rejected of one instruction together.
    batch = max(2, config.batch_size - config.batch_size % 2)
    from dataclasses import replace

    gen = generate_rows(
        lm,
        rows,
        replace(config, batch_size=batch),
        coefficients=coefs,
        directions=[by_name[n] for n in names],
        direction_index=didx,
        layers=band,
        steer_prompt=steering.steer_prompt,
        mode=steering.mode,
        progress=progress,
        stats=stats,
    )
    return [
        SteeredPair(
            instruction=text,
            chosen=gen.texts[2 * i],
            rejected=gen.texts[2 * i + 1],
            dimension=dim,
            gamma_plus=steering.gamma_plus,
            gamma_minus=steering.gamma_minus,
            layers=band,
            seed=config.seed,
            chosen_tokens=gen.new_tokens[2 * i],
            rejected_tokens=gen.new_tokens[2 * i + 1],
            steering_mode=steering.mode,
            no_repeat_ngram_size=config.no_repeat_ngram_size,
            repetition_penalty=config.repetition_penalty,
        )
        for i, (text, dim) in enumerate(zip(instructions, dimensions))
    ]
