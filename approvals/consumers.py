"""The approvals inbox's live socket (``/ws/approvals/``).

On connect it sends ``{"type": "snapshot", "ids": [...], "count": n}``: the inbox's request ids in order,
so a page rendered a moment earlier can tell whether it missed something and re-fetch its list. Then:

- ``{"type": "changed", "id", "run_id", "status", "waiting", "count"}`` when a request is created,
  decided or expires (the group "approvals"): a page fetches the row of a waiting request it lacks
  and removes a row that no longer waits;
- ``{"type": "run_finished", "run_id", "count"}`` when a run ends (the group "runs"): its requests
  can no longer be answered and leave the inbox.

``count`` is the number waiting, for the navigation badge. Messages carry ids, not rows: the page
fetches each row over HTTP, rendered for its user (decide controls, CSRF token).
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.serializers.json import DjangoJSONEncoder

from approvals import selectors
from cmo_site.shared import live
from runs.engine import statemachine as sm

# As many rows as the inbox page shows.
SNAPSHOT_LIMIT = 200


class ApprovalsConsumer(AsyncJsonWebsocketConsumer):
    """Signed-in users whose role may view; anonymous users are refused with 4401, others with 4403."""

    async def connect(self) -> None:
        from cmo_site.shared.permissions import VIEW, can

        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(can)(user, VIEW):
            await self.close(code=4403)
            return
        for group in (live.APPROVALS_GROUP, live.RUNS_GROUP):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups.append(group)
        await self.accept()
        ids, count = await database_sync_to_async(_snapshot)()
        await self.send_json({"type": "snapshot", "ids": ids, "count": count})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def approval_changed(self, message: dict[str, Any]) -> None:
        pk = int(message["request_id"])
        waiting, count = await database_sync_to_async(_state)(pk)
        await self.send_json(
            {
                "type": "changed",
                "id": pk,
                "run_id": message.get("run_id"),
                "status": message.get("status"),
                "waiting": waiting,
                "count": count,
            }
        )

    async def run_status(self, message: dict[str, Any]) -> None:
        if message.get("status") not in sm.TERMINAL:
            return
        count = await database_sync_to_async(selectors.pending_count)()
        await self.send_json({"type": "run_finished", "run_id": message.get("run_id"), "count": count})

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder)


def _snapshot() -> tuple[list[int], int]:
    return selectors.waiting_ids(limit=SNAPSHOT_LIMIT), selectors.pending_count()


def _state(pk: int) -> tuple[bool, int]:
    return selectors.approval_is_waiting(pk=pk), selectors.pending_count()
