"""Render prompts exactly as the model expects them: its chat template and its BOS rule.

Every path that shows the model a prompt (extraction, filtering, synthesis, generation on HF and
vLLM, the playground, scoring, training and evaluation) renders it here and tokenizes the text
with ``add_special_tokens=False``, so the one rule below decides the BOS token:

- the model wants a BOS when its tokenizer adds one to a plain text (``add_bos_token``, or what
  encoding with special tokens does; a GGUF file's ``tokenizer.ggml.add_bos_token`` is applied to
  the tokenizer when it is loaded, :func:`icon2engine.models.load_model`);
- a template that already writes it (``{{ bos_token }}``, or a ChatML header that is the BOS, as in
  SmolLM2) gets no second one; a template that does not, or the fallback for a tokenizer without a
  template, gets ``{{ bos_token }}`` in front.

Example:
    >>> format_chat(tok, "Describe a rainy Monday.")
    '<bos><start_of_turn>user\\nDescribe a rainy Monday.<end_of_turn>\\n<start_of_turn>model\\n'
"""
from __future__ import annotations

from typing import Sequence

__all__ = [
    "FALLBACK_TEMPLATE", "format_chat", "format_chats", "chat_template_for", "has_chat_template", "wants_bos",
    "with_bos", "takes_system_role", "end_of_turn_ids", "special_token_strings",
]

# Used only when a tokenizer has no chat template (base models, tiny test models).
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_PROBE_USER = "ICON2PROBEUSER"
_PROBE_SYSTEM = "ICON2PROBESYSTEM"
_PROBE_ANSWER = "ICON2PROBEANSWER"


def has_chat_template(tokenizer: object) -> bool:
    """Whether the tokenizer carries its own chat template (an instruction-tuned model's mark)."""
    return bool(getattr(tokenizer, "chat_template", None))


def wants_bos(tokenizer: object) -> bool:
    """Whether the model expects its BOS token in front of every sequence.

    Decided by the tokenizer's own rule: its ``add_bos_token`` flag, or whether encoding a plain
    text with special tokens puts the BOS first. A tokenizer without a BOS token wants none.
    """
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None or not getattr(tokenizer, "bos_token", None):
        return False
    if getattr(tokenizer, "add_bos_token", None) is True:
        return True
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(plain) and with_special[0] == bos_id


def with_bos(tokenizer: object, text: str) -> str:
    """``text`` with the BOS token in front when the model wants one and the text lacks it."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and not text.startswith(bos) and wants_bos(tokenizer):
        return bos + text
    return text


def _render(tokenizer: object, messages: list[dict], template: str, generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt, chat_template=template
    )


def chat_template_for(tokenizer: object) -> str:
    """The template :func:`format_chat` renders with: the tokenizer's own (or the fallback), with
    ``{{ bos_token }}`` in front when the model wants a BOS that the template does not write.

    Training gives this template to TRL, so DPO sees the prompts that generation sees.
    """
    template = getattr(tokenizer, "chat_template", None) or FALLBACK_TEMPLATE
    probe = _render(tokenizer, [{"role": "user", "content": _PROBE_USER}], template)
    if with_bos(tokenizer, probe) != probe:
        template = "{{ bos_token }}" + template
    return template


def format_chat(tokenizer: object, user: str, system: str | None = None) -> str:
    """Return the prompt text for one user turn, ready for the assistant's answer.

    Templates that refuse a system role (Gemma's) get the system prompt prepended to the user
    message instead, which is how those models are prompted in practice. The BOS token follows
    :func:`chat_template_for`: present when the model wants it, exactly once.
    """
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    template = chat_template_for(tokenizer)
    try:
        return _render(tokenizer, messages, template)
    except Exception:
        if not system:
            raise
        return _render(tokenizer, [{"role": "user", "content": f"{system}\n\n{user}"}], template)


def format_chats(tokenizer: object, users: Sequence[str], system: str | None = None) -> list[str]:
    return [format_chat(tokenizer, u, system) for u in users]


def takes_system_role(tokenizer: object) -> bool:
    """Whether the chat template renders a system message as its own turn (Gemma's refuses one)."""
    messages = [{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_USER}]
    try:
        text = _render(tokenizer, messages, chat_template_for(tokenizer))
    except Exception:  # jinja raises many kinds; a template's own raise_exception among them
        return False
    return _PROBE_SYSTEM in text and _PROBE_USER in text.split(_PROBE_SYSTEM, 1)[1]


def special_token_strings(tokenizer: object) -> list[str]:
    """Every special or added-special token string of a tokenizer, longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            found.add(str(tok))
    return sorted((t for t in found if t), key=len, reverse=True)


def end_of_turn_ids(tokenizer: object) -> list[int]:
    """The token that closes an assistant turn in the chat template, when it is one special token
    (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``); empty for the fallback template or when
    the template writes no special token after the answer."""
    if not has_chat_template(tokenizer):
        return []
    messages = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ANSWER}]
    try:
        text = _render(tokenizer, messages, chat_template_for(tokenizer), generation_prompt=False)
    except Exception:
        return []
    after = text.split(_PROBE_ANSWER, 1)[1] if _PROBE_ANSWER in text else ""
    hits = [(after.find(s), -len(s), s) for s in special_token_strings(tokenizer) if s in after]
    if not hits:
        return []
    ids = tokenizer(min(hits)[2], add_special_tokens=False)["input_ids"]
    return [int(ids[0])] if len(ids) == 1 else []
