"""How a specialist process announces itself and heartbeats: over the JSON API, or straight to the database.

A specialist on another machine needs Redis (requests and answers) and the
API (``--api URL`` with a token of role "specialist"), not the database.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    pass


class Registry(Protocol):
    def register(self, *, name: str, version: str, capabilities: list[str], address: str) -> None: ...

    def heartbeat(self, *, name: str) -> None: ...


class ApiRegistry:
    """POST /api/specialists and /api/specialists/<name>/heartbeat with a bearer token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.client.post(path, json=body or {})
        except httpx.HTTPError as exc:
            raise RegistryError(f"the API at {self.client.base_url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text[:200]
            raise RegistryError(f"{path} answered {response.status_code}: {detail}")
        return dict(response.json())

    def register(self, *, name: str, version: str, capabilities: list[str], address: str) -> None:
        self._post(
            "/api/specialists",
            {"name": name, "version": version, "capabilities": capabilities, "transport": "redis", "address": address},
        )

    def heartbeat(self, *, name: str) -> None:
        self._post(f"/api/specialists/{name}/heartbeat")


class DatabaseRegistry:
    """For a specialist that runs next to the engine with the same DATABASE_URL."""

    def register(self, *, name: str, version: str, capabilities: list[str], address: str) -> None:
        from runs.models import Specialist
        from runs.specialists.registry import specialist_register

        specialist_register(
            name=name, version=version, capabilities=capabilities, transport=Specialist.TRANSPORT_REDIS, address=address
        )

    def heartbeat(self, *, name: str) -> None:
        from django.db import connection

        from runs.specialists.registry import specialist_heartbeat

        try:
            specialist_heartbeat(name=name)
        finally:
            connection.close()
