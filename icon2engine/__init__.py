"""icon2engine: the Icon² method as a library (no Django).

Extract direction vectors from contrastive system prompts, synthesise instructions with the
model itself (Magpie), keep those where a dimension matters most, calibrate γ with a judge,
generate chosen/rejected pairs by steering hidden states up and down those directions, and
export them for DPO, train with DPO (LoRA by default) and evaluate the trained model against its base.

Example:
    >>> from icon2engine import load_model, get_preset, default_feature_instructions
    >>> from icon2engine import extract_directions, generate_pairs, SteeringConfig
    >>> lm = load_model("embedded")
    >>> ds = extract_directions(lm, get_preset("optimism"), default_feature_instructions())
    >>> pairs = generate_pairs(lm, ds, ["Describe a rainy Monday."], steering=SteeringConfig(0.05, -0.05))
    >>> res = train_dpo(lm, pairs, "runs/optimism", TrainConfig(max_steps=32, max_length=128))
    >>> evaluate(lm, res.lm, ["Describe a bus ride."], VaderJudge(), direction=ds).win_rate
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {  # name -> submodule; imported on first use (PEP 562), so `icon2 --help` needs no torch
    **dict.fromkeys(('format_chat', 'wants_bos'), "chat"),
    **dict.fromkeys(('ModelCheck', 'check_model'), "model_check"),
    **dict.fromkeys(('CalibrationConfig', 'CalibrationResult', 'calibrate', 'response_loglik'), "calibration"),
    **dict.fromkeys(('CleaningReport', 'CleaningRules', 'clean_instructions'), "cleaning"),
    **dict.fromkeys(('Dimension', 'ExtractConfig', 'GenerateConfig', 'ModelSpec', 'PromptPair', 'SteeringConfig'), "config"),
    **dict.fromkeys(('merge_estimates', 'sample_and_rank_estimate'), "cost"),
    **dict.fromkeys(('DirectionSet', 'direction_cosines', 'extract_directions'), "directions"),
    **dict.fromkeys(('ConfigError', 'Icon2Error', 'InputError', 'JudgeError', 'LayerDetectionError', 'ModelLoadError', 'ModelOutputError', 'StopRequested', 'SynthesisShortfall', 'TemplateError'), "errors"),
    **dict.fromkeys(('EvalConfig', 'EvalReport', 'evaluate', 'wilson_interval'), "evaluation"),
    **dict.fromkeys(('export_dataset',), "export"),
    **dict.fromkeys(('ConsistencyScores', 'FilterConfig', 'Selection', 'score_instructions', 'select_top'), "filtering"),
    **dict.fromkeys(('SteeredPair', 'default_layers', 'generate_pairs', 'generate_rows'), "generation"),
    **dict.fromkeys(('add_to_block_outputs', 'record_block_outputs'), "hooks"),
    **dict.fromkeys(('Judge', 'JudgeConfig', 'LengthJudge', 'LLMJudge', 'RewardModelJudge', 'VaderJudge', 'make_judge'), "judges"),
    **dict.fromkeys(('parse_instructions', 'read_instructions'), "instructions_io"),
    **dict.fromkeys(('find_decoder_layers',), "layers"),
    **dict.fromkeys(('LoadedModel', 'embedded_model_dir', 'load_model'), "models"),
    **dict.fromkeys(('compare_steering',), "playground"),
    **dict.fromkeys(('PreQuery', 'derive_pre_query'), "pre_query"),
    **dict.fromkeys(('default_feature_instructions', 'get_preset', 'preset_names'), "presets"),
    **dict.fromkeys(('NullProgress', 'Progress', 'RecordingProgress', 'TqdmProgress'), "progress"),
    **dict.fromkeys(('StageStats', 'total_stats'), "stats"),
    **dict.fromkeys(('SynthesisConfig', 'SynthesisReport', 'SynthesisResult', 'synthesize'), "synthesis"),
    **dict.fromkeys(('TrainConfig', 'TrainingError', 'TrainResult', 'load_trained', 'train_dpo'), "training"),
    **dict.fromkeys(('export_control_vector_gguf', 'load_directions', 'save_directions'), "vector_io"),
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'icon2engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # the names, for type checkers and editors
    from .calibration import CalibrationConfig, CalibrationResult, calibrate, response_loglik
    from .chat import format_chat, wants_bos
    from .model_check import ModelCheck, check_model
    from .cleaning import CleaningReport, CleaningRules, clean_instructions
    from .config import Dimension, ExtractConfig, GenerateConfig, ModelSpec, PromptPair, SteeringConfig
    from .cost import merge_estimates, sample_and_rank_estimate
    from .directions import DirectionSet, direction_cosines, extract_directions
    from .errors import (
        ConfigError, Icon2Error, InputError, JudgeError, LayerDetectionError, ModelLoadError, ModelOutputError, StopRequested, SynthesisShortfall,
        TemplateError,
    )
    from .evaluation import EvalConfig, EvalReport, evaluate, wilson_interval
    from .export import export_dataset
    from .filtering import ConsistencyScores, FilterConfig, Selection, score_instructions, select_top
    from .generation import SteeredPair, default_layers, generate_pairs, generate_rows
    from .hooks import add_to_block_outputs, record_block_outputs
    from .judges import Judge, JudgeConfig, LengthJudge, LLMJudge, RewardModelJudge, VaderJudge, make_judge
    from .instructions_io import parse_instructions, read_instructions
    from .layers import find_decoder_layers
    from .models import LoadedModel, embedded_model_dir, load_model
    from .playground import compare_steering
    from .pre_query import PreQuery, derive_pre_query
    from .presets import default_feature_instructions, get_preset, preset_names
    from .progress import NullProgress, Progress, RecordingProgress, TqdmProgress
    from .stats import StageStats, total_stats
    from .synthesis import SynthesisConfig, SynthesisReport, SynthesisResult, synthesize
    from .training import TrainConfig, TrainingError, TrainResult, load_trained, train_dpo
    from .vector_io import export_control_vector_gguf, load_directions, save_directions

__all__ = [
    "ConfigError", "Dimension", "DirectionSet", "ExtractConfig", "GenerateConfig", "Icon2Error", "InputError",
    "LayerDetectionError", "LoadedModel", "ModelLoadError", "ModelSpec", "NullProgress", "Progress", "PromptPair",
    "RecordingProgress", "StageStats", "SteeredPair", "SteeringConfig", "StopRequested", "TqdmProgress",
    "add_to_block_outputs", "default_feature_instructions", "default_layers", "embedded_model_dir",
    "export_control_vector_gguf", "export_dataset", "extract_directions", "find_decoder_layers", "generate_pairs",
    "generate_rows", "get_preset", "load_directions", "load_model", "parse_instructions", "preset_names",
    "read_instructions", "record_block_outputs", "save_directions",
    # synthesis, filtering, judges, calibration
    "CalibrationConfig", "CalibrationResult", "CleaningReport", "CleaningRules", "ConsistencyScores", "FilterConfig",
    "Judge", "JudgeConfig", "JudgeError", "LLMJudge", "LengthJudge", "PreQuery", "RewardModelJudge", "Selection",
    "SynthesisConfig", "SynthesisReport", "SynthesisResult", "SynthesisShortfall", "TemplateError", "VaderJudge", "ModelOutputError",
    "format_chat", "wants_bos", "ModelCheck", "check_model",
    "calibrate", "clean_instructions", "derive_pre_query", "make_judge", "response_loglik", "score_instructions",
    "select_top", "synthesize",
    # training, evaluation, compute
    "EvalConfig", "EvalReport", "TrainConfig", "TrainResult", "TrainingError", "evaluate", "load_trained", "total_stats",
    "train_dpo", "wilson_interval",
    # playground, direction comparison, baseline cost
    "compare_steering", "direction_cosines", "merge_estimates", "sample_and_rank_estimate",
]
