"""Playground tries and bias audits live the chunks' lifecycle (webapp.jobs.lifecycle): claimed
once, kept alive by a heartbeat, failed with the reason by the periodic check when their worker
dies, and a remedy's audit is released when the regeneration it waits for fails or is cancelled.

No model and no broker here: the worker's side is played by calling the services a worker calls
(tests/integration/test_faults.py kills a real interactive worker)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from webapp.jobs import audits, probes, services
from webapp.jobs.models import Chunk, DirectionArtifact, Instruction, Pair, Probe, RunAudit
from webapp.studio.models import Run, Stage
from webapp.studio.services import run_cancel, run_launch


def _silence(model, pk):
    """The worker's heartbeat stopped five minutes ago."""
    model.objects.filter(pk=pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))


@pytest.fixture
def probe(ours, annotator):
    return Probe.objects.create(run=ours.run, dimension=ours.dimension, instruction="Say hi.", gamma=0.2, created_by=annotator)


def test_a_try_is_claimed_once_and_a_redelivered_message_does_nothing(probe):
    claimed = probes.probe_claim(probe_id=probe.pk, worker="w1")
    assert claimed is not None and claimed.attempts == 1 and claimed.heartbeat_at is not None
    assert probes.probe_claim(probe_id=probe.pk, worker="w2") is None


def test_a_try_whose_worker_died_is_failed_by_the_periodic_check_and_its_late_answer_is_dropped(probe):
    claimed = probes.probe_claim(probe_id=probe.pk, worker="w1")
    assert probes.probe_heartbeat(probe=claimed)
    _silence(Probe, probe.pk)
    assert services.jobs_reap(stale_after_s=60, resend_after_s=600)["failed"] == 1
    probe.refresh_from_db()
    assert probe.status == Probe.Status.FAILED and "stopped responding" in probe.error and "send the try again" in probe.error
    assert probes.probe_heartbeat(probe=claimed) is False  # the worker, if it was only slow, learns to stop
    assert probes.probe_finish(probe=claimed, outputs={"plus": "late"}) is False
    probe.refresh_from_db()
    assert probe.status == Probe.Status.FAILED and probe.outputs == {}


def test_a_working_try_is_left_alone(probe):
    probes.probe_claim(probe_id=probe.pk, worker="w1")
    assert services.jobs_reap(stale_after_s=60, resend_after_s=600)["failed"] == 0
    assert Probe.objects.get(pk=probe.pk).status == Probe.Status.RUNNING


def test_an_audit_whose_worker_died_is_failed_and_a_new_audit_is_accepted(ours, owner):
    DirectionArtifact.objects.create(run=ours.run, dimension=ours.dimension, path="d.safetensors")
    first = audits.audit_request(run=ours.run, actor=owner)
    claimed = audits.audit_claim(audit_id=first.pk, worker="w1")
    assert claimed.status == RunAudit.Status.RUNNING and claimed.started_at is not None
    _silence(RunAudit, first.pk)
    services.jobs_reap(stale_after_s=60, resend_after_s=600)
    first.refresh_from_db()
    assert first.status == RunAudit.Status.FAILED and "ask for the audit again" in first.error
    assert audits.audit_finish(audit=claimed, result={"dimensions": [{"id": 1}]}) is False
    second = audits.audit_request(run=ours.run, actor=owner)
    assert second.status == RunAudit.Status.QUEUED


@pytest.fixture
def waiting_remedy(ours, owner, django_capture_on_commit_callbacks):
    """A run paused at review (nobody has reviewed yet), audited, and a remedy that has just changed
    the direction: the remedy's audit waits while generation runs again."""
    run = ours.run
    Run.objects.filter(pk=run.pk).update(keep_fraction=1.0, require_review=True)
    run.stages.filter(kind="synthesize").update(status=Stage.Status.SKIPPED)
    run.stages.filter(kind="review").update(status=Stage.Status.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=run, actor=owner)
    Instruction.objects.create(run=run, index=0, text="Say hi.", source="uploaded")
    extract = services.chunk_claim(chunk_id=Chunk.objects.get(stage__run=run, stage__kind="extract").pk, worker="w")
    services.chunk_complete(chunk=extract, write=lambda: None, compute={})
    for chunk in Chunk.objects.filter(stage__run=run, stage__kind="filter"):
        claimed = services.chunk_claim(chunk_id=chunk.pk, worker="w")
        services.chunk_complete(chunk=claimed, write=lambda: Instruction.objects.filter(run=run).update(
            scores={str(ours.dimension.pk): 0.5}), compute={})
    generate = services.chunk_claim(chunk_id=Chunk.objects.get(stage__run=run, stage__kind="generate").pk, worker="w")
    services.chunk_complete(chunk=generate, compute={}, write=lambda: Pair.objects.create(
        run=run, instruction=run.instructions.get(), chosen="Hi!", rejected="Hm.", gamma_plus=0.08, gamma_minus=-0.03))
    assert Run.objects.get(pk=run.pk).status == Run.Status.PAUSED
    DirectionArtifact.objects.create(run=run, dimension=ours.dimension, path="d.safetensors")
    dims = [{"id": ours.dimension.pk, "name": "Helpfulness"}]
    before = RunAudit.objects.create(run=run, status=RunAudit.Status.SUCCEEDED,
                                     result={"dimensions": dims, "references": [{"key": "sentiment"}]})
    remedy = audits.audit_remedy_request(run=run, actor=owner, dimension_id=ours.dimension.pk, against=["sentiment"])
    assert remedy.before_id == before.pk
    claimed = audits.audit_claim(audit_id=remedy.pk, worker="interactive")
    with django_capture_on_commit_callbacks(execute=True):
        assert audits.audit_remedy_apply(audit=claimed, path="d-without-sentiment.safetensors", gguf_path="")
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.WAITING
    return run, remedy


def test_cancelling_a_remedys_regeneration_releases_its_audit(waiting_remedy, owner):
    run, remedy = waiting_remedy
    chunk = Chunk.objects.get(stage__run=run, stage__kind="generate", status=Chunk.Status.QUEUED)
    working = services.chunk_claim(chunk_id=chunk.pk, worker="w")
    run_cancel(run=run, actor=owner)
    services.chunk_fail(chunk=working, error="cancelled", cancelled=True)  # the worker stops at its next batch
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.FAILED
    assert "regeneration of the pairs was cancelled" in remedy.error and "ask for an audit" in remedy.error
    assert audits.audit_request(run=run, actor=owner).status == RunAudit.Status.QUEUED


def test_a_remedy_whose_regeneration_is_cancelled_before_any_worker_took_it_is_released(waiting_remedy, owner):
    run, remedy = waiting_remedy
    run_cancel(run=run, actor=owner)
    assert audits.audit_request(run=run, actor=owner).status == RunAudit.Status.QUEUED
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.FAILED and "cancelled" in remedy.error


def test_a_remedy_whose_regeneration_fails_releases_its_audit(waiting_remedy):
    run, remedy = waiting_remedy
    chunk = Chunk.objects.get(stage__run=run, stage__kind="generate", status=Chunk.Status.QUEUED)
    services.chunk_fail(chunk=services.chunk_claim(chunk_id=chunk.pk, worker="w"), error="CUDA out of memory")
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.FAILED and "failed" in remedy.error and "retry the failed stage" in remedy.error
