"""Graph validation: every kind of problem, its message, and nothing stored when invalid."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import tests.graphs_engine
from runs.engine import END, graph
from runs.engine.errors import GraphValidationError
from runs.engine.validation import route, validate_definition
from runs.models import Graph
from runs.services.graphs import graph_create_from_json, graph_sync

pytestmark = pytest.mark.django_db


def valid() -> dict[str, Any]:
    """e_a -> e_b -> END, all nodes registered."""
    return {
        "name": "e-valid",
        "entry": "e_a",
        "nodes": [{"name": "e_a"}, {"name": "e_b"}],
        "edges": [{"from": "e_a", "to": "e_b"}, {"from": "e_b", "to": END}],
    }


def problems_of(definition: Any) -> list[str]:
    with pytest.raises(GraphValidationError) as info:
        validate_definition(definition)
    return info.value.problems


def assert_rejected_and_not_stored(definition: Any, expected: str) -> None:
    before = Graph.objects.count()
    with pytest.raises(GraphValidationError) as info:
        graph_create_from_json(definition=definition)
    assert any(expected in p for p in info.value.problems), info.value.problems
    assert expected in str(info.value)
    assert Graph.objects.count() == before


def test_a_valid_definition_gets_its_defaults_and_is_stored() -> None:
    filled = validate_definition(valid())
    assert filled["description"] == ""
    assert filled["input_schema"] == {"type": "object"}
    assert filled["max_steps"] == 1000
    assert filled["run_timeout"] is None
    stored, created = graph_create_from_json(definition=valid())
    assert created
    assert (stored.name, stored.version, stored.origin) == ("e-valid", 1, Graph.ORIGIN_JSON)
    assert stored.definition == filled
    assert set(stored.node_hashes) == {"e_a", "e_b"}


def test_validation_does_not_change_the_callers_definition() -> None:
    definition = valid()
    snapshot = copy.deepcopy(definition)
    validate_definition(definition)
    assert definition == snapshot


def test_unknown_node() -> None:
    definition = valid()
    definition["nodes"].append({"name": "e_nope"})
    definition["edges"] += [{"from": "e_a", "to": "e_nope", "label": "x"}, {"from": "e_nope", "to": END}]
    message = "unknown node 'e_nope': no function is registered under that name"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_dangling_edge_source() -> None:
    definition = valid()
    definition["edges"].append({"from": "e_ghost", "to": "e_b"})
    message = "dangling edge #2 'e_ghost' -> 'e_b': source 'e_ghost' is not a node of the graph"
    assert message in problems_of(definition)
    assert_rejected_and_not_stored(definition, message)


def test_dangling_edge_target() -> None:
    definition = valid()
    definition["edges"].append({"from": "e_a", "to": "e_ghost", "label": "lost"})
    message = "dangling edge #2 'e_a' -> 'e_ghost': target 'e_ghost' is not a node of the graph"
    assert message in problems_of(definition)
    assert_rejected_and_not_stored(definition, message)


def test_no_path_to_end_from_the_entry() -> None:
    definition = valid()
    definition["edges"] = [{"from": "e_a", "to": "e_b"}, {"from": "e_b", "to": "e_a"}]
    message = "no path to END from the entry 'e_a'"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_no_path_to_end_from_a_node_in_a_closed_loop() -> None:
    definition = valid()
    definition["edges"] = [
        {"from": "e_a", "to": END},
        {"from": "e_a", "to": "e_b", "label": "trap"},
        {"from": "e_b", "to": "e_b"},
    ]
    message = "no path to END from node 'e_b'"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_unreachable_node() -> None:
    definition = valid()
    definition["nodes"].append({"name": "e_c"})
    definition["edges"].append({"from": "e_c", "to": END})
    message = "node 'e_c' is unreachable from the entry 'e_a'"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_duplicate_node_names() -> None:
    definition = valid()
    definition["nodes"].append({"name": "e_a"})
    message = "duplicate node name 'e_a' (2 times)"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_duplicate_edge_labels() -> None:
    definition = valid()
    definition["edges"] = [
        {"from": "e_a", "to": "e_b", "label": "go"},
        {"from": "e_a", "to": END, "label": "go"},
        {"from": "e_b", "to": END},
    ]
    message = "duplicate edge: node 'e_a' has 2 edges labelled 'go', a fan-out that cannot run: END cannot be a branch"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_duplicate_unlabelled_edges() -> None:
    definition = valid()
    definition["edges"].append({"from": "e_b", "to": "e_a", "label": None})
    message = (
        "duplicate edge: node 'e_b' has 2 unlabelled edges, a fan-out that cannot run: END cannot be a branch"
    )
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_node_without_outgoing_edge() -> None:
    definition = valid()
    definition["edges"] = [{"from": "e_a", "to": "e_b"}]
    found = problems_of(definition)
    message = "node 'e_b' has no outgoing edge (add an edge to END to finish there)"
    assert message in found
    assert "no path to END from the entry 'e_a'" in found
    assert_rejected_and_not_stored(definition, message)


def test_entry_that_is_not_a_node() -> None:
    definition = valid()
    definition["entry"] = "e_c"
    message = "entry node 'e_c' is not one of the graph's nodes"
    assert problems_of(definition) == [message]
    assert_rejected_and_not_stored(definition, message)


def test_every_problem_is_reported_not_only_the_first() -> None:
    definition = valid()
    definition["nodes"] += [{"name": "e_a"}, {"name": "e_nope"}]
    definition["edges"] += [{"from": "e_ghost", "to": END}, {"from": "e_nope", "to": END}]
    found = problems_of(definition)
    assert "duplicate node name 'e_a' (2 times)" in found
    assert "unknown node 'e_nope': no function is registered under that name" in found
    assert any("source 'e_ghost'" in p for p in found)
    assert "node 'e_nope' is unreachable from the entry 'e_a'" in found
    with pytest.raises(GraphValidationError) as info:
        validate_definition(definition)
    assert info.value.graph_name == "e-valid"
    assert str(info.value).startswith("graph 'e-valid' is invalid: ")
    assert str(info.value).count("; ") == len(found) - 1


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("edges"), "at $: 'edges' is a required property"),
        (lambda d: d.update(colour="blue"), "at $: Additional properties are not allowed ('colour' was unexpected)"),
        (lambda d: d.update(name="has space"), "at $.name: 'has space' does not match"),
        (lambda d: d.update(nodes=[]), "at $.nodes: [] should be non-empty"),
        (lambda d: d.update(max_steps=0), "at $.max_steps: 0 is less than the minimum of 1"),
        (lambda d: d.update(run_timeout=0), "at $.run_timeout: 0 is less than or equal to the minimum of 0"),
        (lambda d: d["nodes"][0].update(timeout=-1), "at $.nodes[0].timeout: -1 is less than or equal to the minimum"),
        (
            lambda d: d["nodes"][1].update(retry={"max_attempts": 0}),
            "at $.nodes[1].retry.max_attempts: 0 is less than the minimum of 1",
        ),
        (
            lambda d: d["nodes"][1].update(retry={"tries": 3}),
            "at $.nodes[1].retry: Additional properties are not allowed ('tries' was unexpected)",
        ),
        (lambda d: d["edges"][0].pop("to"), "at $.edges[0]: 'to' is a required property"),
        (lambda d: d["edges"][1].update(label=7), "at $.edges[1].label: 7 is not of type 'string', 'null'"),
        (lambda d: d.update(input_schema="object"), "at $.input_schema: 'object' is not of type 'object'"),
    ],
)
def test_bad_shape_is_reported_with_its_json_path(mutate: Any, expected: str) -> None:
    definition = valid()
    mutate(definition)
    found = problems_of(definition)
    assert any(p.startswith(expected) for p in found), found
    assert_rejected_and_not_stored(definition, expected)


def test_a_definition_that_is_not_an_object() -> None:
    found = problems_of(["e_a", "e_b"])
    assert found == ["at $: ['e_a', 'e_b'] is not of type 'object'"]
    with pytest.raises(GraphValidationError) as info:
        validate_definition(["e_a"])
    assert info.value.graph_name == "?"
    assert_rejected_and_not_stored("not a graph", "is not of type 'object'")


def test_shape_errors_are_sorted_by_path() -> None:
    definition = valid()
    definition["nodes"][1]["timeout"] = 0
    definition["max_steps"] = -5
    found = problems_of(definition)
    assert [p.split(":")[0] for p in found] == ["at $.max_steps", "at $.nodes[1].timeout"]


def test_invalid_input_schema() -> None:
    definition = valid()
    definition["input_schema"] = {"type": "nonsense"}
    found = problems_of(definition)
    assert len(found) == 1
    assert found[0].startswith("input_schema is not a valid JSON Schema: ")
    assert "nonsense" in found[0]
    assert_rejected_and_not_stored(definition, "input_schema is not a valid JSON Schema")


def test_a_valid_input_schema_is_kept() -> None:
    definition = valid()
    definition["input_schema"] = {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}
    assert validate_definition(definition)["input_schema"] == definition["input_schema"]


def test_a_code_graph_naming_an_unregistered_node_is_not_stored() -> None:
    spec = graph(
        "e-unregistered", entry="e_a", edges=[("e_a", "e_unregistered"), ("e_unregistered", END)], register=False
    )
    before = Graph.objects.count()
    with pytest.raises(GraphValidationError) as info:
        graph_sync(spec=spec)
    assert info.value.problems == ["unknown node 'e_unregistered': no function is registered under that name"]
    assert Graph.objects.count() == before


def test_the_code_graphs_of_the_engine_tests_are_valid() -> None:
    from runs.engine.graph import GRAPHS

    names = [g.name for g in GRAPHS.all() if g.name.startswith("e-")]
    assert len(names) > 20
    for name in names:
        spec = GRAPHS.get(name)
        assert spec is not None
        validate_definition(spec.definition())


class TestRoute:
    definition = {
        "edges": [
            {"from": "e_a", "to": "e_b", "label": "to_b"},
            {"from": "e_a", "to": "e_c", "label": None},
            {"from": "e_b", "to": END, "label": "done"},
            {"from": "e_c", "to": END},
        ]
    }

    def test_a_label_selects_its_edge(self) -> None:
        assert route(self.definition, "e_a", "to_b") == "e_b"
        assert route(self.definition, "e_b", "done") == END

    def test_no_label_or_an_unknown_label_falls_back_to_the_unlabelled_edge(self) -> None:
        assert route(self.definition, "e_a", None) == "e_c"
        assert route(self.definition, "e_a", "something-else") == "e_c"
        assert route(self.definition, "e_c", "anything") == END

    def test_an_unknown_label_without_a_fallback_is_an_error_naming_the_labels(self) -> None:
        with pytest.raises(ValueError) as info:
            route(self.definition, "e_b", "nowhere")
        assert str(info.value) == "node 'e_b' returned edge 'nowhere' but its edges are labelled ['done']"


# -- fan-out and joins ---------------------------------------------------------------------------------------

import tests.graphs_composition  # noqa: E402,F401 - registers the c_ nodes


def _fan_out(join: dict[str, Any] | None, *, meet: bool = True) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"name": "c_start"}, {"name": "c_ask_a"}, {"name": "c_ask_b"}, {"name": "c_merge"}]
    if join is not None:
        nodes[3]["join"] = join
    edges = [
        {"from": "c_start", "to": "c_ask_a"},
        {"from": "c_start", "to": "c_ask_b"},
        {"from": "c_ask_a", "to": "c_merge"},
        {"from": "c_ask_b", "to": "c_merge" if meet else END},
        {"from": "c_merge", "to": END},
    ]
    return {"name": "c-json-fan", "entry": "c_start", "nodes": nodes, "edges": edges}


def test_a_json_fan_out_with_a_join_is_valid() -> None:
    filled = validate_definition(_fan_out({"reducers": {"answers": "append"}}))
    assert filled["nodes"][3]["join"] == {"reducers": {"answers": "append"}}


def test_a_fan_out_whose_branches_do_not_meet_at_a_join_is_refused_naming_them() -> None:
    for definition in (_fan_out(None), _fan_out({"reducers": {}}, meet=False)):
        [problem] = problems_of(definition)
        assert problem.startswith("duplicate edge: node 'c_start' has 2 unlabelled edges, a fan-out that cannot run")
        assert "c_ask_a -> " in problem and "c_ask_b -> " in problem
        assert_rejected_and_not_stored(definition, "a fan-out that cannot run")


def test_a_join_with_an_unknown_reducer_or_mode_is_refused() -> None:
    message = "join node 'c_merge': reducer 'average' for key 'answers' is not one of append, collect, merge, sum"
    assert problems_of(_fan_out({"reducers": {"answers": "average"}}))[0].startswith(message)
    assert_rejected_and_not_stored(_fan_out({"reducers": {"answers": "average"}}), "reducer 'average'")
    assert "mode" in problems_of(_fan_out({"mode": "most"}))[0]
