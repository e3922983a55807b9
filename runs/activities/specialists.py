"""``ctx.activities.send_a2a(specialist, task, payload)``: a message to a specialist agent, recorded (or
``send_a2a(task=..., payload=..., capability=...)``: to one the engine picks, with fallback; runs.specialists.routing).

The registry says whether the specialist may be called (registered, enabled, online). A specialist
on Redis Streams gets the request published once its pending record is committed, and the run
waits (WAITING, no worker held) for the answer; an in-process one answers inside the activity.
"""

from __future__ import annotations

from typing import Any

from runs.engine.errors import ActivityError, Suspend
from runs.engine.plugins import ActivityKind, Call
from runs.engine.specialists import invoke_in_process
from runs.specialists import routing
from runs.specialists.a2a import remote_publish
from runs.specialists.registry import specialist_refusal


def _build(
    ctx: Any,
    seq: int,
    specialist: str | None = None,
    task: str = "",
    payload: dict[str, Any] | None = None,
    *,
    capability: str | None = None,
    timeout_seconds: float = routing.DEFAULT_TIMEOUT_SECONDS,
    max_tries: int = routing.DEFAULT_MAX_TRIES,
) -> Call:
    """Invoke a specialist and return its result payload; with ``capability`` instead of a name, the engine
    picks one and falls back to another (runs.specialists.routing) and returns who answered too."""
    body = payload or {}
    if capability is not None:
        if specialist:
            raise ValueError("send_a2a: name a specialist or a capability, not both")
        if not isinstance(capability, str) or not capability or len(capability) > 100:
            raise ValueError("send_a2a: capability must be a name of 1 to 100 characters")
        if not 0 < float(timeout_seconds) <= 86_400 or not 1 <= int(max_tries) <= 10:
            raise ValueError("send_a2a: timeout_seconds is 0 to 86400 and max_tries 1 to 10")
        request = {"specialist": "", "capability": capability, "task": task, "payload": body,
                   "timeout_seconds": float(timeout_seconds), "max_tries": int(max_tries)}  # fmt: skip

        def by_capability() -> Any:
            return routing.capability_effect(
                ctx, seq, capability, task, body, timeout=float(timeout_seconds), max_tries=int(max_tries)
            )

        return Call(request=request, effect=by_capability)
    if not specialist:
        raise ValueError("send_a2a: name a specialist (or pass capability=...)")

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
