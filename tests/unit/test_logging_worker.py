"""A real worker process logs JSON lines that name the worker and the run (PostgreSQL + Redis)."""

from __future__ import annotations

import json

import pytest

from runs.models import Run
from runs.services.runs import run_start
from tests.integration.processes import wait_for, worker

pytestmark = pytest.mark.integration


def test_a_worker_logs_one_json_object_per_line_with_worker_and_run(postgres_db: None, redis_url: str) -> None:
    with worker("--poll", "0.2", env={"CMO_LOG_FORMAT": "json", "CMO_LOG_LEVEL": "INFO"}) as proc:
        run = run_start(graph_name="t-count", data={"target": 2})
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30), proc.output
        assert wait_for(lambda: any(f'"run_id": {run.pk}' in line for line in proc.lines), timeout=10), proc.output
    records = [json.loads(line) for line in proc.lines if line.startswith("{")]
    started = next(r for r in records if r["message"].endswith("runner threads") and r["logger"] == "runs.worker.host")
    owner = started["message"].split()[1]
    done = next(r for r in records if r.get("run_id") == run.pk)
    assert done["message"] == f"run {run.pk}: completed" and done["outcome"] == "completed"
    assert done["worker"] == owner and done["level"] == "INFO" and done["logger"] == "runs.worker.host"
    # Every line the logging system wrote is a JSON object (the command's own stdout lines are plain).
    plain = [line for line in proc.lines if not line.startswith("{")]
    assert all(not line.startswith(("INFO", "WARNING", "ERROR", "20")) for line in plain), plain
