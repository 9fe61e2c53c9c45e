"""Stream each row's response text while ``generate`` decodes a batch."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from transformers.generation.streamers import BaseStreamer

__all__ = ["RowStreamer", "StepCallback"]

StepCallback = Callable[[dict[int, str]], None]


class RowStreamer(BaseStreamer):
    """Collects the new tokens of every row of one batch and reports the text so far.

    ``generate`` calls ``put(prompt_ids)`` once (skipped), then ``put(next_tokens)`` with
    shape ``(batch,)`` after every decoding step, then ``end()``. After each step ``on_step``
    gets ``{row: text so far}`` for every row that had not finished before that step (a row
    finishes with its first EOS id; that step is still reported, so a row's last text equals
    what :func:`~icon2engine.generation.generate_rows` returns before stripping).

    Each value is the whole text so far: replace, do not append. A row whose text ends in
    an incomplete character (``\\ufffd``, a multi-byte character split across tokens) keeps
    reporting its previous text until the next token completes it, so the texts a row reports
    grow by appending; ``end()`` reports whatever is still held back.

    Args:
        tokenizer: decodes the ids (``skip_special_tokens=True``, as ``generate_rows`` does).
        rows: the caller's row index of each batch position.
        eos_ids: token ids that finish a row.
        on_step: receives ``{row: text}`` after each step.

    Example:
        >>> streamer = RowStreamer(tok, rows=[3, 0], eos_ids=[2], on_step=print)
        >>> lm.model.generate(**enc, streamer=streamer)
    """

    def __init__(self, tokenizer, rows: Sequence[int], eos_ids: Iterable[int], on_step: StepCallback) -> None:
        self.tokenizer = tokenizer
        self.rows = list(rows)
        self.eos_ids = set(int(t) for t in eos_ids)
        self.on_step = on_step
        self.ids: list[list[int]] = [[] for _ in self.rows]
        self.finished = [False] * len(self.rows)
        self.reported = [""] * len(self.rows)
        self._pending: set[int] = set()  # batch positions whose latest text was held back
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt ids (batch, prompt_len)
            self._prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()  # (batch,)
        if len(tokens) != len(self.rows):
            raise RuntimeError(f"streamer expected {len(self.rows)} tokens per step, got {len(tokens)}")
        update: dict[int, str] = {}
        for pos, token in enumerate(tokens):
            if self.finished[pos]:
                continue
            self.ids[pos].append(int(token))
            self.finished[pos] = token in self.eos_ids
            text = self._text(pos)
            # Hold back a split multi-byte character unless the row is done (then report as returned).
            if text.endswith("\ufffd") and not self.finished[pos]:
                self._pending.add(pos)
            else:
                self._pending.discard(pos)
                self.reported[pos] = text
            update[self.rows[pos]] = self.reported[pos]
        if update:
            self.on_step(update)

    def end(self) -> None:
        update = {}
        for pos in sorted(self._pending):
            text = self._text(pos)
            self.reported[pos] = text
            update[self.rows[pos]] = text
        self._pending.clear()
        if update:
            self.on_step(update)

    def _text(self, pos: int) -> str:
        return self.tokenizer.decode(self.ids[pos], skip_special_tokens=True)
