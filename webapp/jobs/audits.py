"""Bias-audit services: ask for an audit of a run, the worker's claim / finish / fail, and the
Audit tab's reading of the latest one (icon2engine.audit does the measuring)."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.accounts.roles import Perm
from webapp.accounts.selectors import role_require
from webapp.jobs import queue
from webapp.jobs.models import DirectionArtifact, RunAudit
from webapp.studio.models import Run

OPEN = (RunAudit.Status.QUEUED, RunAudit.Status.RUNNING)


def audit_request(*, run: Run, actor: AbstractBaseUser) -> RunAudit:
    """Queue an audit of the run's directions (and its pairs, when there are any)."""
    role_require(user=actor, team=run.project.team_id, perm=Perm.EDIT)
    with transaction.atomic():
        Run.objects.select_for_update().filter(pk=run.pk).first()
        if not DirectionArtifact.objects.filter(run=run).exists():
            raise ValidationError("Nothing to audit yet: the run has no directions. Wait for the extract stage.")
        if RunAudit.objects.filter(run=run, status__in=OPEN).exists():
            raise ValidationError("An audit of this run is already under way.")
        audit = RunAudit.objects.create(run=run, created_by=actor)
        transaction.on_commit(lambda: queue.send_audit(audit.pk))
    return audit


def audit_latest(*, run: Run) -> RunAudit | None:
    return RunAudit.objects.filter(run=run).first()


def audit_latest_done(*, run: Run) -> RunAudit | None:
    return RunAudit.objects.filter(run=run, status=RunAudit.Status.SUCCEEDED).first()


def audit_claim(*, audit_id: int, worker: str) -> RunAudit | None:
    if not RunAudit.objects.filter(pk=audit_id, status=RunAudit.Status.QUEUED).update(
        status=RunAudit.Status.RUNNING, worker=worker, message="Loading the model…"
    ):
        return None
    return RunAudit.objects.select_related("run__model", "run__project").get(pk=audit_id)


def audit_progress(*, audit: RunAudit, message: str) -> None:
    RunAudit.objects.filter(pk=audit.pk, status=RunAudit.Status.RUNNING).update(message=message[:300])


def audit_finish(*, audit: RunAudit, result: dict) -> None:
    if not result.get("dimensions"):
        raise ValueError("an audit with no dimensions is not a result")
    RunAudit.objects.filter(pk=audit.pk).update(
        status=RunAudit.Status.SUCCEEDED, result=result, message="", finished_at=timezone.now()
    )


def audit_fail(*, audit: RunAudit, error: str) -> None:
    RunAudit.objects.filter(pk=audit.pk).update(status=RunAudit.Status.FAILED, error=error[:2000], finished_at=timezone.now())


def audit_warning(*, run: Run) -> str:
    """One line for beside *Review done — continue* when the latest audit flagged something ("" if not)."""
    done = audit_latest_done(run=run)
    if done is None:
        return ""
    names = {r["key"]: r["name"] for r in done.result.get("references", [])}
    parts = []
    for d in done.result.get("dimensions", []):
        cos = d["overlap"]["cosines"]
        parts += [f"{d['name']} overlaps {names.get(k, k)} at {cos[k]:.2f}" for k in d["overlap"]["flagged"]]
        parts += [f"{d['name']}'s pairs are told apart by {f['feature']} alone ({f['accuracy']:.0%})"
                  for f in (d.get("pairs") or {}).get("flags", []) if not f["expected"]]
    return ("Bias audit: " + "; ".join(parts) + ". Read the Audit tab before training.") if parts else ""
