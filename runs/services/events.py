"""Run events (the audit trail) and status transitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from cmo_site.shared import live
from runs.engine import statemachine as sm
from runs.models import Run, RunEvent


def run_event_add(
    *,
    run_id: int,
    kind: str,
    message: str = "",
    step: int | None = None,
    from_status: str = "",
    to_status: str = "",
    detail: dict[str, Any] | None = None,
    actor: str = "",
) -> RunEvent:
    """Append an event; the live channel hears of it after commit."""
    event = RunEvent.objects.create(
        run_id=run_id,
        kind=kind,
        message=message,
        step=step,
        from_status=from_status,
        to_status=to_status,
        detail=detail or {},
        actor=actor,
    )
    event_announce(run_id=run_id, event_id=event.pk, kind=kind, to_status=to_status)
    return event


def event_announce(*, run_id: int, event_id: int, kind: str, to_status: str) -> None:
    """After the event's transaction commits (at once outside one): tell the live pages, and run the RUN_ENDED
    hooks when it ended the run. Also for events written by a statement of their own (runs.services.run_store)."""
    announcement = live.event_message(run_id=run_id, event_id=event_id, kind=kind, to_status=to_status)
    live.send_on_commit(live.run_group(run_id), announcement)
    if to_status:
        live.send_on_commit(live.RUNS_GROUP, live.status_message(run_id=run_id, status=to_status))
    if to_status in sm.TERMINAL:
        for hook in RUN_ENDED:
            transaction.on_commit(lambda hook=hook: hook(run_id), robust=True)  # type: ignore[misc]


# Called with a run's id after the transaction that ended it commits (runs.services.spawn registers the
# settling of the run that started it, from RunsConfig.ready()). A failing hook is logged, not raised:
# the scheduler's sweep repairs what it did not do.
RUN_ENDED: list[Callable[[int], None]] = []


def on_run_ended(hook: Callable[[int], None]) -> None:
    if hook not in RUN_ENDED:
        RUN_ENDED.append(hook)


def run_transition(
    *,
    run_id: int,
    target: str,
    message: str = "",
    actor: str = "",
    extra: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    expect_owner: str | None = None,
) -> Run:
    """Move a run to ``target`` (InvalidTransition if not allowed) and record the event.

    Locks the run row for the transaction. ``expect_owner``, when given, must
    hold the lease (a worker's transitions); ``extra`` are more fields to set.
    """
    from runs.engine.errors import LeaseLost

    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if expect_owner is not None and run.lease_owner != expect_owner:
            raise LeaseLost(f"run {run.trace_id} is held by {run.lease_owner or 'nobody'}, not {expect_owner}")
        sm.check_transition(run.status, target)
        previous = run.status
        now = timezone.now()
        fields: dict[str, Any] = {"status": target, "updated_at": now, **(extra or {})}
        if target == sm.RUNNING and run.started_at is None:
            fields["started_at"] = now
        if target in sm.TERMINAL:
            fields.update(finished_at=now, lease_owner="", lease_expires_at=None)
        Run.objects.filter(pk=run_id).update(**fields)
        for key, value in fields.items():
            setattr(run, key, value)
        run_event_add(
            run_id=run_id,
            kind="status",
            from_status=previous,
            to_status=target,
            message=message,
            step=run.step_index,
            detail=detail,
            actor=actor,
        )
    return run
