"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

from webapp.jobs.consumers import ProbeConsumer, RunProgressConsumer

websocket_urlpatterns = [
    path("ws/runs/<id:pk>/", RunProgressConsumer.as_asgi()),
    path("ws/probes/<id:pk>/", ProbeConsumer.as_asgi()),
]
