"""Progress notifications over the channel layer: one group per run, small JSON only.

The database is the truth; these messages only tell open pages to look again. A page that
connects late first receives the stored state from the consumer.
"""
from __future__ import annotations

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    return f"run.{run_id}"


def stage_event(stage) -> dict:
    """A stage's state as a small JSON-able dict (also what the consumer sends first)."""
    return {
        "type": "stage",
        "run": stage.run_id,
        "stage": stage.kind,
        "status": stage.status,
        "done": stage.progress_done,
        "total": stage.progress_total,
        "message": stage.message,
        "error": stage.error[:500],
    }


def notify(run_id: int, event: dict) -> None:
    """Send ``event`` to everyone watching the run. Never raises: a missing Redis must not fail
    the work that is being reported."""
    layer = get_channel_layer()
    if layer is None:
        return
    payload = dict(event, sent_at=time.time())
    try:
        async_to_sync(layer.group_send)(run_group(run_id), {"type": "run.event", "event": payload})
    except Exception as exc:
        log.warning("progress for run %s not sent (%s)", run_id, exc)


def probe_group(probe_id: int) -> str:
    return f"probe.{probe_id}"


def probe_event(probe) -> dict:
    return {"type": "probe", "probe": probe.pk, "status": probe.status, "outputs": probe.outputs,
            "message": probe.message, "error": probe.error[:500]}


def notify_probe(probe_id: int, event: dict) -> None:
    """Send a playground update (the three texts so far, or the final state). Never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(probe_group(probe_id), {"type": "probe.event", "event": event})
    except Exception as exc:
        log.warning("playground update for %s not sent (%s)", probe_id, exc)
