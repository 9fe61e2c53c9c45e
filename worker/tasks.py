"""Thin tasks: ids in, work done by worker.runner and the web app's services."""
from __future__ import annotations

from worker.celery_app import app


@app.task(name="worker.tasks.run_chunk", acks_late=True, reject_on_worker_lost=True)
def run_chunk(chunk_id: int) -> None:
    from worker.runner import run_chunk as run

    run(chunk_id)


# Every job is acknowledged late: a killed worker's message goes back to the queue, and the
# conditional claim makes its redelivery harmless (webapp.jobs.lifecycle).
@app.task(name="worker.tasks.playground", acks_late=True, reject_on_worker_lost=True)
def playground(probe_id: int) -> None:
    from worker.playground import run_probe

    run_probe(probe_id)


@app.task(name="worker.tasks.reap")
def reap() -> dict:
    from webapp.jobs.services import jobs_reap

    return jobs_reap()


@app.task(name="worker.tasks.audit", acks_late=True, reject_on_worker_lost=True)
def audit(audit_id: int) -> None:
    from worker.audit import run_audit

    run_audit(audit_id)


@app.task(name="worker.tasks.model_check", acks_late=True, reject_on_worker_lost=True)
def model_check(check_id: int) -> None:
    from worker.model_check import run_model_check

    run_model_check(check_id)
