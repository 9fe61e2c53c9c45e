"""Find the decoder blocks of a causal LM (Llama, Qwen2, Mistral, Gemma, GPT-2, ...)."""
from __future__ import annotations

from torch import nn

from .errors import LayerDetectionError

__all__ = ["find_decoder_layers", "KNOWN_LAYER_PATHS"]

# Tried in order; the first ModuleList found wins.
KNOWN_LAYER_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2, Gemma, Phi-3, SmolLM
    "model.language_model.layers",  # multimodal wrappers (Gemma 3, Llava-style)
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


def find_decoder_layers(model: nn.Module, override: str | None = None) -> tuple[str, nn.ModuleList]:
    """Return ``(path, layers)`` for the model's decoder blocks.

    Args:
        model: a transformers causal LM.
        override: a dotted attribute path (e.g. ``"model.layers"``) to use instead of detection.

    Raises:
        LayerDetectionError: naming the override to set when nothing is found.
    """
    if override:
        found = _resolve(model, override)
        if not isinstance(found, nn.ModuleList) or len(found) == 0:
            raise LayerDetectionError(
                f"layers_attr={override!r} does not name a list of decoder blocks on {type(model).__name__}; "
                "print(model) to see its structure and set layers_attr to the dotted path of the block list"
            )
        return override, found
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for path in KNOWN_LAYER_PATHS:
        found = _resolve(model, path)
        if isinstance(found, nn.ModuleList) and len(found) > 0 and (expected is None or len(found) == expected):
            return path, found
    raise LayerDetectionError(
        f"could not find the decoder layers of {type(model).__name__} (tried {', '.join(KNOWN_LAYER_PATHS)}); "
        "set layers_attr (ModelSpec.layers_attr, or --layers-attr on the command line) to the dotted path of "
        "its block list, e.g. 'model.layers'"
    )
