"""Bias-audit services: ask for an audit of a run (or for the remedy: orthogonalise one dimension's
direction and regenerate), the worker's claim / apply / finish / fail, the audit that follows
generation, and the Audit tab's reading of the latest one (icon2engine.audit does the measuring).

An audit is a job like a chunk (:mod:`webapp.jobs.lifecycle`): claimed by a conditional UPDATE,
kept alive by a heartbeat, failed by the periodic check when its worker dies. A remedy's audit
waits while the run regenerates; if that regeneration fails or is cancelled, the audit is
released with the reason (:func:`audit_release_waiting`), so a later audit is accepted."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.accounts.roles import Perm
from webapp.accounts.selectors import role_require
from webapp.jobs import hooks, lifecycle, queue
from webapp.jobs.models import DirectionArtifact, RunAudit
from webapp.jobs.services import ACTIVE_RUN, reviewed_work_refuse, run_advance, run_notify, stages_after_reset
from webapp.studio.models import Run, Stage

OPEN = (RunAudit.Status.QUEUED, RunAudit.Status.RUNNING)
UNDER_WAY = (*OPEN, RunAudit.Status.WAITING)


def audit_request(*, run: Run, actor: AbstractBaseUser) -> RunAudit:
    """Queue an audit of the run's directions (and its pairs, when there are any)."""
    role_require(user=actor, team=run.project.team_id, perm=Perm.EDIT)
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        audit_release_waiting(run_id=run.pk, status=locked.status)  # a regeneration that stopped unnoticed
        if not DirectionArtifact.objects.filter(run=run).exists():
            raise ValidationError("Nothing to audit yet: the run has no directions. Wait for the extract stage.")
        if RunAudit.objects.filter(run=run, status__in=UNDER_WAY).exists():
            raise ValidationError("An audit of this run is already under way.")
        audit = RunAudit.objects.create(run=run, created_by=actor)
        transaction.on_commit(lambda: queue.send_audit(audit.pk))
    return audit


def audit_remedy_request(*, run: Run, actor: AbstractBaseUser, dimension_id: int, against: list[str]) -> RunAudit:
    """Queue the remedy for one dimension: the worker projects the ``against`` references out of
    its direction, the stages after the filter run again (same instructions, new γ and pairs), and
    the new pairs are audited beside the latest audit."""
    role_require(user=actor, team=run.project.team_id, perm=Perm.EDIT)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        audit_release_waiting(run_id=run.pk, status=run.status)
        before = audit_latest_done(run=run)
        if before is None:
            raise ValidationError("Run the audit first: the remedy is shown beside it.")
        dims = {d["id"]: d for d in before.result.get("dimensions", [])}
        if dimension_id not in dims:
            raise ValidationError("That dimension is not in the latest audit of this run.")
        refs = [r["key"] for r in before.result.get("references", [])]
        against = [k for k in refs if k in set(against or [])]  # bank order, no repeats
        if not against:
            raise ValidationError("Choose at least one reference direction to project out.")
        already = set(dims[dimension_id].get("orthogonalised_against") or [])
        if set(against) <= already:
            raise ValidationError(f"{dims[dimension_id]['name']} is already orthogonalised against those references.")
        if run.status in ACTIVE_RUN:
            raise ValidationError("The run is working: wait until it pauses or finishes (or cancel it), then regenerate.")
        if not run.stages.filter(kind=Stage.Kind.EXTRACT, status=Stage.Status.SUCCEEDED).exists():
            raise ValidationError("The directions are not extracted yet.")
        reviewed_work_refuse(run=run, because="regenerating would drop their work",
                             instead="Start a new run instead; its directions can be orthogonalised before review.")
        if RunAudit.objects.filter(run=run, status__in=UNDER_WAY).exists():
            raise ValidationError("An audit of this run is already under way.")
        audit = RunAudit.objects.create(run=run, created_by=actor, before=before,
                                        remedy={"dimension": dimension_id, "against": against, "applied": False})
        transaction.on_commit(lambda: queue.send_audit(audit.pk))
    return audit


def _rerun_from(run: Run) -> int:
    """The order after which a changed direction needs the stages again: the filter's (its
    selection stays), else the extract stage's."""
    stage = run.stages.filter(kind=Stage.Kind.FILTER).exclude(status=Stage.Status.SKIPPED).first() \
        or run.stages.get(kind=Stage.Kind.EXTRACT)
    return stage.order


def audit_remedy_apply(*, audit: RunAudit, path: str, gguf_path: str) -> bool:
    """The worker wrote the orthogonalised direction: point the run at it, make the stages after the
    filter run again, and leave the audit waiting for the new pairs. Refused (the audit fails) if
    the run started working or was reviewed meanwhile."""
    dimension_id = audit.remedy["dimension"]
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=audit.run_id)
        if run.status in ACTIVE_RUN:
            raise ValidationError("the run started working before the remedy could be applied; ask again when it pauses")
        reviewed_work_refuse(run=run, because="regenerating would drop their work", instead="Start a new run instead.")
        artifact = DirectionArtifact.objects.select_for_update().get(run=run, dimension_id=dimension_id)
        remedy = {**audit.remedy, "applied": True, "original_path": audit.remedy.get("original_path") or artifact.path}
        DirectionArtifact.objects.filter(pk=artifact.pk).update(path=path, gguf_path=gguf_path)
        rerun = stages_after_reset(run=run, order=_rerun_from(run))
        if run.status == Run.Status.DRAFT or not rerun:  # nothing generated yet: audit the new direction now
            lifecycle.job_mine(audit).update(remedy=remedy, message="")
            return False
        if not lifecycle.job_mine(audit).update(
            remedy=remedy, status=RunAudit.Status.WAITING, message="Waiting for the pairs to be generated again…"
        ):  # the periodic check gave this audit up meanwhile: change nothing (the transaction rolls back)
            raise ValidationError("this audit was given up while its direction was being changed; ask again")
    run_advance(run_id=run.pk)
    run_notify(run.pk)
    return True


@hooks.on_stage_finish(Stage.Kind.GENERATE)
def audit_after_generation(stage: Stage) -> None:
    """Inside the generate stage's success transaction: a remedy waiting for these pairs is queued;
    otherwise (ICON2_AUDIT_AUTO) a fresh audit, so the warning is beside *Review done* unasked."""
    run_id = stage.run_id
    waiting = RunAudit.objects.filter(run_id=run_id, status=RunAudit.Status.WAITING).first()
    if waiting is not None:
        RunAudit.objects.filter(pk=waiting.pk).update(status=RunAudit.Status.QUEUED, message="Auditing the new pairs…")
        transaction.on_commit(lambda: queue.send_audit(waiting.pk))
    elif settings.ICON2_AUDIT_AUTO and not RunAudit.objects.filter(run_id=run_id, status__in=UNDER_WAY).exists():
        audit = RunAudit.objects.create(run_id=run_id, message="Started when the pairs were generated.")
        transaction.on_commit(lambda: queue.send_audit(audit.pk))


def audit_latest(*, run: Run) -> RunAudit | None:
    return RunAudit.objects.filter(run=run).first()


def audit_latest_done(*, run: Run) -> RunAudit | None:
    return RunAudit.objects.filter(run=run, status=RunAudit.Status.SUCCEEDED).first()


@hooks.on_run_stop
def audit_release_waiting(*, run_id: int, status: str) -> int:
    """A run that failed or was cancelled will not bring the pairs a remedy's audit waits for:
    end that audit with the reason (the orthogonalised direction stays). Returns how many."""
    if status not in (Run.Status.FAILED, Run.Status.CANCELLED):
        return 0
    what = "was cancelled" if status == Run.Status.CANCELLED else "failed"
    then = "resume or start a new run" if status == Run.Status.CANCELLED else "retry the failed stage"
    reason = (f"The regeneration of the pairs {what}, so the remedy could not be audited. The orthogonalised direction "
              f"stays in the run: {then}, then ask for an audit.")
    return RunAudit.objects.filter(run_id=run_id, status=RunAudit.Status.WAITING).update(
        status=RunAudit.Status.FAILED, error=reason, message="", finished_at=timezone.now())


def audit_claim(*, audit_id: int, worker: str) -> RunAudit | None:
    """Take a queued audit (the lifecycle every job shares: :mod:`webapp.jobs.lifecycle`)."""
    if not lifecycle.job_claim(RunAudit, pk=audit_id, worker=worker, message="Loading the model…", error=""):
        return None
    return RunAudit.objects.select_related("run__model", "run__project", "before").get(pk=audit_id)


def audit_heartbeat(*, audit: RunAudit) -> bool:
    """False once the audit is no longer this worker's (the periodic check failed it)."""
    return lifecycle.job_heartbeat(audit)


def audit_progress(*, audit: RunAudit, message: str) -> None:
    lifecycle.job_mine(audit).update(message=message[:300], heartbeat_at=timezone.now())


def audit_finish(*, audit: RunAudit, result: dict) -> bool:
    """Store the result; False (nothing stored) when the audit is no longer this worker's."""
    if not result.get("dimensions"):
        raise ValueError("an audit with no dimensions is not a result")
    return bool(lifecycle.job_mine(audit).update(
        status=RunAudit.Status.SUCCEEDED, result=result, message="", finished_at=timezone.now()
    ))


def audit_fail(*, audit: RunAudit, error: str) -> None:
    lifecycle.job_mine(audit).update(status=RunAudit.Status.FAILED, error=error[:2000], message="", finished_at=timezone.now())


lifecycle.job_kind_register(lifecycle.JobKind(
    name="audit", model=RunAudit, fail=lambda audit, error: audit_fail(audit=audit, error=error),
    what_next="ask for the audit again",
))


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
