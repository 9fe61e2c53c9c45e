"""One lifecycle for every job: a run's chunk, a playground probe, a bias audit.

A job is a row with ``status``, ``worker``, ``attempts``, ``started_at`` and ``heartbeat_at``.
The row is the truth:

- a worker takes a queued job with a conditional UPDATE (:func:`job_claim`); zero rows updated
  means someone else has it, so a redelivered message (late acknowledgement) does nothing twice;
- while it works, a background thread touches the heartbeat (:func:`job_heartbeat`);
- its results are written only while the row is still its own (:func:`job_mine`), in the
  transaction that ends the job;
- the periodic check (:func:`stale_jobs_reap`) finds running jobs whose heartbeat stopped and, per
  kind, queues them again or fails them with the reason, so every job reaches a terminal state.

Each kind of job registers a :class:`JobKind` (what to do with a stale row) with
:func:`job_kind_register`, from its own module; nothing here imports those modules.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from django.db import models
from django.db.models import F, QuerySet
from django.utils import timezone

QUEUED = "queued"
RUNNING = "running"


def job_claim(model: type[models.Model], *, pk: int, worker: str, **fields) -> bool:
    """Take the queued job ``pk`` for ``worker`` (with extra ``fields`` set in the same UPDATE).
    False when it is not queued any more: taken, finished, failed or cancelled."""
    now = timezone.now()
    return bool(model.objects.filter(pk=pk, status=QUEUED).update(
        status=RUNNING, worker=worker, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, **fields))


def job_mine(row: models.Model) -> QuerySet:
    """The row, only while it is still this claim's: running, same worker, same attempt."""
    return type(row).objects.filter(pk=row.pk, status=RUNNING, worker=row.worker, attempts=row.attempts)


def job_heartbeat(row: models.Model) -> bool:
    """Touch the job's heartbeat. False when the job is no longer this worker's (the periodic
    check gave it up, or it was cancelled): the worker should stop."""
    return bool(job_mine(row).update(heartbeat_at=timezone.now()))


def job_stale(model: type[models.Model], *, stale_after_s: float) -> QuerySet:
    """Running jobs whose worker sent no heartbeat for ``stale_after_s`` seconds."""
    return model.objects.filter(status=RUNNING, heartbeat_at__lt=timezone.now() - dt.timedelta(seconds=stale_after_s))


@dataclass(frozen=True)
class JobKind:
    """What the periodic check does with one kind of job whose worker stopped.

    ``requeue(row, note)`` puts a stale row back in the queue and sends it again (True if it did);
    ``fail(row, error)`` ends it for good. A row that has been tried ``max_attempts`` times is
    failed; with ``max_attempts=1`` every stale row is failed at once (an interactive job: the
    person waiting asks again rather than waiting behind a retry)."""

    name: str
    model: type[models.Model]
    fail: Callable[[models.Model, str], None]
    max_attempts: int = 1
    requeue: Callable[[models.Model, str], bool] | None = None
    what_next: str = "try again"


JOB_KINDS: dict[str, JobKind] = {}


def job_kind_register(kind: JobKind) -> JobKind:
    JOB_KINDS[kind.name] = kind
    return kind


def stale_jobs_reap(*, stale_after_s: float) -> dict[str, int]:
    """Give up on every running job of every registered kind whose heartbeat stopped: queue it
    again while it has attempts left, else fail it with the reason. Returns counts."""
    counts = {"requeued": 0, "failed": 0}
    for kind in JOB_KINDS.values():
        for row in job_stale(kind.model, stale_after_s=stale_after_s):
            note = f"worker {row.worker or '?'} stopped responding (no heartbeat for {int(stale_after_s)} s)"
            if row.attempts < kind.max_attempts and kind.requeue is not None and kind.requeue(row, note):
                counts["requeued"] += 1
            else:
                times = f", {row.attempts} times" if row.attempts > 1 else ""
                kind.fail(row, f"The {note}{times}; {kind.what_next}.")
                counts["failed"] += 1
    return counts
