"""Check a model before any run: what it is, how it is prompted, and whether its own answers are fluent.

Every figure the defaults rest on was measured on one instruction-tuned model. A model a team
brings can fail for reasons this check sees before a run spends an hour on it: no chat template
(a base model), a prompt format that makes its own answers noise (a lost BOS), blocks that cannot
be found. The result is small JSON, with each problem in plain words and what to do about it.

Example:
    >>> check = check_model(load_model("embedded"))
    >>> check.ok, check.as_dict()["bos"]
    (True, {'wants_bos': False, 'bos_token': '<|im_start|>', 'template_writes_bos': True, 'prompt_starts_with_bos': True})
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from .chat import format_chat, has_chat_template, takes_system_role, wants_bos
from .config import GenerateConfig, ModelSpec, QualityConfig
from .errors import LayerDetectionError
from .generation import generate_rows, stop_token_ids
from .hooks import block_output_tensor, record_block_outputs
from .models import LoadedModel, load_model
from .quality import FLUENCY_REASONS, degenerate_reasons, measure_responses

__all__ = ["CHECK_INSTRUCTIONS", "ModelCheck", "check_model", "check_model_source", "blocks_not_found"]

# Plain requests any instruction-tuned model answers fluently in a few sentences.
CHECK_INSTRUCTIONS = (
    "Describe a rainy Monday morning in a few sentences.",
    "What is a good breakfast before a long walk?",
    "Give three tips for someone learning to swim.",
    "Write a short note to a friend about your weekend.",
)
DEGENERATE_SHARE = 0.5  # this share of the unsteered answers degenerate (or more) fails the check

_BASE_FIX = (
    "use the instruction-tuned (chat, -Instruct, -it) version of this model; for a GGUF file, take the instruct "
    "GGUF or the original Hugging Face folder, which carries the chat template; or set tokenizer.chat_template "
    "to the format the model was trained with"
)
_DEGENERATE_FIX = (
    "read the answers below: if they are noise, the prompt format is wrong (check the BOS rule above and the chat "
    "template), the model is a base model, or the conversion is broken (convert the GGUF again, or load the "
    "original folder); changing γ cannot help, since nothing was steered"
)


@dataclass
class ModelCheck:
    """What the check found (see :meth:`as_dict` for its JSON)."""

    source: str
    architecture: str | None = None
    model_type: str | None = None
    layers_path: str | None = None
    layers: int | None = None
    hidden_size: int | None = None
    context_length: int | None = None
    chat_template: bool | None = None
    system_role: bool | None = None
    bos: dict = field(default_factory=dict)
    stop_tokens: list[str] = field(default_factory=list)
    answers: list[dict] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)  # each {"code", "message", "fix"}: a failed check
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.flags

    def flag(self, code: str, message: str, fix: str) -> None:
        self.flags.append({"code": code, "message": message, "fix": fix})

    def as_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def blocks_not_found(source: str, error: Exception) -> ModelCheck:
    """The check of a model whose decoder blocks could not be found (it cannot be steered)."""
    check = ModelCheck(source=source)
    check.flag("blocks_not_found", f"its decoder blocks could not be found, so it cannot be steered: {error}",
               "set layers_attr to the dotted path of its block list (print(model) shows it), or use a "
               "decoder-only causal LM of a family Icon² is tested on")
    return check


def _bos_rule(tokenizer: object) -> dict:
    bos = getattr(tokenizer, "bos_token", None)
    own = None
    if has_chat_template(tokenizer):
        own = tokenizer.apply_chat_template([{"role": "user", "content": "Hi."}], tokenize=False, add_generation_prompt=True)
    return {
        "wants_bos": wants_bos(tokenizer), "bos_token": bos,
        "template_writes_bos": bool(bos and own and own.startswith(bos)),
        "prompt_starts_with_bos": bool(bos and format_chat(tokenizer, "Hi.").startswith(bos)),
    }


@torch.inference_mode()
def _block_shapes_ok(lm: LoadedModel) -> str | None:
    """None when every block outputs the hidden states steering adds to; else what it outputs."""
    enc = lm.tokenizer([format_chat(lm.tokenizer, "Hi.")], return_tensors="pt", add_special_tokens=False)
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    with record_block_outputs(lm.layers) as rec:
        lm.base_model(**enc)
    seq = enc["input_ids"].shape[1]
    for index in range(lm.n_layers):
        out = rec.get(index)
        shape = None if out is None else tuple(block_output_tensor(out).shape)
        if shape != (1, seq, lm.hidden_size):
            return f"block {index} at {lm.layers_attr} outputs {shape or 'nothing'}, not (batch, {seq}, {lm.hidden_size})"
    return None


def check_model(
    lm: LoadedModel,
    *,
    instructions: Sequence[str] = CHECK_INSTRUCTIONS,
    max_new_tokens: int = 64,
    quality: QualityConfig | None = None,
) -> ModelCheck:
    """Record what ``lm`` is and answer ``instructions`` unsteered (greedy), measured as the gate measures.

    Args:
        lm: the loaded model.
        instructions: plain requests (default: four everyday ones).
        max_new_tokens: length of each answer.
        quality: the gate's measures and thresholds (default :class:`QualityConfig`); only its
            fluency checks (empty, repetition, distinct, foreign ...) judge the answers here.

    Returns:
        :class:`ModelCheck`; ``ok`` is False when a flag was raised: a base model (no chat
        template), degenerate unsteered answers, or blocks that do not output hidden states.
    """
    t0 = time.perf_counter()
    qc = quality or QualityConfig()
    tok = lm.tokenizer
    cfg = lm.model.config
    check = ModelCheck(
        source=lm.name, architecture=type(lm.model).__name__, model_type=getattr(cfg, "model_type", None),
        layers_path=lm.layers_attr, layers=lm.n_layers, hidden_size=lm.hidden_size, context_length=lm.max_positions,
        chat_template=has_chat_template(tok), system_role=takes_system_role(tok), bos=_bos_rule(tok),
        stop_tokens=[tok.convert_ids_to_tokens(i) for i in stop_token_ids(lm)],
    )
    if not check.chat_template:
        check.flag("base_model", "it has no chat template, so it is most likely a base model that was never "
                   "instruction-tuned; Icon² expects an instruction-tuned (chat) model, and prompts it here in a "
                   "generic fallback format it was not trained on", _BASE_FIX)
    elif not check.system_role:
        check.notes.append("its chat template has no system role: the contrastive system prompts go at the start "
                           "of the user turn, which is how such models (Gemma) are prompted")
    wrong = _block_shapes_ok(lm)
    if wrong:
        check.flag("blocks_wrong_output", f"its decoder blocks were found but {wrong}, so steering would add "
                   "vectors to the wrong tensor", "set layers_attr to the list of its transformer decoder blocks")
    gen = generate_rows(lm, list(instructions), GenerateConfig(max_new_tokens=max_new_tokens))
    measured = measure_responses(lm, list(instructions), gen.texts, [None] * len(gen.texts), config=qc)
    counts: dict[str, int] = {}
    for text, instruction, q in zip(gen.texts, instructions, measured):
        reasons = [r for r in degenerate_reasons(q, qc) if r in FLUENCY_REASONS]
        for r in reasons[:1]:
            counts[r] = counts.get(r, 0) + 1
        check.answers.append({"instruction": instruction, "text": text[:400], "reasons": reasons,
                              **{k: q.as_dict()[k] for k in ("words", "repetition", "distinct2", "foreign")}})
    bad = sum(counts.values())
    if bad and bad >= DEGENERATE_SHARE * len(gen.texts):
        shown = ", ".join(f"{r} {c}" for r, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        check.flag("degenerate_answers", f"its own answers are degenerate before any steering: {bad} of "
                   f"{len(gen.texts)} unsteered answers fail ({shown})", _DEGENERATE_FIX)
    check.seconds = round(time.perf_counter() - t0, 2)
    return check


def check_model_source(spec: ModelSpec | str, **kwargs) -> ModelCheck:
    """Load a model and check it; a model whose blocks cannot be found gets a failed check, not an error.

    Other load errors (:class:`~icon2engine.errors.ModelLoadError`) are raised: the model is not there.
    """
    source = spec if isinstance(spec, str) else spec.source
    try:
        lm = load_model(spec)
    except LayerDetectionError as exc:
        return blocks_not_found(source, exc)
    check = check_model(lm, **kwargs)
    check.source = source
    return check
