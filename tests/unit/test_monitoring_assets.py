"""The Grafana dashboard and the Prometheus alert rules in deploy/ use only metrics /metrics exports, and
promtool accepts them; the scheduler's heartbeat reaches /metrics."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals.models import ApprovalRequest
from runs.engine import statemachine as sm
from runs.models import Run, SchedulerStatus, Specialist
from runs.scheduler import SchedulerLoop, scheduler_status_prune
from runs.services.leases import worker_heartbeat
from runs.services.runs import run_start
from tests.conftest import service_missing
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "cmo-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "cmo-alerts.yml"
METRIC_NAME = re.compile(r"\bcmo_[a-z_]+\b")
# The exposition's sample suffixes: a family named cmo_x may be queried as cmo_x_total and so on.
SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created")


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_queries() -> list[str]:
    return [t["expr"] for p in panels(json.loads(DASHBOARD.read_text())["panels"]) for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def rule_queries() -> list[str]:
    """Each rule's expression, and the queries its annotations template in ({{ query "..." }})."""
    queries = []
    for rule in alert_rules():
        queries.append(rule["expr"])
        for text in rule.get("annotations", {}).values():
            queries.extend(re.findall(r'query "([^"]+)"', text))
    return queries


def exported() -> dict[str, int]:
    """/metrics as family name -> samples, after a little of everything it counts."""
    start_and_execute("t-cycle", {"target": 2})
    run_start(graph_name="t-cycle", data={}, seed=1)  # queued
    waiting = run_start(graph_name="t-cycle", data={}, seed=2)
    Run.objects.filter(pk=waiting.pk).update(status=sm.WAITING)
    ApprovalRequest.objects.create(
        run=waiting, step=0, seq=0, level="high", expires_at=timezone.now() + dt.timedelta(minutes=30)
    )
    Specialist.objects.create(name="remote-one", transport=Specialist.TRANSPORT_REDIS, address="cmo:spec:remote-one")
    worker_heartbeat(owner="host-a:1", concurrency=4, in_flight=1, started_at=timezone.now())
    SchedulerLoop(interval=5).tick()
    response = Client().get("/metrics")
    assert response.status_code == 200, response.content
    return {f.name: len(f.samples) for f in text_string_to_metric_families(response.content.decode())}


def family(name: str, families: dict[str, int]) -> str | None:
    for candidate in (name, *(name.removesuffix(s) for s in SUFFIXES if name.endswith(s))):
        if candidate in families:
            return candidate
    return None


def test_every_metric_the_dashboard_and_the_alert_rules_use_is_exported() -> None:
    families = exported()
    queries = {"dashboard": dashboard_queries(), "alert rules": rule_queries()}
    assert len(queries["dashboard"]) >= 20 and len(queries["alert rules"]) >= 6
    used: set[str] = set()
    for where, exprs in queries.items():
        for expr in exprs:
            names = set(METRIC_NAME.findall(expr))
            assert names, f"{where}: {expr!r} reads no cmo_ metric"
            missing = sorted(n for n in names if family(n, families) is None)
            assert not missing, f"{where}: {expr!r} uses {missing}, which /metrics does not export"
            used |= names
    # What the dashboard must show (issue 20), each with figures here, except the specialist streams: the
    # fast suite has no Redis, so their families are declared with no samples.
    needed = {
        "cmo_runs",
        "cmo_queue_depth",
        "cmo_steps_stored",
        "cmo_activity_errors_stored",
        "cmo_approvals_pending",
        "cmo_approvals_expiring_soon",
        "cmo_workers_alive",
        "cmo_worker_runs_in_flight",
        "cmo_runs_waiting_for_slot",
        "cmo_scheduler_last_sweep_timestamp_seconds",
    }
    streams = {"cmo_specialist_stream_depth", "cmo_specialist_stream_pending", "cmo_specialist_dead_letters"}
    assert needed | streams <= used
    assert all(families[name] for name in needed - {"cmo_runs_waiting_for_slot", "cmo_activity_errors_stored"})


def test_the_alert_rules_cover_the_failure_modes() -> None:
    by_metric = {name: rule["alert"] for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    for metric in (
        "cmo_workers_alive",
        "cmo_queue_depth",
        "cmo_specialist_dead_letters",
        "cmo_scheduler_last_sweep_timestamp_seconds",
        "cmo_approvals_expiring_soon",
    ):
        assert metric in by_metric, f"no alert rule watches {metric}"
    queue = next(r for r in alert_rules() if r["alert"] == "CmoQueueGrowing")
    assert queue["for"] == "10m" and "[10m]" in queue["expr"]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_missing("promtool (apt-get install prometheus)")
    assert path is not None
    return path


@pytest.mark.django_db(transaction=False)
def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@pytest.mark.django_db(transaction=False)
def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query as a recording rule, so promtool parses it the way Prometheus will."""
    rules = [{"record": f"cmo:dashboard_query_{i}", "expr": e} for i, e in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db(transaction=False)
def test_the_dashboard_imports_with_a_prometheus_data_source_chosen_at_import() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "cmo-overview"
    assert [v["type"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def scrape_scheduler() -> tuple[float, float]:
    response = Client().get("/metrics")
    values = {
        s.name: s.value
        for f in text_string_to_metric_families(response.content.decode())
        for s in f.samples
        if s.name.startswith("cmo_scheduler")
    }
    return values["cmo_scheduler_last_sweep_timestamp_seconds"], values["cmo_schedulers_alive"]


def test_a_scheduler_round_is_its_heartbeat_on_metrics() -> None:
    assert scrape_scheduler() == (0, 0)  # no scheduler has swept: the alert's time() - 0 fires
    loop = SchedulerLoop(interval=5)
    before = time.time()
    loop.tick()
    last, alive = scrape_scheduler()
    assert before - 1 <= last <= time.time() + 1
    assert alive == 1
    loop.tick()
    assert SchedulerStatus.objects.get().owner == loop.owner  # one row per scheduler, updated each round

    SchedulerStatus.objects.update(last_sweep_at=timezone.now() - dt.timedelta(minutes=5))
    last, alive = scrape_scheduler()
    assert alive == 0 and time.time() - last > 290  # a stopped scheduler's last sweep stays visible, ageing
    assert scheduler_status_prune() == 0
    SchedulerStatus.objects.update(last_sweep_at=timezone.now() - dt.timedelta(days=2))
    assert scheduler_status_prune() == 1


def test_approvals_expiring_within_the_hour_are_counted_for_the_alert() -> None:
    soon, later = (run_start(graph_name="t-cycle", data={}, seed=s) for s in (1, 2))
    Run.objects.filter(pk__in=[soon.pk, later.pk]).update(status=sm.WAITING)
    for run, minutes in ((soon, 50), (later, 70)):
        ApprovalRequest.objects.create(
            run=run, step=0, seq=0, level="high", expires_at=timezone.now() + dt.timedelta(minutes=minutes)
        )
    response = Client().get("/metrics")
    values = {s.name: s.value for f in text_string_to_metric_families(response.content.decode()) for s in f.samples}
    assert values["cmo_approvals_pending"] == 2
    assert values["cmo_approvals_expiring_soon"] == 1
