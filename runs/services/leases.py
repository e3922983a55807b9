"""Leases: which worker may execute a run, claimed with a conditional update (the reads the dashboard shows
about queues, caps and workers are runs.selectors).

A run is runnable when it is PENDING or RUNNING, not a branch held back by its
fan-out's limit, nobody holds a live lease on it, and any retry backoff has passed. ``run_claim`` succeeds for exactly
one caller (``update(...) == 1``); the checkpointer's writes are fenced by
the same owner column.
"""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from runs.engine import statemachine as sm
from runs.engine.errors import LeaseLost
from runs.models import GraphLimit, Run, WorkerStatus
from runs.services.events import run_event_add, run_transition


def _free(now: dt.datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def runnable(now: dt.datetime | None = None) -> QuerySet[Run]:
    now = now or timezone.now()
    return Run.objects.filter(
        Q(status__in=[sm.PENDING, sm.RUNNING], held=False)
        & _free(now)
        & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    )


def run_claim(*, run_id: int, owner: str, lease_seconds: float | None = None) -> bool:
    """Take the lease on ``run_id`` if it is runnable; True for exactly one caller.

    A lease that expired in another worker's name means that worker died (or stalled) holding
    the run: the claim counts it (``crash_count``) and may refuse to execute it (crash_claimed).
    """
    now = timezone.now()
    expires = now + dt.timedelta(seconds=lease_seconds or settings.CMO_LEASE_SECONDS)
    previous = Run.objects.filter(pk=run_id).values_list("lease_owner", flat=True).first()
    if previous is None:
        return False
    crashed = previous != ""
    claimed = (
        runnable(now)
        .filter(pk=run_id, lease_owner=previous)
        .update(lease_owner=owner, lease_expires_at=expires, crash_count=F("crash_count") + int(crashed))
        == 1
    )
    return claimed and (not crashed or crash_claimed(run_id=run_id, owner=owner))


_CLAIM_NEXT_SQL = """
UPDATE runs_run r SET lease_owner = %s, lease_expires_at = %s,
       crash_count = r.crash_count + CASE WHEN c.previous <> '' THEN 1 ELSE 0 END
  FROM (SELECT id, lease_owner AS previous FROM runs_run
         WHERE status IN ('PENDING', 'RUNNING') AND NOT held
           AND (lease_expires_at IS NULL OR lease_expires_at < %s)
           AND (not_before IS NULL OR not_before <= %s)
         ORDER BY queued_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED) c
 WHERE r.id = c.id
RETURNING r.id, c.previous <> ''
"""


def crash_claimed(*, run_id: int, owner: str) -> bool:
    """After claiming a run whose worker died holding it: execute it (True), or not (False).

    A crash must not loop (healthchecks' sendalerts pushes a failing check forward before trying
    again): the first crash resumes at once; from the second the run waits, 5 s doubling, so a
    poison step does not take every worker down in turn; at CMO_MAX_CRASHES in a row without a
    committed step it fails, saying so, and is not claimed again (fork it to try again).
    """
    run = Run.objects.filter(pk=run_id).values("crash_count", "step_index", "node").first()
    if run is None or run["crash_count"] <= 1:
        return True
    crashes, limit = run["crash_count"], settings.CMO_MAX_CRASHES
    where = f"step {run['step_index']} (node {run['node']!r})"
    if crashes >= limit:
        error = (
            f"the run's worker died or stalled {crashes} times in a row while executing {where} without "
            f"committing it; it is not claimed again (CMO_MAX_CRASHES={limit}): fork it to try again"
        )
        try:
            run_transition(
                run_id=run_id, target=sm.FAILED, expect_owner=owner, message=error, actor="worker",
                extra={"error": error},
            )
        except (LeaseLost, sm.InvalidTransition):
            pass  # another worker or an abort got there first
        return False
    delay = settings.CMO_CRASH_BACKOFF_SECONDS * 2 ** (crashes - 2)
    later = timezone.now() + dt.timedelta(seconds=delay)
    Run.objects.filter(pk=run_id, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None, not_before=later, queued_at=later
    )
    run_event_add(
        run_id=run_id,
        kind="crash_backoff",
        step=run["step_index"],
        actor="worker",
        message=f"its worker died {crashes} times in a row at {where}; tried again in {delay:g} s",
        detail={"crash_count": crashes, "delay_seconds": delay, "limit": limit},
    )
    return False


def run_claim_next(*, owner: str, lease_seconds: float | None = None) -> int | None:
    """Claim the oldest runnable run (by queue position); None when there is none.

    With no graph caps configured, PostgreSQL claims in one statement with SKIP
    LOCKED (concurrent claimers take different runs). With caps, candidates are
    tried oldest first and a capped graph's runs start under its cap's row lock.
    """
    caps = graph_caps()
    if connection.vendor == "postgresql" and not caps:
        now = timezone.now()
        expires = now + dt.timedelta(seconds=lease_seconds or settings.CMO_LEASE_SECONDS)
        with connection.cursor() as cur:
            cur.execute(_CLAIM_NEXT_SQL, [owner, expires, now, now])
            row = cur.fetchone()
        if row is None:
            return None
        if row[1] and not crash_claimed(run_id=int(row[0]), owner=owner):
            return None  # failed or pushed back; the runner looks again at its next poll
        return int(row[0])
    capped_full: set[str] = set()
    candidates = runnable().order_by("queued_at", "id").values_list("pk", "status", "graph__name")
    for run_id, status, graph_name in candidates[:50]:
        if status == sm.PENDING and graph_name in caps:
            if graph_name in capped_full:
                continue
            if not _claim_under_cap(run_id=run_id, owner=owner, graph_name=graph_name, lease_seconds=lease_seconds):
                capped_full.add(graph_name)
                continue
            return int(run_id)
        if run_claim(run_id=run_id, owner=owner, lease_seconds=lease_seconds):
            return int(run_id)
    return None


def run_claim_hinted(*, run_id: int, owner: str, lease_seconds: float | None = None) -> bool:
    """Claim a run a wake-up message named, respecting its graph's cap."""
    caps = graph_caps()
    if caps:
        row = Run.objects.filter(pk=run_id).values_list("status", "graph__name").first()
        if row is not None and row[0] == sm.PENDING and row[1] in caps:
            return _claim_under_cap(run_id=run_id, owner=owner, graph_name=row[1], lease_seconds=lease_seconds)
    return run_claim(run_id=run_id, owner=owner, lease_seconds=lease_seconds)


def _claim_under_cap(*, run_id: int, owner: str, graph_name: str, lease_seconds: float | None) -> bool:
    """Start a capped graph's run only while fewer than its cap are in flight.

    The cap row's lock serializes the count and the claim, and a claimed run
    counts (PENDING with a live lease) before it turns RUNNING, so two workers
    cannot both take the last slot. Runs start oldest first.
    """
    try:
        return _claim_and_start_under_cap(
            run_id=run_id, owner=owner, graph_name=graph_name, lease_seconds=lease_seconds
        )
    except LeaseLost:  # a signal (BaseException): another worker holds it after all; nothing was committed
        return False


def _claim_and_start_under_cap(*, run_id: int, owner: str, graph_name: str, lease_seconds: float | None) -> bool:
    with transaction.atomic():
        limit = (
            GraphLimit.objects.select_for_update()
            .filter(graph_name=graph_name)
            .values_list("max_running", flat=True)
            .first()
        )
        if limit is not None and graph_in_flight(graph_name=graph_name) >= limit:
            return False
        oldest = runnable().filter(status=sm.PENDING, graph__name=graph_name).order_by("queued_at", "id")
        first = oldest.values_list("pk", flat=True).first()
        if first != run_id:
            return False  # an older run of this graph goes first (submission order)
        if not run_claim(run_id=run_id, owner=owner, lease_seconds=lease_seconds):
            return False
        # Start it under the cap's lock too, so capped runs start in exactly the order they were claimed.
        run_transition(
            run_id=run_id,
            target=sm.RUNNING,
            expect_owner=owner,
            message="started",
            detail={"worker": owner},
            extra={"last_worker": owner},
        )
        return True


def graph_in_flight(*, graph_name: str) -> int:
    now = timezone.now()
    return (
        Run.objects.filter(graph__name=graph_name)
        .filter(Q(status=sm.RUNNING) | Q(status=sm.PENDING, lease_expires_at__gt=now))
        .count()
    )


_caps_cache: tuple[float, dict[str, int]] = (0.0, {})


def graph_caps() -> dict[str, int]:
    """graph name -> max running, re-read at most once a second."""
    global _caps_cache
    if time.monotonic() - _caps_cache[0] > 1.0:
        _caps_cache = (time.monotonic(), dict(GraphLimit.objects.values_list("graph_name", "max_running")))
    return _caps_cache[1]


def leases_renew(*, owner: str, run_ids: list[int], lease_seconds: float | None = None) -> set[int]:
    """Extend this owner's leases; returns the ids another worker has taken over (lost leases).

    A run this owner no longer holds because it just ended, suspended or yielded
    is not lost: only a lease now held by someone else is.
    """
    if not run_ids:
        return set()
    expires = timezone.now() + dt.timedelta(seconds=lease_seconds or settings.CMO_LEASE_SECONDS)
    Run.objects.filter(pk__in=run_ids, lease_owner=owner).update(lease_expires_at=expires)
    return set(Run.objects.filter(pk__in=run_ids).exclude(lease_owner__in=(owner, "")).values_list("pk", flat=True))


def lease_yield(*, run_id: int, owner: str) -> bool:
    """Give the run back after its slice of steps and send it to the back of the queue (fairness)."""
    return (
        Run.objects.filter(pk=run_id, lease_owner=owner).update(
            lease_owner="", lease_expires_at=None, queued_at=timezone.now()
        )
        == 1
    )


def lease_release(*, run_id: int, owner: str) -> bool:
    """Give the run back (graceful shutdown, yielding); the next worker resumes it."""
    return Run.objects.filter(pk=run_id, lease_owner=owner).update(lease_owner="", lease_expires_at=None) == 1


def aborts_requested(*, run_ids: list[int]) -> set[int]:
    if not run_ids:
        return set()
    return set(Run.objects.filter(pk__in=run_ids, abort_requested=True).values_list("pk", flat=True))


def worker_heartbeat(*, owner: str, concurrency: int, in_flight: int, started_at: dt.datetime) -> None:
    WorkerStatus.objects.update_or_create(
        owner=owner,
        defaults={
            "concurrency": concurrency,
            "in_flight": in_flight,
            "started_at": started_at,
            "last_seen_at": timezone.now(),
        },
    )


def worker_gone(*, owner: str) -> None:
    WorkerStatus.objects.filter(owner=owner).delete()
