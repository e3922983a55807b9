"""A run calling a remote specialist over Redis Streams waits without holding a worker and survives
the specialist restarting mid-request."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runs.models import Activity, Run
from runs.services.runs import run_start
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]
N_INVOCATIONS = int(os.environ.get("CMO_TEST_INVOCATIONS", "1000"))


def specialist(*extra: str) -> ManagedProcess:
    return ManagedProcess(
        "run_specialist", "t-echo", *extra, env={"DATABASE_URL": child_database_url()}, ready="consuming"
    )


def test_a_run_waits_for_a_remote_specialist_without_holding_a_worker(postgres_db: None, redis_url: str) -> None:
    with specialist() as spec, worker("--concurrency", "1", "--poll", "0.2") as w:
        run = run_start(graph_name="t-remote", data={"text": "hello", "sleep": 2})
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "WAITING", timeout=20), w.output + spec.output
        waiting = Run.objects.get(pk=run.pk)
        assert waiting.lease_owner == "" and "t-echo" in waiting.wait_reason
        # The only runner is free: another run completes while the first waits.
        other = run_start(graph_name="t-count", data={"target": 2})
        assert wait_for(lambda: Run.objects.get(pk=other.pk).status == "COMPLETED", timeout=20), w.output
        assert Run.objects.get(pk=run.pk).status == "WAITING"
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30), w.output + spec.output
    run.refresh_from_db()
    assert run.state["answer"] == {"echo": "hello", "task": "echo"}
    assert Activity.objects.filter(run=run, type="now").count() == 1  # replayed on resumption, not re-run


def test_a_specialist_killed_mid_request_is_replaced_and_the_run_completes(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    first = specialist("--consumer", "first", "--claim-idle-ms", "1000").start()
    with worker("--poll", "0.2") as w:
        run = run_start(graph_name="t-remote", data={"text": "again", "sleep": 3, "log": str(calls)})
        assert wait_for(lambda: calls.exists() and calls.read_text().strip() != "", timeout=20), first.output
        first.kill()  # kill -9 in the middle of the request: the message stays unacknowledged
        time.sleep(1.2)
        with specialist("--consumer", "second", "--claim-idle-ms", "1000") as second:
            assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=40), (
                w.output + second.output
            )
    run.refresh_from_db()
    assert run.state["answer"]["echo"] == "again"
    lines = calls.read_text().split()
    assert len(lines) == 2 and len(set(lines)) == 1  # the same request, delivered twice, recorded once
    assert Activity.objects.get(run=run, type="send_a2a").status == "completed"


def test_1000_invocations_across_3_specialist_processes_none_lost_none_recorded_twice(
    postgres_db: None, redis_url: str
) -> None:
    from django.db.models import Count

    from runs.models import RunEvent

    specs = [specialist("--consumer", f"s{i}", "--threads", "8").start() for i in range(3)]
    try:
        with worker("--concurrency", "8", "--poll", "0.5") as w1, worker("--concurrency", "8", "--poll", "0.5"):
            ids = [run_start(graph_name="t-remote", data={"text": f"m{i}"}).pk for i in range(N_INVOCATIONS)]
            done = wait_for(
                lambda: Run.objects.filter(pk__in=ids, status="COMPLETED").count() == N_INVOCATIONS,
                timeout=240,
                interval=1.0,
            )
            assert done, w1.output[-2000:] + specs[0].output[-2000:]
    finally:
        for s in specs:
            s.stop()
    answered = RunEvent.objects.filter(run_id__in=ids, kind="answered").values("run_id").annotate(n=Count("id"))
    assert len(answered) == N_INVOCATIONS and all(a["n"] == 1 for a in answered)
    for run in Run.objects.filter(pk__in=ids).only("input", "state"):
        assert run.state["answer"]["echo"] == run.input["text"]
    consumers = {e.actor for e in RunEvent.objects.filter(run_id__in=ids, kind="answered")}
    assert consumers == {"specialist:t-echo"}
