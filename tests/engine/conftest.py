"""Fixtures for engine tests.

``tiny_lm``: a randomly initialised 4-layer Llama with a small BPE tokenizer and a ChatML
template, built in milliseconds, for tests of structure. ``embedded_lm``: the real
SmolLM2-135M-Instruct, converted once and loaded once per session, for tests of behaviour.
"""
from __future__ import annotations

import pytest
import torch

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "You are a cheerful assistant. You are a gloomy assistant.",
    "Describe a rainy Monday. Tell me about the sea. What is a good breakfast?",
    "The quick brown fox jumps over the lazy dog. Numbers 0 1 2 3 4 5 6 7 8 9.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"-()",
] * 4


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    return fast


def make_tiny_lm(seed: int = 0, n_layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    from icon2engine.layers import find_decoder_layers
    from icon2engine.models import LoadedModel

    tok = make_tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    tok.padding_side = "left"
    path, layers = find_decoder_layers(model)
    return LoadedModel(model=model, tokenizer=tok, name="tiny-llama", revision="random", layers_attr=path, layers=layers)


@pytest.fixture
def tiny_lm():
    return make_tiny_lm()


@pytest.fixture
def tiny_dir(tmp_path):
    """The tiny random model saved as a local model folder (for the command line)."""
    lm = make_tiny_lm()
    path = tmp_path / "tiny-model"
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def embedded_lm():
    from icon2engine.models import load_model

    return load_model("embedded")


@pytest.fixture(scope="session")
def optimism_directions(embedded_lm):
    from icon2engine import default_feature_instructions, extract_directions, get_preset

    return extract_directions(embedded_lm, get_preset("optimism"), default_feature_instructions()[:32])


# Chat templates of other model families, written out so no tokenizer is downloaded.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def make_template_tokenizer(template: str | None, specials: tuple[str, ...] = (), bos: str | None = None, eos: str | None = None):
    """The tiny tokenizer with another chat template (and that family's special tokens)."""
    tok = make_tiny_tokenizer()
    if specials:
        tok.add_special_tokens({"additional_special_tokens": list(specials)})
    if bos:
        tok.bos_token = bos
    if eos:
        tok.eos_token = eos
    tok.chat_template = template
    return tok
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
GEMMA_SPECIALS = ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>")


def make_gemma_tokenizer(template: str | None = GEMMA_TEMPLATE, add_bos: bool = True):
    """A Gemma-style tokenizer: its own <bos>/<eos>, turns closed by <end_of_turn>, no system role;
    ``add_bos`` is the rule a Gemma tokenizer config carries (a GGUF-built one loses it)."""
    tok = make_template_tokenizer(template, GEMMA_SPECIALS, bos="<bos>", eos="<eos>")
    tok.add_bos_token = add_bos
    return tok


def make_llama_tokenizer(template: str | None = LLAMA3_TEMPLATE, add_bos: bool = True):
    """A Llama-3-style tokenizer: <|begin_of_text|> is the BOS, which its template writes itself."""
    tok = make_template_tokenizer(template, tuple(LLAMA3_SPECIALS), bos="<|begin_of_text|>", eos="<|eot_id|>")
    tok.add_bos_token = add_bos
    return tok
