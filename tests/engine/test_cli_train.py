"""Command line and pipeline for train → evaluate, on a tiny model saved to a folder."""
from __future__ import annotations

import json

import pytest

from icon2engine.cli import main
from icon2engine.pipeline import load_pipeline_config, run_pipeline

PAIRS = [
    {"instruction": f"Describe the sea {i}.", "chosen": "What a lovely day, sunny and bright!",
     "rejected": "The fox is lazy.", "dimension": "cheer", "gamma_plus": 0.05, "gamma_minus": -0.05,
     "layers": [1, 2], "seed": 0}
    for i in range(4)
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


def _err(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip() and "%|" not in l]
    return lines[-1] if lines else ""


def test_train_then_evaluate_from_the_command_line(tiny_dir, pairs_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_dir), "--pairs", str(pairs_file), "--out", str(run),
                 "--max-steps", "2", "--batch-size", "2", "--max-length", "64"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (run / "adapter" / "adapter_config.json").exists()
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 2
    held = tmp_path / "held.txt"
    held.write_text("Tell me about the sky.\nWhat is a dog?\n")
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_dir), "--trained", str(run), "--instructions", str(held),
                 "--judge", "length", "--max-new-tokens", "5", "--out", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["n"] == 2 and data["wins"] + data["ties"] + data["losses"] == 2 and len(data["rows"]) == 2
    assert "win rate" in capsys.readouterr().out


def test_train_with_identical_pairs_fails_with_one_line(tiny_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**PAIRS[0], "rejected": PAIRS[0]["chosen"]}) + "\n")
    assert main(["train", "--model", str(tiny_dir), "--pairs", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "identical chosen and rejected" in _err(capsys)


def test_train_with_a_bad_setting_fails_before_loading(tmp_path, pairs_file, capsys):
    assert main(["train", "--model", str(tmp_path / "nowhere"), "--pairs", str(pairs_file), "--out", str(tmp_path / "r"),
                 "--beta", "0"]) == 2
    assert "beta must be in (0, 10]" in _err(capsys)


def test_evaluate_without_a_trained_model_says_what_to_run(tiny_dir, tmp_path, capsys):
    held = tmp_path / "held.txt"
    held.write_text("What is a dog?\n")
    assert main(["evaluate", "--model", str(tiny_dir), "--trained", str(tmp_path / "none"), "--instructions", str(held),
                 "--out", str(tmp_path / "e.json")]) == 2
    assert "run 'icon2 train" in _err(capsys)


def test_pipeline_runs_generate_train_and_evaluate(tiny_dir, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
output = "out"
model = "{tiny_dir}"
dimensions = [{{ name = "cheer", prompt_pairs = [{{ positive = "You are cheerful.", negative = "You are gloomy." }}] }}]
feature_instructions = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."]
instructions = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Tell me about the sky."]
stages = ["extract", "generate", "export", "train", "evaluate"]
export_gguf = false
[steering]
gamma_plus = 0.5
gamma_minus = -0.5
layers = "1-2"
[generate]
max_new_tokens = 6
do_sample = true
[gate]
enabled = false
[train]
max_steps = 1
batch_size = 2
max_length = 64
[evaluate]
instructions = ["Numbers 1 2 3.", "Describe the sky."]
max_new_tokens = 4
[judge]
kind = "length"
""")
    config = load_pipeline_config(cfg)
    assert config.train.max_steps == 1 and config.held_out == ["Numbers 1 2 3.", "Describe the sky."]
    summary = run_pipeline(config, log=lambda *_: None)
    out = tmp_path / "out"
    assert summary["stages"]["train"]["steps"] == 1
    assert (out / "train" / "adapter").is_dir() and (out / "train" / "README.md").exists()
    assert json.loads((out / "evaluation.json").read_text())["n"] == 2
    assert "win_rate" in summary["stages"]["evaluate"]


def test_pipeline_evaluate_without_held_out_instructions_is_a_config_error(tmp_path):
    from icon2engine.errors import ConfigError

    cfg = tmp_path / "run.toml"
    cfg.write_text('dimensions = ["optimism"]\ninstructions = ["x"]\nstages = ["generate", "evaluate"]\n')
    with pytest.raises(ConfigError, match=r"held-out instructions"):
        load_pipeline_config(cfg)


def test_pipeline_unknown_train_setting_is_named(tmp_path):
    from icon2engine.errors import ConfigError

    cfg = tmp_path / "run.toml"
    cfg.write_text('dimensions = ["optimism"]\ninstructions = ["x"]\n[train]\nbeta = 0.1\nlr = 1e-4\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) lr in \[train\]"):
        load_pipeline_config(cfg)
