"""Forward hooks on decoder blocks, only ever installed inside context managers.

Both managers remove every hook in ``finally``, so an exception inside the ``with`` block
(or a cancelled stage) never leaves a model steered or recording.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .config import STEERING_MODES

__all__ = ["STEERING_MODES", "record_block_outputs", "add_to_block_outputs", "block_output_tensor", "steer_hidden"]


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




def steer_hidden(hidden: torch.Tensor, delta: torch.Tensor, mode: str = "add") -> torch.Tensor:
    """Steer ``hidden`` (batch, seq, hidden) by one ``delta`` (batch, hidden) per row.

    - ``add``: h + δ (the paper's rule).
    - ``add_renorm``: h + δ, then scaled back to each token's original norm, so steering turns
      the state without inflating it (large norms are what tip a small model into loops).
    - ``clamp``: the projection of h on δ's direction is set to ‖δ‖ (the target) instead of
      moved by it, so a token already far along the direction is not pushed further.

    A row whose δ is zero is left exactly as it was in every mode.
    """
    d = delta[:, None, :]  # (batch, 1, hidden)
    if mode == "add":
        return hidden + d
    if mode == "add_renorm":
        steered = hidden + d
        scale = hidden.norm(dim=-1, keepdim=True) / steered.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return steered * scale
    if mode == "clamp":
        size = d.norm(dim=-1, keepdim=True)  # (batch, 1, 1)
        unit = d / size.clamp_min(1e-12)
        proj = (hidden * unit).sum(dim=-1, keepdim=True)  # (batch, seq, 1)
        return torch.where(size > 0, hidden + (size - proj) * unit, hidden)
    raise ValueError(f"unknown steering mode {mode!r}; use one of {', '.join(STEERING_MODES)}")


@contextlib.contextmanager
def add_to_block_outputs(
    layers: Sequence[nn.Module],
    deltas: Mapping[int, torch.Tensor],
    *,
    prompt_too: bool = False,
    mode: str = "add",
) -> Iterator[None]:
    """Add a per-row vector to the output of each listed decoder block (activation steering).

    Args:
        layers: the model's decoder blocks.
        deltas: block index -> ``(batch, hidden)`` tensor, one row per sequence in the batch
            (chosen and rejected rows of one instruction carry opposite coefficients).
        prompt_too: when False (default), a multi-token forward (the prompt prefill) is steered
            only at its last position, which produces the first generated token; every later
            one-token step is steered. Requires left padding, so the last position is real.
        mode: how the vector is applied, see :func:`steer_hidden` (default ``add``).
    """
    if mode not in STEERING_MODES:
        raise ValueError(f"unknown steering mode {mode!r}; use one of {', '.join(STEERING_MODES)}")
    handles = []

    def make_hook(delta: torch.Tensor):
        def hook(_module, _inputs, output):
            hidden = block_output_tensor(output)  # (batch, seq, hidden)
            d = delta.to(dtype=hidden.dtype, device=hidden.device)
            if hidden.shape[0] != d.shape[0]:
                raise RuntimeError(f"steering has {d.shape[0]} rows but the batch has {hidden.shape[0]}")
            if prompt_too or hidden.shape[1] == 1:
                hidden = steer_hidden(hidden, d, mode)
            else:
                hidden = hidden.clone()
                hidden[:, -1:, :] = steer_hidden(hidden[:, -1:, :], d, mode)
            return _replace_hidden(output, hidden)

        return hook

    try:
        for idx, delta in deltas.items():
            handles.append(layers[idx].register_forward_hook(make_hook(delta)))
        yield
    finally:
        for h in handles:
            h.remove()
