"""Who may publish a graph version, and which versions run for whom (hole 5)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from replay.bundles import bundle_export
from runs.engine.hashing import json_hash
from runs.models import AuditEvent, Graph, Run
from runs.services.graphs import graph_resolve
from tests.helpers import start_and_execute
from tests.unit.api_fixtures import assert_error, post_json, token_client, user_with
from tests.unit.test_bundle_integrity import reseal

pytestmark = pytest.mark.django_db


def definition(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "entry": "t_count",
        "nodes": [{"name": "t_count"}],
        "edges": [{"from": "t_count", "to": "t_count", "label": "more"}, {"from": "t_count", "to": "__end__"}],
        **extra,
    }


def client(username: str, role: str) -> Any:
    return token_client(user_with(username, role), role)[0]


def test_a_code_graph_cannot_be_replaced_over_the_api_by_anyone() -> None:
    """The review's attack: incident-healing without its approve node, published as a new version."""
    versions = set(Graph.objects.filter(name="incident-healing").values_list("version", flat=True))
    gutted = {
        "name": "incident-healing",
        "entry": "t_count",
        "nodes": [{"name": "t_count"}],
        "edges": [{"from": "t_count", "to": "__end__"}],
    }
    for who, role in (("olga", "operator"), ("ada", "admin")):
        body = assert_error(post_json(client(who, role), "/api/graphs", {"definition": gutted}), 403, "forbidden")
        assert "defined in code" in body["message"]
    assert set(Graph.objects.filter(name="incident-healing").values_list("version", flat=True)) == versions
    assert not AuditEvent.objects.exists()


def test_a_json_graph_belongs_to_its_first_publisher() -> None:
    alice, bob, ada = client("alice", "operator"), client("bob", "operator"), client("ada", "admin")
    first = post_json(alice, "/api/graphs", {"definition": definition("g-owned")})
    assert first.status_code == 201, first.content
    refused = assert_error(
        post_json(bob, "/api/graphs", {"definition": definition("g-owned", max_steps=5)}), 403, "forbidden"
    )
    assert "belongs to alice" in refused["message"]
    assert post_json(alice, "/api/graphs", {"definition": definition("g-owned", max_steps=6)}).status_code == 201
    assert post_json(ada, "/api/graphs", {"definition": definition("g-owned", max_steps=7)}).status_code == 201
    assert list(Graph.objects.filter(name="g-owned").order_by("version").values_list("version", "origin")) == [
        (1, "json"),
        (2, "json"),
        (3, "json"),
    ]
    audit = list(AuditEvent.objects.order_by("id").values_list("actor", "action", "target", "detail__version"))
    assert audit == [
        ("alice", "graph_published", "graph:g-owned", 1),
        ("alice", "graph_published", "graph:g-owned", 2),
        ("ada", "graph_published", "graph:g-owned", 3),
    ]


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_roles_that_may_not_operate_cannot_publish(role: str) -> None:
    assert_error(post_json(client(role, role), "/api/graphs", {"definition": definition("g-x")}), 403, "forbidden")
    assert not Graph.objects.filter(name="g-x").exists()


def _import_a_changed_code_graph(importer: Any) -> Graph:
    """An operator's bundle carrying a different definition of code graph t-count (its hash recomputed)."""
    run = start_and_execute("t-count", {"target": 2})
    bundle = json.loads(json.dumps(bundle_export(run=run)))
    Run.objects.filter(pk=run.pk).delete()
    g = bundle["graph"]
    g["definition"]["max_steps"] = 3
    g["definition_hash"] = json_hash({"definition": g["definition"], "node_hashes": g["node_hashes"]})
    response = post_json(importer, "/api/runs/import", reseal(bundle))
    assert response.status_code == 201, response.content
    return Graph.objects.get(name="t-count", origin="import")


def test_an_imported_definition_is_history_not_a_version_an_operator_can_run() -> None:
    olga = client("olga", "operator")
    imported = _import_a_changed_code_graph(olga)
    body = {"graph": "t-count", "version": imported.version, "input": {"target": 1}}
    refused = assert_error(post_json(olga, "/api/runs", body), 403, "forbidden")
    assert "came with an imported run" in refused["message"]
    run = Run.objects.get(graph=imported)
    fork = assert_error(post_json(olga, f"/api/runs/{run.trace_id}/fork", {"step": 0}), 403, "forbidden")
    assert "came with an imported run" in fork["message"]
    assert Run.objects.count() == 1
    assert post_json(client("ada", "admin"), "/api/runs", body).status_code == 201, "an admin may run it"


def test_an_imported_run_forks_onto_a_published_version() -> None:
    olga = client("olga", "operator")
    imported = _import_a_changed_code_graph(olga)
    run = Run.objects.get(graph=imported)
    code = graph_resolve(name="t-count")
    assert code.origin == "code" and code.version < imported.version
    response = post_json(olga, f"/api/runs/{run.trace_id}/fork", {"step": 0, "version": code.version})
    assert response.status_code == 201, response.content


def test_a_newer_imported_version_does_not_make_every_sync_store_the_code_again() -> None:
    imported = _import_a_changed_code_graph(client("olga", "operator"))
    code = graph_resolve(name="t-count")
    for _ in range(3):
        assert graph_resolve(name="t-count").pk == code.pk
    assert Graph.objects.filter(name="t-count", origin="code").count() == 1
    assert code.version < imported.version
