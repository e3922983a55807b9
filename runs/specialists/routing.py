"""``send_a2a`` by capability: the engine picks the specialist, and falls back to another when it fails.

``ctx.activities.send_a2a(task=..., payload=..., capability="summarise")`` names what is needed, not who. The
candidates are the registered, enabled, online specialists with that capability, in name order, each
checked by the policies as a named call to it would be (a denied one is skipped, with the denial). An
in-process candidate answers at once, and one that raises is skipped for the next. A remote (Redis Streams)
candidate gets the invocation and the run waits; an A2ARoute row says who has it and until when. When the
chosen one fails (offline, or no answer within ``timeout_seconds``, which covers a message dead-lettered or
a process killed mid-invocation), the scheduler's tick re-invokes the next candidate with the same
idempotency key, up to ``max_tries`` invocations in all; with none left the activity fails, naming each one
tried and why. The first answer is recorded, once; a late one from an earlier candidate is a duplicate.

The request records the capability (its hash does not depend on who is registered), and the answer says who
answered and who was skipped: ``{"specialist", "result", "skipped": [{"specialist", "reason"}]}``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs.engine.errors import ActivityError, Suspend
from runs.engine.specialists import invoke_in_process
from runs.models import A2ARoute, Activity, Specialist
from runs.services.signals import NoPendingActivity, activity_answer
from runs.specialists.a2a import remote_publish, transport
from runs.specialists.envelopes import invocation_request
from runs.specialists.registry import specialist_refusal

log = logging.getLogger(__name__)
KIND = "send_a2a"
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_TRIES = 2


def capability_holders(capability: str) -> list[str]:
    """The registered specialists that declare ``capability``, in name order (callable or not)."""
    rows = Specialist.objects.filter(registered=True).order_by("name").values_list("name", "capabilities")
    return [name for name, caps in rows if isinstance(caps, list) and capability in caps]


def _candidates(
    ctx: Any, capability: str, task: str, payload: dict[str, Any]
) -> tuple[list[str], list[dict[str, str]]]:
    """(callable candidates in order, the skipped ones with why)."""
    allowed: list[str] = []
    skipped: list[dict[str, str]] = []
    for name in capability_holders(capability):
        refusal = specialist_refusal(name) or ctx.activities.refusal(
            KIND, {"specialist": name, "task": task, "payload": payload}
        )
        if refusal:
            skipped.append({"specialist": name, "reason": refusal})
        else:
            allowed.append(name)
    return allowed, skipped


def capability_effect(
    ctx: Any, seq: int, capability: str, task: str, payload: dict[str, Any], *, timeout: float, max_tries: int
) -> dict[str, Any]:
    """The effect of a send_a2a by capability (see the module docstring)."""
    candidates, skipped = _candidates(ctx, capability, task, payload)
    tries = 0
    for i, name in enumerate(candidates):
        if tries >= max_tries:
            break
        tries += 1
        publish = remote_publish(ctx, name, task, payload, seq)
        if publish is None:
            try:
                return {"specialist": name, "result": invoke_in_process(ctx, name, task, payload), "skipped": skipped}
            except ActivityError as exc:
                skipped.append({"specialist": name, "reason": exc.message})
                continue
            except Exception as exc:  # noqa: BLE001 - a candidate's failure is a reason to try the next one
                skipped.append({"specialist": name, "reason": f"{type(exc).__name__}: {exc}"})
                continue
        route = {"capability": capability, "specialist": name, "candidates": candidates[i + 1 :], "skipped": skipped,
                 "tries": tries, "max_tries": max_tries, "timeout_seconds": timeout}  # fmt: skip
        raise Suspend(
            f"waiting for specialist {name!r} (capability {capability})",
            after_record=_after_record(ctx.run.run_id, ctx.step, seq, publish, route),
        )
    raise ActivityError(KIND, _none_left(capability, skipped))


def _none_left(capability: str, skipped: list[dict[str, str]]) -> str:
    tried = "; ".join(f"{s['specialist']}: {s['reason']}" for s in skipped) or "no registered specialist has it"
    return f"no specialist with capability {capability!r} answered ({tried})"


def _after_record(
    run_id: int, step: int, seq: int, publish: Callable[[], None], route: dict[str, Any]
) -> Callable[[], None]:
    def after() -> None:
        activity = Activity.objects.filter(run_id=run_id, step=step, seq=seq).first()
        if activity is not None:
            deadline = timezone.now() + dt.timedelta(seconds=route["timeout_seconds"])
            A2ARoute.objects.update_or_create(activity=activity, defaults={**route, "deadline_at": deadline})
        publish()

    return after


def routes_failover(*, now: dt.datetime | None = None, batch: int = 50) -> int:
    """The scheduler's tick: re-invoke the next candidate for each capability call whose specialist is overdue
    or offline; fail the activity when none is left. Returns how many routes moved on."""
    now = now or timezone.now()
    moved = 0
    due = A2ARoute.objects.filter(activity__status="pending").order_by("deadline_at")
    ids = list(due.filter(deadline_at__lt=now).values_list("pk", flat=True)[:batch])
    for route_id in ids:
        if _failover(route_id, now):
            moved += 1
    return moved


def _failover(route_id: int, now: dt.datetime) -> bool:
    with transaction.atomic():
        route = (
            A2ARoute.objects.select_for_update(skip_locked=True)
            .select_related("activity__run")
            .filter(pk=route_id, deadline_at__lt=now)
            .first()
        )
        if route is None or route.activity.status != "pending":
            return False
        activity = route.activity
        reason = specialist_refusal(route.specialist) or f"no answer within {route.timeout_seconds:g} s"
        skipped = [*route.skipped, {"specialist": route.specialist, "reason": reason}]
        candidates = list(route.candidates)
        nxt = None
        while candidates and route.tries < route.max_tries:
            name = candidates.pop(0)
            refusal = specialist_refusal(name)
            if refusal:
                skipped.append({"specialist": name, "reason": refusal})
                continue
            nxt = name
            break
        previous = route.specialist
        if nxt is None:
            route.delete()
        else:
            route.specialist, route.candidates, route.skipped = nxt, candidates, skipped
            route.tries += 1
            route.deadline_at = now + dt.timedelta(seconds=route.timeout_seconds)
            route.save()
    key = f"{activity.run.trace_id}:{activity.step}:{activity.seq}"
    cap = Specialist.objects.filter(name=previous).values_list("max_in_flight", flat=True).first()
    try:
        transport().release(previous, key, cap=cap)  # its slot is free: it is not waited on any more
    except Exception as exc:  # noqa: BLE001 - a slot left taken delays that specialist's queue, no more
        log.warning("could not release %s's slot for %s: %s", previous, key, exc)
    if nxt is None:
        message = _none_left(route.capability, skipped)
        try:
            activity_answer(activity=activity, error=message, actor="routing")
        except NoPendingActivity:
            return False
        return True
    request = activity.request
    envelope = invocation_request(
        trace_id=activity.run.trace_id, step=activity.step, seq=activity.seq, node=activity.run.node or "",
        specialist=nxt, task=str(request.get("task", "")), payload=dict(request.get("payload") or {}),
    )  # fmt: skip
    cap = Specialist.objects.filter(name=nxt).values_list("max_in_flight", flat=True).first()
    transport().publish_capped(nxt, envelope, cap=cap)
    log.info("%s: %s (%s) -> %s", key, previous, reason, nxt)
    return True
