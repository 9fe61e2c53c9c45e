"""Derive Magpie's pre-query template from a tokenizer's own chat template.

Magpie (Xu et al., 2024) feeds an instruct model its chat template only up to where a user
message begins; the model then writes a plausible user message itself. We find that point by
rendering a conversation whose user message is a sentinel string and cutting where the
sentinel starts. Whatever the template puts before it (a BOS token, a default system prompt
such as SmolLM2's or Qwen2's) stays in the pre-query, because the model was trained to see it.
The end of the user turn is the first special token the template writes after the message
(``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3).
"""
from __future__ import annotations

from dataclasses import dataclass

from .chat import special_token_strings, with_bos
from .errors import TemplateError

__all__ = ["PreQuery", "derive_pre_query", "special_token_strings"]

SENTINEL = "ICON2SENTINELUSERMESSAGE"
_SYSTEM_SENTINEL = "ICON2SENTINELSYSTEMPROMPT"


@dataclass(frozen=True)
class PreQuery:
    """Where a sampled user message starts and how it ends.

    Attributes:
        text: the prompt up to where the user message begins, e.g.
            ``"<|im_start|>system\\nYou are ...<|im_end|>\\n<|im_start|>user\\n"``.
        end_marker: the text that closes a user turn, e.g. ``"<|im_end|>"``.
        end_token_ids: the marker's token id when it is one token (empty when it is not: then
            sampling watches the decoded text instead).
        system_prompt: the system prompt inside ``text`` (given, or inserted by the template by
            default), or None.
    """

    text: str
    end_marker: str
    end_token_ids: tuple[int, ...]
    system_prompt: str | None = None


def _render(tokenizer: object, messages: list[dict], generation_prompt: bool, name: str) -> str:
    template = getattr(tokenizer, "chat_template", None)
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt, chat_template=template
        )
    except Exception as exc:  # jinja raises many kinds (TemplateError, exceptions the template raises itself)
        roles = " and ".join(m["role"] for m in messages)
        raise TemplateError(
            f"the chat template of {name} refuses a conversation of {roles} ({exc}); Magpie synthesis cannot use it "
            "as it is: fix tokenizer.chat_template, or upload instructions instead"
        ) from None


def _first_marker(text: str, specials: list[str]) -> str | None:
    best: tuple[int, int, str] | None = None
    for s in specials:
        pos = text.find(s)
        if pos >= 0 and (best is None or (pos, -len(s)) < best[:2]):
            best = (pos, -len(s), s)
    return best[2] if best else None


def _default_system(tokenizer: object, prefix: str, name: str) -> str | None:
    """The system prompt a template inserts when none is given (best effort; None if there is none)."""
    try:
        with_system = tokenizer.apply_chat_template(
            [{"role": "system", "content": _SYSTEM_SENTINEL}, {"role": "user", "content": SENTINEL}],
            tokenize=False, add_generation_prompt=False, chat_template=getattr(tokenizer, "chat_template", None),
        )
    except Exception:  # templates without a system role (Gemma) insert none either
        return None
    if _SYSTEM_SENTINEL not in with_system or SENTINEL not in with_system:
        return None
    system_open = with_system[: with_system.index(_SYSTEM_SENTINEL)]  # e.g. "<|im_start|>system\n"
    between = with_system[with_system.index(_SYSTEM_SENTINEL) + len(_SYSTEM_SENTINEL) : with_system.index(SENTINEL)]
    if not prefix.startswith(system_open) or not prefix.endswith(between) or len(prefix) < len(system_open) + len(between):
        return None
    inserted = prefix[len(system_open) : len(prefix) - len(between)]
    return inserted.strip() or None


def derive_pre_query(tokenizer: object, system: str | None = None, *, name: str = "this tokenizer") -> PreQuery:
    """Cut the chat template where the user message begins.

    Args:
        tokenizer: a Hugging Face tokenizer with a ``chat_template``.
        system: an explicit system prompt to put in the pre-query (default: whatever the
            template inserts on its own, often nothing).
        name: how to call the tokenizer in error messages (the model name).

    Returns:
        A :class:`PreQuery`.

    Raises:
        TemplateError: the tokenizer has no template, the template refuses a user-only
            conversation, changes the user message, or writes nothing after it (so the end of a
            sampled message cannot be found). The message says which.

    Example:
        >>> pq = derive_pre_query(lm.tokenizer)
        >>> pq.text
        '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n<|im_start|>user\\n'
        >>> pq.end_marker
        '<|im_end|>'
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            f"{name} has no chat template, so there is no user turn to cut for Magpie synthesis; use an instruct "
            "model, set tokenizer.chat_template, or upload instructions instead"
        )
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": SENTINEL}]
    full = _render(tokenizer, messages, False, name)
    if full.count(SENTINEL) != 1:
        raise TemplateError(
            f"the chat template of {name} does not write the user message verbatim exactly once (found it "
            f"{full.count(SENTINEL)} times), so the synthesiser cannot tell where the user turn begins; "
            "upload instructions instead or fix the template"
        )
    cut = full.index(SENTINEL)
    prefix = full[:cut]
    if not prefix.strip():
        raise TemplateError(
            f"the chat template of {name} writes nothing before the user message (no user header), so a pre-query "
            "would be empty and the model would not know it is writing a user turn; use an instruct model's template"
        )
    specials = special_token_strings(tokenizer)
    after = full[cut + len(SENTINEL) :]
    marker = _first_marker(after, specials)
    if marker is None:
        after_gen = _render(tokenizer, messages, True, name)[cut + len(SENTINEL) :]
        marker = _first_marker(after_gen, specials) or next(
            (line.strip() for line in after_gen.splitlines() if line.strip()), None
        )
    if not marker:
        raise TemplateError(
            f"the chat template of {name} writes nothing after the user message, so the end of a sampled "
            "instruction cannot be recognised; use a template that closes the user turn (e.g. with <|im_end|>)"
        )
    ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
    end_ids = (int(ids[0]),) if len(ids) == 1 else ()
    return PreQuery(
        text=with_bos(tokenizer, prefix),  # a template that writes no BOS still gets the one the model wants
        end_marker=marker,
        end_token_ids=end_ids,
        system_prompt=system or _default_system(tokenizer, prefix, name),
    )
