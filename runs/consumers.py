"""Channels consumers: the worker channel that wakes run hosts, and the dashboard's live socket."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.serializers.json import DjangoJSONEncoder

from cmo_site.shared import live


class RunDispatchConsumer(AsyncConsumer):
    """Bound to the ``cmo.runs`` channel: a message names a run that may be runnable.

    It only wakes the host; the host claims from the database, so a duplicate
    message is harmless and a lost one is repaired by polling.
    """

    async def run_dispatch(self, message: dict[str, Any]) -> None:
        from runs.worker.host import current_host

        current_host().wake(message.get("run_id"))


class RunLiveConsumer(AsyncJsonWebsocketConsumer):
    """Live data for the dashboard; signed-in users with a role that may view, anyone else is refused (4401/4403).

    ``/ws/runs/<id>/?step=S&event=E&status=X``: the page was rendered up to step S and
    event E, showing status X. The socket joins the run's group first, then sends every step
    after S and event after E from the database, then what each broadcast
    makes newer; it remembers what it sent, so nothing is missed or repeated.
    Broadcasts only say "look again" and carry no data a page relies on.

    ``/ws/runs/``: status changes of all runs, for the runs list and home page.
    """

    run_id: int | None = None
    last_step = -1
    last_event = 0
    last_status = ""  # the status the page shows: its header is sent again whenever the run's differs

    async def connect(self) -> None:
        from cmo_site.shared.permissions import VIEW, can

        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(can)(user, VIEW):
            await self.close(code=4403)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        self.run_id = kwargs.get("run_id")
        if self.run_id is None:
            await self.channel_layer.group_add(live.RUNS_GROUP, self.channel_name)
            self.groups.append(live.RUNS_GROUP)
            await self.accept()
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.last_step = _int(query.get("step", ["-1"])[0], -1)
        self.last_event = _int(query.get("event", ["0"])[0], 0)
        # A page's header and its step and event lists are separate reads: a fast run can end between them,
        # and then no newer step or event would ever carry the final header.
        self.last_status = query.get("status", [""])[0]
        if not await database_sync_to_async(_run_exists)(self.run_id):
            await self.close(code=4404)
            return
        group = live.run_group(self.run_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)
        await self.accept()
        await self._send_newer()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            # A run page pings every few seconds and gets whatever is newer: a broadcast that never
            # arrived (best effort under load, a dropped group message) is repaired by the next ping.
            if self.run_id is not None:
                await self._send_newer()
            await self.send_json({"type": "pong"})

    async def run_step(self, message: dict[str, Any]) -> None:
        await self._send_newer()

    async def run_event(self, message: dict[str, Any]) -> None:
        await self._send_newer()

    async def run_llm(self, message: dict[str, Any]) -> None:
        """A streamed model call's text so far: straight to the page (the record follows when it completes)."""
        fields = ("step", "seq", "text", "offset", "done")
        await self.send_json({"type": "llm", **{k: message.get(k) for k in fields}})

    async def run_status(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "run_id": message.get("run_id"), "status": message.get("status")})

    async def _send_newer(self) -> None:
        assert self.run_id is not None
        steps, events, header = await database_sync_to_async(_newer)(self.run_id, self.last_step, self.last_event)
        for step in steps:
            await self.send_json({"type": "step", "step": step})
            self.last_step = step["index"]
        for event in events:
            await self.send_json({"type": "event", "event": event})
            self.last_event = event["id"]
        if steps or events or (self.last_status and header["status"] != self.last_status):
            await self.send_json({"type": "run", "run": header})
            self.last_status = header["status"]

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder)


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _run_exists(run_id: int) -> bool:
    from runs.models import Run

    return Run.objects.filter(pk=run_id).exists()


def _newer(run_id: int, after_step: int, after_event: int) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from runs import selectors
    from runs.models import Run

    run = Run.objects.get(pk=run_id)
    return (
        selectors.run_steps_view(run=run, after=after_step),
        selectors.run_events_view(run=run, after=after_event),
        selectors.run_header(run=run),
    )
