"""Find the decoder blocks of a causal LM (Llama, Qwen2, Mistral, Gemma, GPT-2, ...).

The same lookup serves the Hugging Face model and vLLM's own module tree
(:mod:`icon2engine.vllm_backend`), so both steer the same blocks.
"""
from __future__ import annotations

from torch import nn

from .errors import LayerDetectionError

__all__ = ["find_decoder_layers", "expected_layer_count", "KNOWN_LAYER_PATHS"]

# Tried in order; the first ModuleList with the model's layer count wins.
KNOWN_LAYER_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, SmolLM (HF and vLLM)
    "model.language_model.layers",  # HF multimodal wrappers (Gemma 3, Llava-style)
    "language_model.model.layers",  # vLLM multimodal wrappers
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "gpt_neox.layers",  # Pythia / GPT-NeoX
    "model.decoder.layers",  # OPT
    "transformer.blocks",  # MPT
    "transformer.layers",
)


def _resolve(model: nn.Module, path: str) -> object | None:
    obj: object = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def expected_layer_count(model: nn.Module) -> int | None:
    """The number of decoder blocks the model's config declares (its text part for a multimodal one)."""
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        value = getattr(cfg, "num_hidden_layers", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def find_decoder_layers(
    model: nn.Module, override: str | None = None, *, prefer: str | None = None
) -> tuple[str, nn.ModuleList]:
    """Return ``(path, layers)`` for the model's decoder blocks.

    Args:
        model: a transformers causal LM, or vLLM's model (any ``nn.Module`` tree).
        override: a dotted attribute path (e.g. ``"model.layers"``) to use instead of detection.
        prefer: a path to try before the known ones, falling back to detection when it does not
            name the blocks (the HF model's path, given to vLLM's tree, which may differ).

    Raises:
        LayerDetectionError: naming the override to set when nothing is found, or saying why a
            model cannot be steered (an encoder-decoder model).

    Example:
        >>> find_decoder_layers(lm.model)[0]
        'model.layers'
    """
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        raise LayerDetectionError(
            f"{type(model).__name__} is an encoder-decoder model (T5, BART-style); Icon² steers the decoder blocks "
            "of a decoder-only causal LM (Llama, Qwen, Gemma, Mistral, Phi, GPT-2 ...): use one of those"
        )
    if override:
        found = _resolve(model, override)
        if not isinstance(found, nn.ModuleList) or len(found) == 0:
            raise LayerDetectionError(
                f"layers_attr={override!r} does not name a list of decoder blocks on {type(model).__name__}; "
                "print(model) to see its structure and set layers_attr to the dotted path of the block list"
            )
        return override, found
    expected = expected_layer_count(model)
    paths = ((prefer,) if prefer else ()) + tuple(p for p in KNOWN_LAYER_PATHS if p != prefer)
    for path in paths:
        found = _resolve(model, path)
        if isinstance(found, nn.ModuleList) and len(found) > 0 and (expected is None or len(found) == expected):
            return path, found
    raise LayerDetectionError(
        f"could not find the decoder layers of {type(model).__name__} (tried {', '.join(paths)}); "
        "set layers_attr (ModelSpec.layers_attr, or --layers-attr on the command line) to the dotted path of "
        "its block list, e.g. 'model.layers'"
    )
