"""send_a2a by capability across real processes: two run_specialist processes share a capability; the one
invoked first is killed with kill -9 mid-invocation, the scheduler's tick re-invokes the other when the
timeout passes, and the run completes with one answer recorded, saying who answered and who was skipped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runs.models import A2ARoute, Activity, Run
from runs.services.runs import run_start
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]


def _specialist(name: str) -> ManagedProcess:
    return ManagedProcess("run_specialist", name, env={"DATABASE_URL": child_database_url()}, ready="consuming")


def _scheduler() -> ManagedProcess:
    return ManagedProcess("cmo_scheduler", "--interval", "30", env={"DATABASE_URL": child_database_url()},
                          ready="using database")  # fmt: skip


def test_a_specialist_killed_mid_invocation_is_replaced_by_another_with_the_capability(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    first, second = _specialist("t-sum-a").start(), _specialist("t-sum-b").start()
    try:
        with worker("--poll", "0.2") as w, _scheduler() as s:
            data = {"text": "disk full", "log": str(calls), "sleep": {"t-sum-a": 30}, "timeout": 3}
            run = run_start(graph_name="t-capability", data=data, seed=1)
            assert wait_for(lambda: calls.exists() and "t-sum-a" in calls.read_text(), timeout=30), first.output
            first.kill()  # mid-invocation: t-sum-a never answers
            killed_at = time.monotonic()
            done = wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30)
            assert done, w.output + s.output + second.output
            took = time.monotonic() - killed_at
    finally:
        first.stop()
        second.stop()
    run.refresh_from_db()
    answer = run.state["answer"]
    assert answer["specialist"] == "t-sum-b" and answer["result"] == {"summary": "t-sum-b: disk full"}
    assert answer["skipped"] == [{"specialist": "t-sum-a", "reason": "no answer within 3 s"}]
    (record,) = Activity.objects.filter(run=run, type="send_a2a")
    assert record.status == "completed" and not A2ARoute.objects.exists()
    lines = calls.read_text().split("\n")
    assert [line.split()[0] for line in lines if line] == ["t-sum-a", "t-sum-b"]  # each invoked once
    print(f"\nfailover: completed {took:.2f} s after the kill (timeout 3 s)")
