"""Tiny random models of every model family the product is tested on, built from configs (no download).

Each is 2 decoder blocks of width 32 with a small BPE tokenizer that writes the family's own
prompt format (chat template, BOS rule, end-of-turn token, system role or not), so the whole
pipeline can run on it in seconds: the family matrix test and ``bench/model_matrix.py`` use them.
They say nothing about quality: the weights are random.

Example:
    >>> lm = tiny_family_model("gemma3")
    >>> lm.layers_attr, lm.n_layers, format_chat(lm.tokenizer, "Hi.")
    ('model.layers', 2, '<bos><start_of_turn>user\\nHi.<end_of_turn>\\n<start_of_turn>model\\n')
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .layers import find_decoder_layers
from .models import LoadedModel

__all__ = ["FAMILIES", "FamilySpec", "tiny_family_model", "tiny_tokenizer"]

_CORPUS = [
    "You are a cheerful assistant. You are a gloomy assistant.",
    "Describe a rainy Monday. Tell me about the sea. What is a good breakfast?",
    "The quick brown fox jumps over the lazy dog. Numbers 0 1 2 3 4 5 6 7 8 9.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"-()",
] * 4

_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLAMA3 = (
    "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_MISTRAL = (  # Mistral v0.1: [INST] turns after the BOS, no system role
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)
_GEMMA = (  # Gemma 2 and 3: the template writes the BOS; no system role
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for m in messages %}{% if m['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = m['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
_PHI3 = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class FamilySpec:
    """How to build one family's tiny model and tokenizer."""

    config_class: str  # a transformers config class
    model_class: str  # its causal-LM class
    config: dict  # the architecture's own names for width and depth
    template: str | None  # None: a base model (the fallback template)
    bos: str
    eos: str
    add_bos: bool  # the tokenizer's BOS rule
    specials: tuple[str, ...] = ()
    notes: str = ""
    extra: dict = field(default_factory=dict)


_DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256)
_GEMMA_SPECIALS = ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>")

FAMILIES: dict[str, FamilySpec] = {
    "llama": FamilySpec("LlamaConfig", "LlamaForCausalLM", _DECODER, _LLAMA3, "<|begin_of_text|>", "<|eot_id|>", True,
                        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
                        "Llama 3 template, which writes the BOS itself"),
    "qwen2": FamilySpec("Qwen2Config", "Qwen2ForCausalLM", _DECODER, _CHATML, "<|im_start|>", "<|im_end|>", False,
                        notes="ChatML, no BOS"),
    "qwen3": FamilySpec("Qwen3Config", "Qwen3ForCausalLM", dict(_DECODER, head_dim=8), _CHATML, "<|im_start|>",
                        "<|im_end|>", False, notes="ChatML, q/k norms"),
    "mistral": FamilySpec("MistralConfig", "MistralForCausalLM", dict(_DECODER, sliding_window=40), _MISTRAL, "<s>",
                          "</s>", True, ("<s>", "</s>"), "[INST] turns, no system role, sliding window"),
    "gemma2": FamilySpec("Gemma2Config", "Gemma2ForCausalLM", dict(_DECODER, head_dim=8, sliding_window=40), _GEMMA,
                         "<bos>", "<eos>", True, _GEMMA_SPECIALS,
                         "sliding and global layers, soft-capping, scaled embeddings, no system role"),
    "gemma3": FamilySpec("Gemma3TextConfig", "Gemma3ForCausalLM",
                         dict(_DECODER, head_dim=8, sliding_window=40, layer_types=["sliding_attention", "full_attention"]),
                         _GEMMA, "<bos>", "<eos>", True, _GEMMA_SPECIALS,
                         "text-only Gemma 3: hybrid cache (sliding + full), scaled embeddings, no system role"),
    "phi3": FamilySpec("Phi3Config", "Phi3ForCausalLM", _DECODER, _PHI3, "<s>", "<|end|>", False,
                       ("<s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"), "fused qkv projection"),
    "gpt2": FamilySpec("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=2, n_head=4, n_positions=256), None,
                       "<|endoftext|>", "<|endoftext|>", False, ("<|endoftext|>",), "base model, no template"),
    "gpt_neox": FamilySpec("GPTNeoXConfig", "GPTNeoXForCausalLM", _DECODER, None, "<|endoftext|>", "<|endoftext|>",
                           False, ("<|endoftext|>",), "Pythia-style base model, no template"),
    "opt": FamilySpec("OPTConfig", "OPTForCausalLM",
                      dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=256, word_embed_proj_dim=32), None, "</s>", "</s>", True,
                      ("</s>",), "base model whose tokenizer adds </s> as its BOS"),
}


def tiny_tokenizer(template: str | None = _CHATML, *, bos: str = "<|im_start|>", eos: str = "<|im_end|>",
                   add_bos: bool = False, specials: tuple[str, ...] = ()):
    """A 400-token BPE tokenizer trained in milliseconds, with the given prompt format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    base = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=base + [s for s in specials if s not in base],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token=eos,
                                   bos_token=bos)
    fast.add_bos_token = add_bos
    fast.chat_template = template
    fast.padding_side = "left"  # as load_model sets it
    return fast


def tiny_family_model(family: str, seed: int = 0) -> LoadedModel:
    """A randomly initialised 2-block model of ``family`` (a key of :data:`FAMILIES`), in eval mode."""
    import transformers

    try:
        spec = FAMILIES[family]
    except KeyError:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}") from None
    tok = tiny_tokenizer(spec.template, bos=spec.bos, eos=spec.eos, add_bos=spec.add_bos, specials=spec.specials)
    torch.manual_seed(seed)
    config = getattr(transformers, spec.config_class)(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=False, **spec.config,
    )
    model = getattr(transformers, spec.model_class)(config).eval()
    path, layers = find_decoder_layers(model)
    return LoadedModel(model=model, tokenizer=tok, name=f"tiny-{family}", revision="random", layers_attr=path,
                       layers=layers)
