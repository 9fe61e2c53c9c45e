from __future__ import annotations

import pytest
import torch

from icon2engine import GenerateConfig, generate_rows
from icon2engine.streaming import RowStreamer

PROMPTS = ["Describe the sea.", "Tell me about a quick brown fox and a lazy dog.", "What?", "Numbers 1 2 3 4 5 6 7."]


def _stream(lm, prompts, cfg, **kwargs):
    steps: list[dict[int, str]] = []
    gen = generate_rows(lm, prompts, cfg, on_step=steps.append, **kwargs)
    return gen, steps


def _eos_where_a_common_token_was(lm, prompts, cfg):
    """Make EOS take the place of a token the rows emit at different steps, so they finish at different steps.

    The tiny model never emits EOS by chance. Its EOS output row becomes a slightly larger copy
    of the row of the token whose first appearance varies most between the rows.
    """
    plain = generate_rows(lm, prompts, cfg)
    firsts: dict[int, set[int]] = {}
    for text in plain.texts:
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        for t in set(ids):
            firsts.setdefault(t, set()).add(ids.index(t))
    token = max(firsts, key=lambda t: (len(firsts[t]), -t))
    with torch.no_grad():
        head = lm.model.lm_head.weight  # (vocab, hidden)
        head[lm.tokenizer.eos_token_id] = 1.05 * head[token]
    return lm


def test_streamed_texts_end_as_the_returned_texts_and_grow_by_appending(tiny_lm):
    cfg = GenerateConfig(max_new_tokens=16, batch_size=2)
    gen, steps = _stream(tiny_lm, PROMPTS, cfg)
    assert len(steps) > 2
    last: dict[int, str] = {}
    for update in steps:
        assert set(update) <= set(range(len(PROMPTS)))
        for row, text in update.items():
            assert text.startswith(last.get(row, ""))
            last[row] = text
    assert {row: text.strip() for row, text in last.items()} == dict(enumerate(gen.texts))


def test_streaming_does_not_change_batched_greedy_results(tiny_lm):
    cfg = GenerateConfig(max_new_tokens=12, batch_size=3)
    plain = generate_rows(tiny_lm, PROMPTS, cfg)
    streamed, _ = _stream(tiny_lm, PROMPTS, cfg)
    one_by_one = generate_rows(tiny_lm, PROMPTS, GenerateConfig(max_new_tokens=12, batch_size=1))
    assert streamed.texts == plain.texts == one_by_one.texts
    assert streamed.new_tokens == plain.new_tokens


def test_a_row_is_reported_until_its_eos_and_not_after(tiny_lm):
    cfg = GenerateConfig(max_new_tokens=16, batch_size=4)
    lm = _eos_where_a_common_token_was(tiny_lm, PROMPTS, cfg)
    gen, steps = _stream(lm, PROMPTS, cfg)
    assert len(set(gen.new_tokens)) > 1, "rows should finish at different steps for this test to mean anything"
    for row, n in enumerate(gen.new_tokens):
        # One report per decoding step the row took part in (its EOS step included).
        assert sum(row in update for update in steps) == n
        assert [text for update in steps for r, text in update.items() if r == row][-1].strip() == gen.texts[row]
    # Every step reports exactly the rows that had not finished before it.
    for step, update in enumerate(steps):
        assert set(update) == {row for row, n in enumerate(gen.new_tokens) if n > step}


def test_the_streamer_skips_the_prompt_and_holds_back_a_split_character():
    class ByteTok:  # each id is one byte of UTF-8
        def decode(self, ids, skip_special_tokens=True):
            return bytes(i for i in ids if i != 0).decode("utf-8", errors="replace")

    updates: list[dict[int, str]] = []
    streamer = RowStreamer(ByteTok(), rows=[5, 2], eos_ids=[0], on_step=updates.append)
    streamer.put(torch.tensor([[9, 9, 9], [9, 9, 9]]))  # the prompt: (batch, prompt_len)
    e_acute = list("é".encode())  # two bytes
    streamer.put(torch.tensor([ord("a"), e_acute[0]]))  # (batch,)
    streamer.put(torch.tensor([0, e_acute[1]]))  # row 5 ends; row 2's character completes
    streamer.put(torch.tensor([0, e_acute[0]]))  # row 2 splits a character again, and generation stops
    streamer.end()
    assert updates == [{5: "a", 2: ""}, {5: "a", 2: "é"}, {2: "é"}, {2: "é\ufffd"}]


@pytest.mark.slow
def test_streaming_on_the_embedded_model_ends_as_the_returned_texts(embedded_lm):
    cfg = GenerateConfig(max_new_tokens=24, batch_size=2)
    prompts = ["Say hi.", "Write one sentence about the sea, in French, with an accent.", "Name a colour."]
    gen, steps = _stream(embedded_lm, prompts, cfg)
    last = {}
    for update in steps:
        for row, text in update.items():
            assert text.startswith(last.get(row, ""))
            last[row] = text
    assert [last[r].strip() for r in range(len(prompts))] == gen.texts
    assert len(steps) > len(prompts)
