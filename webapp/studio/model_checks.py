"""The model check, web side: asking for it, the worker's claim / progress / finish calls, and what
a launch makes of it.

When a team adds a model (or changes where it is loaded from), or a run is launched on a model that
was never checked, a :class:`~webapp.studio.models.ModelCheck` is queued for the interactive worker
(``worker.model_check``), which loads the model and runs ``icon2engine.model_check``. It is a job
like a playground try (:mod:`webapp.jobs.lifecycle`): claimed by a conditional UPDATE, kept alive by
its heartbeat, failed with the reason by the periodic check when its worker stops.

The newest check of a model is its verdict. A launch on a model whose check failed is refused with
the check's own words, and so is a launch while the check is still queued or running (launch again
in a minute); the person launching may override either. The embedded model, on which every default
was measured, needs no check.
"""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from webapp.accounts.roles import Perm
from webapp.accounts.selectors import role_require
from webapp.jobs import lifecycle, queue
from webapp.studio.models import ModelCheck, ModelSpec

OVERRIDE_LABEL = "Launch even though the model check failed"
# Changing one of these changes what is loaded, so the model is checked again.
SOURCE_FIELDS = ("kind", "path_or_id", "revision", "layers_attr")
ACTIVE = (ModelCheck.Status.QUEUED, ModelCheck.Status.RUNNING)


# Reads ---------------------------------------------------------------------------------------


def model_check_latest(*, model: ModelSpec) -> ModelCheck | None:
    """The model's newest check (its verdict), or None when it was never checked."""
    return model.checks.order_by("-created_at", "-pk").first()


def model_checks_prefetch() -> Prefetch:
    """For a list of models: ``model.checks_newest_first[0]`` is each one's newest check."""
    return Prefetch("checks", queryset=ModelCheck.objects.order_by("-created_at", "-pk"), to_attr="checks_newest_first")


def model_check_needed(*, model: ModelSpec) -> bool:
    return model.kind != ModelSpec.Kind.EMBEDDED


def model_check_problem(*, model: ModelSpec) -> str | None:
    """Why a run should not be launched on ``model`` now, in plain words; None when its newest
    check passed (or the model is the embedded one). A model never checked is a problem too: see
    :func:`model_check_launch_problem`, which also queues its check."""
    if not model_check_needed(model=model):
        return None
    check = model_check_latest(model=model)
    if check is None:
        return f"The model {model.name} has not been checked yet."
    if not check.done:
        return (f"The model check of {model.name} is still running ({check.message or 'queued'}); launch again "
                "when it has finished (a minute or two; the Models page shows it).")
    if check.status == ModelCheck.Status.FAILED:
        return f"The model check of {model.name} could not run: {check.error.rstrip('.')}."
    if not check.passed:
        said = "; ".join(f"{flag['message']} (what to do: {flag['fix']})" for flag in check.flags)
        return f"The model check of {model.name} failed: {said or 'see the Models page'}."
    return None


# Writes --------------------------------------------------------------------------------------


def model_check_request(*, model: ModelSpec, actor: AbstractBaseUser | None, again: bool = False) -> ModelCheck:
    """Queue a check of ``model`` for the interactive worker (sent once this commits). A check
    already queued or running is returned instead, unless ``again`` (the model's source changed)."""
    if model.team_id is not None and actor is not None:
        role_require(user=actor, team=model.team_id, perm=Perm.EDIT)
    active = model.checks.filter(status__in=ACTIVE).order_by("-created_at", "-pk").first()
    if active is not None and not again:
        return active
    check = ModelCheck.objects.create(model=model, created_by=actor)
    transaction.on_commit(lambda: queue.send_model_check(check.pk))
    return check


def model_check_launch_problem(*, model: ModelSpec, actor: AbstractBaseUser) -> str | None:
    """:func:`model_check_problem`, for a launch: a model never checked gets its check queued now
    (the launch is refused until it has run). The message says how to launch anyway."""
    problem = model_check_problem(model=model)
    if problem is None:
        return None
    if model_check_latest(model=model) is None:
        model_check_request(model=model, actor=actor)
        problem = (f"The model {model.name} has not been checked yet; its check is queued now. Launch again when "
                   "it has finished (a minute or two; the Models page shows it).")
    return f"{problem} To launch anyway, tick “{OVERRIDE_LABEL}”."


def model_check_claim(*, check_id: int, worker: str) -> ModelCheck | None:
    """Take a queued check (the lifecycle every job shares); None when it is not queued any more."""
    if not lifecycle.job_claim(ModelCheck, pk=check_id, worker=worker, message="loading the model"):
        return None
    return ModelCheck.objects.select_related("model").get(pk=check_id)


def model_check_heartbeat(*, check: ModelCheck) -> bool:
    """False once the check is no longer this worker's (the periodic check failed it)."""
    return lifecycle.job_heartbeat(check)


def model_check_progress(*, check: ModelCheck, message: str) -> None:
    lifecycle.job_mine(check).update(message=message[:300], heartbeat_at=timezone.now())


def model_check_finish(*, check: ModelCheck, result: dict) -> bool:
    """Store what the check found (``ModelCheck.as_dict()``, small JSON); False when the check is
    no longer this worker's (nothing stored)."""
    return bool(lifecycle.job_mine(check).update(
        status=ModelCheck.Status.SUCCEEDED, result=result, message="", finished_at=timezone.now()))


def model_check_fail(*, check: ModelCheck, error: str) -> None:
    lifecycle.job_mine(check).update(status=ModelCheck.Status.FAILED, error=error[:2000], message="",
                                     finished_at=timezone.now())


lifecycle.job_kind_register(lifecycle.JobKind(
    name="model check", model=ModelCheck, fail=lambda check, error: model_check_fail(check=check, error=error),
    what_next="check the model again from the Models page",
))
