"""Agent-to-agent over Redis Streams: publish a node's request, record a specialist's result.

A specialist hosted by ``manage.py run_specialist`` records its result here
(the run resumes) and only then acknowledges the stream message, so a crash
between the two redelivers the message; a duplicate result finds the activity
already answered and is dropped. At least once on the wire, exactly once in
the record.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

from django.conf import settings

from runs.engine.errors import ActivityError
from runs.models import Activity, Specialist
from runs.services.signals import NoPendingActivity, activity_answer
from runs.transport.streams import StreamTransport

log = logging.getLogger(__name__)


@cache
def transport() -> StreamTransport:
    if not settings.REDIS_URL:
        raise ActivityError("send_a2a", "remote specialists need REDIS_URL (Redis Streams)")
    return StreamTransport(settings.REDIS_URL)


def invocation_request(
    *, trace_id: str, step: int, seq: int, node: str, specialist: str, task: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """A SpecialistInvocationRequest envelope; its idempotency key is the activity's."""
    return {
        "meta": {
            "schema_version": "1",
            "message_id": uuid.uuid4().hex,
            "trace_id": trace_id,
            "step": step,
            "seq": seq,
            "idempotency_key": f"{trace_id}:{step}:{seq}",
            "sent_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "sender": {"kind": "node", "name": node},
            "recipient": {"kind": "specialist", "name": specialist},
        },
        "specialist": specialist,
        "task": task,
        "payload": payload,
    }


def remote_publish(ctx: Any, name: str, task: str, payload: dict[str, Any], seq: int) -> Callable[[], None] | None:
    """For a Redis Streams specialist, the function that publishes the request; None for in-process ones.

    The engine calls it after the pending activity is committed, so the
    specialist's answer always finds its record.
    """
    if not Specialist.objects.filter(name=name, transport=Specialist.TRANSPORT_REDIS).exists():
        return None
    envelope = invocation_request(
        trace_id=ctx.trace_id, step=ctx.step, seq=seq, node=ctx.node, specialist=name, task=task, payload=payload
    )

    def publish() -> None:
        transport().publish(name, envelope)

    return publish


def specialist_result_record(*, request: dict[str, Any], result: dict[str, Any] | None, error: str = "") -> bool:
    """Record a specialist's answer as the activity's response; False if it was already answered."""
    meta = request["meta"]
    activity = Activity.objects.filter(
        run__trace_id=meta["trace_id"], step=meta["step"], seq=meta["seq"], type="send_a2a"
    ).first()
    if activity is None:
        log.warning("no activity %s for a specialist result; dropped", meta["idempotency_key"])
        return False
    try:
        activity_answer(activity=activity, response=result, error=error, actor=f"specialist:{request['specialist']}")
    except NoPendingActivity:
        log.info("result for %s was already recorded; duplicate dropped", meta["idempotency_key"])
        return False
    return True
