"""Schedules on PostgreSQL: 1,000 schedules every minute.

Per round: all 1,000 schedules come due at once (their next slot is now), and one tick fires them (1,000
slot rows and 1,000 runs); then the idle tick that follows (nothing due), which is what the scheduler does
four times a second. Printed: wall time and database queries per tick, median and p95 over the rounds, and
the due tick's cost per schedule against a plain run_start of the same graph measured in the same round.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from tests.bench.common import header, pct

SCHEDULES = 1000
ROUNDS = 5


def main(url: str) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.utils import timezone

    import tests.graphs  # noqa: F401 - t-count
    from runs.models import Run
    from runs.services.runs import run_start
    from schedules import services
    from schedules.models import Schedule, ScheduleFire

    header(f"schedules: {SCHEDULES} schedules every minute, {ROUNDS} rounds")
    owner, _ = User.objects.get_or_create(username="bench-scheduler")
    owner.groups.add(Group.objects.get_or_create(name="operator")[0])
    Schedule.objects.all().delete()
    fields = services.schedule_check(
        data={"graph": "t-count", "input": {"target": 1}, "cron": "* * * * *", "overlap": "allow_all"},
        user=owner, role="operator",
    )  # fmt: skip
    for i in range(SCHEDULES):
        services.schedule_create(name=f"bench-{i:04d}", fields=fields, user=owner, role="operator")
    due_ms: list[float] = []
    due_queries: list[int] = []
    idle_ms: list[float] = []
    idle_queries: list[int] = []
    start_ms: list[float] = []
    for _ in range(ROUNDS):
        now = timezone.now()
        Schedule.objects.update(next_slot_at=now.replace(second=0, microsecond=0))
        ScheduleFire.objects.all().delete()
        counted = [0]
        with connection.execute_wrapper(_counter(counted)):
            t = time.perf_counter()
            handled = 0
            while handled < SCHEDULES:  # a tick stops at its time budget; the next one goes on
                handled += services.schedules_fire_due(now=now, batch=SCHEDULES)
            due_ms.append((time.perf_counter() - t) * 1000)
        due_queries.append(counted[0])
        counted = [0]
        with connection.execute_wrapper(_counter(counted)):
            t = time.perf_counter()
            services.schedules_fire_due(now=now)
            idle_ms.append((time.perf_counter() - t) * 1000)
        idle_queries.append(counted[0])
        t = time.perf_counter()
        for _ in range(100):
            run_start(graph_name="t-count", data={"target": 1}, user=owner, role="operator")
        start_ms.append((time.perf_counter() - t) * 1000 / 100)
        Run.objects.all().delete()
    per = [d / SCHEDULES for d in due_ms]
    _row("1,000 due slots (ticks)", due_ms, due_queries)
    _row("idle tick", idle_ms, idle_queries)
    print(f"  per schedule: median {statistics.median(per):.2f} ms, {statistics.median(due_queries) / SCHEDULES:.1f} "
          f"queries; a plain run_start: median "
          f"{statistics.median(start_ms):.2f} ms; ratio {statistics.median(per) / statistics.median(start_ms):.2f}x")
    Schedule.objects.all().delete()


def _counter(counted: list[int]) -> Any:
    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counted[0] += 1
        return execute(sql, params, many, context)

    return wrapper


def _row(name: str, ms: list[float], queries: list[Any]) -> None:
    print(f"  {name:<24} median {statistics.median(ms):9.1f} ms  p95 {pct(ms, 95):9.1f} ms  "
          f"queries median {statistics.median(queries):.0f}")
