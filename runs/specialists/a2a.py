"""Agent-to-agent over Redis Streams: publish a node's request, record a specialist's reply.

A specialist (``manage.py run_specialist``, on any machine that reaches Redis)
answers with a SpecialistResult on the replies stream and only then
acknowledges the request. The engine's workers consume the replies stream: a
reply is recorded (the run resumes) before it is acknowledged, so a crash
between the two redelivers it, and a duplicate finds the activity answered and
is dropped. At least once on the wire, exactly once in the record.

Per-specialist caps: at most ``Specialist.max_in_flight`` invocations await a
reply at once; later ones are held in Redis in submission order and published
as replies free their slots (atomically, in Lua: see runs/specialists/streams.py).

A RetryDirective in a reply schedules the same invocation again after its
delay, with its modifications merged into the payload, until max_attempts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction

from runs.engine.errors import ActivityError
from runs.models import A2ARoute, Activity, Run, Specialist
from runs.services.events import run_event_add
from runs.services.signals import NoPendingActivity, activity_answer
from runs.specialists.envelopes import invocation_request
from runs.specialists.streams import StreamTransport

log = logging.getLogger(__name__)

__all__ = ["decision_notice_publish", "invocation_request", "remote_publish", "specialist_reply_record"]


@cache
def transport() -> StreamTransport:
    if not settings.REDIS_URL:
        raise ActivityError("send_a2a", "remote specialists need REDIS_URL (Redis Streams)")
    return StreamTransport(settings.REDIS_URL)


def _trace_context() -> dict[str, str]:
    try:
        from cmo_site.shared.telemetry import trace_carrier
    except ImportError:  # telemetry is optional in this module's callers' view
        return {}
    return trace_carrier()


def _cap(name: str) -> int | None:
    return Specialist.objects.filter(name=name).values_list("max_in_flight", flat=True).first()


def remote_publish(ctx: Any, name: str, task: str, payload: dict[str, Any], seq: int) -> Callable[[], None] | None:
    """For a Redis Streams specialist, the function that publishes the request; None for in-process ones.

    The engine calls it after the pending activity is committed, so the
    specialist's answer always finds its record. Over the specialist's cap the
    request is held, in order, and goes out when an earlier one is answered.
    """
    row = Specialist.objects.filter(name=name, transport=Specialist.TRANSPORT_REDIS).values("max_in_flight").first()
    if row is None:
        return None
    envelope = invocation_request(
        trace_id=ctx.trace_id,
        step=ctx.step,
        seq=seq,
        node=ctx.node,
        specialist=name,
        task=task,
        payload=payload,
        trace_context=_trace_context(),
    )

    def publish() -> None:
        if transport().publish_capped(name, envelope, cap=row["max_in_flight"]) == "held":
            log.info(
                "%s held: specialist %s has %s invocations in flight",
                envelope["meta"]["idempotency_key"],
                name,
                row["max_in_flight"],
            )

    return publish


def _routed(activity: Activity, sender: str, result: Any) -> Any:
    """A call by capability (runs.specialists.routing) records who answered and who was skipped with the result."""
    route = A2ARoute.objects.filter(activity=activity).first()
    if route is None:
        return result
    return {"specialist": sender, "result": result, "skipped": list(route.skipped)}


def _pending_activity(meta: dict[str, Any]) -> Activity | None:
    step, seq = meta.get("step"), meta.get("seq")
    if step is None or seq is None:
        return None
    return (
        Activity.objects.filter(run__trace_id=meta["trace_id"], step=int(step), seq=int(seq), type="send_a2a")
        .select_related("run")
        .first()
    )


def specialist_reply_record(*, envelope: dict[str, Any]) -> str:
    """Record a SpecialistResult; returns "recorded", "retry", "duplicate" or "unknown".

    The caller acknowledges the reply message after this returns.
    """
    meta = envelope["meta"]
    activity = _pending_activity(meta)
    if activity is None:
        log.warning("no activity %s for a specialist reply; dropped", meta.get("idempotency_key"))
        return "unknown"
    name = str(activity.request.get("specialist") or meta["sender"]["name"])
    actor = f"specialist:{name}"
    if envelope["status"] == "retry":
        outcome = _retry(activity, envelope, name)
        if outcome != "gave-up":
            return outcome
        error = f"specialist {name!r} asked to retry {meta.get('attempt', 1)} times: {envelope['retry']['reason']}"
        response = None
    elif envelope["status"] == "error":
        error, response = f"{envelope['error']['code']}: {envelope['error']['message']}", None
    else:
        error, response = "", envelope["result"]
        response = _routed(activity, name, response)
    try:
        activity_answer(activity=activity, response=response, error=error, actor=actor)
        A2ARoute.objects.filter(activity=activity).delete()
        outcome = "recorded"
    except NoPendingActivity:
        log.info("reply for %s was already recorded; duplicate dropped", meta.get("idempotency_key"))
        outcome = "duplicate"
    transport().release(name, f"{meta['trace_id']}:{meta['step']}:{meta['seq']}", cap=_cap(name))
    return outcome


def _retry(activity: Activity, envelope: dict[str, Any], name: str) -> str:
    """Schedule the invocation again as the directive asks; "gave-up" when it may not be retried."""
    if activity.status != "pending":
        return "duplicate"
    directive = envelope["retry"]
    attempt = int(envelope["meta"].get("attempt", 1))
    max_attempts = int(directive.get("max_attempts", settings.CMO_A2A_MAX_ATTEMPTS))
    if not directive["retryable"] or attempt >= max_attempts:
        return "gave-up"
    request = activity.request
    payload = {**request.get("payload", {}), **directive.get("modifications", {})}
    again = invocation_request(
        trace_id=activity.run.trace_id,
        step=activity.step,
        seq=activity.seq,
        node=activity.run.node or "",
        specialist=name,
        task=str(request.get("task", "")),
        payload=payload,
        attempt=attempt + 1,
        trace_context=envelope["meta"].get("trace_context"),
    )
    after_ms = int(directive.get("after_ms", 0))
    transport().publish_later(name, again, due_ms=int(time.time() * 1000) + after_ms)
    run_event_add(
        run_id=activity.run_id,
        kind="a2a.retry",
        step=activity.step,
        actor=f"specialist:{name}",
        message=f"{name} asked to be invoked again in {after_ms} ms (attempt {attempt + 1} of {max_attempts}): "
        + directive["reason"],
        detail={"directive": directive, "attempt": attempt + 1},
    )
    return "retry"


def invocations_republish() -> int:
    """Publish again every invocation the database says is waiting for a remote specialist's answer: after Redis
    lost its data (the transport's sentinel is gone), the requests, the held ones, the delayed retries and the
    unread replies went with it, and the database is the truth. A specialist may see one twice; its answer is
    recorded once. Returns how many were published."""
    published = 0
    pending = Activity.objects.filter(type="send_a2a", status="pending").select_related("run")
    remote = dict(
        Specialist.objects.filter(transport=Specialist.TRANSPORT_REDIS).values_list("name", "max_in_flight")
    )
    routes = dict(A2ARoute.objects.filter(activity__in=pending).values_list("activity_id", "specialist"))
    for activity in pending.order_by("run__queued_at", "id"):
        request = activity.request if isinstance(activity.request, dict) else {}
        name = routes.get(activity.pk) or str(request.get("specialist") or "")
        if name not in remote:
            continue
        envelope = invocation_request(
            trace_id=activity.run.trace_id,
            step=activity.step,
            seq=activity.seq,
            node=activity.run.node or "",
            specialist=name,
            task=str(request.get("task", "")),
            payload=dict(request.get("payload") or {}),
        )
        transport().publish_capped(name, envelope, cap=remote[name])
        published += 1
    if published:
        log.warning("Redis had lost its data: %s pending invocation(s) published again from the database", published)
    return published


def decision_notice_publish(*, run: Run, notice: dict[str, Any]) -> list[str]:
    """Tell the Redis specialists this run has called about an approval decision; returns their names.

    Sent after the decision commits; a specialist's ``on_decision`` hook receives it.
    """
    names = set(
        Activity.objects.filter(run=run, type="send_a2a").values_list("request__specialist", flat=True).distinct()
    )
    remote = list(
        Specialist.objects.filter(name__in=names, transport=Specialist.TRANSPORT_REDIS).values_list("name", flat=True)
    )
    if not remote or not settings.REDIS_URL:
        return []

    def send() -> None:
        for name in remote:
            try:
                transport().notify(name, notice)
            except Exception as exc:  # noqa: BLE001 - a notice is informational; the decision is recorded
                log.warning("could not send the decision notice to %s: %s", name, exc)

    transaction.on_commit(send)
    return remote
