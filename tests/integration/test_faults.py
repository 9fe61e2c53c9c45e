"""Faults on real processes: a worker killed mid-generation, Redis restarted mid-run, a cancel.

Generation is split into chunks of 2 pairs so that a run has several chunks in flight.
"""
from __future__ import annotations

import time

import pytest

from tests.integration.conftest import ALIAS
from tests.integration.helpers import INSTRUCTIONS, create_run, launch
from tests.integration.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]


def _run(run_id):
    from webapp.studio.models import Run

    return Run.objects.using(ALIAS).get(pk=run_id)


def _chunks(run_id, status=None):
    from webapp.jobs.models import Chunk

    qs = Chunk.objects.using(ALIAS).filter(stage__run_id=run_id, stage__kind="generate")
    return qs.filter(status=status) if status else qs


def _pair_instruction_ids(run_id):
    from webapp.jobs.models import Pair

    return list(Pair.objects.using(ALIAS).filter(run_id=run_id).values_list("instruction_id", flat=True))


def _kept(run_id):
    from webapp.jobs.models import Instruction

    return Instruction.objects.using(ALIAS).filter(run_id=run_id, kept=True).count()


def _finished(run_id):
    status = _run(run_id).status
    return status if status in ("succeeded", "failed", "cancelled") else None


def _start_generating_run(stack, demo, name):
    stack.env.update(ICON2_PAIR_CHUNK="2", ICON2_TORCH_THREADS="2")
    stack.start_beat()
    stack.start_worker("w1")
    run_id = create_run(demo, name=name, instructions=INSTRUCTIONS, max_new_tokens=24)
    launch(demo, run_id)
    wait_for(lambda: _chunks(run_id, "succeeded").count() >= 1 and _chunks(run_id, "running").count() == 1,
             600, "generation to be under way", interval=0.1)
    return run_id


def _assert_complete_and_unique(run_id):
    """Every kept instruction ended as exactly one stored pair or one counted drop of the quality gate."""
    from webapp.studio.models import Stage

    pairs = _pair_instruction_ids(run_id)
    gate = Stage.objects.using(ALIAS).get(run_id=run_id, kind="generate").compute["gate"]
    assert len(pairs) == len(set(pairs)) == gate["kept"]
    assert gate["kept"] + sum(gate["dropped"].values()) == _kept(run_id) == len(INSTRUCTIONS)


def test_a_worker_killed_mid_generation_is_replaced_and_no_pair_is_lost_or_doubled(stack, demo):
    run_id = _start_generating_run(stack, demo, "Killed worker")
    interrupted = _chunks(run_id, "running").get().pk
    stack.kill("w1")  # SIGKILL: no chance to clean up
    stack.start_worker("w2")
    assert wait_for(lambda: _finished(run_id), 600, "the run to finish") == "succeeded", stack.log_tail()
    _assert_complete_and_unique(run_id)
    redone = _chunks(run_id).get(pk=interrupted)
    assert redone.attempts >= 2 and redone.status == "succeeded"
    assert len({c.worker for c in _chunks(run_id)}) == 2  # both workers did part of the work


def test_a_redis_restart_mid_run_loses_nothing(stack, demo):
    run_id = _start_generating_run(stack, demo, "Redis restart")
    stack.redis.stop()
    time.sleep(3)
    stack.redis.start()  # same port, empty: every queued message is gone
    status = wait_for(lambda: _finished(run_id), 600, "the run to finish or stop")
    if status == "failed":  # allowed, if it says why and a retry finishes the job
        from webapp.studio.models import Stage

        stage = Stage.objects.using(ALIAS).get(run_id=run_id, status="failed")
        assert stage.error
        from tests.integration.stack import Browser

        demo.post(f"/runs/{run_id}/stages/{stage.kind}/retry/", {})
        status = wait_for(lambda: _finished(run_id), 600, "the retried run to finish")
    assert status == "succeeded", stack.log_tail()
    _assert_complete_and_unique(run_id)


def test_cancelling_mid_run_stops_within_one_batch_and_keeps_finished_pairs(stack, demo):
    run_id = _start_generating_run(stack, demo, "Cancelled")
    done_before = _chunks(run_id, "succeeded").count()
    status, _, _ = demo.post(f"/runs/{run_id}/cancel/", {})
    assert status == 200
    # The chunk that was generating stops at its next batch boundary (a chunk is one batch here).
    wait_for(lambda: _chunks(run_id, "running").count() == 0, 120, "the running chunk to stop")
    assert _run(run_id).status == "cancelled"
    assert _chunks(run_id, "succeeded").count() <= done_before + 1
    kept_pairs = _pair_instruction_ids(run_id)
    assert len(kept_pairs) >= 2 and len(kept_pairs) == len(set(kept_pairs))
    time.sleep(4)
    assert len(_pair_instruction_ids(run_id)) == len(kept_pairs)  # nothing ran after the cancel
    assert not _chunks(run_id).filter(status__in=["queued", "running"]).exists()
