"""Graph versions: same code, same version; a change makes a new one; runs keep theirs."""

from __future__ import annotations

import re
from typing import Any

import pytest

import tests.graphs_engine  # noqa: F401 - registers the e_ nodes
from runs.engine import END, graph, node
from runs.engine.graph import GRAPHS, NODES, source_hash
from runs.models import Graph
from runs.services.graphs import graph_create_from_json, graph_resolve, graph_sync, graph_sync_all
from runs.services.runs import run_start
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)


def test_syncing_the_same_code_twice_keeps_one_version() -> None:
    spec = GRAPHS.get("e-two-step")
    assert spec is not None
    first, created = graph_sync(spec=spec)
    again, created_again = graph_sync(spec=spec)
    assert created and not created_again
    assert again.pk == first.pk
    assert first.version == 1
    assert first.origin == Graph.ORIGIN_CODE
    assert first.node_hashes == {"e_a": NODES.get("e_a").source_hash, "e_b": NODES.get("e_b").source_hash}  # type: ignore[union-attr]
    assert Graph.objects.filter(name="e-two-step").count() == 1


def test_a_code_graph_is_validated_once_per_process_not_on_every_run_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from runs.services import graphs

    calls: list[str] = []
    real = graphs.validate_definition
    monkeypatch.setattr(graphs, "_SYNCED", {})
    monkeypatch.setattr(graphs, "validate_definition", lambda d, *a: calls.append(d["name"]) or real(d, *a))
    for _ in range(3):
        graph_resolve(name="e-two-step")
    assert calls == ["e-two-step"]
    Graph.objects.all().delete()  # a flushed database: the memo does not stand in for the row
    assert graph_resolve(name="e-two-step").version == 1
    assert calls == ["e-two-step"]


def test_sync_all_is_idempotent() -> None:
    first = graph_sync_all()
    assert {g.name for g, _ in first} >= {"e-two-step", "t-count"}
    count = Graph.objects.count()
    second = graph_sync_all()
    assert not any(created for _, created in second)
    assert Graph.objects.count() == count
    assert [g.pk for g, _ in first] == [g.pk for g, _ in second]


def test_starting_runs_resolves_the_code_graph_without_new_versions() -> None:
    one = run_start(graph_name="e-two-step", data={})
    two = run_start(graph_name="e-two-step", data={})
    assert one.graph_id == two.graph_id
    assert Graph.objects.filter(name="e-two-step").count() == 1


def test_a_changed_definition_makes_a_new_version_and_old_runs_keep_theirs(fresh_registry: None) -> None:
    graph("e-evolving", entry="e_a", edges=[("e_a", END)])
    old_run = run_start(graph_name="e-evolving", data={})
    assert old_run.graph.version == 1

    graph("e-evolving", entry="e_a", edges=[("e_a", "e_b"), ("e_b", END)])
    new_run = run_start(graph_name="e-evolving", data={})
    assert new_run.graph.version == 2
    assert Graph.objects.filter(name="e-evolving").count() == 2
    v1, v2 = Graph.objects.filter(name="e-evolving").order_by("version")
    assert v1.definition_hash != v2.definition_hash
    assert v1.node_hashes == {"e_a": NODES.get("e_a").source_hash}  # type: ignore[union-attr]

    old_run.refresh_from_db()
    assert old_run.graph_id == v1.pk
    execute(old_run)
    execute(new_run)
    old_run.refresh_from_db()
    new_run.refresh_from_db()
    assert old_run.status == new_run.status == "COMPLETED"
    assert old_run.state == {"visited": ["e_a"]}, "the old run must follow the definition it started on"
    assert new_run.state == {"visited": ["e_a", "e_b"]}
    assert old_run.graph.version == 1


def test_a_changed_setting_makes_a_new_version(fresh_registry: None) -> None:
    graph("e-settings", entry="e_a", edges=[("e_a", END)], max_steps=10)
    first = graph_resolve(name="e-settings")
    graph("e-settings", entry="e_a", edges=[("e_a", END)], max_steps=11)
    second = graph_resolve(name="e-settings")
    assert (first.version, second.version) == (1, 2)
    assert second.definition["max_steps"] == 11
    graph("e-settings", entry="e_a", edges=[("e_a", END)], max_steps=10)
    third = graph_resolve(name="e-settings")
    # Going back to an older definition gets that version back: a rollback, or an old release's worker
    # restarting during a rolling deploy, does not mint a new number for code that already has one.
    assert third.version == 1 and third.pk == first.pk
    assert Graph.objects.filter(name="e-settings").count() == 2


def test_a_changed_node_source_makes_a_new_version(fresh_registry: None) -> None:
    @node("e_tmp_versioned")
    def e_tmp_versioned(state: dict[str, Any], ctx: Any) -> Any:
        return ctx.result({**state, "v": 1})

    graph("e-code-change", entry="e_tmp_versioned", edges=[("e_tmp_versioned", END)])
    first = graph_resolve(name="e-code-change")
    old_hash = source_hash(e_tmp_versioned)
    assert first.node_hashes == {"e_tmp_versioned": old_hash}
    definition_before = first.definition

    @node("e_tmp_versioned")  # the same node, edited
    def e_tmp_versioned(state: dict[str, Any], ctx: Any) -> Any:
        return ctx.result({**state, "v": 2})

    second = graph_resolve(name="e-code-change")
    assert second.version == 2
    assert second.definition == definition_before, "only the code changed"
    assert second.node_hashes["e_tmp_versioned"] != old_hash
    assert second.node_hashes["e_tmp_versioned"] == source_hash(e_tmp_versioned)
    assert graph_resolve(name="e-code-change").pk == second.pk


def test_a_node_name_cannot_be_taken_by_another_function(fresh_registry: None) -> None:
    def elsewhere(state: Any, ctx: Any) -> Any:
        return state

    elsewhere.__qualname__ = "Somewhere.else_entirely"
    with pytest.raises(ValueError, match=re.escape("node name 'e_a' is already registered by tests.graphs_engine.e_a")):
        node("e_a")(elsewhere)
    assert NODES.get("e_a").fn.__name__ == "e_a"  # type: ignore[union-attr]


def test_runs_can_start_on_an_older_version(fresh_registry: None) -> None:
    graph("e-pinned", entry="e_a", edges=[("e_a", END)])
    graph_resolve(name="e-pinned")
    graph("e-pinned", entry="e_a", edges=[("e_a", "e_c"), ("e_c", END)])
    assert run_start(graph_name="e-pinned", data={}).graph.version == 2
    pinned = run_start(graph_name="e-pinned", version=1, data={})
    assert pinned.graph.version == 1
    execute(pinned)
    pinned.refresh_from_db()
    assert pinned.state == {"visited": ["e_a"]}


def test_json_graphs_are_versioned_by_content_not_key_order() -> None:
    definition = {
        "name": "e-json-versioned",
        "entry": "e_a",
        "nodes": [{"name": "e_a"}],
        "edges": [{"from": "e_a", "to": END}],
    }
    first, created = graph_create_from_json(definition=definition)
    reordered = {key: definition[key] for key in reversed(list(definition))}
    same, created_again = graph_create_from_json(definition=reordered)
    assert created and not created_again
    assert same.pk == first.pk

    changed = {**definition, "description": "now documented"}
    second, created_changed = graph_create_from_json(definition=changed)
    assert created_changed
    assert second.version == 2
    assert graph_resolve(name="e-json-versioned").pk == second.pk
    assert graph_resolve(name="e-json-versioned", version=1).pk == first.pk


def test_resolving_a_missing_version_names_the_versions() -> None:
    graph_sync(spec=GRAPHS.get("e-two-step"))  # type: ignore[arg-type]
    with pytest.raises(Graph.DoesNotExist) as info:
        graph_resolve(name="e-two-step", version=5)
    assert str(info.value) == "graph 'e-two-step' has no version 5; versions: [1]"
