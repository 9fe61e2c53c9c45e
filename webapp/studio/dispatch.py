"""Where launched runs are handed to the worker."""

from __future__ import annotations


def enqueue_run(run_id: int) -> bool:
    """Hand a launched run to the worker. Returns True when a task was enqueued.

    The worker issue plugs in here (e.g. a Celery task sent with the run id). Until then this
    is a no-op: the run stays "queued" and its page says it is waiting for a worker.
    Called from `transaction.on_commit`, so the worker always sees the committed run.
    """
    return False
