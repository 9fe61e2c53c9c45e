"""The Magpie pre-query is cut from each family's own chat template."""
from __future__ import annotations

import pytest
from conftest import CHATML, LLAMA3_SPECIALS, LLAMA3_TEMPLATE, QWEN2_TEMPLATE, SMOLLM2_TEMPLATE, make_template_tokenizer

from icon2engine.errors import TemplateError
from icon2engine.pre_query import derive_pre_query


def test_smollm2_keeps_the_system_prompt_its_template_inserts():
    pq = derive_pre_query(make_template_tokenizer(SMOLLM2_TEMPLATE))
    assert pq.text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n"
    )
    assert pq.end_marker == "<|im_end|>" and len(pq.end_token_ids) == 1
    assert pq.system_prompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_plain_chatml_has_no_system_prompt():
    pq = derive_pre_query(make_template_tokenizer(CHATML))
    assert (pq.text, pq.end_marker, pq.system_prompt) == ("<|im_start|>user\n", "<|im_end|>", None)


def test_qwen2_keeps_its_default_system_prompt():
    pq = derive_pre_query(make_template_tokenizer(QWEN2_TEMPLATE))
    assert pq.text == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    assert pq.system_prompt == "You are a helpful assistant."


def test_llama3_starts_with_bos_and_ends_the_turn_with_eot():
    tok = make_template_tokenizer(LLAMA3_TEMPLATE, tuple(LLAMA3_SPECIALS), bos="<|begin_of_text|>", eos="<|eot_id|>")
    pq = derive_pre_query(tok)
    assert pq.text == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    assert pq.end_marker == "<|eot_id|>"
    assert pq.end_token_ids == (tok.convert_tokens_to_ids("<|eot_id|>"),)


def test_an_explicit_system_prompt_goes_into_the_pre_query():
    pq = derive_pre_query(make_template_tokenizer(SMOLLM2_TEMPLATE), system="You write questions about cooking.")
    assert pq.text == "<|im_start|>system\nYou write questions about cooking.<|im_end|>\n<|im_start|>user\n"


def test_a_template_without_special_tokens_ends_the_turn_at_the_next_header():
    template = "{% for m in messages %}### {{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}### assistant\n{% endif %}"
    pq = derive_pre_query(make_template_tokenizer(template))
    assert pq.text == "### user\n" and pq.end_marker == "### assistant" and pq.end_token_ids == ()


@pytest.mark.parametrize(
    "template,says",
    [
        (None, "has no chat template"),
        ("{{ 'always the same text' }}", "does not write the user message verbatim"),
        ("{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}", "writes nothing before the user message"),
        ("{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}", "writes nothing after the user message"),
        ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('System message required') }}{% endif %}",
         "refuses a conversation of user"),
    ],
)
def test_a_template_that_cannot_be_cut_says_why(template, says):
    with pytest.raises(TemplateError, match=says):
        derive_pre_query(make_template_tokenizer(template), name="my-model")
