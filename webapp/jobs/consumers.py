"""The run page's WebSocket: the stored state first, then every progress event of that run.

Only members of the run's team get in; anyone else is refused before the handshake
completes and receives nothing. ``?format=json`` sends the events as JSON (for scripts and
the benchmarks); otherwise each event is an HTML fragment that htmx's ws extension swaps into
the page out of band.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.loader import render_to_string

from webapp.jobs import events
from webapp.studio.models import Run, Stage


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


def _render(event: dict, tab: str | None = None) -> str:
    """The HTML fragments for one event, for the page's open tab (None: for every tab)."""
    if event.get("type") == "stage":
        stage = Stage.objects.filter(run_id=event["run"], kind=event["stage"]).first()
        if stage is None:
            return ""
        html = render_to_string("studio/_stage_row.html", {"stage": stage, "oob": True}) if tab in (None, "overview") else ""
        if stage.kind in (Stage.Kind.TRAIN, Stage.Kind.EVALUATE) and tab in (None, "training"):  # the curves, live
            from webapp.jobs.diagnostics import training_panel

            html += render_to_string("jobs/_training_live.html", {"panel": training_panel(run=stage.run), "oob": True})
        return html
    if event.get("type") == "run":
        run = Run.objects.get(pk=event["run"])
        html = render_to_string("studio/_run_status.html", {"run": run, "oob": True})
        if not event.get("snapshot"):  # a change: reload the run section (buttons, status line, pairs)
            html += render_to_string("studio/_run_refresh.html", {"run": run})
        return html
    return ""


class RunProgressConsumer(AsyncWebsocketConsumer):
    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.run_id = int(self.scope["url_route"]["kwargs"]["pk"])
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.as_json = query.get("format", [""])[0] == "json"
        self.tab = query.get("tab", [None])[0]  # the run page's open tab: only its fragments are sent
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
        if self.as_json:
            await self.send(text_data=json.dumps(event))
        else:
            html = await database_sync_to_async(_render)(event, self.tab)
            if html:
                await self.send(text_data=html)


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
