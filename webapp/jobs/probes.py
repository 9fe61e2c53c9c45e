"""Playground services: create a request, and the worker's claim / progress / finish calls.

The row is the truth (status, the three texts so far, the error); channel-layer messages only
carry the same small JSON to open pages, as they happen.
"""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from webapp.accounts.roles import Perm, role_allows
from webapp.accounts.selectors import membership_get, role_require
from webapp.jobs import events, lifecycle, queue
from webapp.jobs.models import Probe
from webapp.studio.models import Run, Stage
from webapp.studio.selectors import run_get_for_user

STALE_QUEUED_S = 20  # after this long without a worker, the page says how to start one


PLAYGROUND_BLINDED = (
    "The playground is closed to annotators of a run under review: steering an instruction from the "
    "queue would show which answer was steered towards the dimension, and reviews must be blind."
)


def playground_blinded(*, user: AbstractBaseUser, run: Run) -> bool:
    """True for an annotator (may review, may not edit) while the run's pairs are under review."""
    membership = membership_get(user=user, team=run.project.team_id)
    if membership is None or not role_allows(membership.role, Perm.REVIEW) or role_allows(membership.role, Perm.EDIT):
        return False
    return run.stages.filter(kind=Stage.Kind.REVIEW, status=Stage.Status.RUNNING).exists()


def playground_require(*, user: AbstractBaseUser, run: Run) -> None:
    if playground_blinded(user=user, run=run):
        raise PermissionDenied(PLAYGROUND_BLINDED)


def probe_create(*, run: Run, actor: AbstractBaseUser, data: dict) -> Probe:
    role_require(user=actor, team=run.project.team_id, perm=Perm.REVIEW)
    playground_require(user=actor, run=run)
    probe = Probe.objects.create(run=run, created_by=actor, **data)
    transaction.on_commit(lambda: queue.send_probe(probe.pk))
    return probe


def probe_get_for_user(*, user: AbstractBaseUser, pk: int) -> Probe:
    """A probe of a run the user may see (404 otherwise)."""
    probe = Probe.objects.select_related("run", "dimension").filter(pk=pk).first()
    if probe is None:
        raise Http404("No such playground request.")
    playground_require(user=user, run=run_get_for_user(user=user, pk=probe.run_id))
    return probe


def probe_list_for_run(*, run: Run, limit: int = 5):
    return Probe.objects.filter(run=run).select_related("dimension", "created_by")[:limit]


def _notify(probe_id: int) -> None:
    probe = Probe.objects.get(pk=probe_id)
    events.notify_probe(probe_id, events.probe_event(probe))


def probe_claim(*, probe_id: int, worker: str) -> Probe | None:
    """Take a queued try (the lifecycle every job shares: :mod:`webapp.jobs.lifecycle`)."""
    if not lifecycle.job_claim(Probe, pk=probe_id, worker=worker, message="Loading the model…"):
        return None
    _notify(probe_id)
    return Probe.objects.select_related("run__model", "dimension").get(pk=probe_id)


def probe_heartbeat(*, probe: Probe) -> bool:
    """False once the try is no longer this worker's (the periodic check failed it)."""
    return lifecycle.job_heartbeat(probe)


def probe_progress(*, probe: Probe, outputs: dict | None = None, message: str | None = None, store: bool = True) -> None:
    """New text (or a message) for open pages; stored too when ``store`` (the worker throttles it)."""
    fields: dict = {}
    if outputs is not None:
        fields["outputs"] = outputs
    if message is not None:
        fields["message"] = message[:300]
    if store and fields:
        lifecycle.job_mine(probe).update(**fields, heartbeat_at=timezone.now())
    events.notify_probe(probe.pk, {"type": "probe", "probe": probe.pk, "status": Probe.Status.RUNNING,
                                   "outputs": outputs or {}, "message": message or "", "error": ""})


def probe_finish(*, probe: Probe, outputs: dict) -> bool:
    """Store the three answers; False (nothing stored) when the try is no longer this worker's."""
    done = lifecycle.job_mine(probe).update(
        status=Probe.Status.SUCCEEDED, outputs=outputs, message="", finished_at=timezone.now()
    )
    _notify(probe.pk)
    return bool(done)


def probe_fail(*, probe: Probe, error: str) -> None:
    if lifecycle.job_mine(probe).update(status=Probe.Status.FAILED, error=error[:2000], message="", finished_at=timezone.now()):
        _notify(probe.pk)


lifecycle.job_kind_register(lifecycle.JobKind(
    name="playground", model=Probe, fail=lambda probe, error: probe_fail(probe=probe, error=error),
    what_next="send the try again",
))
