"""Thin tasks: ids in, work done by worker.runner and the web app's services."""
from __future__ import annotations

from worker.celery_app import app


@app.task(name="worker.tasks.run_chunk", acks_late=True, reject_on_worker_lost=True)
def run_chunk(chunk_id: int) -> None:
    from worker.runner import run_chunk as run

    run(chunk_id)


@app.task(name="worker.tasks.playground", acks_late=False)
def playground(probe_id: int) -> None:
    from worker.playground import run_probe

    run_probe(probe_id)


@app.task(name="worker.tasks.reap")
def reap() -> dict:
    from webapp.jobs.services import chunks_reap

    return chunks_reap()


@app.task(name="worker.tasks.audit", acks_late=False)
def audit(audit_id: int) -> None:
    from worker.audit import run_audit

    run_audit(audit_id)
