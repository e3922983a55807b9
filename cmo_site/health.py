"""/health: liveness plus the database, channel layer and storage, each with its latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, JsonResponse


def _timed(check: Callable[[], Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # noqa: BLE001 - a failing dependency is the answer, not an error
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return {"ok": ok, "latency_ms": round((time.perf_counter() - t0) * 1000, 2), "detail": detail}


def check_database() -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return str(connection.vendor)


def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        await layer.receive(channel)

    async_to_sync(roundtrip)()
    return type(layer).__name__


def check_storage() -> str:
    default_storage.exists("health-check")
    return type(default_storage._wrapped if hasattr(default_storage, "_wrapped") else default_storage).__name__


def dependency_report() -> dict[str, dict[str, Any]]:
    return {
        "database": _timed(check_database),
        "channel_layer": _timed(check_channel_layer),
        "storage": _timed(check_storage),
    }


def health(request: HttpRequest) -> JsonResponse:
    checks = dependency_report()
    ok = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)
