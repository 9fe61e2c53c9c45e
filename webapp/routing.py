"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

from webapp.jobs.consumers import ProbeConsumer, RunProgressConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:pk>/", RunProgressConsumer.as_asgi()),
    path("ws/probes/<int:pk>/", ProbeConsumer.as_asgi()),
]
