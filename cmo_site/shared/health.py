"""Health: /health (liveness) and /health/ready (database, channel layer, storage, each timed).

The same checks guard process start: :func:`require_dependencies` raises
:class:`DependencyUnavailable` naming what is unreachable, so ``cmo_worker``,
``cmo_scheduler`` and ``cmo_serve`` refuse to start instead of looping on errors.
Each check is bounded (``CHECK_TIMEOUT_SECONDS``) so a hung dependency reads as down.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files.storage import default_storage, storages
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

DEPENDENCIES = ("database", "channel_layer", "storage")
CHECK_TIMEOUT_SECONDS = 5.0


class DependencyUnavailable(Exception):
    """One or more dependencies did not answer; ``down`` maps each name to why."""

    def __init__(self, down: dict[str, str]):
        self.down = down
        names = ", ".join(f"the {name.replace('_', ' ')} ({why})" for name, why in down.items())
        super().__init__(f"cannot start: {names} {'is' if len(down) == 1 else 'are'} unreachable")


def _timed(check: Callable[[], Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # noqa: BLE001 - a failing dependency is the answer, not an error
        text = " ".join(str(exc).split())  # one line: it goes into a startup message and a log line
        detail, ok = f"{type(exc).__name__}: {text}" if text else type(exc).__name__, False
    return {"ok": ok, "latency_ms": round((time.perf_counter() - t0) * 1000, 2), "detail": detail}


def check_database() -> str:
    """SELECT 1. On PostgreSQL over a fresh connection with a connect timeout: a pool would
    otherwise wait its whole checkout timeout (60 s) for a server that is not there."""
    if connection.vendor == "postgresql":
        import psycopg

        params = connection.get_connection_params()
        params["connect_timeout"] = max(1, int(CHECK_TIMEOUT_SECONDS))
        with psycopg.connect(**params) as conn:
            conn.execute("SELECT 1")
    else:
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

    async def bounded() -> None:
        await asyncio.wait_for(roundtrip(), timeout=CHECK_TIMEOUT_SECONDS)

    async_to_sync(bounded)()
    return type(layer).__name__


def _storage() -> Any:
    """The default storage backend itself (default_storage is a lazy proxy for it)."""
    return storages["default"]


def check_storage() -> str:
    """An existence check on the default storage, given up after CHECK_TIMEOUT_SECONDS.

    In a daemon thread: an unreachable S3 endpoint would otherwise hold the caller
    for botocore's connect timeout and retries (minutes).
    """
    outcome: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            default_storage.exists("health-check")
            outcome["error"] = None
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="cmo-storage-check", daemon=True)
    thread.start()
    thread.join(CHECK_TIMEOUT_SECONDS)
    if "error" not in outcome:
        raise TimeoutError(f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    if outcome["error"] is not None:
        raise outcome["error"]
    return type(_storage()).__name__


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "storage": check_storage,
}


def dependency_report(names: Iterable[str] = DEPENDENCIES) -> dict[str, dict[str, Any]]:
    """name -> {ok, latency_ms, detail} for each named dependency, checked in turn."""
    return {name: _timed(CHECKS[name]) for name in names}


def down_in(report: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: str(c["detail"]) for name, c in report.items() if not c["ok"]}


def require_dependencies(names: Iterable[str] = DEPENDENCIES) -> dict[str, dict[str, Any]]:
    """The report when every named dependency answers; else DependencyUnavailable naming the others."""
    report = dependency_report(names)
    down = down_in(report)
    if down:
        raise DependencyUnavailable(down)
    return report


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def configuration_summary() -> dict[str, str]:
    """Which database, channel layer and storage this process uses (no passwords), for startup lines."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        database = f"SQLite {db['NAME']}"
    else:
        where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
        database = f"{connection.vendor} {db.get('USER') or ''}@{where}"
    layer = settings.CHANNEL_LAYERS["default"]
    if "redis" in layer["BACKEND"]:
        channel = f"Redis {_without_password(str(settings.REDIS_URL))}"
    else:
        channel = "in-memory (this process only)"
    store = _storage()
    if hasattr(store, "bucket_name"):
        endpoint = getattr(store, "endpoint_url", None) or "AWS"
        storage = f"S3 bucket {store.bucket_name} at {endpoint}"
    else:
        storage = f"filesystem {getattr(store, 'location', '?')}"
    return {"database": database, "channel_layer": channel, "storage": storage}


def startup_check(names: Iterable[str] = DEPENDENCIES) -> str:
    """One line saying what is in use, after checking it answers (DependencyUnavailable otherwise)."""
    summary = configuration_summary()
    require_dependencies(names)
    return "using " + "; ".join(f"{name.replace('_', ' ')}: {summary[name]}" for name in names)


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. No dependency is touched (cheap enough to poll every second)."""
    return JsonResponse({"status": "ok"})


@never_cache
def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, channel layer and storage all answer, else 503 naming the failures."""
    checks = dependency_report()
    down = down_in(checks)
    body: dict[str, Any] = {"status": "ok" if not down else "unavailable", "checks": checks}
    if down:
        body["down"] = sorted(down)
    return JsonResponse(body, status=200 if not down else 503)
