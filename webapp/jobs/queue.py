"""Sending work to the Celery workers. Only ids cross this boundary.

The web process never imports the worker's tasks (or torch): it sends tasks by name through
the shared Celery app. ``ICON2_QUEUE=none`` (the unit-test settings) records nothing and sends
nothing, so web tests need no broker.
"""
from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger(__name__)

CHUNK_TASK = "worker.tasks.run_chunk"
PLAYGROUND_TASK = "worker.tasks.playground"
AUDIT_TASK = "worker.tasks.audit"
MODEL_CHECK_TASK = "worker.tasks.model_check"


def send_chunk(chunk_id: int, *, queue: str = "gpu") -> bool:
    """Enqueue one chunk. Returns False (and logs) when the broker cannot be reached: the chunk
    stays queued in the database and the periodic check sends it again."""
    if settings.ICON2_QUEUE == "none":
        return False
    from worker.celery_app import app

    try:
        app.send_task(CHUNK_TASK, args=[chunk_id], queue=queue)
        return True
    except Exception as exc:  # kombu raises OperationalError and friends when Redis is down
        log.warning("could not enqueue chunk %s (%s); the periodic check will retry", chunk_id, exc)
        return False


def broker_backlog(queue: str = "gpu") -> int | None:
    """Messages waiting in a queue, or None when the broker cannot be asked.

    The periodic check re-sends queued chunks only when nothing waits in the broker: after a
    Redis restart the queue is empty although the database still says "queued".
    """
    if settings.ICON2_QUEUE == "none":
        return 0
    try:
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)
        return int(client.llen(queue))
    except Exception as exc:
        log.warning("could not read the broker's %s queue (%s)", queue, exc)
        return None


def _send_interactive(task: str, row_id: int, what: str) -> bool:
    """Enqueue ``task`` for one row on the ``interactive`` queue, which a worker of its own serves,
    so it never waits behind a run's long chunks."""
    if settings.ICON2_QUEUE == "none":
        return False
    from worker.celery_app import app

    try:
        app.send_task(task, args=[row_id], queue="interactive")
        return True
    except Exception as exc:
        log.warning("could not enqueue %s %s (%s)", what, row_id, exc)
        return False


def send_probe(probe_id: int) -> bool:
    """Enqueue a playground request."""
    return _send_interactive(PLAYGROUND_TASK, probe_id, "playground request")


def send_audit(audit_id: int) -> bool:
    """Enqueue a bias audit (a few seconds once the references are cached)."""
    return _send_interactive(AUDIT_TASK, audit_id, "audit")


def send_model_check(check_id: int) -> bool:
    """Enqueue a model check (load the model, answer four requests unsteered)."""
    return _send_interactive(MODEL_CHECK_TASK, check_id, "model check")
