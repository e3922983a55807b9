"""The envelopes that cross the agent-to-agent boundary, built in one place.

Pure functions: the engine builds invocations and reads results, a specialist
host builds results; both sides validate against runs/schemas before sending.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

ENGINE = {"kind": "engine", "name": "cmo"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def invocation_request(
    *,
    trace_id: str,
    step: int,
    seq: int,
    node: str,
    specialist: str,
    task: str,
    payload: dict[str, Any],
    attempt: int = 1,
    trace_context: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A SpecialistInvocationRequest; its idempotency key is the activity's, the same on every attempt."""
    meta: dict[str, Any] = {
        "schema_version": "1",
        "message_id": uuid.uuid4().hex,
        "trace_id": trace_id,
        "step": step,
        "seq": seq,
        "idempotency_key": f"{trace_id}:{step}:{seq}",
        "attempt": attempt,
        "sent_at": _now(),
        "sender": {"kind": "node", "name": node},
        "recipient": {"kind": "specialist", "name": specialist},
    }
    if trace_context:
        meta["trace_context"] = trace_context
    return {"meta": meta, "specialist": specialist, "task": task, "payload": payload}


def specialist_result(
    *,
    request: dict[str, Any],
    instance: str = "",
    result: dict[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    retry: dict[str, Any] | None = None,
    duration_ms: float | None = None,
) -> dict[str, Any]:
    """A SpecialistResult answering ``request``: a result, an error (code, message) or a retry directive."""
    asked = request["meta"]
    sender: dict[str, Any] = {"kind": "specialist", "name": request["specialist"]}
    if instance:
        sender["instance"] = instance[:200]
    meta = {
        "schema_version": "1",
        "message_id": uuid.uuid4().hex,
        "trace_id": asked["trace_id"],
        "sent_at": _now(),
        "sender": sender,
        "recipient": ENGINE,
    }
    for key in ("step", "seq", "idempotency_key", "attempt", "trace_context"):
        if key in asked:
            meta[key] = asked[key]
    envelope: dict[str, Any] = {"meta": meta, "in_reply_to": asked["message_id"]}
    if retry is not None:
        envelope.update(status="retry", retry=retry)
    elif error is not None:
        envelope.update(status="error", error={"code": error[0], "message": error[1]})
    else:
        envelope.update(status="ok", result=result if result is not None else {})
    if duration_ms is not None:
        envelope["duration_ms"] = round(max(duration_ms, 0.0), 3)
    return envelope
