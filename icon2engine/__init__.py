"""icon2engine: the Icon² method as a library (no Django).

Extract direction vectors from contrastive system prompts, generate chosen/rejected pairs by
steering hidden states up and down those directions, and export them for DPO.

Example:
    >>> from icon2engine import load_model, get_preset, default_feature_instructions
    >>> from icon2engine import extract_directions, generate_pairs, SteeringConfig
    >>> lm = load_model("embedded")
    >>> ds = extract_directions(lm, get_preset("optimism"), default_feature_instructions())
    >>> pairs = generate_pairs(lm, ds, ["Describe a rainy Monday."], steering=SteeringConfig(0.05, -0.05))
"""
from __future__ import annotations

from .config import Dimension, ExtractConfig, GenerateConfig, ModelSpec, PromptPair, SteeringConfig
from .directions import DirectionSet, extract_directions
from .errors import ConfigError, Icon2Error, InputError, LayerDetectionError, ModelLoadError, StopRequested
from .export import export_dataset
from .generation import SteeredPair, default_layers, generate_pairs, generate_rows
from .hooks import add_to_block_outputs, record_block_outputs
from .instructions_io import parse_instructions, read_instructions
from .layers import find_decoder_layers
from .models import LoadedModel, embedded_model_dir, load_model
from .presets import default_feature_instructions, get_preset, preset_names
from .progress import NullProgress, Progress, RecordingProgress, TqdmProgress
from .stats import StageStats
from .vector_io import export_control_vector_gguf, load_directions, save_directions

__all__ = [
    "ConfigError", "Dimension", "DirectionSet", "ExtractConfig", "GenerateConfig", "Icon2Error", "InputError",
    "LayerDetectionError", "LoadedModel", "ModelLoadError", "ModelSpec", "NullProgress", "Progress", "PromptPair",
    "RecordingProgress", "StageStats", "SteeredPair", "SteeringConfig", "StopRequested", "TqdmProgress",
    "add_to_block_outputs", "default_feature_instructions", "default_layers", "embedded_model_dir",
    "export_control_vector_gguf", "export_dataset", "extract_directions", "find_decoder_layers", "generate_pairs",
    "generate_rows", "get_preset", "load_directions", "load_model", "parse_instructions", "preset_names",
    "read_instructions", "record_block_outputs", "save_directions",
]
