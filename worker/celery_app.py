"""The Celery app, configured from Django settings. JSON only; late acks; one task at a time.

Start a worker (one per GPU; on a CPU host, set ICON2_TORCH_THREADS so workers share cores):

    celery -A worker.celery_app worker -Q gpu,default -P solo
    celery -A worker.celery_app worker -Q interactive -P solo -n playground@%h   # playground, audits, model checks
    celery -A worker.celery_app beat          # the periodic check for dead workers, once per site
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

from django.conf import settings  # noqa: E402  (after the settings module is named)

app = Celery("icon2")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,  # a message is acknowledged only after its task finished
    task_reject_on_worker_lost=True,  # ...and goes back to the queue if the worker died
    worker_prefetch_multiplier=1,  # never hold work another worker could take
    task_ignore_result=True,  # the database holds the results
    task_default_queue="default",
    task_routes={"worker.tasks.run_chunk": {"queue": "gpu"}, "worker.tasks.reap": {"queue": "default"},
                 "worker.tasks.playground": {"queue": "interactive"}, "worker.tasks.audit": {"queue": "interactive"},
                 "worker.tasks.model_check": {"queue": "interactive"}},
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # keep trying while Redis restarts
    worker_cancel_long_running_tasks_on_connection_loss=False,
    include=["worker.tasks"],
)
app.conf.beat_schedule = {
    "reap-stale-chunks": {"task": "worker.tasks.reap", "schedule": float(settings.ICON2_REAP_EVERY_S)},
}
