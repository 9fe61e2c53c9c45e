"""Render instructions with the model's own chat template."""
from __future__ import annotations

from typing import Sequence

__all__ = ["format_chat", "format_chats"]

# Used only when a tokenizer has no chat template (base models, tiny test models).
_FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def format_chat(tokenizer: object, user: str, system: str | None = None) -> str:
    """Return the prompt text for one user turn, ready for the assistant's answer.

    Templates that refuse a system role (Gemma's) get the system prompt prepended to the user
    message instead, which is how those models are prompted in practice.
    """
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    template = getattr(tokenizer, "chat_template", None) or _FALLBACK_TEMPLATE
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=template
        )
    except Exception:
        if not system:
            raise
        merged = [{"role": "user", "content": f"{system}\n\n{user}"}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True, chat_template=template)


def format_chats(tokenizer: object, users: Sequence[str], system: str | None = None) -> list[str]:
    return [format_chat(tokenizer, u, system) for u in users]
