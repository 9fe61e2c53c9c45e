"""The pair gate on the tiny model (structure) and on the embedded model (behaviour)."""
from __future__ import annotations

import pytest

from icon2engine import Dimension, GenerateConfig, InputError, PromptPair, SteeringConfig, extract_directions
from icon2engine.errors import ConfigError
from icon2engine.gate import GateConfig, drop_summary, generate_gated_pairs
from icon2engine.quality import QualityConfig, degenerate_reasons, measure_responses

DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))
PROMPTS = ["Describe the sea.", "Tell me about a quick brown fox and a lazy dog.", "What?", "Numbers 1 2 3 4 5 6 7."]
# A random model writes no language: only the checks a forced failure trips are on.
NO_RELEVANCE = dict(min_relevance=None, min_relevance_kept=None, min_new_content=None, min_relevance_vs_rejected=None)
STRUCTURE = QualityConfig(max_foreign=None, max_loglik_drop=None, min_length_ratio=None, max_length_ratio=None, **NO_RELEVANCE)


@pytest.fixture
def directions(tiny_lm):
    return extract_directions(tiny_lm, DIM, ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."])


def test_a_forced_degenerate_side_is_retried_at_a_smaller_gamma_then_dropped_with_its_reason(tiny_lm, directions):
    # γ⁻ = −1 × the layer norm at every block drowns the tiny model: its rejected side comes out empty.
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS, steering=SteeringConfig(0.01, -1.0, layers=(0, 1, 2, 3)),
        config=GenerateConfig(max_new_tokens=16), gate=GateConfig(quality=STRUCTURE, max_retries=2, retry_factor=0.6),
    )
    dropped = [d for d in res.dropped if d["reason"] == "rejected: empty"]
    assert dropped, res.dropped_counts
    tries = [r for r in dropped[0]["retries"] if r["side"] == "rejected"]
    assert [r["gamma"] for r in tries] == [-1.0, -0.6] and all(r["reasons"] == ["empty"] for r in tries)
    assert res.dropped_counts["rejected: empty"] == len(dropped)
    assert res.summary()["dropped"] == res.dropped_counts and res.retries >= 2 * len(dropped)
    assert len(res.pairs) + len(res.dropped) == len(PROMPTS)
    kept = {p.instruction for p in res.pairs}
    assert not kept & {d["instruction"] for d in res.dropped}  # a dropped pair is never returned


def test_with_the_gate_off_every_pair_is_kept_and_still_measured(tiny_lm, directions):
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS, steering=SteeringConfig(0.01, -1.0, layers=(0, 1, 2, 3)),
        config=GenerateConfig(max_new_tokens=8), gate=GateConfig(enabled=False),
    )
    assert len(res.pairs) == len(PROMPTS) and res.dropped == [] and res.retries == 0
    assert all(set(p.quality) == {"chosen", "rejected", "unsteered"} for p in res.pairs)
    assert [p.index for p in res.pairs] == [0, 1, 2, 3]


def test_a_gamma_too_small_to_change_anything_drops_the_pairs_as_identical(tiny_lm, directions):
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS[:2], steering=SteeringConfig(1e-9, -1e-9, layers=(1,)),
        config=GenerateConfig(max_new_tokens=8), gate=GateConfig(quality=QualityConfig(
            max_repetition=None, min_distinct2=None, max_foreign=None, max_loglik_drop=None, min_length_ratio=None,
            max_length_ratio=None, min_words=0, **NO_RELEVANCE)),
    )
    assert res.pairs == [] and res.dropped_counts == {"identical sides": 2}
    assert drop_summary(0, res.dropped_counts) == "0 pairs kept, 2 dropped (identical sides 2)"


def test_gate_settings_are_checked(tiny_lm, directions):
    with pytest.raises(ConfigError, match="retry_factor"):
        GateConfig(retry_factor=1.0)
    with pytest.raises(InputError, match="no instructions"):
        generate_gated_pairs(tiny_lm, directions, [])


@pytest.mark.slow
def test_the_default_settings_make_pairs_whose_rejected_side_is_rarely_degenerate(embedded_lm, optimism_directions):
    """On the embedded model with the product's defaults (engine = run form): at most 5% of rejected
    sides are degenerate (not fluent) before the gate retries anything, and every kept pair is fluent
    and answers its instruction on both sides."""
    instructions = [
        "Tell me about the city's new library.", "Describe a morning at a busy train station.",
        "What is it like to start a new school?", "Write a few sentences about a neighbour's garden.",
        "Describe a day at the seaside in September.", "Tell me about a local football club.",
        "What happens on the first day of a new job?", "Describe a small bookshop.",
        "Write a note to a friend about the weekend.", "Tell me about a bus journey through the hills.",
        "Describe a kitchen after a family dinner.", "What is a village market like?",
        "Tell me about learning to swim.", "Describe the view from a mountain hut.",
        "Write about a rainy evening at home.", "Tell me about a visit to a museum.",
        "Describe an office on a Friday afternoon.", "What is it like to move to a new country?",
        "Tell me about a concert in the park.", "Describe a hospital corridor at night.",
    ]
    steering, config = SteeringConfig(), GenerateConfig()
    res = generate_gated_pairs(embedded_lm, optimism_directions, instructions, steering=steering, config=config)
    from icon2engine.quality import FLUENCY_REASONS

    def unfluent(retries):
        return any(r["side"] == "rejected" and set(r["reasons"]) & FLUENCY_REASONS for r in retries)

    first_pass_bad = sum(unfluent(p.retries) for p in res.pairs) + sum(
        unfluent(d["retries"]) or (d["reason"].startswith("rejected") and d["reason"].split(": ")[1] in FLUENCY_REASONS)
        for d in res.dropped)
    for p in res.pairs[:5]:
        print(f"\n+ {p.chosen[:200]!r}\n- {p.rejected[:200]!r}")
    print(f"\nkept {len(res.pairs)}, dropped {res.dropped_counts}, retries {res.retries}, first-pass bad rejected {first_pass_bad}")
    assert first_pass_bad <= 0.05 * len(instructions)
    # These are descriptions, not requests with a right answer: the cheerful side often stops describing
    # (measured 2026-12-07 after the relevance checks read the whole response: 11 of 20 kept, here and
    # on the CI machine; dropped: chosen off topic 5, rejected off topic 3, chosen less relevant 1,
    # each after two retries); bench/pair_relevance.py has the figures on
    # requests with answers. What this test guards is that the gate keeps a working share and that
    # what it drops it drops for the chosen side's relevance, not for a degenerate rejected side.
    assert len(res.pairs) >= 0.45 * len(instructions)
    rejected_fluency_drops = [d for d in res.dropped
                              if d["reason"].startswith("rejected") and d["reason"].split(": ")[1] in FLUENCY_REASONS]
    assert len(rejected_fluency_drops) <= 0.05 * len(instructions)
    # Measured again, independently of the gate's own bookkeeping: no kept side is degenerate.
    texts = [s for p in res.pairs for s in (p.chosen, p.rejected)]
    prompts = [p.instruction for p in res.pairs for _ in range(2)]
    refs = [p.unsteered for p in res.pairs for _ in range(2)]
    assert not any(degenerate_reasons(q, QualityConfig()) for q in measure_responses(embedded_lm, prompts, texts, refs))
    assert all(p.chosen != p.rejected for p in res.pairs)


REFUSAL = "I'm sorry, but as a chatbot I don't have the ability to help with that."


def _rejected_side_refuses(monkeypatch, text=REFUSAL):
    """Every row steered at a negative γ comes back as ``text`` (the tiny model writes no language)."""
    import icon2engine.gate as gate_module

    real = gate_module.generate_rows

    def fake(lm, rows, cfg, *, coefficients, **kw):
        out = real(lm, rows, cfg, coefficients=coefficients, **kw)
        out.texts = [text if c < 0 else t for t, c in zip(out.texts, coefficients)]
        return out

    monkeypatch.setattr(gate_module, "generate_rows", fake)


def test_a_side_that_refuses_is_retried_then_dropped_with_refusal_as_its_reason(tiny_lm, directions, monkeypatch):
    _rejected_side_refuses(monkeypatch)
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS[:2], steering=SteeringConfig(0.05, -0.05, layers=(1, 2)),
        config=GenerateConfig(max_new_tokens=12), gate=GateConfig(quality=STRUCTURE, max_retries=2),
    )
    assert res.pairs == [] and res.dropped_counts == {"rejected: refusal": 2}
    tries = [r for r in res.dropped[0]["retries"] if r["side"] == "rejected"]
    assert [r["gamma"] for r in tries] == [-0.05, -0.03] and all(r["reasons"] == ["refusal"] for r in tries)
    assert res.dropped[0]["quality"]["rejected"]["refusal"] == 1.0


def test_where_refusing_is_the_dimension_the_chosen_side_may_refuse_but_the_rejected_side_may_not(tiny_lm, directions, monkeypatch):
    import icon2engine.gate as gate_module

    real = gate_module.generate_rows

    def chosen_refuses(lm, rows, cfg, *, coefficients, **kw):
        out = real(lm, rows, cfg, coefficients=coefficients, **kw)
        out.texts = [REFUSAL if c > 0 else t for t, c in zip(out.texts, coefficients)]
        return out

    monkeypatch.setattr(gate_module, "generate_rows", chosen_refuses)
    kwargs = dict(steering=SteeringConfig(0.05, -0.05, layers=(1, 2)), config=GenerateConfig(max_new_tokens=12, min_new_tokens=12))
    allowed = generate_gated_pairs(tiny_lm, directions, PROMPTS[:2], gate=GateConfig(quality=STRUCTURE, refusal_allowed=("cheer",)), **kwargs)
    assert len(allowed.pairs) == 2 and all(p.quality["chosen"]["refusal"] == 1.0 for p in allowed.pairs)
    other = generate_gated_pairs(tiny_lm, directions, PROMPTS[:2], gate=GateConfig(quality=STRUCTURE, refusal_allowed=("other",)), **kwargs)
    assert other.dropped_counts == {"chosen: refusal": 2}


def test_an_off_topic_side_is_retried_then_dropped_with_off_topic_as_its_reason(tiny_lm, directions):
    # The relevance floor set above anything a text can score: every side is off topic, measured by the model.
    off = QualityConfig(max_foreign=None, max_loglik_drop=None, min_length_ratio=None, max_length_ratio=None,
                        max_repetition=None, min_distinct2=None, min_words=0, min_relevance=100.0, min_relevance_kept=None,
                        min_new_content=None, min_words_relevance=0, min_relevance_vs_rejected=None)
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS[:2], steering=SteeringConfig(0.05, -0.05, layers=(1, 2)),
        config=GenerateConfig(max_new_tokens=12, min_new_tokens=12), gate=GateConfig(quality=off, max_retries=1),
    )
    assert res.pairs == [] and res.dropped_counts == {"chosen: off_topic": 2}
    assert res.retries == 4  # both sides of both pairs, once
    assert all(r["reasons"] == ["off_topic"] for d in res.dropped for r in d["retries"])
    assert all(isinstance(d["quality"][s]["relevance"], float) for d in res.dropped for s in ("chosen", "rejected", "unsteered"))


def test_an_unsteered_chosen_pair_steers_only_its_rejected_side(tiny_lm, directions):
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS, steering=SteeringConfig(0.05, -0.3, layers=(1, 2), pairing="unsteered_chosen"),
        config=GenerateConfig(max_new_tokens=8), gate=GateConfig(enabled=False),
    )
    assert res.rows_generated == 2 * len(PROMPTS)  # unsteered + rejected: no chosen row decoded
    assert all(p.chosen == p.unsteered and p.gamma_plus == 0.0 and p.pairing == "unsteered_chosen" for p in res.pairs)
    assert any(p.rejected != p.unsteered for p in res.pairs)


def test_a_pair_whose_rejected_side_is_the_better_answer_retries_its_chosen_side_then_drops_it(tiny_lm, directions, monkeypatch):
    # The tiny model writes no language, so the chosen rows become a cheerful non-answer and the
    # rejected rows an answer, and their relevance is set as the embedded model measures such texts
    # (tests/engine/test_relevance.py); everything else is the gate's own path.
    import icon2engine.gate as gate_module

    cheer = "What a wonderful question! Life is a joyful adventure and every day brings happy surprises for everyone."
    answer = "Loosen the lug nuts, jack up the car, swap the flat for the spare, then tighten the nuts in a star pattern."
    real_rows, real_measure = gate_module.generate_rows, gate_module.measure_responses

    def rows(lm, texts, cfg, *, coefficients, **kw):
        out = real_rows(lm, texts, cfg, coefficients=coefficients, **kw)
        out.texts = [cheer if c > 0 else answer if c < 0 else t for t, c in zip(out.texts, coefficients)]
        return out

    def measure(lm, instructions, texts, refs, **kw):
        out = real_measure(lm, instructions, texts, refs, **kw)
        for q, t in zip(out, texts):
            q.relevance = {cheer: 0.1, answer: 0.9}.get(t, q.relevance)
        return out

    monkeypatch.setattr(gate_module, "generate_rows", rows)
    monkeypatch.setattr(gate_module, "measure_responses", measure)
    kwargs = dict(steering=SteeringConfig(0.05, -0.05, layers=(1, 2)), config=GenerateConfig(max_new_tokens=12))
    qc = QualityConfig(**{**STRUCTURE.__dict__, "min_relevance_vs_rejected": 0.4, "min_words_relevance": 0})
    res = generate_gated_pairs(tiny_lm, directions, PROMPTS[:2], gate=GateConfig(quality=qc, max_retries=2), **kwargs)
    assert res.pairs == [] and res.dropped_counts == {"chosen: less_relevant": 2}
    tries = res.dropped[0]["retries"]
    assert [(r["side"], r["gamma"], r["reasons"]) for r in tries] == [("chosen", 0.05, ["less_relevant"]), ("chosen", 0.03, ["less_relevant"])]
    assert res.retries == 4  # the chosen sides only: the rejected side is kept and not measured again
    # Where refusing is the concept, a chosen side may rightly be the less relevant one; and the check can be off.
    allowed = generate_gated_pairs(tiny_lm, directions, PROMPTS[:2], gate=GateConfig(quality=qc, refusal_allowed=("cheer",)), **kwargs)
    off = generate_gated_pairs(tiny_lm, directions, PROMPTS[:2],
                               gate=GateConfig(quality=QualityConfig(**{**qc.__dict__, "min_relevance_vs_rejected": None})), **kwargs)
    assert len(allowed.pairs) == len(off.pairs) == 2


def test_when_the_models_own_answers_loop_the_gate_blames_the_model_not_gamma(tiny_lm, directions, monkeypatch):
    # The unsteered rows are forced to loop (as a Gemma GGUF without its BOS did); the steered rows are left alone.
    import icon2engine.gate as gate_module
    from icon2engine import ModelOutputError
    from icon2engine.stages import generate_stage

    real = gate_module.generate_rows
    loop = "the the the the the the the the the the the the the the the the"

    def unsteered_loops(lm, rows, cfg, *, coefficients=None, **kw):
        out = real(lm, rows, cfg, coefficients=coefficients, **kw)
        out.texts = [loop if c == 0 else t for t, c in zip(out.texts, coefficients)]
        return out

    monkeypatch.setattr(gate_module, "generate_rows", unsteered_loops)
    kwargs = dict(steering=SteeringConfig(0.05, -0.05, layers=(1, 2)), config=GenerateConfig(max_new_tokens=12))
    with pytest.raises(ModelOutputError) as err:
        generate_stage(tiny_lm, directions, PROMPTS, gate=GateConfig(quality=STRUCTURE), out=None, **kwargs)
    text = str(err.value)
    assert "the model's own answers are degenerate: 4 of 4 unsteered answers (repetition 4)" in text
    assert "BOS" in text and "base model" in text and "chat template" in text
    assert "smaller" not in text and "gamma_plus" not in text  # no advice to change γ
    # One degenerate unsteered answer in four is the gate's ordinary business, not the model's fault.
    monkeypatch.setattr(gate_module, "generate_rows", lambda lm, rows, cfg, *, coefficients=None, **kw: _one_loops(
        real(lm, rows, cfg, coefficients=coefficients, **kw), coefficients, loop))
    res = generate_gated_pairs(tiny_lm, directions, PROMPTS, gate=GateConfig(quality=STRUCTURE), **kwargs)
    assert len(res.pairs) + len(res.dropped) == len(PROMPTS)
    # With the gate off, nothing is checked.
    monkeypatch.setattr(gate_module, "generate_rows", unsteered_loops)
    assert len(generate_gated_pairs(tiny_lm, directions, PROMPTS, gate=GateConfig(enabled=False), **kwargs).pairs) == 4


def _one_loops(out, coefficients, loop):
    first = coefficients.index(0.0) if 0.0 in coefficients else None
    out.texts = [loop if i == first else t for i, t in enumerate(out.texts)]
    return out


def test_a_retried_side_is_scored_once_per_text_and_the_other_side_and_the_reference_are_not_scored_again(
        tiny_lm, directions, monkeypatch):
    """Nothing is scored twice: each retry of the rejected side costs one scoring of its new text; the
    chosen side and the unsteered answer, unchanged, are scored once (prefill passes counted per text).
    The tiny model writes no language, so the rejected rows are replaced by a refusal that differs per try."""
    import icon2engine.gate as gate_module
    import icon2engine.quality as quality_module

    real_generate, tries = gate_module.generate_rows, iter(range(1000))

    def refusing(lm, rows, cfg, *, coefficients, **kw):
        out = real_generate(lm, rows, cfg, coefficients=coefficients, **kw)
        out.texts = [f"{REFUSAL} (try {next(tries)})" if c < 0 else t for t, c in zip(out.texts, coefficients)]
        return out

    scored: dict[tuple[str, str], int] = {}  # relevance: (instruction, text) -> prefills
    read: dict[str, int] = {}  # log-likelihood after the prompt: text -> prefills
    real_loglik, real_relevance = quality_module.token_logprobs, quality_module.relevance_scores

    def counting_loglik(lm, prompts, responses, **kw):
        for text in responses:
            read[text] = read.get(text, 0) + 1
        return real_loglik(lm, prompts, responses, **kw)

    def counting_relevance(lm, instructions, responses, **kw):
        for key in zip(instructions, responses):
            scored[key] = scored.get(key, 0) + 1
        return real_relevance(lm, instructions, responses, **kw)

    monkeypatch.setattr(gate_module, "generate_rows", refusing)
    monkeypatch.setattr(quality_module, "token_logprobs", counting_loglik)
    monkeypatch.setattr(quality_module, "relevance_scores", counting_relevance)
    res = generate_gated_pairs(
        tiny_lm, directions, PROMPTS[:2], steering=SteeringConfig(0.05, -0.05, layers=(1, 2)),
        config=GenerateConfig(max_new_tokens=12), gate=GateConfig(quality=STRUCTURE, max_retries=2),
    )
    assert res.retries == 4 and res.dropped_counts == {"rejected: refusal": 2}  # two instructions, two retries each
    assert all(n == 1 for n in scored.values()), scored
    assert all(n == 1 for n in read.values()) and set(read) == {t for _, t in scored}, read
    for d in res.dropped:
        texts = {t for (i, t) in scored if i == d["instruction"]}
        # the unsteered answer, the chosen side, and the rejected side's three tries: five texts, each scored once
        assert d["chosen"] in texts and sum(t.startswith(REFUSAL) for t in texts) == 3 and len(texts) == 5, texts
