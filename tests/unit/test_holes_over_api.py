"""The review's holes 2-6 reached the way the review reached them, over the API, with a token of each role."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from approvals.policy import PolicyEngine
from replay.bundles import bundle_export
from runs.models import Activity, Graph, Run, Specialist
from runs.specialists.registry import specialist_sync_inprocess
from tests.graphs_holes import BULK_RECEIVED
from tests.helpers import execute, start_and_execute
from tests.unit.api_fixtures import post_json, token_client, user_with
from tests.unit.test_bundle_integrity import reseal

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ["viewer", "operator", "approver", "admin", "specialist"]
MAY_OPERATE = {"operator", "admin"}


def as_role(role: str) -> Client:
    user = user_with(f"{role}-user", "operator" if role == "specialist" else role)
    return token_client(user, role)[0]


def _start_and_run(client: Client, graph: str, data: dict[str, Any]) -> Run | int:
    """The run it started and executed, or the refusal's status."""
    response = post_json(client, "/api/runs", {"graph": graph, "input": data})
    if response.status_code != 201:
        return int(response.status_code)
    run = Run.objects.get(trace_id=response.json()["trace_id"])
    execute(run, policy=PolicyEngine(registry_ttl=0))
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("role", ROLES)
def test_hole_3_a_redacted_12_mb_payload_is_denied_for_every_role(role: str) -> None:
    BULK_RECEIVED.clear()
    outcome = _start_and_run(as_role(role), "h-send-bulk", {"size": 12_000_000})
    if role not in MAY_OPERATE:
        assert outcome == 403
        return
    assert isinstance(outcome, Run) and outcome.status == "FAILED" and "over the 10 MB limit" in outcome.error
    assert BULK_RECEIVED == []


@pytest.mark.parametrize("role", ROLES)
def test_hole_4_a_dot_dot_artifact_deletes_nothing_for_any_role(role: str) -> None:
    start_and_execute("h-artifact", {"name": "h/big.txt", "content": "y" * 100_000})
    reader = start_and_execute("h-artifact", {"name": "h/big.txt", "read": True})
    blob = f"blobs/{Activity.objects.get(run=reader).response['$blob']}.json"
    outcome = _start_and_run(as_role(role), "h-artifact", {"name": f"../{blob}", "content": "x"})
    if role not in MAY_OPERATE:
        assert outcome == 403
    else:
        assert isinstance(outcome, Run) and outcome.status == "FAILED" and "is not allowed" in outcome.error
    assert default_storage.exists(blob)
    assert as_role("viewer").get(f"/api/runs/{reader.trace_id}/export").status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_hole_2_a_forged_import_gets_the_importers_identity_or_is_refused(role: str) -> None:
    run = start_and_execute("t-count", {"target": 2})
    bundle = json.loads(json.dumps(bundle_export(run=run)))
    Run.objects.all().delete()
    bundle["run"]["context"] = {"user": "admin", "role": "admin"}
    response = post_json(as_role(role), "/api/runs/import", reseal(bundle))
    if role not in MAY_OPERATE:
        assert response.status_code == 403 and not Run.objects.exists()
        return
    assert response.status_code == 201, response.content
    assert response.json()["created_by"] == f"{role}-user" and response.json()["role"] == role


@pytest.mark.parametrize("role", ROLES)
def test_hole_5_nobody_replaces_a_code_graph(role: str) -> None:
    versions = Graph.objects.filter(name="t-count").count()
    gutted = {
        "name": "t-count",
        "entry": "t_count",
        "nodes": [{"name": "t_count"}],
        "edges": [{"from": "t_count", "to": "__end__"}],
    }
    assert post_json(as_role(role), "/api/graphs", {"definition": gutted}).status_code == 403
    assert Graph.objects.filter(name="t-count").count() == versions


@pytest.mark.parametrize("role", ROLES)
def test_hole_6_nobody_but_an_admin_or_a_bound_token_takes_over_healer(role: str) -> None:
    specialist_sync_inprocess()
    response = post_json(as_role(role), "/api/specialists", {"name": "healer", "transport": "redis"})
    assert response.status_code == (200 if role == "admin" else 403), response.content
    assert Specialist.objects.get(name="healer").transport == ("redis" if role == "admin" else "inprocess")
