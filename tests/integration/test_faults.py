"""Faults on real processes: a worker killed mid-generation, Redis restarted mid-run, a cancel,
and the interactive worker killed mid-audit and mid-playground-try.

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
    # Every chunk message left in the broker reaches the worker, which finds its chunk cancelled.
    wait_for(lambda: _broker_drained(stack, "gpu"), 120, "the worker to take every message left")
    assert len(_pair_instruction_ids(run_id)) == len(kept_pairs)  # nothing ran after the cancel
    assert not _chunks(run_id).filter(status__in=["queued", "running"]).exists()


def _broker_drained(stack, queue: str) -> bool:
    """No message waits in ``queue`` and none is held unacknowledged by a worker (late acks)."""
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    return client.llen(queue) == 0 and client.hlen("unacked") == 0


def _row(model, pk):
    return model.objects.using(ALIAS).get(pk=pk)


def test_the_interactive_worker_killed_mid_audit_and_mid_try_leaves_no_job_running_for_ever(stack, demo):
    """The periodic check fails both jobs with the reason, and the Audit tab takes a new request."""
    from webapp.jobs.models import DirectionArtifact, Probe, RunAudit
    from webapp.studio.models import Run

    stack.start_beat()
    stack.start_worker("w1", queues="default")  # the periodic check runs here (no model is loaded)
    run_id = create_run(demo, name="Interactive faults", instructions=INSTRUCTIONS)
    run = _run(run_id)
    # The audit needs a direction (never read: its worker is killed while it loads the model).
    DirectionArtifact.objects.using(ALIAS).create(run=run, dimension=run.dimensions.using(ALIAS).get(), path="unused")
    stack.start_worker("interactive-1", queues="interactive")
    demo.post(f"/runs/{run_id}/audit/", {})
    audit = RunAudit.objects.using(ALIAS).get(run_id=run_id)
    wait_for(lambda: _row(RunAudit, audit.pk).status == "running", 120, "the worker to take the audit", interval=0.05)
    stack.kill("interactive-1")

    stack.start_worker("interactive-2", queues="interactive")
    form = demo.form(f"/runs/{run_id}/playground/")
    demo.post(f"/runs/{run_id}/playground/", {"instruction": "Describe a rainy Monday morning.", "gamma": "0.1",
                                              "dimension": form.choices["dimension"][0][0], "max_new_tokens": "8",
                                              "layer_start": "", "layer_end": ""})
    probe = Probe.objects.using(ALIAS).get(run_id=run_id)
    wait_for(lambda: _row(Probe, probe.pk).status == "running", 120, "the worker to take the try", interval=0.05)
    stack.kill("interactive-2")

    for model, row in ((RunAudit, audit), (Probe, probe)):
        ended = wait_for(lambda: _row(model, row.pk).status == "failed" and _row(model, row.pk), 60, "the periodic check")
        assert "stopped responding" in ended.error, ended.error  # the reaper ended it, not the job itself
    demo.post(f"/runs/{run_id}/audit/", {})
    assert RunAudit.objects.using(ALIAS).filter(run_id=run_id, status="queued").count() == 1
    assert Run.objects.using(ALIAS).get(pk=run_id).status == "draft"
