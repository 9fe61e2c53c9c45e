"""What a stage kind does when it finishes, and what must happen when a run stops.

The run state machine (:mod:`webapp.jobs.services`) calls these registries; the modules that
own each step register it here when Django starts (:meth:`webapp.jobs.apps.JobsConfig.ready`):
the filter ranks its pool (:mod:`webapp.jobs.filtering`), generation queues the bias audit and a
stopped run releases a remedy's waiting audit (:mod:`webapp.jobs.audits`). So the state machine
imports none of them, and none of them is imported back.
"""
from __future__ import annotations

from typing import Callable

from webapp.studio.models import Stage

StageFinish = Callable[[Stage], None]
RunStop = Callable[..., None]

STAGE_FINISH: dict[str, list[StageFinish]] = {}
RUN_STOP: list[RunStop] = []


def on_stage_finish(kind: str) -> Callable[[StageFinish], StageFinish]:
    """Register ``step(stage)`` to run inside the transaction that marks a ``kind`` stage succeeded."""

    def register(step: StageFinish) -> StageFinish:
        steps = STAGE_FINISH.setdefault(kind, [])
        if step not in steps:
            steps.append(step)
        return step

    return register


def stage_finished(stage: Stage) -> None:
    for step in STAGE_FINISH.get(stage.kind, []):
        step(stage)


def on_run_stop(step: RunStop) -> RunStop:
    """Register ``step(run_id=..., status=...)`` for a run that has just failed or been cancelled."""
    if step not in RUN_STOP:
        RUN_STOP.append(step)
    return step


def run_stopped(*, run_id: int, status: str) -> None:
    for step in RUN_STOP:
        step(run_id=run_id, status=status)
