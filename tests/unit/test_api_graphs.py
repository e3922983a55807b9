"""The graphs API: list, get, versions, create from JSON (validated, versioned by content)."""

from __future__ import annotations

from typing import Any

import pytest

from runs.services.graphs import graph_resolve
from tests.unit.api_fixtures import assert_error, client_as, post_json

pytestmark = pytest.mark.django_db


def definition(**changes: Any) -> dict[str, Any]:
    return {
        "name": "api-made",
        "entry": "t_count",
        "nodes": [{"name": "t_count"}],
        "edges": [
            {"from": "t_count", "to": "t_count", "label": "again"},
            {"from": "t_count", "to": "__end__", "label": "done"},
        ],
        **changes,
    }


def test_creating_a_graph_from_json_stores_a_version_once_per_content() -> None:
    operator = client_as("operator")
    first = post_json(operator, "/api/graphs", {"definition": definition()})
    assert first.status_code == 201, first.content
    assert first.json()["created"] and first.json()["graph"]["version"] == 1
    assert first.json()["graph"]["origin"] == "json"
    same = post_json(operator, "/api/graphs", {"definition": definition()})
    assert same.status_code == 200 and not same.json()["created"] and same.json()["graph"]["version"] == 1
    changed = post_json(operator, "/api/graphs", {"definition": definition(description="v2")})
    assert changed.status_code == 201 and changed.json()["graph"]["version"] == 2

    viewer = client_as("viewer")
    versions = viewer.get("/api/graphs/api-made/versions").json()
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert viewer.get("/api/graphs/api-made").json()["version"] == 2
    assert viewer.get("/api/graphs/api-made?version=1").json()["description"] == ""
    listed = {g["name"]: g for g in viewer.get("/api/graphs").json()["graphs"]}
    assert listed["api-made"]["latest_version"] == 2 and listed["api-made"]["versions"] == 2


def test_an_invalid_definition_is_a_422_listing_every_problem() -> None:
    bad = definition(entry="missing", nodes=[{"name": "t_count"}, {"name": "not_registered"}])
    body = assert_error(post_json(client_as("operator"), "/api/graphs", {"definition": bad}), 422, "invalid_graph")
    assert len(body["details"]) >= 2 and any("not_registered" in p for p in body["details"])


def test_a_viewer_may_not_create_graphs() -> None:
    assert_error(post_json(client_as("viewer"), "/api/graphs", {"definition": definition()}), 403, "forbidden")


def test_code_graphs_resolve_and_unknown_graphs_are_404s() -> None:
    viewer = client_as("viewer")
    got = viewer.get("/api/graphs/t-count").json()
    assert got["name"] == "t-count" and got["origin"] == "code" and got["definition"]["entry"] == "t_count"
    assert_error(viewer.get("/api/graphs/no-such-graph"), 404, "not_found")
    assert_error(viewer.get("/api/graphs/no-such-graph/versions"), 404, "not_found")
    graph_resolve(name="t-count")
    assert_error(viewer.get("/api/graphs/t-count?version=99"), 404, "not_found")
    assert_error(viewer.get("/api/graphs/t-count?version=0"), 422, "validation_error")
