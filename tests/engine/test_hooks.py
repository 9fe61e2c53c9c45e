from __future__ import annotations

import pytest
import torch

from icon2engine import add_to_block_outputs, record_block_outputs


def _batch(lm, texts):
    return lm.tokenizer(texts, return_tensors="pt", padding=True)


def test_recorded_block_outputs_match_the_hidden_states_before_the_final_norm(tiny_lm):
    enc = _batch(tiny_lm, ["Describe a rainy Monday."])
    with record_block_outputs(tiny_lm.layers) as rec, torch.no_grad():
        out = tiny_lm.model(**enc, output_hidden_states=True)
    # hidden_states[l + 1] is block l's output, except the last entry, which is after the final norm.
    for layer in range(tiny_lm.n_layers - 1):
        torch.testing.assert_close(rec[layer], out.hidden_states[layer + 1])
    assert not torch.allclose(rec[tiny_lm.n_layers - 1], out.hidden_states[-1])


def test_hooks_are_removed_even_when_the_body_raises(tiny_lm):
    deltas = {1: torch.ones(1, tiny_lm.hidden_size)}
    with pytest.raises(RuntimeError, match="boom"):
        with add_to_block_outputs(tiny_lm.layers, deltas), record_block_outputs(tiny_lm.layers):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in tiny_lm.layers)


def test_steering_adds_each_rows_own_vector(tiny_lm):
    enc = _batch(tiny_lm, ["Tell me about the sea.", "Tell me about the sea."])
    delta = torch.zeros(2, tiny_lm.hidden_size)
    delta[0] += 3.0
    with torch.no_grad(), record_block_outputs(tiny_lm.layers, [2]) as plain:
        tiny_lm.model(**enc)
    with torch.no_grad(), add_to_block_outputs(tiny_lm.layers, {2: delta}, prompt_too=True), record_block_outputs(
        tiny_lm.layers, [2]
    ) as steered:
        tiny_lm.model(**enc)
    diff = steered[2] - plain[2]  # (batch, seq, hidden)
    torch.testing.assert_close(diff[0], torch.full_like(diff[0], 3.0))
    torch.testing.assert_close(diff[1], torch.zeros_like(diff[1]))


def test_prefill_is_steered_only_at_its_last_position_by_default(tiny_lm):
    enc = _batch(tiny_lm, ["Tell me about the sea."])
    delta = torch.full((1, tiny_lm.hidden_size), 2.0)
    with torch.no_grad(), record_block_outputs(tiny_lm.layers, [1]) as plain:
        tiny_lm.model(**enc)
    with torch.no_grad(), add_to_block_outputs(tiny_lm.layers, {1: delta}), record_block_outputs(tiny_lm.layers, [1]) as st:
        tiny_lm.model(**enc)
    diff = st[1] - plain[1]
    assert torch.allclose(diff[0, :-1], torch.zeros_like(diff[0, :-1]))
    assert torch.allclose(diff[0, -1], torch.full_like(diff[0, -1], 2.0))
