"""A run executes in a separate worker process started as the README says (PostgreSQL + Redis)."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from runs.models import Run
from runs.services.runs import run_start
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]


def test_a_worker_process_executes_a_run_woken_through_the_redis_channel_layer(
    postgres_db: None, redis_url: str
) -> None:
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    # A 60 s poll: finishing within seconds proves the channel message woke the worker.
    with worker("--poll", "60", "--concurrency", "2") as proc:
        started = time.monotonic()
        run = run_start(graph_name="incident-healing", data={"service": "checkout", "symptom": "slow"}, seed=3)
        done = wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=20)
        elapsed = time.monotonic() - started
        run.refresh_from_db()
        assert done, f"run still {run.status}\n{proc.output}"
        assert run.status == "COMPLETED", run.error
        assert elapsed < 20
        assert run.state["outcome"] in ("healed", "escalated")
        assert run.events.filter(kind="status", to_status="RUNNING", detail__worker__isnull=False).exists()
        worker_owner = run.events.get(kind="status", to_status="RUNNING").detail["worker"]
        assert worker_owner.split(":")[1] == str(proc.pid)


def test_sigterm_stops_a_worker_cleanly_and_releases_its_lease(postgres_db: None, redis_url: str, tmp_path) -> None:
    marker = tmp_path / "go"
    proc = worker("--poll", "0.2").start()
    try:
        run = run_start(graph_name="t-abort", data={"marker": str(marker), "max_wait": 30, "target": 2})
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "RUNNING", timeout=15), proc.output
        proc.proc.send_signal(15)  # SIGTERM mid-step: the step finishes, then the lease is released
        time.sleep(0.5)
        marker.write_text("go")
        code = proc.proc.wait(30)
    finally:
        proc.stop()
    assert code == 0, proc.output
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert run.lease_owner == ""
    assert run.step_index == 1  # the step in flight committed; nothing after it ran
    with worker("--poll", "0.2") as second:
        assert wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=20), second.output
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert list(run.steps.values_list("index", flat=True)) == [0, 1, 2]
