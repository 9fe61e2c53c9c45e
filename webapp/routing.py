"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

from webapp.jobs.consumers import RunProgressConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:pk>/", RunProgressConsumer.as_asgi()),
]
