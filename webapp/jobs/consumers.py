"""The run page's WebSocket: the stored state first, then every progress event of that run, as
small JSON (``{"type": "stage" | "run", …}``).

The page does not render anything from a message: a message only tells it that the run changed,
and it fetches its one live partial with htmx (static/js/app.js; polling only while the socket
is down). Scripts and the benchmarks read the same JSON (``?format=json`` is still accepted).
Only members of the run's team get in; anyone else is refused before the handshake completes
and receives nothing.
"""
from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from webapp.jobs import events
from webapp.studio.models import Run


def _visible_run(user, run_id: int) -> Run | None:
    from webapp.studio.selectors import run_get_for_user

    try:
        return run_get_for_user(user=user, pk=run_id)
    except Http404:
        return None


def _snapshot(run_id: int) -> list[dict]:
    run = Run.objects.get(pk=run_id)
    return [events.stage_event(s) for s in run.stages.order_by("order")] + [
        {"type": "run", "run": run_id, "status": run.status}
    ]


class RunProgressConsumer(AsyncWebsocketConsumer):
    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.run_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if user is None or not user.is_authenticated or await database_sync_to_async(_visible_run)(user, self.run_id) is None:
            await self.close()  # before accept: the handshake is refused
            return
        await self.channel_layer.group_add(events.run_group(self.run_id), self.channel_name)
        self.joined = True
        await self.accept()
        for event in await database_sync_to_async(_snapshot)(self.run_id):
            await self._send_event(dict(event, snapshot=True))

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(events.run_group(self.run_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the page only listens

    async def run_event(self, message: dict) -> None:
        await self._send_event(message["event"])

    async def _send_event(self, event: dict) -> None:
        await self.send(text_data=json.dumps(event))


def _visible_probe(user, probe_id: int) -> dict | None:
    from webapp.jobs.probes import probe_get_for_user
    from webapp.jobs.events import probe_event

    try:
        return probe_event(probe_get_for_user(user=user, pk=probe_id))
    except (Http404, PermissionDenied):
        return None


class ProbeConsumer(AsyncWebsocketConsumer):
    """A playground request's stream: the stored state first, then the texts as they grow
    (JSON, read by static/js/playground.js). Members of the run's team only."""

    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.probe_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if user is None or not user.is_authenticated or await database_sync_to_async(_visible_probe)(user, self.probe_id) is None:
            await self.close()
            return
        await self.channel_layer.group_add(events.probe_group(self.probe_id), self.channel_name)
        self.joined = True
        await self.accept()
        # Read after joining the group, so nothing falls between the snapshot and the stream.
        snapshot = await database_sync_to_async(_visible_probe)(user, self.probe_id)
        if snapshot is None:  # the membership ended in between
            await self.close()
            return
        await self.send(text_data=json.dumps(dict(snapshot, snapshot=True)))

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(events.probe_group(self.probe_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass

    async def probe_event(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message["event"]))


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any WebSocket path no route serves (``/ws/nope/``, ``/ws/runs/abc/``): the handshake is
    refused cleanly, as a 403, instead of failing in the router with a server error."""

    async def connect(self) -> None:
        await self.close()
