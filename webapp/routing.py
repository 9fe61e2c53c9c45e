"""WebSocket routes."""

from __future__ import annotations

from django.urls import path, re_path

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

from webapp.jobs.consumers import ProbeConsumer, RunProgressConsumer, UnknownPathConsumer

websocket_urlpatterns = [
    path("ws/runs/<id:pk>/", RunProgressConsumer.as_asgi()),
    path("ws/probes/<id:pk>/", ProbeConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),  # last: every other path is refused, not a 500
]
