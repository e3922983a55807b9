"""Answers for suspended activities (a signal, a specialist's reply, an approval), and signals sent to runs.

Recording an answer and resuming the run happen in one transaction that
holds the run's row lock, the same lock the worker takes to suspend, so an
answer that arrives before the run has finished suspending is never lost.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from django.db import transaction
from django.utils import timezone

from cmo_site.shared.live import run_wake
from runs.engine import statemachine as sm
from runs.engine.errors import CMOError
from runs.engine.hashing import normalize
from runs.engine.redaction import redact, redact_text
from runs.engine.stores import ACTIVITY_COMPLETED, ACTIVITY_FAILED, ACTIVITY_PENDING
from runs.models import Activity, Run, Signal
from runs.services.blobs import blob_store
from runs.services.events import run_event_add, run_transition


class NoPendingActivity(CMOError, LookupError):
    """Nothing waits for this answer (answered already, or never asked)."""

    status, code = 409, "not_waiting"


def activity_answer(
    *, activity: Activity, response: Any = None, error: str = "", actor: str = "", redacted: bool = True
) -> Activity:
    """Record the answer of a pending activity and resume its run if it is waiting.

    An answer from outside is redacted like any recorded response; the engine's own answers (the
    states of branches and children, stored as states already) pass ``redacted=False``.
    Raises NoPendingActivity if the activity was already answered.
    """
    stored, _, _ = normalize(redact(response) if redacted else response, what="the answer")
    error = redact_text(error)  # a specialist's or API caller's error text may quote a credential
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=activity.run_id)
        status = ACTIVITY_FAILED if error else ACTIVITY_COMPLETED
        updated = Activity.objects.filter(pk=activity.pk, status=ACTIVITY_PENDING).update(
            status=status, response=blob_store(stored), error=error
        )
        if updated != 1:
            raise NoPendingActivity(f"activity {activity.run_id}:{activity.step}:{activity.seq} is not pending")
        run_event_add(
            run_id=run.pk,
            kind="answered",
            step=activity.step,
            actor=actor,
            message=f"{activity.type} #{activity.seq} answered" + (f" with error: {error}" if error else ""),
        )
        if run.status == sm.WAITING:
            run_transition(
                run_id=run.pk,
                target=sm.RUNNING,
                message="resumed by an answer",
                actor=actor,
                # Back in line at its submission place, not behind every run submitted while it waited:
                # under load a resumed run finishes before new ones start (work in flight drains first).
                extra={"wait_reason": "", "queued_at": run.created_at},
            )
            run_wake(run.pk)
    activity.refresh_from_db()
    return activity


SIGNAL = "signal"


class RunEnded(CMOError):
    """The run has ended: nothing will ever wait for a signal."""

    status, code = 409, "run_ended"


class SignalRefused(CMOError):
    """The signal's payload does not match the schema the waiting node declared."""

    status, code = 422, "invalid_signal"


def _schema_problem(schema: Any, payload: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(payload), key=lambda e: list(e.absolute_path))
    return "; ".join(f"{e.json_path}: {e.message}" for e in errors[:5])


def signal_send(*, run: Run, name: str, payload: Any = None, actor: str = "") -> Signal:
    """Send signal ``name`` to ``run``: delivered to its waiting ``wait_for_signal(name)`` now, or kept until it waits.

    Every signal is a RunEvent naming who sent it. RunEnded for an ended run; SignalRefused (nothing is
    kept) when the node waiting for it declared a schema the payload does not match.
    """
    payload, _, _ = normalize(payload, what="the signal's payload")
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.is_terminal:
            raise RunEnded(f"run {locked.trace_id} has ended ({locked.status}): it waits for no signal")
        waiting = (
            Activity.objects.filter(run=locked, type=SIGNAL, status=ACTIVITY_PENDING, request__name=name)
            .order_by("step", "seq")
            .first()
        )
        if waiting is not None:
            problem = _schema_problem(waiting.request.get("schema"), payload)
            if problem:
                raise SignalRefused(f"signal {name!r} does not match the schema its node declared: {problem}")
        signal = Signal.objects.create(run=locked, name=name, payload=payload, sent_by=actor)
        run_event_add(
            run_id=locked.pk,
            kind="signal",
            actor=actor,
            message=f"signal {name!r} sent by {actor or 'the command line'}"
            + ("" if waiting is not None else "; kept until the run waits for it"),
            detail={"name": name, "signal_id": signal.pk, "delivered": waiting is not None},
        )
        if waiting is not None:
            signal.delivered_at = timezone.now()
            signal.save(update_fields=["delivered_at"])
            activity_answer(activity=waiting, response=payload, actor=actor)
    return signal


def signal_take(*, run_id: int, name: str, schema: Any = None) -> tuple[bool, Any]:
    """For a ``wait_for_signal(name)`` that starts: the oldest kept signal of that name, marked delivered.

    (False, None) when none is kept (the run waits); a kept signal that does not match ``schema`` is
    skipped, with an event saying why.
    """
    with transaction.atomic():
        kept = Signal.objects.select_for_update().filter(run_id=run_id, name=name, delivered_at__isnull=True)
        for signal in kept.order_by("sent_at", "id"):
            problem = _schema_problem(schema, signal.payload)
            Signal.objects.filter(pk=signal.pk).update(delivered_at=timezone.now())
            if problem:
                run_event_add(
                    run_id=run_id,
                    kind="signal_refused",
                    message=f"kept signal {name!r} does not match the schema its node declared: {problem}",
                    detail={"signal_id": signal.pk},
                )
                continue
            return True, signal.payload
    return False, None


def signal_deliver_kept(*, run_id: int) -> int:
    """Deliver kept signals to the run's waits for them (a signal sent between a wait's start and its record).

    Under the run's row lock, as :func:`signal_send`; returns how many it delivered.
    """
    if not Signal.objects.filter(run_id=run_id, delivered_at__isnull=True).exists():
        return 0  # the usual case, without taking the lock: none was sent while the wait was recorded
    delivered = 0
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_terminal:
            return 0
        waits = Activity.objects.filter(run_id=run_id, type=SIGNAL, status=ACTIVITY_PENDING).order_by("step", "seq")
        for waiting in waits:
            request = waiting.request if isinstance(waiting.request, dict) else {}
            found, payload = signal_take(run_id=run_id, name=str(request.get("name")), schema=request.get("schema"))
            if found:
                activity_answer(activity=waiting, response=payload, actor="kept signal")
                delivered += 1
    return delivered


def run_signal(*, run: Run, name: str, payload: Any = None, actor: str = "") -> Signal:
    """:func:`signal_send` (its older name)."""
    return signal_send(run=run, name=name, payload=payload, actor=actor)
