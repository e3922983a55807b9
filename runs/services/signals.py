"""Answers for suspended activities: a signal, a specialist's reply, an approval.

Recording an answer and resuming the run happen in one transaction that
holds the run's row lock, the same lock the worker takes to suspend, so an
answer that arrives before the run has finished suspending is never lost.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cmo_site.shared.live import run_wake
from runs.engine import statemachine as sm
from runs.engine.errors import CMOError
from runs.engine.hashing import normalize
from runs.engine.redaction import redact, redact_text
from runs.engine.stores import ACTIVITY_COMPLETED, ACTIVITY_FAILED, ACTIVITY_PENDING
from runs.models import Activity, Run
from runs.services.blobs import blob_store
from runs.services.events import run_event_add, run_transition


class NoPendingActivity(CMOError, LookupError):
    """Nothing waits for this answer (answered already, or never asked)."""

    status, code = 409, "not_waiting"


def activity_answer(*, activity: Activity, response: Any = None, error: str = "", actor: str = "") -> Activity:
    """Record the answer of a pending activity and resume its run if it is waiting.

    Raises NoPendingActivity if the activity was already answered.
    """
    stored, _, _ = normalize(redact(response), what="the answer")
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


def run_signal(*, run: Run, name: str, payload: Any = None, actor: str = "") -> Activity:
    """Deliver signal ``name`` to the run's pending ``wait_for_signal(name)``."""
    activity = (
        Activity.objects.filter(run=run, type="signal", status=ACTIVITY_PENDING, request__name=name)
        .order_by("step", "seq")
        .first()
    )
    if activity is None:
        raise NoPendingActivity(f"run {run.trace_id} is not waiting for signal {name!r}")
    return activity_answer(activity=activity, response=payload, actor=actor)
