"""Where launched runs are handed to the worker."""

from __future__ import annotations


def enqueue_run(run_id: int) -> bool:
    """Start a launched run: its first stage's chunks are created and sent to the workers.

    Called from `transaction.on_commit`, so the worker always sees the committed run. Returns
    True when a stage was started.
    """
    from webapp.jobs.services import run_start

    return run_start(run_id=run_id) is not None
