from __future__ import annotations

import pytest
import torch
from torch import nn

from icon2engine import LayerDetectionError, ModelLoadError, ModelSpec, find_decoder_layers, load_model
from icon2engine.config import ConfigError


def _tiny(config_cls_name: str, model_cls_name: str, **extra):
    import transformers

    cfg = getattr(transformers, config_cls_name)(**extra)
    return getattr(transformers, model_cls_name)(cfg)


COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)


@pytest.mark.parametrize(
    "config_cls,model_cls,kwargs,expected",
    [
        ("LlamaConfig", "LlamaForCausalLM", COMMON, "model.layers"),
        ("Qwen2Config", "Qwen2ForCausalLM", COMMON, "model.layers"),
        ("MistralConfig", "MistralForCausalLM", COMMON, "model.layers"),
        ("GemmaConfig", "GemmaForCausalLM", dict(COMMON, head_dim=8), "model.layers"),
        ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=64, n_embd=32, n_layer=3, n_head=4), "transformer.h"),
    ],
)
def test_it_finds_the_decoder_layers_of_common_architectures(config_cls, model_cls, kwargs, expected):
    model = _tiny(config_cls, model_cls, **kwargs)
    path, layers = find_decoder_layers(model)
    assert path == expected
    assert len(layers) == 3


def test_an_override_wins_over_detection():
    model = _tiny("LlamaConfig", "LlamaForCausalLM", **COMMON)
    path, layers = find_decoder_layers(model, "model.layers")
    assert path == "model.layers" and len(layers) == 3


def test_an_unknown_architecture_names_the_override_to_set():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = nn.ModuleList([nn.Linear(2, 2)])

    with pytest.raises(LayerDetectionError, match="layers_attr"):
        find_decoder_layers(Odd())
    with pytest.raises(LayerDetectionError, match="does not name"):
        find_decoder_layers(Odd(), "nothing.here")
    assert find_decoder_layers(Odd(), "stack")[0] == "stack"


def test_a_missing_model_path_says_what_to_give(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "no-such-model"))


def test_a_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        load_model(str(f))


def test_a_hub_id_is_not_downloaded_when_offline():
    with pytest.raises(ModelLoadError, match="downloads are off"):
        load_model(ModelSpec(source="some-org/not-cached-model"))


def test_model_spec_rejects_an_empty_source():
    with pytest.raises(ConfigError):
        ModelSpec(source="  ")


@pytest.mark.slow
def test_the_embedded_model_is_converted_once_and_reloaded_from_the_cache(embedded_lm):
    from icon2engine.models import embedded_model_dir

    path = embedded_model_dir()
    assert (path / "config.json").exists() and list(path.glob("*.safetensors"))
    assert (path / "icon2_source.json").exists()
    assert embedded_lm.n_layers == 30 and embedded_lm.hidden_size == 576
    assert embedded_lm.model.dtype == torch.float32
    assert embedded_lm.revision.startswith("sha256:")


def test_an_encoder_decoder_model_is_refused_with_what_to_use_instead():
    model = _tiny("T5Config", "T5ForConditionalGeneration", vocab_size=64, d_model=32, d_ff=64, num_layers=2,
                  num_heads=4, d_kv=8)
    with pytest.raises(LayerDetectionError, match="encoder-decoder.*decoder-only causal LM"):
        find_decoder_layers(model)


def test_a_multimodal_wrapper_counts_its_text_models_blocks():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.vision_tower = nn.Module()
            self.model.vision_tower.layers = nn.ModuleList([nn.Linear(2, 2)] * 2)
            self.model.language_model = nn.Module()
            self.model.language_model.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
            self.config = type("C", (), {"text_config": type("T", (), {"num_hidden_layers": 3})()})()

    path, layers = find_decoder_layers(Wrapper())
    assert path == "model.language_model.layers" and len(layers) == 3
