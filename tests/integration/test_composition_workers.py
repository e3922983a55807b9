"""Branches, child runs, timers and signals on PostgreSQL + Redis with real worker processes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from replay.bundles import bundle_export, bundle_import
from replay.services import run_compare, run_fork, run_verify
from runs.models import Activity, Run, Step
from runs.services.runs import run_abort, run_start
from runs.services.signals import signal_send
from tests.fixtures.counting_server import CountingServer
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]

MODULES = {"CMO_GRAPH_MODULES": "runs.demo,tests.graphs,tests.graphs_composition"}
PARENTS = 200


def _worker(*extra: str) -> ManagedProcess:
    return worker("--poll", "0.2", "--lease", "3", *extra, env=MODULES)


def _scheduler() -> ManagedProcess:
    return ManagedProcess(
        "cmo_scheduler",
        "--interval",
        "1",
        env={"DATABASE_URL": child_database_url(), **MODULES},
        ready="using database",
    )


def _ended(pk: int) -> bool:
    try:
        return Run.objects.filter(pk=pk, status__in=["COMPLETED", "FAILED", "ABORTED", "TIMED_OUT"]).exists()
    except Exception:  # noqa: BLE001 - the test's own connection may be the one a restart broke
        connection.close()
        return False


def _overlap(runs: list[Run]) -> int:
    """The most of these runs that were ever running at the same moment (from started_at and finished_at)."""
    moments = []
    for r in runs:
        assert r.started_at is not None and r.finished_at is not None
        moments += [(r.started_at, 1), (r.finished_at, -1)]
    most = now = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):
        now += change
        most = max(most, now)
    return most


def test_a_static_fan_out_of_3_and_a_dynamic_fan_out_of_50_limited_to_10_complete_merged(
    postgres_db: None, redis_url: str
) -> None:
    docs = [f"doc-{i:02d}" for i in range(50)]
    with CountingServer(delay=0.2) as server, _worker("--concurrency", "8") as a, _worker("--concurrency", "8") as b:
        static = run_start(graph_name="c-static", data={}, seed=1)
        dynamic = run_start(graph_name="c-dynamic", data={"docs": docs, "limit": 10, "url": server.url}, seed=2)
        assert wait_for(lambda: _ended(static.pk) and _ended(dynamic.pk), timeout=120), a.output + b.output
    static.refresh_from_db()
    dynamic.refresh_from_db()
    assert static.status == "COMPLETED", static.error
    assert static.state["answers"] == ["a says yes", "b says yes", "c says yes"]
    assert dynamic.status == "COMPLETED", dynamic.error
    assert dynamic.state["summaries"] == [f"summary of {d}" for d in docs]
    assert dynamic.state["total"] == sum(len(d) for d in docs)
    branches = list(Run.objects.filter(spawned_by=dynamic, kind="branch"))
    assert len(branches) == 50 and {b.status for b in branches} == {"COMPLETED"}
    most = _overlap(branches)
    assert most <= 10, f"{most} branches ran at once; the limit is 10"
    assert most >= 5, f"only {most} at once with 16 worker slots: the limit, not the workers, should bound it"
    assert server.count("/count") == 50


def test_kill_9_during_a_fan_out_of_20_loses_nothing_repeats_no_completed_call_and_joins_once(
    postgres_db: None, redis_url: str
) -> None:
    docs = [f"d{i}" for i in range(20)]
    with CountingServer(delay=0.25) as server:
        first = _worker("--concurrency", "4").start()
        run = run_start(graph_name="c-dynamic", data={"docs": docs, "url": server.url}, seed=3)
        assert server.wait_for(6, path="/count", timeout=60), first.output
        first.kill()
        recorded = set(
            Activity.objects.filter(run__spawned_by=run, type="http", status="completed").values_list(
                "run__trace_id", "step", "seq"
            )
        )
        assert 0 < len(recorded) < 20
        with _worker("--concurrency", "4") as second:
            assert wait_for(lambda: _ended(run.pk), timeout=120), second.output
        counts = server.counts()
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    assert run.state["summaries"] == [f"summary of {d}" for d in docs]
    assert list(Step.objects.filter(run=run).order_by("index").values_list("node", flat=True)) == [
        "c_split",
        "c_gather",
    ], "the join ran once"
    assert Activity.objects.filter(run=run, type="join").count() == 1
    branches = Run.objects.filter(spawned_by=run)
    assert branches.count() == 20, "no branch created twice"
    for branch in branches:
        assert Step.objects.filter(run=branch).count() == 1, f"branch {branch.spawn_seq} step recorded once"
        [http] = Activity.objects.filter(run=branch, type="http")
        key = f"{branch.trace_id}:{http.step}:{http.seq}"
        sent = counts.get(("/count", key), 0)
        assert sent >= 1
        if (branch.trace_id, http.step, http.seq) in recorded:
            assert sent == 1, f"{key} completed before the kill yet ran {sent} times"
    repeats = [k for (_, k), n in counts.items() if n > 1]
    assert len(repeats) <= 4, f"only calls in flight at the kill (at most 4) may repeat: {repeats}"


def test_parents_waiting_on_five_children_each_hold_no_worker(postgres_db: None, redis_url: str) -> None:
    """200 parents here (the 1,000 of the issue: tests/bench/bench_composition.py, outside the suite)."""
    parents = [
        run_start(graph_name="c-child", data={"graph": "c-signal", "targets": [1, 2, 3, 4, 5]}, seed=i)
        for i in range(PARENTS)
    ]
    with _worker("--concurrency", "4") as w:
        settled = wait_for(lambda: not Run.objects.filter(status__in=["PENDING", "RUNNING"]).exists(), timeout=180)
        assert settled, w.output + str(Counter(Run.objects.values_list("status", flat=True)))
        waiting = Run.objects.filter(pk__in=[p.pk for p in parents], status="WAITING")
        assert waiting.count() == PARENTS
        assert not Run.objects.filter(status="WAITING").exclude(lease_owner="").exists(), "a waiting run holds a lease"
        assert Run.objects.filter(kind="child", status="WAITING").count() == 5 * PARENTS
        # The worker is free: a new run completes at once although all of those wait.
        quick = run_start(graph_name="t-count", data={"target": 2})
        assert wait_for(lambda: _ended(quick.pk), timeout=20), w.output
        # And the waits still end: one signal to each child of one parent lets that parent finish.
        for child in Run.objects.filter(spawned_by=parents[0]):
            signal_send(run=child, name="proceed", payload={"go": True}, actor="tester")
        assert wait_for(lambda: _ended(parents[0].pk), timeout=30), w.output
    parents[0].refresh_from_db()
    assert [r["status"] for r in parents[0].state["results"]] == ["COMPLETED"] * 5


def test_aborting_a_parent_cascades_to_its_waiting_children(postgres_db: None, redis_url: str) -> None:
    with _worker("--concurrency", "4") as w:
        parent = run_start(graph_name="c-child", data={"graph": "c-signal", "targets": [1, 2, 3]}, seed=1)
        assert wait_for(lambda: Run.objects.filter(spawned_by=parent, status="WAITING").count() == 3, timeout=30), (
            w.output
        )
        run_abort(run=parent, actor="tester")
        assert wait_for(lambda: Run.objects.filter(spawned_by=parent, status="ABORTED").count() == 3, timeout=10)


def _pg_restart() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_a_timer_survives_a_worker_kill_and_a_postgresql_restart_and_wakes_on_time(
    postgres_db: None, redis_url: str
) -> None:
    with _scheduler():
        first = _worker().start()
        run = run_start(graph_name="c-timer", data={"seconds": 8}, seed=1)
        assert wait_for(lambda: Run.objects.filter(pk=run.pk, status="WAITING").exists(), timeout=30), first.output
        first.kill()
        _pg_restart()
        connection.close()
        with _worker() as second:
            assert wait_for(lambda: _ended(run.pk), timeout=60, interval=0.2), second.output
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    due, woke = (dt.datetime.fromisoformat(run.state["woke"][k]) for k in ("due_at", "woke_at"))
    assert dt.timedelta(0) <= woke - due < dt.timedelta(seconds=1), f"woke {woke - due} after its time"


def test_a_signal_sent_before_the_run_waits_is_delivered_by_a_worker(postgres_db: None, redis_url: str) -> None:
    run = run_start(graph_name="c-signal", data={}, seed=1)
    signal_send(run=run, name="proceed", payload={"go": True}, actor="tester")
    with _worker() as w:
        assert wait_for(lambda: _ended(run.pk), timeout=30), w.output
    run.refresh_from_db()
    assert run.status == "COMPLETED" and run.state["heard"] == {"go": True}


def test_verify_compare_fork_and_export_import_of_runs_with_branches_and_children(
    postgres_db: None, redis_url: str
) -> None:
    with _worker("--concurrency", "4") as w:
        left = run_start(graph_name="c-dynamic", data={"docs": ["a", "bb", "ccc"], "limit": 2}, seed=4)
        right = run_start(graph_name="c-dynamic", data={"docs": ["a", "XX", "ccc"], "limit": 2}, seed=4)
        family = run_start(graph_name="c-child", data={"graph": "c-static", "targets": [0, 0]}, seed=5)
        assert wait_for(lambda: all(_ended(r.pk) for r in (left, right, family)), timeout=60), w.output
        assert run_verify(run=left).ok and run_verify(run=family).ok
        report = run_compare(left=left, right=right)
        assert [p.report.match_percent == 100.0 for p in report.spawned if p.report] == [True, False, True]
        fork = run_fork(run=left, step=0)
        assert wait_for(lambda: _ended(fork.pk), timeout=60), w.output
    fork.refresh_from_db()
    left.refresh_from_db()
    family.refresh_from_db()
    assert fork.status == "COMPLETED" and fork.state["summaries"] == left.state["summaries"]
    assert family.status == "COMPLETED", (family.error, list(Run.objects.values_list("kind", "status", "error")))
    bundle = json.loads(json.dumps(bundle_export(run=family, spawned=True)))
    total = 1 + 2 + 2 * 3
    assert Run.objects.filter(pk=family.pk).count() == 1
    family.delete()
    imported = bundle_import(bundle=bundle)
    descendants: list[Any] = [imported]
    for r in descendants:
        descendants.extend(Run.objects.filter(spawned_by=r))
    assert len(descendants) == total
    assert run_verify(run=imported).ok
