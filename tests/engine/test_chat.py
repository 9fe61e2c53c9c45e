"""Prompts exactly as the model expects them: one formatting function, one BOS rule, never missing, never doubled."""
from __future__ import annotations

import copy

import pytest

from icon2engine.chat import (
    chat_template_for, end_of_turn_ids, format_chat, has_chat_template, takes_system_role, wants_bos, with_bos,
)
from icon2engine.models import apply_bos_flag, gguf_add_bos

from conftest import make_gemma_tokenizer, make_llama_tokenizer, make_tiny_lm, make_tiny_tokenizer

INSTRUCTIONS = ["Describe a rainy Monday.", "What is a good breakfast?", "  Tell me about the sea.  "]


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _bos_count(tok, text: str) -> int:
    return _ids(tok, text).count(tok.bos_token_id)


@pytest.mark.parametrize("system", [None, "You are a cheerful assistant."])
def test_the_embedded_smollm2_prompts_are_byte_identical_to_its_own_template(system):
    # Benchmarks run on these prompts: SmolLM2's BOS is <|im_start|>, which its template writes,
    # and its tokenizer adds none (add_bos_token False), so the BOS rule must change nothing.
    from transformers import AutoTokenizer

    from icon2engine.models import embedded_model_dir

    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    assert tok.bos_token == "<|im_start|>" and not wants_bos(tok)
    assert chat_template_for(tok) == tok.chat_template
    for text in INSTRUCTIONS:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        assert format_chat(tok, text, system) == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert format_chat(tok, "Hi.") == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert end_of_turn_ids(tok) == [tok.eos_token_id]  # <|im_end|>: generation stops where it always did


def test_the_tiny_chatml_tokenizer_is_unchanged_too():
    tok = make_tiny_tokenizer()
    assert not wants_bos(tok)
    assert format_chat(tok, "Hi.") == "<|im_start|>user\nHi.<|im_end|>\n<|im_start|>assistant\n"


def test_a_gemma_template_that_writes_its_bos_gets_no_second_one():
    tok = make_gemma_tokenizer()
    assert wants_bos(tok) and has_chat_template(tok)
    text = format_chat(tok, "Hi.")
    assert text == "<bos><start_of_turn>user\nHi.<end_of_turn>\n<start_of_turn>model\n"
    assert _ids(tok, text)[0] == tok.bos_token_id and _bos_count(tok, text) == 1


def test_gemma_refuses_a_system_role_so_the_system_prompt_joins_the_user_turn():
    tok = make_gemma_tokenizer()
    assert not takes_system_role(tok)
    text = format_chat(tok, "Hi.", "Be kind.")
    assert text == "<bos><start_of_turn>user\nBe kind.\n\nHi.<end_of_turn>\n<start_of_turn>model\n"


def test_a_gemma_without_a_chat_template_still_gets_exactly_one_bos():
    # A Gemma GGUF base model: no template, so the fallback; the BOS the model needs comes first.
    tok = make_gemma_tokenizer(template=None)
    assert not has_chat_template(tok)
    for system in (None, "Be kind."):
        text = format_chat(tok, "Hi.", system)
        assert text.startswith("<bos><|") and _bos_count(tok, text) == 1
    assert format_chat(tok, "Hi.") == "<bos><|user|>\nHi.\n<|assistant|>\n"
    assert takes_system_role(tok)  # the fallback template writes a system turn


def test_a_tokenizer_that_adds_no_bos_gets_none():
    tok = make_gemma_tokenizer(template=None, add_bos=False)
    assert not wants_bos(tok)
    assert format_chat(tok, "Hi.") == "<|user|>\nHi.\n<|assistant|>\n"
    assert with_bos(tok, "plain text") == "plain text"


@pytest.mark.parametrize("template", ["llama3", None])
def test_a_llama_style_tokenizer_gets_its_bos_once_with_or_without_a_template(template):
    from conftest import LLAMA3_TEMPLATE

    tok = make_llama_tokenizer(LLAMA3_TEMPLATE if template else None)
    text = format_chat(tok, "Hi.", "Be kind.")
    assert text.startswith("<|begin_of_text|>") and _bos_count(tok, text) == 1
    assert with_bos(tok, text) == text and with_bos(tok, "Hi.") == "<|begin_of_text|>Hi."


def test_the_end_of_turn_token_stops_generation(tiny_lm):
    from icon2engine.generation import stop_token_ids

    gemma = make_gemma_tokenizer()
    assert end_of_turn_ids(gemma) == [gemma.convert_tokens_to_ids("<end_of_turn>")]
    llama = make_llama_tokenizer()
    assert end_of_turn_ids(llama) == [llama.convert_tokens_to_ids("<|eot_id|>")]
    assert end_of_turn_ids(make_gemma_tokenizer(template=None)) == []  # the fallback writes no special token
    lm = copy.copy(tiny_lm)
    lm.tokenizer = gemma
    assert set(stop_token_ids(lm)) >= {gemma.convert_tokens_to_ids("<end_of_turn>"), gemma.eos_token_id}


def _write_gguf(path, add_bos: bool | None) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "gemma3")
    if add_bos is not None:
        writer.add_bool("tokenizer.ggml.add_bos_token", add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_whose_metadata_asks_for_bos_gets_it_and_keeps_it_when_saved(tmp_path):
    from transformers import AutoTokenizer

    _write_gguf(tmp_path / "asks.gguf", True)
    _write_gguf(tmp_path / "silent.gguf", None)
    assert gguf_add_bos(tmp_path / "asks.gguf") is True
    assert gguf_add_bos(tmp_path / "silent.gguf") is None
    # What transformers builds from a Gemma GGUF: no template, and no BOS on a plain text.
    tok = make_gemma_tokenizer(template=None, add_bos=False)
    assert not format_chat(tok, "Hi.").startswith("<bos>")
    apply_bos_flag(tok, gguf_add_bos(tmp_path / "asks.gguf"))
    assert wants_bos(tok) and format_chat(tok, "Hi.") == "<bos><|user|>\nHi.\n<|assistant|>\n"
    tok.save_pretrained(tmp_path / "converted")  # the embedded model's conversion path
    again = AutoTokenizer.from_pretrained(str(tmp_path / "converted"))
    assert wants_bos(again) and _bos_count(again, format_chat(again, "Hi.")) == 1
    apply_bos_flag(again, None)  # a file that does not say changes nothing
    assert wants_bos(again)


@pytest.mark.parametrize("kind", ["chatml", "gemma_base"])
def test_trl_tokenises_a_dpo_prompt_exactly_as_format_chat_does(kind, tmp_path):
    # TRL renders the conversational rows itself; training gives it chat_template_for, so the
    # prompt ids DPO trains on are the ids generation saw, BOS included (and only once).
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from icon2engine.training import prepare_pairs, training_tokenizer

    lm = make_tiny_lm(n_layers=2)
    tok = make_tiny_tokenizer() if kind == "chatml" else make_gemma_tokenizer(template=None)
    lm.model.resize_token_embeddings(len(tok))
    pairs = [{"instruction": t.strip(), "chosen": "A lovely sunny day.", "rejected": "A grey day."} for t in INSTRUCTIONS]
    rows = prepare_pairs(pairs, tok, 64)
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_length=64, disable_tqdm=True)
    trainer = DPOTrainer(model=lm.model, ref_model=copy.deepcopy(lm.model), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=training_tokenizer(tok))
    for row, pair in zip(trainer.train_dataset, pairs):
        expected = _ids(tok, format_chat(tok, pair["instruction"]))
        assert row["prompt_ids"] == expected
    if kind == "gemma_base":
        assert all(row["prompt_ids"].count(tok.bos_token_id) == 1 for row in trainer.train_dataset)


def test_loading_a_gguf_applies_its_bos_flag_to_the_tokenizer_transformers_built(tmp_path, monkeypatch):
    # transformers' GGUF loaders are replaced by what they return for a Gemma base GGUF: weights,
    # and a tokenizer with no template that adds no BOS. The file's metadata asks for the BOS.
    import transformers

    from icon2engine.models import load_model
    from icon2engine.tiny_models import tiny_family_model

    path = tmp_path / "gemma-base.gguf"
    _write_gguf(path, True)
    model = tiny_family_model("gemma3").model
    built = make_gemma_tokenizer(template=None, add_bos=False)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: built)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: model)
    lm = load_model(str(path))
    prompt = format_chat(lm.tokenizer, "Hi.")
    assert prompt == "<bos><|user|>\nHi.\n<|assistant|>\n" and _bos_count(lm.tokenizer, prompt) == 1
