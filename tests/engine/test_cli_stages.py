"""Command line and pipeline for synthesize → filter → calibrate, on a tiny model saved to a folder."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from icon2engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
LENIENT = "min_words = 1\nrequire_natural_end = false\nmin_letter_share = 0.0\nmin_latin_share = 0.0\ndrop_greetings = false\n"
FEATURES = ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3.", "Tell me about the sky."]


@pytest.fixture
def tiny_vectors(tiny_dir, tmp_path):
    feats = tmp_path / "feats.txt"
    feats.write_text("\n".join(FEATURES) + "\n")
    out = tmp_path / "cheer.safetensors"
    assert main(["extract", "--model", str(tiny_dir), "--name", "cheer", "--positive", "You are cheerful.",
                 "--negative", "You are gloomy.", "--instructions", str(feats), "--out", str(out)]) == 0
    return out


def _err(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip() and "%|" not in l]
    return lines[-1] if lines else ""


def test_synthesis_that_runs_out_of_attempts_writes_nothing_and_says_so(tiny_dir, tmp_path, capsys):
    out = tmp_path / "instr.jsonl"
    code = main(["synthesize", "--model", str(tiny_dir), "--n", "50", "--max-attempts", "8", "--batch-size", "8",
                 "--max-new-tokens", "6", "--out", str(out)])
    assert code == 2
    assert _err(capsys).startswith("icon2 synthesize: error: synthesis stopped after 8 samples with only")
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_partial_synthesis_writes_instructions_and_the_drop_report(tiny_dir, tmp_path, capsys):
    out, report = tmp_path / "instr.jsonl", tmp_path / "report.json"
    assert main(["synthesize", "--model", str(tiny_dir), "--n", "50", "--max-attempts", "8", "--batch-size", "8",
                 "--max-new-tokens", "6", "--allow-partial", "--out", str(out), "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["attempts"] == 8 and data["reached_target"] is False and "truncated" in data["dropped"]
    assert len(out.read_text().splitlines()) == data["kept"]


def test_a_model_without_a_chat_template_cannot_synthesise(tiny_dir, tmp_path, capsys):
    for name in ("chat_template.jinja", "chat_template.json"):
        (tiny_dir / name).unlink(missing_ok=True)
    cfg = json.loads((tiny_dir / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (tiny_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    code = main(["synthesize", "--model", str(tiny_dir), "--n", "4", "--out", str(tmp_path / "i.jsonl")])
    assert code == 2 and "has no chat template" in _err(capsys)


def test_filter_keeps_the_top_share_and_writes_every_score(tiny_dir, tiny_vectors, tmp_path):
    instr = tmp_path / "pool.txt"
    instr.write_text("\n".join(f"Tell me about thing number {i}." for i in range(10)) + "\n")
    kept, scores = tmp_path / "kept.jsonl", tmp_path / "scores.jsonl"
    assert main(["filter", "--model", str(tiny_dir), "--vectors", str(tiny_vectors), "--instructions", str(instr),
                 "--keep-fraction", "0.3", "--out", str(kept), "--scores", str(scores)]) == 0
    kept_rows = [json.loads(l) for l in kept.read_text().splitlines()]
    score_rows = [json.loads(l) for l in scores.read_text().splitlines()]
    assert len(kept_rows) == 3 and len(score_rows) == 10
    assert [r["score"] for r in kept_rows] == sorted((r["score"] for r in score_rows), reverse=True)[:3]
    assert all(r["dimension"] == "cheer" for r in kept_rows)


def test_an_upload_with_a_bad_row_names_the_file_and_line(tiny_dir, tiny_vectors, tmp_path, capsys):
    bad = tmp_path / "pool.jsonl"
    bad.write_text('{"instruction": "fine"}\n{"instruction": "also fine"}\n{"instruction": \n')
    assert main(["filter", "--model", str(tiny_dir), "--vectors", str(tiny_vectors), "--instructions", str(bad),
                 "--out", str(tmp_path / "k.jsonl")]) == 2
    assert f"{bad}, line 3: not valid JSON" in _err(capsys)
    csv_file = tmp_path / "pool.csv"
    csv_file.write_text("id,prompt\n1,Tell me a story.\n2,\n")
    assert main(["filter", "--model", str(tiny_dir), "--vectors", str(tiny_vectors), "--instructions", str(csv_file),
                 "--column", "prompt", "--out", str(tmp_path / "k.jsonl")]) == 2
    assert f"{csv_file}, line 3: the instruction is empty" in _err(capsys)


@pytest.mark.parametrize(
    "grid,says",
    [(["--gamma-plus-grid", ""], "gamma_plus_grid is empty"),
     (["--gamma-minus-grid=-0.05,-3"], "gamma_minus_grid holds -3.0, outside"),
     (["--gamma-plus-grid", "0.1,abc"], "cannot read")],
)
def test_a_bad_sweep_grid_is_refused_before_anything_loads(tmp_path, capsys, grid, says):
    code = main(["calibrate", "--model", str(tmp_path / "missing"), "--vectors", str(tmp_path / "v.safetensors"),
                 "--instructions", str(tmp_path / "i.txt"), "--out", str(tmp_path / "c.json"), *grid])
    assert code == 2 and says in _err(capsys)


def test_an_unreachable_llm_judge_fails_the_calibration_cleanly(tiny_dir, tiny_vectors, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    instr = tmp_path / "i.txt"
    instr.write_text("\n".join(FEATURES) + "\n")
    out = tmp_path / "c.json"
    code = main(["calibrate", "--model", str(tiny_dir), "--vectors", str(tiny_vectors), "--instructions", str(instr),
                 "--judge", "llm", "--judge-url", f"http://127.0.0.1:{port}/v1", "--judge-model", "m", "--n", "2",
                 "--gamma-plus-grid", "0.1", "--gamma-minus-grid", "-0.1", "--max-new-tokens", "4", "--out", str(out)])
    assert code == 2 and "unreachable" in _err(capsys)
    assert not out.exists()


def _pipeline(tmp_path, tiny_dir, extra: str, stages: str, top: str = "") -> Path:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        top + f'output = "out"\nstages = {stages}\nmodel = "{tiny_dir}"\nexport_gguf = false\n'
        'feature_instructions = ' + json.dumps(FEATURES) + '\n'
        '[[dimensions]]\nname = "cheer"\nprompt_pairs = [{ positive = "You are cheerful.", negative = "You are gloomy." }]\n'
        '[steering]\nlayers = "1-2"\n[generate]\nmax_new_tokens = 4\n'
        '[gate]\nenabled = false\n'  # a random model writes no language: the gate has its own tests
        + extra
    )
    return cfg


def test_one_config_runs_extract_synthesize_filter_generate_export(tiny_dir, tmp_path, capsys):
    cfg = _pipeline(tmp_path, tiny_dir, f"[synthesize]\nn_target = 6\nmax_attempts = 64\nbatch_size = 16\nmax_new_tokens = 8\n"
                    f"[synthesize.rules]\n{LENIENT}[filter]\nkeep_fraction = 0.5\n",
                    '["extract", "synthesize", "filter", "generate", "export"]')
    assert main(["pipeline", str(cfg)]) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    assert len((out / "instructions.jsonl").read_text().splitlines()) == 6
    assert json.loads((out / "synthesis_report.json").read_text())["reached_target"] is True
    assert len((out / "scores.jsonl").read_text().splitlines()) == 6
    assert len((out / "kept.jsonl").read_text().splitlines()) == 3
    assert len((out / "dataset" / "pairs.jsonl").read_text().splitlines()) == 3


def test_a_calibration_without_a_pick_stops_the_pipeline_before_generation(tiny_dir, tmp_path, capsys):
    # γ⁺ so small and γ⁻ = 0: chosen and rejected are the same text, so no setting separates them.
    top = 'instructions = ' + json.dumps(FEATURES) + '\n'
    extra = ('[calibrate]\ngamma_plus_grid = [0.000001]\ngamma_minus_grid = [0.0]\nn_instructions = 3\nmax_new_tokens = 4\n'
             '[judge]\nkind = "length"\n')
    cfg = _pipeline(tmp_path, tiny_dir, extra, '["extract", "calibrate", "generate", "export"]', top)
    assert main(["pipeline", str(cfg)]) == 2
    assert "calibration picked no γ" in _err(capsys)
    out = tmp_path / "out"
    table = json.loads((out / "calibration.json").read_text())
    assert table["pick"] is None and len(table["table"]) == 1
    assert not (out / "pairs.jsonl").exists() and not (out / "dataset").exists()


def test_pipeline_sections_for_the_new_stages_are_validated(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("dimensions: [optimism]\nstages: [extract, synthesize, generate]\nsynthesize: {batch_size: 8}\n")
    assert main(["pipeline", str(cfg)]) == 2 and "n_target" in _err(capsys)
    cfg.write_text("dimensions: [optimism]\ninstructions: [hi]\nstages: [calibrate]\ncalibrate: {gamma_plus_grid: []}\n")
    assert main(["pipeline", str(cfg)]) == 2 and "gamma_plus_grid is empty" in _err(capsys)
    cfg.write_text("dimensions: [optimism]\ninstructions: [hi]\nstages: [calibrate]\njudge: {kind: llm}\n")
    assert main(["pipeline", str(cfg)]) == 2 and "needs base_url" in _err(capsys)


@pytest.mark.slow
def test_the_whole_method_runs_from_one_config_on_the_embedded_model(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        'output = "out"\ndimensions = ["optimism"]\nexport_gguf = false\n'
        'stages = ["extract", "synthesize", "filter", "calibrate", "generate", "export"]\n'
        'feature_instructions = ' + json.dumps(FEATURES + ["Write about autumn.", "Describe a bus ride.", "What is for lunch?"]) + '\n'
        '[steering]\nlayers = "8-15"\n[generate]\nmax_new_tokens = 16\n'
        '[synthesize]\nn_target = 16\nbatch_size = 32\nmax_new_tokens = 40\n'
        '[filter]\nkeep_fraction = 0.5\n'
        '[calibrate]\ngamma_plus_grid = [0.1]\ngamma_minus_grid = [-0.05, -0.1, -0.15]\nn_instructions = 4\nmax_new_tokens = 24\n'
        # Four instructions, with the run's own safeguards and band (8-15) since calibration uses them: any
        # separation at all picks, so the pipeline's wiring is what is under test.
        'p_threshold = 0.2\nmax_loglik_drop = 3.0\n[judge]\nkind = "vader"\n'
        # Snippets of 16-24 tokens are too short to say whether they answer (relevance is tested on answers
        # in test_relevance.py): the gate's relevance checks are off so the whole method's wiring is under test.
        '[gate.quality]\nmin_words_relevance = 100000\n'
    )
    r = subprocess.run([sys.executable, "-m", "icon2engine", "pipeline", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    out = tmp_path / "out"
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((out / "scores.jsonl").read_text().splitlines()) == 16
    assert json.loads((out / "calibration.json").read_text())["pick"] is not None
    # Every kept instruction became a pair or a counted drop (a side may still refuse: that check stays on).
    gate = json.loads((out / "summary.json").read_text())["stages"]["generate"]["gate"]
    pairs = len((out / "dataset" / "pairs.jsonl").read_text().splitlines())
    assert pairs == gate["kept"] >= 6 and pairs + sum(gate["dropped"].values()) == 8, gate
