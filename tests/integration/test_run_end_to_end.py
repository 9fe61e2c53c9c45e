"""A run on real processes: daphne, a private Redis, Celery workers and beat, the embedded model."""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import ALIAS
from tests.integration.helpers import INSTRUCTIONS, create_run, launch
from tests.integration.stack import Browser, wait_for, ws_events

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def _run(run_id):
    from webapp.studio.models import Run

    return Run.objects.using(ALIAS).get(pk=run_id)


def _pairs(run_id):
    from webapp.jobs.models import Pair

    return list(Pair.objects.using(ALIAS).filter(run_id=run_id).values_list("instruction_id", flat=True))


def _kept(run_id):
    from webapp.jobs.models import Instruction

    return Instruction.objects.using(ALIAS).filter(run_id=run_id, kept=True).count()


def _stage(run_id, kind):
    from webapp.studio.models import Stage

    return Stage.objects.using(ALIAS).get(run_id=run_id, kind=kind)


def _finished(run_id):
    status = _run(run_id).status
    return status if status in ("succeeded", "failed", "cancelled") else None


def test_a_run_created_over_http_streams_progress_and_stores_its_pairs(stack, demo):
    stack.start_worker("w1")
    stack.start_beat()
    run_id = create_run(demo, name="E2E", instructions=INSTRUCTIONS[:4])
    launch(demo, run_id)
    events = ws_events(stack, demo, run_id, timeout=600,
                       until=lambda ev: any(e["type"] == "run" and e["status"] in ("succeeded", "failed") for e in ev))
    assert _run(run_id).status == "succeeded", stack.log_tail()
    # The stored state came first, then live progress of the model stages.
    assert events[0].get("snapshot") is True
    live = [e for e in events if not e.get("snapshot")]
    assert {"extract", "filter", "generate"} <= {e["stage"] for e in live if e["type"] == "stage"}
    assert any(e["type"] == "stage" and e["stage"] == "generate" and 0 < e["done"] for e in live)
    for e in events:
        assert json.loads(json.dumps(e)) == e
    pairs = _pairs(run_id)
    gate = _stage(run_id, "generate").compute["gate"]  # every kept instruction: a stored pair or a counted drop
    assert len(pairs) == len(set(pairs)) == gate["kept"] == _kept(run_id) - sum(gate["dropped"].values()) >= 2
    assert _stage(run_id, "generate").compute["tokens_out"] > 0
    # DPO on the pairs (review not required: all pass), then trained vs base on held-out instructions.
    train = _stage(run_id, "train")
    assert train.status == "succeeded" and train.metrics["steps"] >= 1 and train.metrics["pairs"] >= 1
    evaluation = _stage(run_id, "evaluate").metrics["evaluation"]
    assert evaluation["n"] == len(train.metrics["held_out_instructions"]) >= 2
    assert 0.0 <= evaluation["ci_low"] <= evaluation["win_rate"] <= evaluation["ci_high"] <= 1.0


def test_a_user_of_another_team_cannot_open_the_runs_socket(stack, demo):
    import websockets

    run_id = create_run(demo, name="Private", instructions=INSTRUCTIONS[:2])
    stack.manage("shell", "-c", (
        "from django.contrib.auth import get_user_model;"
        "from webapp.accounts.services import team_create;"
        "u = get_user_model().objects.create_user('mallory', password='mallory-pass-123');"
        "team_create(name='Other team', owner=u)"
    ))
    mallory = Browser(stack)
    mallory.login("mallory", "mallory-pass-123")
    with pytest.raises(Exception) as refused:
        ws_events(stack, mallory, run_id, timeout=5, until=lambda ev: len(ev) > 0)
    assert isinstance(refused.value, websockets.exceptions.InvalidStatus)
    anonymous = Browser(stack)
    with pytest.raises(websockets.exceptions.InvalidStatus):
        ws_events(stack, anonymous, run_id, timeout=5, until=lambda ev: len(ev) > 0)
    # The owner gets in and receives the stored state.
    got = ws_events(stack, demo, run_id, timeout=10, until=lambda ev: len(ev) >= 9)
    assert {e["stage"] for e in got if e["type"] == "stage"} >= {"extract", "generate"}


def test_a_run_that_synthesises_its_instructions_and_calibrates_gamma(stack, demo):
    from webapp.jobs.models import Instruction

    stack.env.update(ICON2_CALIBRATION_SAMPLE="4", ICON2_TORCH_THREADS="2", ICON2_SYNTH_CHUNK="4")
    stack.start_worker("w1")
    run_id = create_run(demo, name="Synthesised", instructions=None, n_instructions=8, keep_fraction=0.5,
                        calibrate=True, max_new_tokens=16)
    launch(demo, run_id)
    status = wait_for(lambda: _finished(run_id), 900, "the run to finish")
    synthesized = Instruction.objects.using(ALIAS).filter(run_id=run_id, source="synthesized")
    assert 6 <= synthesized.count() <= 8  # two chunks of 4; a text both chunks drew is stored once
    assert _stage(run_id, "synthesize").compute["acceptance_rate"] > 0
    assert synthesized.filter(kept=True).count() == round(synthesized.count() * 0.5)
    table = _stage(run_id, "calibrate").metrics["calibration"]["table"]
    assert len(table) == 16 and {"gamma_plus", "gamma_minus", "p_chosen_gt_rejected"} <= set(table[0])
    if status == "succeeded":
        pick = _stage(run_id, "calibrate").metrics["calibration"]["pick"]
        run = _run(run_id)
        assert (run.gamma_plus_used, run.gamma_minus_used) == (pick["gamma_plus"], pick["gamma_minus"])
        assert (run.gamma_plus, run.gamma_minus) == (0.05, -0.05)  # what the form asked for stays
        gate = _stage(run_id, "generate").compute["gate"]
        assert len(_pairs(run_id)) == gate["kept"] == _kept(run_id) - sum(gate["dropped"].values())
    else:  # four instructions may not reach P > 0.9: then the stage says so and keeps the table
        assert status == "failed", stack.log_tail()
        assert "calibration picked no γ" in _stage(run_id, "calibrate").error
