"""The CLI's flags are generated from the config dataclasses (icon2engine.arguments): every field is
a flag, with the config's own default, and the text forms (layer ranges, grids, 'none') read right."""
import dataclasses
import typing

import pytest

from icon2engine.arguments import config_from_args
from icon2engine.cleaning import CleaningRules
from icon2engine.cli import build_parser, main
from icon2engine.config import (
    CalibrationConfig, EvalConfig, ExtractConfig, FilterConfig, GateConfig, GenerateConfig, SteeringConfig, SynthesisConfig,
    TrainConfig,
)
from icon2engine.judges import JudgeConfig

REQUIRED = {
    "extract": ["--preset", "optimism", "--out", "v.safetensors"],
    "generate": ["--vectors", "v.safetensors", "--instructions", "i.txt", "--out", "p.jsonl"],
    "synthesize": ["--n", "4", "--out", "s.jsonl"],
    "filter": ["--vectors", "v.safetensors", "--instructions", "i.txt", "--out", "k.jsonl"],
    "calibrate": ["--vectors", "v.safetensors", "--instructions", "i.txt", "--out", "c.json"],
    "train": ["--pairs", "p.jsonl", "--out", "t"],
    "evaluate": ["--trained", "t", "--instructions", "i.txt", "--out", "e.json"],
}
CONFIGS = {
    "extract": [ExtractConfig],
    "generate": [SteeringConfig, GenerateConfig, GateConfig],
    "synthesize": [SynthesisConfig, CleaningRules],
    "filter": [FilterConfig],
    "calibrate": [CalibrationConfig],
    "train": [TrainConfig],
    "evaluate": [EvalConfig],
}


def _parse(command, *flags):
    return build_parser().parse_args([command, *REQUIRED[command], *flags])


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_every_field_is_a_flag_whose_default_is_the_configs(command):
    args = _parse(command)
    for cls in CONFIGS[command]:
        hints = typing.get_type_hints(cls)
        flat = [f.name for f in dataclasses.fields(cls)  # a nested config (GateConfig.quality) keeps its default
                if not any(dataclasses.is_dataclass(t) for t in (hints[f.name], *typing.get_args(hints[f.name])))]
        missing = [name for name in flat if not hasattr(args, name)]
        assert not missing, f"{command}: {cls.__name__} fields without a flag: {missing}"
        assert config_from_args(args, cls) == cls(), f"{command}: the flags' defaults differ from {cls.__name__}()"


def test_the_judge_flags_are_the_judge_config_with_a_prefix():
    args = _parse("calibrate")
    assert config_from_args(args, JudgeConfig, prefix="judge") == JudgeConfig()
    assert not hasattr(args, "judge_api_key"), "a key must never be a command-line flag"
    args = _parse("calibrate", "--judge", "llm", "--judge-url", "http://h:1/v1", "--judge-model", "m", "--criterion", "kind")
    judge = config_from_args(args, JudgeConfig, prefix="judge")
    assert (judge.kind, judge.base_url, judge.model, judge.criterion) == ("llm", "http://h:1/v1", "m", "kind")


def test_the_text_forms_read_as_the_config_expects():
    generate = _parse("generate", "--layers", "8-10", "--gamma-plus", "0.05", "--no-gate", "--sample",
                      "--steering-mode", "clamp")
    steering, config, gate = (config_from_args(generate, c) for c in (SteeringConfig, GenerateConfig, GateConfig))
    assert steering.layers == (8, 9, 10) and steering.gamma_plus == 0.05 and steering.mode == "clamp"
    assert config.do_sample is True and gate.enabled is False
    assert config_from_args(_parse("generate", "--layers", "3,5"), SteeringConfig).layers == (3, 5)

    calibrate = config_from_args(_parse("calibrate", "--gamma-plus-grid", "0.02,0.05", "--gamma-minus-grid=-0.1",
                                        "--max-loglik-drop", "none", "--n", "7"), CalibrationConfig)
    assert calibrate.gamma_plus_grid == (0.02, 0.05) and calibrate.gamma_minus_grid == (-0.1,)
    assert calibrate.max_loglik_drop is None and calibrate.n_instructions == 7

    assert config_from_args(_parse("filter", "--bare-text", "--method", "paper"), FilterConfig).chat_template is False
    assert config_from_args(_parse("train", "--lr", "0.001", "--method", "full"), TrainConfig).learning_rate == 0.001


@pytest.mark.parametrize("flags,says", [
    (["--layers", "9-3"], "ends before it starts"),
    (["--layers", "a-b"], "cannot read layers"),
    (["--steering-mode", "shout"], "invalid choice"),
    (["--gamma-plus", "2"], "gamma_plus=2.0 is out of range"),
])
def test_a_bad_flag_is_one_clear_line_and_exit_2(tmp_path, capsys, flags, says):
    code = main(["generate", "--vectors", str(tmp_path / "v.safetensors"), "--instructions", str(tmp_path / "i.txt"),
                 "--out", str(tmp_path / "p.jsonl"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err
