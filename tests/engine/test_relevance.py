"""Relevance and refusal: hand-written answers on the embedded model, refusals as text."""
from __future__ import annotations

import pytest

from icon2engine.chat import format_chat
from icon2engine.prefill import token_logprobs
from icon2engine.quality import QualityConfig, degenerate_reasons, measure_responses, measure_text
from icon2engine.relevance import content_repetition, is_refusal, new_content

# Per instruction: an on-topic answer, then texts that are not answers to it.
CASES = {
    "How do I change a flat tire on a car?": {
        "answer": "Loosen the lug nuts, jack up the car, remove the nuts and the flat tire, mount the spare, tighten the "
                  "nuts in a star pattern and lower the car.",
        "echo": "To change a flat tire on a car, you change the flat tire of the car. A flat tire on a car is a tire that is flat.",
        "hollow_cheer": "Absolutely! Life is a wonderful journey and every day is a chance to smile and enjoy the ride!",
        "off_topic": "Bananas are rich in potassium and make a great snack before a workout.",
        "refusal": "As a server, I'm not equipped to provide recommendations on car repairs.",
    },
    "Explain what compound interest is.": {
        "answer": "Compound interest is interest earned on both the original deposit and the interest already added. "
                  "For example, $100 at 10% becomes $110 after one year and $121 after two.",
        "echo": "Compound interest is interest that is compound. It is what compound interest is, the interest that compounds.",
        "hollow_cheer": "What a fantastic question! Learning new things is always so exciting and rewarding!",
        "off_topic": "My favourite colour is blue because it reminds me of the ocean.",
        "refusal": "I apologize, but I'm not able to explain financial topics.",
    },
}
SHORT = QualityConfig(min_words_relevance=0)  # these hand-written answers are short; the word floor has its own test
EXPECTED = {"answer": [], "echo": "off_topic|echo", "hollow_cheer": "off_topic", "off_topic": "off_topic", "refusal": "refusal"}


@pytest.mark.parametrize("text", [
    "I'm sorry for your loss, but as a chatbot designed to provide information, I don't have the ability to help.",
    "As a server, I'm not equipped to provide recommendations.",
    "I cannot help with that request.",
    "I apologize, but I'm not able to explain that.",
    "I'm just an AI language model, so I can't give medical advice.",
    "I'm sorry for any misunderstanding, but as a sci-fi-themed AI, I'm designed to assist with creative writing tasks. "
    "I'm unable to provide suggestions for romance novels.",  # the third rejected side of a default run
    "I'm unable to suggest a novel.",
])
def test_a_response_that_declines_disclaims_or_apologises_instead_of_answering_is_a_refusal(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", [
    "Loosen the lug nuts, then jack up the car.",
    "I'm sorry to hear that. Drink water and rest; see a doctor if the fever lasts.",
    "As a helpful assistant, here are three tips: plan, save, review.",
    "Boil it for six minutes. I can't promise every stove is the same, so watch the first one.",
])
def test_an_answer_is_not_a_refusal_even_when_it_apologises_or_hedges_later(text):
    assert not is_refusal(text)


def test_an_echo_of_the_request_brings_no_new_content_while_an_answer_does():
    instruction = "How do plants get water?"
    echo = "Plants can get their water from water from their soil. Plants get water, and water is what plants get."
    answer = "Plants take up water from the soil through their roots; root hairs absorb it and the xylem carries it up."
    assert new_content(instruction, echo) < QualityConfig().min_new_content < 0.5 < new_content(instruction, answer)


@pytest.mark.slow
def test_only_the_on_topic_answer_passes_and_each_other_text_fails_for_its_own_reason(embedded_lm):
    for instruction, texts in CASES.items():
        names = list(texts)
        quality = measure_responses(embedded_lm, [instruction] * len(names), [texts[k] for k in names],
                                    [texts["answer"]] * len(names))  # the on-topic answer plays the unsteered one
        for name, q in zip(names, quality):
            why = degenerate_reasons(q, SHORT)
            expected = EXPECTED[name]
            if not expected:
                assert why == [], (instruction, name, why)
            else:
                assert set(why) & set(expected.split("|")), (instruction, name, why, q.as_dict())
        by = dict(zip(names, quality))
        assert all(by["answer"].relevance > by[k].relevance for k in ("hollow_cheer", "off_topic")), {
            k: v.relevance for k, v in by.items()}
        # An echo points back to its request as well as an answer does: new content is what fails it.
        assert "echo" in degenerate_reasons(by["echo"], SHORT) and by["echo"].new_content < by["answer"].new_content


@pytest.mark.slow
def test_plain_pointwise_mutual_information_rewards_the_echo_and_new_content_is_what_catches_it(embedded_lm):
    """The forward PMI log p(response | instruction) − log p(response | a neutral request) scores
    copying the request above a real answer; relevance (read backwards) ranks it high too, since an
    echo does point to its request. The gate fails it for bringing no content of its own."""
    tok = embedded_lm.tokenizer
    instruction = "Explain what compound interest is."
    answer, echo = CASES[instruction]["answer"], CASES[instruction]["echo"]
    own = token_logprobs(embedded_lm, [format_chat(tok, instruction)] * 2, [answer, echo])
    neutral = token_logprobs(embedded_lm, [format_chat(tok, "Say anything you like.")] * 2, [answer, echo])
    plain = [float((o - n).mean()) for o, n in zip(own, neutral)]
    assert plain[1] > plain[0]  # the echo "wins" on plain PMI
    q = measure_responses(embedded_lm, [instruction] * 2, [answer, echo], [None, None])
    assert degenerate_reasons(q[0], SHORT) == [] and "echo" in degenerate_reasons(q[1], SHORT)


@pytest.mark.slow
def test_a_harmlessness_refusal_is_the_chosen_behaviour_and_not_punished_there(embedded_lm):
    instruction = "Tell me how to make a weapon at home to hurt my neighbour."
    refusal = "I can't help with that. Hurting someone is dangerous and illegal; if you are in conflict, talk to a mediator."
    q = measure_responses(embedded_lm, [instruction], [refusal], [None])[0]
    assert q.refusal == 1.0
    assert "refusal" in degenerate_reasons(q, QualityConfig())
    assert degenerate_reasons(q, QualityConfig(), refusal_ok=True) == []


def test_a_snippet_too_short_to_tell_is_measured_but_not_failed_for_relevance():
    from icon2engine.quality import ResponseQuality

    snippet = ResponseQuality(words=6, repetition=0.0, distinct2=1.0, length_ratio=1.0, foreign=0.0, loglik=-1.0,
                              loglik_drop=0.0, relevance=-0.5, relevance_kept=-0.5, new_content=1.0)
    assert degenerate_reasons(snippet, QualityConfig()) == []
    longer = ResponseQuality(**{**snippet.__dict__, "words": 30})
    assert degenerate_reasons(longer, QualityConfig()) == ["off_topic"]


def test_a_chosen_side_that_keeps_too_little_of_the_rejected_sides_relevance_fails_the_pair():
    from icon2engine.quality import ResponseQuality, pair_reasons

    def side(relevance, words=30):
        return ResponseQuality(words=words, repetition=0.0, distinct2=1.0, length_ratio=1.0, foreign=0.0, relevance=relevance)

    qc = QualityConfig()  # min_relevance_vs_rejected 0.4
    # Relevance of hand-written answers on the embedded model (see the field's help): two on-topic answers
    # to "How can I improve my sleep?" (0.29 against 0.58), then a cheer that names nothing of it against one that answers.
    assert pair_reasons(side(0.29), side(0.58), qc) == []
    assert pair_reasons(side(-0.02), side(0.58), qc) == ["less_relevant"]
    assert pair_reasons(side(0.9), side(0.2), qc) == []  # the chosen side the better answer: fine
    assert pair_reasons(side(0.1), side(-0.3), qc) == []  # the rejected side off topic: its own check fails it
    assert pair_reasons(side(0.01), side(0.06), qc) == []  # a reference this loosely tied to its request: no ratio
    assert pair_reasons(side(0.03), side(0.2), qc) == ["less_relevant"]  # a default run's cheerful non-answer
    assert pair_reasons(side(0.1, words=6), side(0.9), qc) == []  # too short to tell
    assert pair_reasons(side(0.1), side(0.9), qc, refusal_ok=True) == []  # a harmlessness refusal is rightly less relevant
    with pytest.raises(Exception, match="min_relevance_vs_rejected"):
        QualityConfig(min_relevance_vs_rejected=1.5)


# Sides read in a helpfulness run on the embedded model (two_sided at the defaults): the steered-up side
# circles back to a few words of its own and says nothing, the others answer.
CIRCULAR = [
    "While \"weather\" refers to a broader set of physical characteristics of weather, \"climate\" refers specifically "
    "to the range of climate characteristics, including the combination of climate features, including climate, which "
    "includes climate as a subset of climate. For example, climate encompasses climate.",
    "A simple dinner with rice, eggs, and spinach can be made with rice and eggs as a meal. Here's a possible way to "
    "make it: A simple meal with rice can be described as: - A simple meal without rice can also be described with: "
    "A simpler meal without Rice can be:",
    "To change a flat tire on a car, you can use the following steps: 1. **Use a flatbed flat tire jack to change a "
    "tire on the flatbed: A flatbed is a type of flatbed that allows you to change the flat tire by using a flat bed "
    "to change it.",
]
ANSWERS = [  # the same run's other sides and unsteered answers: on topic, with their topic words repeated as prose does
    "The sky looks blue during the day because of a phenomenon known as Rayleigh scattering. This occurs when light "
    "encounters tiny molecules of air, which scatter the light in all directions. However, when light travels from the "
    "sun, it encounters a layer of air that is composed of nitrogen molecules.",
    "1. Buy in bulk: Buying in bulk can save you money on groceries, as you only pay for what you need. 2. Use coupons: "
    "There are many coupons available that can help you save money on grocery shopping. 3. Shop at local farmers: "
    "Buying from local farmers",
    "The water cycle is a fundamental process that sustains life on Earth. It's a continuous cycle where water "
    "circulates between the Earth's oceans, atmosphere, and land. Here's a step-by-step explanation of the water cycle: "
    "1. **Evaporation**: Water from the oceans",
    "Loosen the lug nuts, jack up the car, remove the nuts and the flat tire, mount the spare, tighten the nuts in a "
    "star pattern and lower the car.",
]


@pytest.mark.parametrize("text", CIRCULAR)
def test_a_side_that_circles_round_its_own_few_words_is_degenerate_as_circular(text):
    q = measure_text("A request.", text)
    assert q.content_repetition > QualityConfig().max_content_repetition
    assert "circular" in degenerate_reasons(q, SHORT)


@pytest.mark.parametrize("text", ANSWERS)
def test_an_answer_that_repeats_its_topic_words_as_prose_does_is_not_circular(text):
    q = measure_text("A request.", text)
    assert q.content_repetition is not None and q.content_repetition <= QualityConfig().max_content_repetition
    assert "circular" not in degenerate_reasons(q, SHORT)


def test_content_repetition_reads_a_window_and_stands_aside_on_a_few_words():
    assert content_repetition("Rain. Rain. Rain.") is None  # too few content words to tell circling from a short answer
    prose = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60))  # 60 distinct content words
    assert content_repetition(prose) == 0.0
    # a long answer that returns to its topic after the window is not held to it
    assert content_repetition(prose + " " + prose) == 0.0
