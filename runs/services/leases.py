"""Leases: which worker may execute a run, claimed with a conditional update (the reads the dashboard shows
about queues, caps and workers are runs.selectors).

A run is runnable when it is PENDING or RUNNING, not a branch held back by its
fan-out's limit, nobody holds a live lease on it, and any retry backoff has passed. ``run_claim`` succeeds for exactly
one caller (``update(...) == 1``); the checkpointer's writes are fenced by
the same owner column. A PENDING run with a concurrency key, or of a graph with a cap, starts
only in its slot (the section "slots" below).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Q, QuerySet, When, Window
from django.db.models.functions import Now, RowNumber
from django.utils import timezone

from cmo_site.shared.live import wake_now
from runs.engine import statemachine as sm
from runs.engine.errors import LeaseLost
from runs.models import GraphLimit, Run, WorkerStatus
from runs.services.events import run_event_add, run_transition

log = logging.getLogger(__name__)


def _free(now: dt.datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def runnable(now: dt.datetime | None = None) -> QuerySet[Run]:
    now = now or timezone.now()
    qs = Run.objects.filter(
        Q(status__in=[sm.PENDING, sm.RUNNING], held=False)
        & _free(now)
        & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    )
    return qs.exclude(graph_id__in=_unserved) if _unserved else qs


# Graph versions whose code this process found it does not have (runs.engine.versions): its claims skip
# their runs, so a worker of another version neither takes nor loops on them. Only grows: a process's code
# does not change while it runs.
_unserved: set[int] = set()


def unserved_add(graph_id: int) -> None:
    _unserved.add(graph_id)


def unserved_ids() -> list[int]:
    return sorted(_unserved)


# run_claim on PostgreSQL: the runnable check, the previous holder and the claim in one statement (the row
# lock makes a second claimer re-check the row after the first commits, so exactly one wins).
_CLAIM_ONE_SQL = """
WITH prev AS (
    SELECT id, lease_owner FROM runs_run
     WHERE id = %s AND status IN ('PENDING', 'RUNNING') AND NOT held
       AND (lease_expires_at IS NULL OR lease_expires_at < %s)
       AND (not_before IS NULL OR not_before <= %s)
       AND NOT (graph_id = ANY(%s::bigint[]))
       FOR UPDATE
)
UPDATE runs_run r SET lease_owner = %s, lease_expires_at = %s,
       crash_count = r.crash_count + CASE WHEN prev.lease_owner NOT IN ('', %s) THEN 1 ELSE 0 END
  FROM prev
 WHERE r.id = prev.id
RETURNING prev.lease_owner NOT IN ('', %s)
"""


def run_claim(*, run_id: int, owner: str, lease_seconds: float | None = None) -> bool:
    """Take the lease on ``run_id`` if it is runnable; True for exactly one caller.

    A lease that expired in another worker's name means that worker died (or stalled) holding
    the run: the claim counts it (``crash_count``) and may refuse to execute it (crash_claimed).
    """
    now = timezone.now()
    expires = now + dt.timedelta(seconds=lease_seconds or settings.CMO_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(_CLAIM_ONE_SQL, [run_id, now, now, unserved_ids(), owner, expires, owner, owner])
            row = cur.fetchone()
        if row is None:
            return False
        return not row[0] or crash_claimed(run_id=run_id, owner=owner)
    previous = Run.objects.filter(pk=run_id).values_list("lease_owner", flat=True).first()
    if previous is None:
        return False
    crashed = previous not in ("", owner)  # taking back one's own released lease is no crash
    claimed = (
        runnable(now)
        .filter(pk=run_id, lease_owner=previous)
        .update(lease_owner=owner, lease_expires_at=expires, crash_count=F("crash_count") + int(crashed))
        == 1
    )
    return claimed and (not crashed or crash_claimed(run_id=run_id, owner=owner))


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

    A run that needs a slot (see :func:`slot_of`) starts only through :func:`_claim_in_slot`, the oldest
    of its key first; those are tried first while any wait (a per-process flag re-read twice a second,
    and whenever nothing else is runnable). Every other run is claimed by :func:`_claim_next_free`: on
    PostgreSQL one statement with SKIP LOCKED (concurrent claimers take different runs).
    """
    caps = graph_caps()
    gated = _slots_waiting(caps)
    if gated:
        run_id = _claim_next_in_slots(owner=owner, lease_seconds=lease_seconds, caps=caps)
        if run_id is not None:
            return run_id
    run_id = _claim_next_free(owner=owner, lease_seconds=lease_seconds, caps=caps)
    if run_id is None and not gated and _slots_waiting(caps, fresh=True):
        return _claim_next_in_slots(owner=owner, lease_seconds=lease_seconds, caps=caps)
    return run_id


def run_claim_hinted(*, run_id: int, owner: str, lease_seconds: float | None = None) -> bool:
    """Claim a run a wake-up message named, in its slot if it needs one."""
    caps = graph_caps()
    row = Run.objects.filter(pk=run_id).values(*_SLOT_FIELDS).first()
    if row is None:
        return False
    slot = slot_of(row, caps)
    if slot is None:
        return run_claim(run_id=run_id, owner=owner, lease_seconds=lease_seconds)
    return _claim_in_slot(run_id=run_id, owner=owner, slot=slot, lease_seconds=lease_seconds) == CLAIMED


# -- slots: concurrency keys, rate limits and graph caps -------------------------------------------
#
# A PENDING run needs a slot when it has a concurrency key (runs.engine.concurrency), or when it is a
# plain run with no key of a graph that has a GraphLimit row: the key-less case, whose key is the
# graph's name. Branches never need one, and a child run only under a key of its own (run_create):
# they run in their spawner's slot. A slot is held from the start to the end of the run (RUNNING and
# WAITING, or PENDING with a live lease: claimed, not yet started), so a run that waits for an approval
# keeps it.

CLAIMED, FULL, NOT_NOW = "claimed", "full", "not_now"
_SLOT_FIELDS = ("status", "kind", "concurrency_key", "concurrency_limit", "concurrency_rate", "graph__name")


@dataclass(frozen=True)
class SlotRule:
    key: str
    limit: int | None
    rate: dict[str, Any] | None


def slot_of(row: dict[str, Any], caps: dict[str, int]) -> SlotRule | None:
    """The slot a run (a dict of ``_SLOT_FIELDS``) needs to start, or None."""
    if row["status"] != sm.PENDING:
        return None
    if row["concurrency_key"]:
        key = row["concurrency_key"]
        limit = caps.get(key, row["concurrency_limit"])  # a GraphLimit row overrides a key-less declaration
        return SlotRule(key=key, limit=limit, rate=row["concurrency_rate"])
    if row["kind"] == Run.KIND_RUN and row["graph__name"] in caps:
        return SlotRule(key=row["graph__name"], limit=caps[row["graph__name"]], rate=None)
    return None


def gated(caps: dict[str, int]) -> Q:
    """PENDING runs that need a slot to start."""
    needs = ~Q(concurrency_key="")
    if caps:
        needs |= Q(concurrency_key="", kind=Run.KIND_RUN, graph__name__in=list(caps))
    return Q(status=sm.PENDING) & needs


def slot_members(key: str, caps: dict[str, int]) -> Q:
    """The runs that take slot ``key``."""
    members = Q(concurrency_key=key)
    if key in caps:
        members |= Q(concurrency_key="", kind=Run.KIND_RUN, graph__name=key)
    return members


def in_flight_q(now: dt.datetime) -> Q:
    return Q(status__in=[sm.RUNNING, sm.WAITING]) | Q(status=sm.PENDING, lease_expires_at__gt=now)


def slot_expression() -> Case:
    """A run's slot in SQL: its key, else its graph's name (meaningful for the runs ``gated`` selects)."""
    return Case(When(concurrency_key="", then=F("graph__name")), default=F("concurrency_key"), output_field=CharField())


def slot_in_flight(*, key: str, caps: dict[str, int] | None = None) -> int:
    members = slot_members(key, graph_caps() if caps is None else caps)
    return Run.objects.filter(members, in_flight_q(timezone.now())).count()


_gated_cache: tuple[float, bool] = (0.0, False)


def _slots_waiting(caps: dict[str, int], *, fresh: bool = False) -> bool:
    """Whether any run waits for a slot (re-read at most twice a second unless ``fresh``)."""
    global _gated_cache
    if fresh or time.monotonic() - _gated_cache[0] > 0.5:
        _gated_cache = (time.monotonic(), Run.objects.filter(gated(caps), held=False).exists())
    return _gated_cache[1]


def _claim_next_in_slots(*, owner: str, lease_seconds: float | None, caps: dict[str, int]) -> int | None:
    """Start the oldest run first in its slot among the slots with room; None if every slot is full.

    Heads are found ignoring ``not_before`` (a head waiting for its rate keeps its place) and the
    counts are read without the lock, so a slot that looks full is not even tried; the claim recounts.
    """
    now = timezone.now()
    slot = slot_expression()
    heads = list(
        Run.objects.filter(gated(caps), held=False)
        .exclude(graph_id__in=unserved_ids())
        .annotate(slot=slot, rank=Window(RowNumber(), partition_by=[slot], order_by=[F("queued_at"), F("id")]))
        .filter(rank=1)
        .order_by("queued_at", "id")
        .values("pk", "not_before", "lease_expires_at", *_SLOT_FIELDS)
    )
    ready = [
        h for h in heads
        if (h["not_before"] is None or h["not_before"] <= now)
        and (h["lease_expires_at"] is None or h["lease_expires_at"] < now)
    ]
    if not ready:
        return None
    rules = {h["pk"]: slot_of(h, caps) for h in ready}
    busy = in_flight_by_slot([r.key for r in rules.values() if r is not None], caps, now)
    for head in ready:
        rule = rules[head["pk"]]
        if rule is None or (rule.limit is not None and busy.get(rule.key, 0) >= rule.limit):
            continue
        if _claim_in_slot(run_id=head["pk"], owner=owner, slot=rule, lease_seconds=lease_seconds) == CLAIMED:
            return int(head["pk"])
    return None


def in_flight_by_slot(keys: list[str], caps: dict[str, int], now: dt.datetime) -> dict[str, int]:
    """How many runs hold each of ``keys``' slots now (a key, or a capped graph's name); also the dashboard's."""
    if not keys:
        return {}
    members = Q(concurrency_key__in=keys)
    capped = [k for k in keys if k in caps]
    if capped:
        members |= Q(concurrency_key="", kind=Run.KIND_RUN, graph__name__in=capped)
    rows = (
        Run.objects.filter(members, in_flight_q(now))
        .annotate(slot=slot_expression())
        .order_by()
        .values("slot")
        .annotate(n=Count("id"))
    )
    return {r["slot"]: r["n"] for r in rows}


def _claim_in_slot(*, run_id: int, owner: str, slot: SlotRule, lease_seconds: float | None) -> str:
    """Claim and start ``run_id`` in ``slot`` if it has room, its rate allows and it is the slot's oldest run.

    The slot's lock serializes the count and the claim (pg_advisory_xact_lock on PostgreSQL; a process
    lock elsewhere, where one process runs the workers); a claimed run counts (PENDING with a live lease)
    and it turns RUNNING under the same lock, so two workers cannot both take the last slot and a slot's
    runs start in exactly their submission order. A run over its rate gets ``not_before`` when the
    oldest start in the period leaves it, so no worker polls for it before then.
    """
    try:
        with _slot_lock(slot.key):
            return _claim_and_start_in_slot(run_id=run_id, owner=owner, slot=slot, lease_seconds=lease_seconds)
    except LeaseLost:  # a signal (BaseException): another worker holds it after all; nothing was committed
        return NOT_NOW


_LOCAL_SLOTS = threading.Lock()


@contextmanager
def _slot_lock(key: str) -> Iterator[None]:
    if connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_id(key)])
            yield
    else:
        with _LOCAL_SLOTS, transaction.atomic():
            yield


def _lock_id(key: str) -> int:
    """A signed 64-bit number for the slot (a collision only makes two slots wait for each other's lock)."""
    return int.from_bytes(hashlib.sha256(f"cmo-slot:{key}".encode()).digest()[:8], "big", signed=True)


def _claim_and_start_in_slot(*, run_id: int, owner: str, slot: SlotRule, lease_seconds: float | None) -> str:
    caps = graph_caps()
    members = Run.objects.filter(slot_members(slot.key, caps))
    now = timezone.now()
    if slot.limit is not None and members.filter(in_flight_q(now)).count() >= slot.limit:
        return FULL
    first = members.filter(status=sm.PENDING, held=False).order_by("queued_at", "id").values_list("pk", flat=True)
    if first.first() != run_id:
        return NOT_NOW  # an older run of this slot goes first (submission order)
    if slot.rate:
        free_at = _rate_free_at(members, slot.rate, now)
        if free_at is not None:
            _wait_for_rate(run_id=run_id, key=slot.key, rate=slot.rate, free_at=free_at)
            return FULL
    if not run_claim(run_id=run_id, owner=owner, lease_seconds=lease_seconds):
        return NOT_NOW
    run_transition(
        run_id=run_id,
        target=sm.RUNNING,
        expect_owner=owner,
        message="started",
        detail={"worker": owner, "slot": slot.key},
        extra={"last_worker": owner},
    )
    return CLAIMED


def _rate_free_at(members: QuerySet[Run], rate: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
    """When the next start is allowed, or None for now: the oldest of the last ``starts`` starts, plus the period."""
    period = dt.timedelta(seconds=float(rate["per_seconds"]))
    starts = int(rate["starts"])
    recent = list(
        members.filter(started_at__gt=now - period).order_by("-started_at").values_list("started_at", flat=True)[
            :starts
        ]
    )
    oldest = recent[-1] if len(recent) >= starts else None
    return None if oldest is None else oldest + period


def _wait_for_rate(*, run_id: int, key: str, rate: dict[str, Any], free_at: dt.datetime) -> None:
    Run.objects.filter(pk=run_id).update(not_before=free_at)
    run_event_add(
        run_id=run_id,
        kind="rate_limited",
        message=f"key {key} allows {rate['starts']} starts per {rate['per_seconds']:g} s; "
        f"starts at {free_at.isoformat(timespec='seconds')}",
        detail={"key": key, "rate": rate, "not_before": free_at.isoformat()},
    )


_CLAIM_FREE_SQL = """
UPDATE runs_run r SET lease_owner = %s, lease_expires_at = %s,
       crash_count = r.crash_count + CASE WHEN c.previous NOT IN ('', %s) THEN 1 ELSE 0 END
  FROM (SELECT id, lease_owner AS previous FROM runs_run
         WHERE status IN ('PENDING', 'RUNNING') AND NOT held
           AND (lease_expires_at IS NULL OR lease_expires_at < %s)
           AND (not_before IS NULL OR not_before <= %s)
           AND NOT (graph_id = ANY(%s::bigint[]))
           AND (status <> 'PENDING' OR concurrency_key = ''){capped}
         ORDER BY queued_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED) c
 WHERE r.id = c.id
RETURNING r.id, c.previous NOT IN ('', %s)
"""
_CAPPED_SQL = """
           AND (status <> 'PENDING' OR kind <> 'run' OR graph_id NOT IN (
                SELECT g.id FROM runs_graph g JOIN runs_graphlimit l ON l.graph_name = g.name))"""
_CLAIM_NEXT_SQL = _CLAIM_FREE_SQL.format(capped="")
_CLAIM_NEXT_CAPPED_SQL = _CLAIM_FREE_SQL.format(capped=_CAPPED_SQL)


def _claim_next_free(*, owner: str, lease_seconds: float | None, caps: dict[str, int]) -> int | None:
    """Claim the oldest runnable run that needs no slot."""
    if connection.vendor == "postgresql":
        now = timezone.now()
        expires = now + dt.timedelta(seconds=lease_seconds or settings.CMO_LEASE_SECONDS)
        with connection.cursor() as cur:
            sql = _CLAIM_NEXT_CAPPED_SQL if caps else _CLAIM_NEXT_SQL
            cur.execute(sql, [owner, expires, owner, now, now, unserved_ids(), owner])
            row = cur.fetchone()
        if row is None:
            return None
        if row[1] and not crash_claimed(run_id=int(row[0]), owner=owner):
            return None  # failed or pushed back; the runner looks again at its next poll
        return int(row[0])
    candidates = runnable().exclude(gated(caps)).order_by("queued_at", "id").values_list("pk", flat=True)
    for run_id in candidates[:50]:
        if run_claim(run_id=run_id, owner=owner, lease_seconds=lease_seconds):
            return int(run_id)
    return None


_caps_cache: tuple[float, dict[str, int]] = (0.0, {})


def graph_caps(*, fresh: bool = False) -> dict[str, int]:
    """graph name -> max running, re-read at most once a second (``fresh``: now)."""
    global _caps_cache
    if fresh or time.monotonic() - _caps_cache[0] > 1.0:
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


def worker_heartbeat(
    *, owner: str, concurrency: int, in_flight: int, started_at: dt.datetime, serves: list[str] | None = None
) -> None:
    """Every second: one UPDATE of the worker's row (created by the first beat, or again after a prune);
    ``serves`` (the versions its code runs, runs.services.versions) when it was computed again."""
    fields: dict[str, Any] = {"concurrency": concurrency, "in_flight": in_flight, "started_at": started_at}
    if serves is not None:
        fields["serves"] = serves
    # The database's clock, which leases_release_dead compares with: machines' clocks may disagree by seconds.
    if not WorkerStatus.objects.filter(owner=owner).update(**fields, last_seen_at=Now()):
        WorkerStatus.objects.update_or_create(owner=owner, defaults={**fields, "last_seen_at": timezone.now()})


_dead_checked = [0.0]  # monotonic time of the last look for dead workers in this process
DEAD_CHECK_SECONDS = 0.5


def leases_release_dead(*, now: dt.datetime | None = None) -> int:
    """Release the leases of workers whose heartbeat stopped (killed -9, OOM, a lost machine): older than
    CMO_WORKER_DEAD_SECONDS, when a live worker beats every second from a thread of its own whatever its runs
    do. Their runs become claimable at once (a claim counts the crash, runs.services.leases.crash_claimed) and
    are woken, instead of waiting out CMO_LEASE_SECONDS. A run of a worker that was only cut off from the
    database is safe too: its commits are fenced by the lease. Looks at most every DEAD_CHECK_SECONDS;
    the scheduler's tick calls it. How many runs it released."""
    if time.monotonic() - _dead_checked[0] < DEAD_CHECK_SECONDS:
        return 0
    _dead_checked[0] = time.monotonic()
    cutoff = Now() - dt.timedelta(seconds=settings.CMO_WORKER_DEAD_SECONDS) if now is None else (
        now - dt.timedelta(seconds=settings.CMO_WORKER_DEAD_SECONDS)
    )  # the database's clock, as the heartbeats write it
    dead = list(WorkerStatus.objects.filter(last_seen_at__lt=cutoff).values_list("owner", flat=True)[:100])
    if not dead:
        return 0
    now = now or timezone.now()
    long_ago = now - dt.timedelta(days=1)  # expired by any worker's clock, however far it is from ours
    held = Run.objects.filter(lease_owner__in=dead, lease_expires_at__gt=now)  # not released (or expired) yet
    released = list(held.values_list("pk", "lease_owner"))
    if not released:
        return 0
    Run.objects.filter(pk__in=[pk for pk, _ in released], lease_owner__in=dead).update(lease_expires_at=long_ago)
    for pk, _ in released:
        wake_now(pk)
    owners = sorted({owner for _, owner in released})
    log.warning("released the leases of %d runs held by dead workers %s", len(released), ", ".join(owners))
    return len(released)


def worker_gone(*, owner: str) -> None:
    WorkerStatus.objects.filter(owner=owner).delete()


# The oldest run waiting for the slot of a run that just ended (its concurrency key), if it had one.
_NEXT_IN_SLOT_SQL = """
SELECT n.id FROM runs_run r
  JOIN runs_run n ON n.concurrency_key = r.concurrency_key AND n.status = 'PENDING' AND NOT n.held
 WHERE r.id = %s AND r.concurrency_key <> ''
 ORDER BY n.queued_at, n.id
 LIMIT 1
"""


def slot_freed(run_id: int) -> None:
    """After a run ends (a RUN_ENDED hook): wake the next run of its concurrency key, so it starts now rather
    than at a worker's next poll. One indexed query; nothing for a run without a key."""
    with connection.cursor() as cur:
        cur.execute(_NEXT_IN_SLOT_SQL, [run_id])
        row = cur.fetchone()
    if row is not None:
        wake_now(int(row[0]))
