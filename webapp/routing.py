"""WebSocket routes. The run-progress issue adds its consumer here."""

from __future__ import annotations

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
