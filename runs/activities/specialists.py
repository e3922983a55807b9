"""``ctx.activities.send_a2a(specialist, task, payload)``: a message to a specialist agent, recorded.

The registry says whether the specialist may be called (registered, enabled, online). A specialist
on Redis Streams gets the request published once its pending record is committed, and the run
waits (WAITING, no worker held) for the answer; an in-process one answers inside the activity.
"""

from __future__ import annotations

from typing import Any

from runs.engine.errors import ActivityError, Suspend
from runs.engine.plugins import ActivityKind, Call
from runs.engine.specialists import invoke_in_process
from runs.specialists.a2a import remote_publish
from runs.specialists.registry import specialist_refusal


def _build(ctx: Any, seq: int, specialist: str, task: str, payload: dict[str, Any] | None = None) -> Call:
    """Invoke a specialist and return its result payload."""
    body = payload or {}

    def effect() -> Any:
        refusal = specialist_refusal(specialist)
        if refusal:
            raise ActivityError("send_a2a", refusal, kind="refused")
        publish = remote_publish(ctx, specialist, task, body, seq)
        if publish is not None:
            raise Suspend(f"waiting for specialist {specialist!r}", after_record=publish)
        return invoke_in_process(ctx, specialist, task, body)

    return Call(request={"specialist": specialist, "task": task, "payload": body}, effect=effect)


KINDS = [ActivityKind(name="send_a2a", method="send_a2a", build=_build)]
