"""Forward hooks on decoder blocks, only ever installed inside context managers.

Both managers remove every hook in ``finally``, so an exception inside the ``with`` block
(or a cancelled stage) never leaves a model steered or recording.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

__all__ = ["record_block_outputs", "add_to_block_outputs", "block_output_tensor"]


def block_output_tensor(output: object) -> torch.Tensor:
    """A decoder block returns a tensor or a tuple whose first item is the hidden states."""
    return output[0] if isinstance(output, tuple) else output  # (batch, seq, hidden)


def _replace_hidden(output: object, hidden: torch.Tensor) -> object:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextlib.contextmanager
def record_block_outputs(
    layers: Sequence[nn.Module],
    indices: Sequence[int] | None = None,
    reduce: Callable[[torch.Tensor], object] | None = None,
) -> Iterator[dict[int, object]]:
    """Record what each decoder block outputs during the forward passes run inside the block.

    Args:
        layers: the model's decoder blocks.
        indices: which blocks to record (default: all).
        reduce: applied to each block's ``(batch, seq, hidden)`` output before it is kept, so
            callers can keep only what they need (e.g. the last token) instead of every state.

    Yields:
        A dict ``block index -> reduced output`` of the most recent forward pass.

    Example:
        >>> with record_block_outputs(lm.layers, reduce=lambda h: h[:, -1]) as rec:
        ...     lm.base_model(**batch)
        >>> rec[12].shape  # (batch, hidden)
    """
    indices = list(range(len(layers))) if indices is None else list(indices)
    store: dict[int, object] = {}
    handles = []

    def make_hook(idx: int):
        def hook(_module, _inputs, output):
            hidden = block_output_tensor(output).detach()
            store[idx] = reduce(hidden) if reduce is not None else hidden

        return hook

    try:
        for idx in indices:
            handles.append(layers[idx].register_forward_hook(make_hook(idx)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def add_to_block_outputs(
    layers: Sequence[nn.Module],
    deltas: Mapping[int, torch.Tensor],
    *,
    prompt_too: bool = False,
) -> Iterator[None]:
    """Add a per-row vector to the output of each listed decoder block (activation steering).

    Args:
        layers: the model's decoder blocks.
        deltas: block index -> ``(batch, hidden)`` tensor, one row per sequence in the batch
            (chosen and rejected rows of one instruction carry opposite coefficients).
        prompt_too: when False (default), a multi-token forward (the prompt prefill) is steered
            only at its last position, which produces the first generated token; every later
            one-token step is steered. Requires left padding, so the last position is real.
    """
    handles = []

    def make_hook(delta: torch.Tensor):
        def hook(_module, _inputs, output):
            hidden = block_output_tensor(output)  # (batch, seq, hidden)
            d = delta.to(dtype=hidden.dtype, device=hidden.device)
            if hidden.shape[0] != d.shape[0]:
                raise RuntimeError(f"steering has {d.shape[0]} rows but the batch has {hidden.shape[0]}")
            if prompt_too or hidden.shape[1] == 1:
                hidden = hidden + d[:, None, :]
            else:
                hidden = hidden.clone()
                hidden[:, -1, :] += d
            return _replace_hidden(output, hidden)

        return hook

    try:
        for idx, delta in deltas.items():
            handles.append(layers[idx].register_forward_hook(make_hook(delta)))
        yield
    finally:
        for h in handles:
            h.remove()
