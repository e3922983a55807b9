"""WebSocket routes (live run pages)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from approvals.consumers import ApprovalsConsumer
from runs.consumers import RunLiveConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/runs/", RunLiveConsumer.as_asgi()),
    path("ws/runs/<int:run_id>/", RunLiveConsumer.as_asgi()),
    path("ws/approvals/", ApprovalsConsumer.as_asgi()),
]
