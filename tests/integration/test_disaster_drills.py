"""Disaster drills with real worker, specialist and scheduler processes on the machine's PostgreSQL and Redis.

(a) The database is lost and restored from a ``pg_dump`` taken while runs were in flight and waiting (on an
    approval, a signal, a specialist): in a fresh database every run resumes and completes, no activity the
    dump recorded as completed runs again, and the work committed after the dump (the RPO) is done again,
    with the same idempotency keys.
(b) Redis is flushed (FLUSHDB of the drill's own Redis database, REDIS_URL's index) in the middle of specialist
    invocations and approvals. Approvals (database rows) and the invocations a specialist had already read must
    complete, answered once, with every process still serving on the empty Redis; invocations still queued in
    Redis must be published again from their database records (the database is the truth: a worker that finds
    the transport's sentinel gone publishes every pending invocation again, runs.specialists.a2a).
(c) PostgreSQL restarts while 100 runs are in flight: all complete and no step is recorded twice.
    (tests/integration/test_service_restarts.py restarts PostgreSQL under 30 runs and checks the server saw
    at most one duplicate request per run; this one has 100 runs that have all started and checks each
    run's record step by step.)

Each drill prints its measured recovery figures (``DRILL ...`` lines; run pytest with ``-rP`` to see them);
README "Disaster recovery" quotes them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import Count

import tests.graphs_approvals  # noqa: F401 - registers the ap- graphs in this process too
from approvals.models import ApprovalRequest
from approvals.services import approval_decide, risk_rules_install_defaults
from runs.engine import statemachine as sm
from runs.models import Activity, Run, RunEvent, Specialist, Step
from runs.services.runs import run_start
from runs.specialists.registry import specialist_register
from runs.specialists.streams import stream_key
from tests.fixtures.counting_server import CountingServer
from tests.integration import drills
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]

MODULES = {"CMO_GRAPH_MODULES": drills.GRAPH_MODULES}
APPROVER = "drill-approver"
RISKY = {"commands": ["rm -rf /var/cache/drill"]}  # high risk: a pending request, never auto-approved


def _report(drill: str, figures: dict[str, Any]) -> None:
    print(f"DRILL {drill}: " + json.dumps(figures, sort_keys=True))


def _approver() -> User:
    user = User.objects.create_user(APPROVER, password="x")
    user.groups.add(Group.objects.get_or_create(name="approver")[0])
    return user


def _register_remote_echo() -> None:
    """t-echo on Redis Streams, as ``run_specialist t-echo`` registers it (without running it yet)."""
    specialist_register(
        name="t-echo",
        version="1",
        capabilities=["echo"],
        transport=Specialist.TRANSPORT_REDIS,
        address=stream_key("t-echo"),
    )


def _statuses(ids: list[int]) -> Counter[str]:
    connection.close()
    return Counter(Run.objects.filter(pk__in=ids).values_list("status", flat=True))


def _all_completed(ids: list[int]) -> bool:
    try:
        return not Run.objects.filter(pk__in=ids).exclude(status=sm.COMPLETED).exists()
    except Exception:  # noqa: BLE001 - the test's own connection may be the one a restart broke
        connection.close()
        return False


# -- (a) pg_dump while runs are in flight and waiting, restored into a fresh database -----------------------

A_HTTP_RUNS, A_CALLS = 16, 10

ANSWER_THE_WAITS = f"""
from django.contrib.auth.models import User
from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from runs.models import Run
from runs.services.signals import signal_send
approver = User.objects.get(username={APPROVER!r})
decided = 0
for request in ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING).order_by("pk"):
    approval_decide(request=request, user=approver, approve=True, reason="disaster drill: decided again")
    decided += 1
signalled = 0
for run in Run.objects.filter(activities__type="signal", activities__status="pending").distinct():
    signal_send(run=run, name="go", payload={{"n": run.pk}}, actor="drill")
    signalled += 1
print("answered", decided, signalled)
"""


def _http_keys(server: drills.Server, dbname: str, *, status: str | None = None) -> set[str]:
    sql = (
        "SELECT r.trace_id || ':' || a.step || ':' || a.seq FROM runs_activity a JOIN runs_run r ON r.id = a.run_id"
        " WHERE a.type = 'http'" + (" AND a.status = %s" if status else "")
    )
    return {key for (key,) in drills.rows(server, dbname, sql, [status] if status else [])}


def _progress(server: drills.Server, dbname: str) -> dict[str, int]:
    one = drills.scalar
    return {
        "steps": one(server, dbname, "SELECT count(*) FROM runs_step"),
        "activities_completed": one(server, dbname, "SELECT count(*) FROM runs_activity WHERE status = 'completed'"),
        "runs_completed": one(server, dbname, "SELECT count(*) FROM runs_run WHERE status = 'COMPLETED'"),
        "decisions": one(server, dbname, "SELECT count(*) FROM approvals_approvalrequest WHERE status <> 'pending'"),
    }


def _restored_process(*args: str, url: str, ready: str) -> ManagedProcess:
    return ManagedProcess(*args, env={"DATABASE_URL": url, **MODULES}, ready=ready)


def test_a_a_dump_taken_with_runs_in_flight_and_waiting_restores_and_every_run_completes(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    server_pg = drills.Server.of_test_database()
    test_db = connection.settings_dict["NAME"]
    risk_rules_install_defaults()
    approver = _approver()
    _register_remote_echo()
    dump = tmp_path / "cmo.dump"

    with CountingServer(delay=0.2) as server:
        old = worker("--concurrency", "4", "--poll", "0.2", env=MODULES).start()  # the production lease (30 s)
        try:
            approvals = [
                run_start(graph_name="ap-flow", data={"url": f"{server.url}/ap{i}", "action": RISKY}).pk
                for i in range(3)
            ]
            signals = [run_start(graph_name="t-signal", data={"target": 1}).pk for _ in range(3)]
            # No t-echo process runs yet: these requests wait in its Redis stream.
            remote = [run_start(graph_name="t-remote", data={"text": f"drill {i}"}).pk for i in range(3)]
            waiting = approvals + signals + remote
            assert wait_for(lambda: _statuses(waiting) == {sm.WAITING: len(waiting)}, timeout=60), old.output[-3000:]
            http = [
                run_start(graph_name="t-http", data={"url": server.url, "calls": A_CALLS}).pk
                for _ in range(A_HTTP_RUNS)
            ]
            assert server.wait_for(A_HTTP_RUNS * A_CALLS // 5, path="/count", timeout=60), old.output[-3000:]

            dump_at = drills.pg_dump(server_pg, test_db, dump)
            dump_seconds = time.time() - dump_at
            in_flight_at_dump = dict(_statuses(http))
            # After the dump and before the failure: a decision, and more steps (all lost with the database).
            late = approvals[0]
            approval_decide(request=ApprovalRequest.objects.get(run_id=late), user=approver, approve=True, reason="ok")
            time.sleep(1.0)
        finally:
            old.kill()  # the failure: the database is gone, its workers with it (no lease is released)
        failure_at = time.time()
        old_progress = _progress(server_pg, test_db)
        old_completed = _http_keys(server_pg, test_db, status="completed")
        assert _statuses(http).get(sm.COMPLETED, 0) < A_HTTP_RUNS, "every run finished before the failure"

        with drills.restored_database(server_pg, dump, f"{test_db}_restored") as (name, restore_at, restored_at):
            url = server_pg.url(name)
            dumped = _progress(server_pg, name)
            dumped_completed = _http_keys(server_pg, name, status="completed")
            assert dumped_completed <= old_completed
            ids = [pk for (pk,) in drills.rows(server_pg, name, "SELECT id FROM runs_run ORDER BY id")]
            assert sorted(ids) == sorted(http + waiting)

            restored = [
                _restored_process("cmo_scheduler", "--interval", "1", url=url, ready="using database"),
                _restored_process("cmo_worker", "--concurrency", "4", "--poll", "0.2", url=url, ready="runner threads"),
                _restored_process("run_specialist", "t-echo", "--claim-idle-ms", "1000", url=url, ready="consuming"),
            ]
            try:
                drills.start_together(restored)
                serving_at = time.time()
                answered = drills.django_shell(ANSWER_THE_WAITS, database_url=url)
                assert "answered 3 3" in answered, answered  # the late decision is pending again: decided again

                def done() -> bool:
                    open_runs = "SELECT count(*) FROM runs_run WHERE status <> 'COMPLETED'"
                    return drills.scalar(server_pg, name, open_runs) == 0

                finished = wait_for(done, timeout=90, interval=0.2)
                completed_at = time.time()
                statuses = drills.rows(server_pg, name, "SELECT status, count(*) FROM runs_run GROUP BY status")
                assert finished, f"{statuses}\n" + "\n".join(p.output[-2000:] for p in restored)
            finally:
                for proc in restored:
                    proc.stop()
            first_step = drills.scalar(
                server_pg,
                name,
                "SELECT extract(epoch FROM min(started_at)) FROM runs_step WHERE started_at > %s",
                [dt.datetime.fromtimestamp(restored_at, tz=dt.UTC)],
            )

            # Every run's steps are 0..n-1, each recorded once; the in-flight runs made all their calls.
            steps = dict(
                drills.rows(server_pg, name, "SELECT run_id, array_agg(index ORDER BY index) FROM runs_step GROUP BY 1")
            )
            for pk in ids:
                assert steps[pk] == list(range(len(steps[pk]))), (pk, steps[pk])
            states = dict(drills.rows(server_pg, name, "SELECT id, state FROM runs_run"))
            for pk in http:
                assert states[pk]["i"] == A_CALLS and len(steps[pk]) == A_CALLS, (pk, states[pk], steps[pk])
            for i, pk in enumerate(remote):
                assert states[pk]["answer"] == {"echo": f"drill {i}", "task": "echo"}
            for pk in signals:
                assert states[pk]["answer"] == {"n": pk}
            for pk in approvals:
                assert states[pk]["decision"]["approved"] is True, states[pk]
            final_keys = _http_keys(server_pg, name)
            answered_twice = drills.rows(
                server_pg, name, "SELECT run_id, step, message FROM runs_runevent WHERE kind = 'answered'"
                " GROUP BY run_id, step, message HAVING count(*) > 1",
            )  # fmt: skip

        counts = {key: n for (path, key), n in server.counts().items() if key}
        # Nothing the dump recorded as completed ran again; what ran after it ran again at most once, with its key.
        assert all(counts.get(key) == 1 for key in dumped_completed), {
            k: counts.get(k) for k in dumped_completed if counts.get(k) != 1
        }
        assert max(counts.values()) <= 2, {k: n for k, n in counts.items() if n > 2}
        assert set(counts) <= final_keys  # every request the server saw is an activity of the restored record
        again = {k for k, n in counts.items() if n == 2}
        assert again.isdisjoint(dumped_completed)
        # The decision made after the dump was lost with the database, and made again in the restored one.
        assert states[late]["decision"]["reason"] == "disaster drill: decided again"
        assert not answered_twice

    _report(
        "a",
        {
            "dump_seconds": round(dump_seconds, 2),
            "dump_bytes": dump.stat().st_size,
            "runs": len(ids),
            "http_runs_at_dump": in_flight_at_dump,
            "rpo_seconds": round(failure_at - dump_at, 2),
            "lost_steps": old_progress["steps"] - dumped["steps"],
            "lost_completed_activities": old_progress["activities_completed"] - dumped["activities_completed"],
            "lost_run_completions": old_progress["runs_completed"] - dumped["runs_completed"],
            "lost_decisions": old_progress["decisions"] - dumped["decisions"],
            "requests_sent_again": len(again),
            "restore_seconds": round(restored_at - restore_at, 2),
            "rto_serving_seconds": round(serving_at - restore_at, 2),
            "rto_first_step_seconds": round(float(first_step) - restore_at, 2) if first_step else None,
            "rto_all_completed_seconds": round(completed_at - restore_at, 2),
        },
    )


# -- (b) Redis flushed in the middle of specialist invocations and approvals ---------------------------------

B_INFLIGHT = 6


def _specialist(*extra: str) -> ManagedProcess:
    return ManagedProcess(
        "run_specialist", "t-echo", *extra, env={"DATABASE_URL": child_database_url(), **MODULES}, ready="consuming"
    )


def _answered_once(ids: list[int]) -> dict[int, int]:
    per_run = RunEvent.objects.filter(run_id__in=ids, kind="answered").values("run_id").annotate(n=Count("id"))
    return {row["run_id"]: row["n"] for row in per_run}


def _crashed(procs: list[ManagedProcess]) -> str:
    """The output of the first process that exited or printed a traceback, or ""."""
    for proc in procs:
        if (proc.proc is not None and proc.proc.poll() is not None) or "Traceback" in proc.output:
            return f"{proc.args[0]} (exit {proc.proc.poll() if proc.proc else None}):\n{proc.output[-3000:]}"
    return ""


def test_b_a_redis_flush_mid_invocations_and_approvals_loses_no_decision_and_no_read_invocation(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    risk_rules_install_defaults()
    approver = _approver()
    calls = tmp_path / "calls.log"
    with (
        CountingServer() as server,
        _specialist("--threads", str(B_INFLIGHT), "--claim-idle-ms", "1000") as spec,
        worker("--poll", "0.2", env=MODULES) as w1,
        worker("--poll", "0.2", env=MODULES) as w2,
    ):
        before = [run_start(graph_name="t-remote", data={"text": f"before {i}"}).pk for i in range(3)]
        assert wait_for(lambda: _all_completed(before), timeout=30), w1.output[-2000:] + spec.output[-2000:]
        approvals = [
            run_start(graph_name="ap-flow", data={"url": f"{server.url}/b{i}", "action": RISKY}).pk for i in range(4)
        ]
        # Six invocations the specialist has read and is working on (2 s each) when Redis loses everything.
        reading = [
            run_start(graph_name="t-remote", data={"text": f"mid {i}", "sleep": 2, "log": str(calls)}).pk
            for i in range(B_INFLIGHT)
        ]
        assert wait_for(lambda: _statuses(approvals + reading) == {sm.WAITING: 10}, timeout=30), w1.output[-3000:]
        assert wait_for(lambda: calls.exists() and len(calls.read_text().split()) == B_INFLIGHT, timeout=30), (
            spec.output
        )
        flushed_at = time.monotonic()
        keys = drills.redis_flush_own_db(redis_url)
        assert keys > 0

        for request in ApprovalRequest.objects.filter(run_id__in=approvals):
            approval_decide(request=request, user=approver, approve=True, reason="decided after the flush")
        after = [run_start(graph_name="t-remote", data={"text": f"after {i}"}).pk for i in range(3)]
        everything = before + approvals + reading + after
        procs = [spec, w1, w2]
        finished = wait_for(lambda: _all_completed(everything) or bool(_crashed(procs)), timeout=60, interval=0.2)
        recovered = time.monotonic() - flushed_at
        crashed = _crashed(procs)
        assert not crashed, f"a process did not survive the flush: {crashed}"
        assert finished, f"{_statuses(everything)}\n{w1.output[-2000:]}\n{w2.output[-2000:]}\n{spec.output[-2000:]}"

    remote = before + reading + after
    assert _answered_once(remote) == {pk: 1 for pk in remote}
    for run in Run.objects.filter(pk__in=remote):
        assert run.state["answer"]["echo"] == run.input["text"]
    # Each read invocation ran once before the flush and at most once more: the worker that found Redis empty
    # published every pending one again from the database (at least once on the wire, once in the record).
    runs_per_invocation = Counter(calls.read_text().split())
    assert len(runs_per_invocation) == B_INFLIGHT and set(runs_per_invocation.values()) <= {1, 2}
    for i in range(4):
        assert server.count(f"/b{i}/act") == 1 and server.count(f"/b{i}/gate") == 1
    assert not Activity.objects.filter(run_id__in=everything).exclude(status="completed").exists()
    _report("b", {"redis_keys_flushed": keys, "recovered_seconds": round(recovered, 2), "runs": len(everything)})


def test_b_invocations_queued_in_redis_when_it_is_flushed_are_published_again_from_the_database(
    postgres_db: None, redis_url: str
) -> None:
    _register_remote_echo()
    Specialist.objects.filter(name="t-echo").update(max_in_flight=2)  # two sent, two held in Redis over the cap
    scheduler = ManagedProcess(
        "cmo_scheduler",
        "--interval",
        "1",
        env={"DATABASE_URL": child_database_url(), **MODULES},
        ready="using database",
    )
    with scheduler, worker("--poll", "0.2", env=MODULES) as w:
        # No specialist reads t-echo's stream yet: the requests are only in Redis (and pending in the database).
        queued = [run_start(graph_name="t-remote", data={"text": f"queued {i}"}).pk for i in range(4)]
        assert wait_for(lambda: _statuses(queued) == {sm.WAITING: 4}, timeout=30), w.output[-3000:]
        drills.redis_flush_own_db(redis_url)
        with _specialist("--claim-idle-ms", "1000") as spec:
            procs = [w, spec]
            finished = wait_for(lambda: _all_completed(queued) or bool(_crashed(procs)), timeout=30, interval=0.5)
            crashed = _crashed(procs)
            assert not crashed, f"a process did not survive the flush: {crashed}"
            assert finished, f"{_statuses(queued)}\n{w.output[-2000:]}\n{spec.output[-2000:]}"
    assert _answered_once(queued) == {pk: 1 for pk in queued}


# -- (c) PostgreSQL restarted while 100 runs are in flight ----------------------------------------------------

C_RUNS, C_CALLS = 100, 6


def test_c_100_runs_in_flight_complete_across_a_postgresql_restart_and_no_step_is_recorded_twice(
    postgres_db: None, redis_url: str
) -> None:
    one_step_a_slice = {"CMO_STEPS_PER_SLICE": "1"}  # runs take turns, so all 100 are in flight at once
    workers = [worker("--poll", "0.3", "--lease", "5", env=one_step_a_slice) for _ in range(2)]
    with CountingServer(delay=0.02) as server:
        # Submitted before the workers start, so none can finish while the last ones are being submitted.
        ids = [run_start(graph_name="t-http", data={"url": server.url, "calls": C_CALLS}).pk for _ in range(C_RUNS)]
        drills.start_together(workers)
        try:
            started = Step.objects.filter(run_id__in=ids).values("run_id").distinct()
            assert wait_for(lambda: started.count() == C_RUNS, timeout=60), workers[0].output[-3000:]
            in_flight = Run.objects.filter(pk__in=ids).exclude(status__in=sm.TERMINAL).count()
            assert in_flight == C_RUNS, f"only {in_flight} of {C_RUNS} runs were in flight before the restart"
            completed = Activity.objects.select_related("run").filter(run_id__in=ids, status="completed")
            recorded_before = {act.idempotency_key for act in completed}
            restart_at = time.monotonic()
            drills.pg_restart()
            restart_seconds = time.monotonic() - restart_at
            connection.close()
            done = wait_for(lambda: _all_completed(ids), timeout=120, interval=0.5)
            recovered = time.monotonic() - restart_at
            assert done, f"{_statuses(ids)}\n" + "\n".join(w.output[-3000:] for w in workers)
            for w in workers:
                assert w.proc is not None and w.proc.poll() is None, w.output[-3000:]
            outage = [
                line for w in workers for line in w.lines if "database unavailable" in line or "unreachable" in line
            ]
            assert outage, "the restart did not reach the workers in flight"
        finally:
            for w in workers:
                w.stop()

    counts = {key: n for (path, key), n in server.counts().items() if path == "/count" and key}
    for run in Run.objects.filter(pk__in=ids):
        indexes = list(Step.objects.filter(run=run).order_by("index").values_list("index", flat=True))
        assert indexes == list(range(C_CALLS)), (run.pk, indexes)  # each step recorded once, none missing
        assert run.state["i"] == C_CALLS
        keys = [act.idempotency_key for act in Activity.objects.select_related("run").filter(run=run)]
        assert keys == [f"{run.trace_id}:{i}:0" for i in range(C_CALLS)]
        assert all(counts.get(k, 0) >= 1 for k in keys)
        # Only the request in flight when its step was cut off may have gone out twice, with the same key.
        assert sum(1 for k in keys if counts[k] > 1) <= 1, {k: counts[k] for k in keys}
    assert all(counts[k] == 1 for k in recorded_before), "an activity recorded before the restart ran again"
    assert set(counts) <= {act.idempotency_key for act in Activity.objects.select_related("run").filter(run_id__in=ids)}
    _report(
        "c",
        {
            "runs_in_flight": in_flight,
            "restart_seconds": round(restart_seconds, 2),
            "all_completed_after_seconds": round(recovered, 2),
            "requests_sent_twice": sum(1 for n in counts.values() if n > 1),
            "worker_outage_warnings": len(outage),
        },
    )
