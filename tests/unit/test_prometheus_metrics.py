"""/metrics: the figures after known runs, and who may read them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import tests.graphs_activities  # noqa: F401 - registers the a-* graphs
from approvals.models import ApprovalRequest
from runs.engine import statemachine as sm
from runs.models import GraphLimit, Run
from runs.services.leases import worker_heartbeat
from runs.services.runs import run_start
from tests.fixtures.counting_server import unused_port
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def scrape(client: Client | None = None, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_count_runs_steps_activities_queue_caps_workers_and_approvals() -> None:
    start_and_execute("t-cycle", {"target": 3})  # 3 steps, completed
    start_and_execute("t-now-rand", {})  # 1 step, activities now + rand + randint
    start_and_execute("a-http", {"url": f"http://127.0.0.1:{unused_port()}", "timeout": 2})  # a failed http
    start_and_execute("t-not-json", {})  # fails in the step itself
    run_start(graph_name="t-cycle", data={}, seed=1)  # queued
    GraphLimit.objects.create(graph_name="t-now-rand", max_running=0)
    run_start(graph_name="t-now-rand", data={}, seed=2)  # queued but held by the cap
    waiting = run_start(graph_name="t-cycle", data={}, seed=3)
    Run.objects.filter(pk=waiting.pk).update(status=sm.WAITING)
    ApprovalRequest.objects.create(
        run=waiting, step=0, seq=0, level="high", expires_at=timezone.now() + dt.timedelta(hours=4)
    )
    worker_heartbeat(owner="host-a:1", concurrency=4, in_flight=3, started_at=timezone.now())

    m = scrape()

    assert m[("cmo_runs", (("status", "COMPLETED"),))] == 2
    assert m[("cmo_runs", (("status", "FAILED"),))] == 2
    assert m[("cmo_runs", (("status", "PENDING"),))] == 2
    assert m[("cmo_runs", (("status", "WAITING"),))] == 1
    assert m[("cmo_runs", (("status", "ABORTED"),))] == 0
    assert m[("cmo_steps_stored", ())] == 3 + 1 + 1 + 1
    assert m[("cmo_activities_stored", (("type", "now"),))] == 1
    assert m[("cmo_activities_stored", (("type", "rand"),))] == 1
    assert m[("cmo_activities_stored", (("type", "http"),))] == 1
    assert m[("cmo_activity_errors_stored", (("type", "http"),))] == 1
    assert m[("cmo_activity_errors_stored", (("type", "now"),))] == 0
    assert m[("cmo_queue_depth", ())] == 2
    assert m[("cmo_runs_waiting_on_cap", (("graph", "t-now-rand"),))] == 1
    assert m[("cmo_worker_runs_in_flight", (("worker", "host-a:1"),))] == 3
    assert m[("cmo_worker_concurrency", (("worker", "host-a:1"),))] == 4
    assert m[("cmo_workers_alive", ())] == 1
    assert m[("cmo_approvals_pending", ())] == 1


def test_without_a_token_only_loopback_clients_and_staff_may_scrape() -> None:
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    outside = Client().get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert outside.status_code == 401
    assert outside["WWW-Authenticate"].startswith("Bearer")
    User.objects.create_user("plain", password="pw-plain-metrics")
    plain = Client()
    plain.login(username="plain", password="pw-plain-metrics")
    assert plain.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 401
    User.objects.create_user("ops", password="pw-ops-metrics", is_staff=True)
    staff = Client()
    staff.login(username="ops", password="pw-ops-metrics")
    assert staff.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


@override_settings(CMO_METRICS_TOKEN="scrape-token-0123456789")
def test_with_a_token_set_even_loopback_needs_the_bearer_token() -> None:
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    wrong = {"HTTP_AUTHORIZATION": "Bearer not-the-token"}
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1", **wrong).status_code == 401
    right = {"HTTP_AUTHORIZATION": "Bearer scrape-token-0123456789"}
    assert ("cmo_queue_depth", ()) in scrape(REMOTE_ADDR="10.1.2.3", **right)


def test_a_scrape_with_the_database_down_is_a_503_not_a_500() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)},
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/cmo",
        "CMO_DB_POOL_SIZE": "0",
        "DJANGO_SETTINGS_MODULE": "cmo_site.settings",
    }
    code = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/metrics'); print(r.status_code, r.content.decode().strip())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "503 the database is unavailable"
