"""The LLM judge against a real OpenAI-compatible server: ``transformers serve``, offline.

The server serves the embedded SmolLM2-135M-Instruct from its converted folder on 127.0.0.1.
A calibration and an evaluation run with the LLM-endpoint judge, and every verdict is checked
to have come from that server: the judge's own count of answers and the server's access log of
``POST /v1/chat/completions`` agree with the number of responses judged. (The scripted
``http.server`` in ``test_judges.py`` is a stub, kept only for timeout and retry cases.)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from icon2engine.models import embedded_model_dir

    model_dir = str(embedded_model_dir())
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    cli = Path(sys.executable).with_name("transformers")
    log = open(log_path, "w")
    proc = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", model_dir],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:  # /health, not /v1/models: transformers 5.19 lists only the hub cache there (and fails without one)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                    assert resp.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not answer in 240 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
        yield {"url": url, "model": model_dir, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _served_verdicts(log_path: Path) -> int:
    return sum(1 for line in log_path.read_text().splitlines()
               if "POST /v1/chat/completions" in line and " 200" in line)


def test_calibration_and_evaluation_are_judged_through_the_served_model(served, embedded_lm, optimism_directions):
    from icon2engine import CalibrationConfig, EvalConfig, SteeringConfig, calibrate, default_feature_instructions, evaluate
    from icon2engine.judges import JudgeConfig, LLMJudge, make_judge

    # SmolLM2-135M holds the 1-10 format but not the pairwise one, so it compares by scores.
    judge = make_judge(JudgeConfig(kind="llm", base_url=served["url"], model=served["model"],
                                   criterion="cheerful and optimistic", timeout=120, protocol="scores"))
    assert isinstance(judge, LLMJudge)
    pool = default_feature_instructions()[40:60]

    cal = calibrate(embedded_lm, optimism_directions, pool, judge, CalibrationConfig(
        n_instructions=3, gamma_plus_grid=(0.08,), gamma_minus_grid=(-0.05,), max_new_tokens=16))
    responses = 3 * 3  # 3 instructions × (unsteered, γ⁺, γ⁻)
    assert cal.judge.startswith("llm:") and len(cal.table) == 1
    assert judge.answered == responses
    assert all(1.0 <= s <= 10.0 for s in (cal.table[0]["mean_score_chosen"], cal.baseline["mean_score"])), cal.as_dict()

    held_out = pool[:2]
    rep = evaluate(embedded_lm, embedded_lm, held_out, judge, EvalConfig(max_new_tokens=16),
                   direction=optimism_directions, steering=SteeringConfig(0.08, -0.05))
    # base, trained and steered each scored once per instruction; trained vs base compared in both
    # orders, each comparison two ratings.
    evaluation = 3 * len(held_out) + 2 * 2 * len(held_out)
    assert judge.answered == responses + evaluation
    assert rep.judge.startswith("llm:") and rep.n == len(held_out)
    assert all(1.0 <= r[f"score_{k}"] <= 10.0 for r in rep.rows for k in ("base", "trained", "steered"))

    # The server's own log saw every one of those verdicts: nothing was answered elsewhere.
    deadline = time.monotonic() + 10
    while _served_verdicts(served["log"]) < judge.answered and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _served_verdicts(served["log"]) == judge.answered


def test_a_pairwise_question_reaches_the_server_and_its_answer_is_read_or_refused(served):
    from icon2engine.errors import JudgeError
    from icon2engine.judges import LLMJudge

    judge = LLMJudge(served["url"], served["model"], criterion="cheerful and optimistic", timeout=120)
    cheerful, gloomy = "What a bright, lovely morning full of hope!", "A grim, hopeless, dreary morning."
    try:
        verdict = judge.compare("Describe the morning.", cheerful, gloomy)
        assert verdict in (1.0, 0.0, -1.0)
    except JudgeError as exc:  # a small model may answer off-format: the error quotes it
        assert "instead of A, B or tie" in str(exc)
    assert judge.answered == 1
