from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from icon2engine.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "icon2engine", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_the_commands_and_a_first_run():
    r = _run("--help")
    assert r.returncode == 0
    for word in ("extract", "generate", "export", "pipeline", "presets", "embedded"):
        assert word in r.stdout


def test_a_wrong_model_path_is_one_line_and_a_non_zero_exit(tmp_path):
    r = _run("extract", "--model", str(tmp_path / "missing"), "--preset", "optimism", "--out", str(tmp_path / "v.safetensors"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("icon2 extract: error:") and "does not exist" in lines[-1]


def test_an_absurd_gamma_is_refused_before_anything_loads(tmp_path, capsys):
    instructions = tmp_path / "i.txt"
    instructions.write_text("hello\n")
    code = main(["generate", "--vectors", str(tmp_path / "v.safetensors"), "--instructions", str(instructions),
                 "--gamma-plus", "nan", "--out", str(tmp_path / "p.jsonl")])
    assert code == 2
    assert "gamma_plus must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_presets_lists_the_papers_four_criteria(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for key in ("helpfulness", "honesty", "harmlessness", "general"):
        assert key in out


def test_a_pipeline_config_with_an_unknown_section_is_refused(tmp_path, capsys):
    cfg = tmp_path / "p.toml"
    cfg.write_text('dimensions = ["optimism"]\n[steerng]\ngamma_plus = 0.1\n')
    assert main(["pipeline", str(cfg)]) == 2
    assert "unknown section(s) steerng" in capsys.readouterr().err


def test_a_pipeline_config_with_gamma_out_of_range_is_refused(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("dimensions: [optimism]\ninstructions: [hello]\nsteering: {gamma_plus: 3}\n")
    assert main(["pipeline", str(cfg)]) == 2
    assert "gamma_plus=3.0 is out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_the_pipeline_runs_extract_generate_export_on_the_embedded_model(tmp_path):
    (tmp_path / "i.txt").write_text("Describe a rainy Monday.\nTell me about a bus ride.\n")
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        'output = "out"\ndimensions = ["optimism"]\ninstructions = { file = "i.txt" }\n'
        '[steering]\nlayers = "8-15"\n[generate]\nmax_new_tokens = 16\n'
        # 16-token snippets are too short to say whether they answer: relevance is tested on answers
        # (test_relevance.py, test_gate.py); this tests the stages' wiring, and the [gate.quality] section.
        '[gate.quality]\nmin_words_relevance = 100000\n'
    )
    r = _run("pipeline", str(cfg))
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    assert (out / "vectors" / "optimism.safetensors").exists() and (out / "vectors" / "optimism.gguf").exists()
    assert len((out / "dataset" / "pairs.jsonl").read_text().splitlines()) == 2
    assert (out / "dataset" / "pairs.parquet").exists() and (out / "dataset" / "README.md").exists()


def test_calibrate_and_evaluate_take_the_judges_direction_or_target():
    from icon2engine.arguments import config_from_args
    from icon2engine.cli import build_parser
    from icon2engine.judges import JudgeConfig

    parser = build_parser()
    args = parser.parse_args(["calibrate", "--vectors", "v.safetensors", "--instructions", "i.txt", "--judge", "length",
                              "--judge-better", "lower", "--out", "c.json"])
    judge = config_from_args(args, JudgeConfig, prefix="judge")
    assert (judge.kind, judge.better, judge.target) == ("length", "lower", None)
    args = parser.parse_args(["evaluate", "--trained", "t", "--instructions", "i.txt", "--judge", "formality",
                              "--judge-target", "0.5", "--out", "e.json"])
    judge = config_from_args(args, JudgeConfig, prefix="judge")
    assert (judge.kind, judge.better, judge.target) == ("formality", "higher", 0.5)
