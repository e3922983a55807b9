"""Schedules on PostgreSQL with real ``cmo_scheduler`` processes (two at once, one killed and restarted), and
the overlap policies with a real worker and a slow run."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import time

import pytest
from django.db.models import QuerySet
from django.utils import timezone

from runs.models import Run
from schedules import services
from schedules.models import Schedule, ScheduleFire
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker
from tests.unit.api_fixtures import user_with

pytestmark = [pytest.mark.integration]


def _scheduler() -> ManagedProcess:
    # A long sweep interval: the slots fire from the scheduler's fast tick, not its sweep.
    return ManagedProcess("cmo_scheduler", "--interval", "30", env={"DATABASE_URL": child_database_url()},
                          ready="using database")  # fmt: skip


def _schedule(name: str, *, graph: str = "t-count", data: dict | None = None, **fields: object) -> Schedule:
    owner = user_with(f"{name}-owner", "operator")
    body = {"graph": graph, "input": data if data is not None else {"target": 1}, "interval_seconds": 1, **fields}
    checked = services.schedule_check(data=body, user=owner, role="operator")
    return services.schedule_create(name=name, fields=checked, user=owner, role="operator")


def _slots(schedule: Schedule, **filters: object) -> list[dt.datetime]:
    fires = ScheduleFire.objects.filter(schedule=schedule, **filters).order_by("slot")
    return list(fires.values_list("slot", flat=True))


def _contiguous(slots: list[dt.datetime], seconds: int = 1) -> bool:
    return all((b - a) == dt.timedelta(seconds=seconds) for a, b in itertools.pairwise(slots))


def test_two_schedulers_fire_each_slot_once_and_a_killed_one_loses_and_repeats_none(postgres_db: None) -> None:
    schedule = _schedule("every-second", overlap="allow_all")
    first, second = _scheduler().start(), _scheduler().start()
    try:
        started = time.monotonic()
        time.sleep(7)
        first.kill()  # kill -9 in the middle of its ticks
        time.sleep(4)
        first = _scheduler().start()
        time.sleep(max(0.0, 20 - (time.monotonic() - started)))
        services.schedule_pause(schedule=schedule, user=None, note="end of the test")
        time.sleep(0.5)  # a tick in flight commits
    finally:
        first.stop()
        second.stop()
    fires = list(ScheduleFire.objects.filter(schedule=schedule).order_by("slot"))
    slots = [f.slot for f in fires]
    assert len(slots) >= 18, (len(slots), first.output, second.output)
    assert _contiguous(slots), [f"{s:%H:%M:%S}" for s in slots]  # no slot lost
    assert {f.outcome for f in fires} == {"started"}
    runs = Run.objects.filter(pk__in=[f.run_id for f in fires])
    assert runs.count() == len(fires)  # one run per slot, none twice
    assert sorted(r.context["schedule_slot"] for r in runs) == [s.isoformat() for s in slots]
    late = [(f.created_at - f.slot).total_seconds() for f in fires]
    print(f"\nlateness of {len(late)} slots: median {statistics.median(late):.3f} s, max {max(late):.3f} s")
    assert statistics.median(late) < 1.0


def test_a_catch_up_after_30_s_of_downtime_follows_its_policy(postgres_db: None) -> None:
    every = _schedule("catch-all", overlap="allow_all", catchup="all", catchup_window_seconds=60)
    latest = _schedule("catch-latest", overlap="allow_all", catchup="latest", catchup_window_seconds=60)
    short = _schedule("catch-window", overlap="allow_all", catchup="all", catchup_window_seconds=10)
    with _scheduler():
        assert wait_for(lambda: len(_slots(every)) >= 2 and len(_slots(short)) >= 2, timeout=20)
    down_at = timezone.now()
    time.sleep(30)
    with _scheduler():
        back_at = timezone.now()
        assert wait_for(lambda: bool(_slots(latest, created_at__gt=back_at, outcome="started")), timeout=20)
        time.sleep(2)
    for schedule in (every, latest, short):
        services.schedule_pause(schedule=schedule, user=None)
    all_slots = _slots(every)
    assert _contiguous(all_slots) and set(_slots(every, outcome="started")) == set(all_slots)  # every slot once
    down = [s for s in _slots(latest) if down_at < s < back_at - dt.timedelta(seconds=1)]
    missed = ScheduleFire.objects.filter(schedule=latest, outcome="missed", slot__gt=down_at)
    assert missed.count() == 1 and "slot(s) from" in missed.get().reason  # the downtime's slots: one record
    assert len([s for s in down if s in _slots(latest, outcome="started")]) <= 1  # only the latest of them ran
    windowed = ScheduleFire.objects.filter(schedule=short, outcome="missed").get()
    assert int(windowed.reason.split()[0]) >= 15  # ~30 s down, a 10 s window: the older ones are missed
    caught_up = _slots(short, slot__gt=windowed.slot)
    assert _contiguous(caught_up) and caught_up[0] - windowed.slot == dt.timedelta(seconds=1)


def test_each_overlap_policy_with_a_slow_run(postgres_db: None) -> None:
    # Six steps of 0.5 s: a 3 s run that an abort stops between steps (one long step would end on its own).
    slow = {"sleep": 0.5, "steps": 6}
    policies = {p: _schedule(f"slow-{p.replace('_', '-')}", graph="t-slow-steps", data=slow, interval_seconds=2,
                             overlap=p) for p in ("skip", "buffer_one", "allow_all", "cancel_other")}  # fmt: skip
    with worker("--poll", "0.2", "--concurrency", "8"), _scheduler():
        time.sleep(9)
        for schedule in policies.values():
            services.schedule_pause(schedule=schedule, user=None)
        time.sleep(4)

    def outcomes(policy: str) -> list[str]:
        fires = ScheduleFire.objects.filter(schedule=policies[policy]).order_by("slot")
        return list(fires.values_list("outcome", flat=True))

    def runs(policy: str) -> QuerySet[Run]:
        return Run.objects.filter(pk__in=ScheduleFire.objects.filter(schedule=policies[policy]).values("run_id"))

    statuses = {p: list(runs(p).values_list("status", "error")) for p in policies}
    assert "skipped" in outcomes("skip") and "buffered" not in outcomes("skip"), statuses
    assert set(outcomes("allow_all")) == {"started"} and len(outcomes("allow_all")) >= 4
    buffered = outcomes("buffer_one")
    assert "skipped" in buffered and buffered.count("started") >= 2  # one waited its turn and started
    cancelled = runs("cancel_other").filter(status="ABORTED", started_at__isnull=False)
    assert cancelled.exists(), statuses["cancel_other"]  # a run that had started, not only a pending one
    skip_runs = list(runs("skip").exclude(started_at=None).order_by("started_at"))
    for a, b in itertools.pairwise(skip_runs):
        assert a.finished_at is not None and b.started_at is not None and a.finished_at <= b.started_at
