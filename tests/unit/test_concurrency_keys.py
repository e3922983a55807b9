"""Concurrency keys and rate limits (runs.engine.concurrency, runs.services.leases): declared, computed,
enforced in submission order per key, and the graph cap as the key-less case."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from runs.engine import END, graph
from runs.engine.concurrency import MAX_KEY_LENGTH, declaration_problems, key_value
from runs.engine.errors import GraphValidationError
from runs.models import GraphLimit, Run, RunEvent
from runs.selectors import caps_waiting, run_slot_notes, slot_waits
from runs.services import leases
from runs.services.graphs import graph_create_from_json, graph_sync
from runs.services.runs import InvalidInput, run_start
from tests.helpers import drain
from tests.unit.api_fixtures import client_as
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    leases._caps_cache = (0.0, {})
    leases._gated_cache = (0.0, False)


def start(graph_name: str = "k-service", **data: Any) -> Run:
    return run_start(graph_name=graph_name, data=data, seed=1)


def claim_all(owner: str = "w") -> list[int]:
    """Claim (and, for runs in a slot, start) every run that may start now, as workers would."""
    claimed = []
    while (run_id := leases.run_claim_next(owner=owner)) is not None:
        claimed.append(run_id)
    return claimed


def finish(run_id: int) -> None:
    Run.objects.filter(pk=run_id).update(status="COMPLETED", lease_owner="", lease_expires_at=None,
                                         finished_at=timezone.now())


# -- the declaration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "declaration, problem",
    [
        ({"key": "input.service"}, "needs a limit, a rate or both"),
        ({"key": "service", "limit": 1}, "not a dotted path"),
        ({"key": "input.", "limit": 1}, "not a dotted path"),
        ({"key": "input.a b", "limit": 1}, "not a dotted path"),
        ({"key": "input.x", "limit": 0}, "limit must be a whole number"),
        ({"key": "input.x", "limit": True}, "limit must be a whole number"),
        ({"key": "input.x", "limit": 1.5}, "limit must be a whole number"),
        ({"limit": 1, "rate": {"starts": 0, "per_seconds": 1}}, "rate must be"),
        ({"rate": {"starts": 1}}, "rate must be"),
        ({"rate": {"starts": 1, "per_seconds": float("inf")}}, "rate must be"),
        ({"rate": {"starts": 1, "per_seconds": 1, "burst": 2}}, "rate must be"),
        ({"limit": 1, "keys": "input.x"}, "unknown fields ['keys']"),
        ("input.x", "must be an object"),
    ],
)
def test_a_bad_declaration_is_named(declaration: Any, problem: str) -> None:
    assert any(problem in p for p in declaration_problems(declaration)), declaration_problems(declaration)


def test_good_declarations_pass() -> None:
    for declaration in (
        {"key": "input.service", "limit": 1},
        {"key": "input.customer.id", "limit": 3, "rate": {"starts": 10, "per_seconds": 60}},
        {"rate": {"starts": 1, "per_seconds": 0.5}},
        {"key": "input.items.0", "limit": 1},
        None,
    ):
        assert declaration_problems(declaration) == []


def test_a_graph_with_a_bad_declaration_is_refused_at_sync_and_at_json_import(fresh_registry: None) -> None:
    spec = graph("k-bad", entry="k_work", edges=[("k_work", END)], concurrency={"key": "service", "limit": 1},
                 register=False)
    with pytest.raises(GraphValidationError, match="concurrency key 'service' is not a dotted path"):
        graph_sync(spec=spec)
    definition = {"name": "k-json", "entry": "k_work", "nodes": [{"name": "k_work"}],
                  "edges": [{"from": "k_work", "to": END}], "concurrency": {"key": "input.x", "limit": -1}}
    with pytest.raises(GraphValidationError, match="limit must be a whole number"):
        graph_create_from_json(definition=definition)
    definition["concurrency"] = {"key": "input.x", "limit": 2}
    stored, _ = graph_create_from_json(definition=definition)
    assert stored.definition["concurrency"] == {"key": "input.x", "limit": 2}
    assert run_start(graph_name="k-json", data={"x": "a"}).concurrency_key == "k-json:a"


def test_a_graph_without_a_declaration_keeps_its_definition_and_hash() -> None:
    spec = graph("k-plain", entry="k_work", edges=[("k_work", END)], register=False)
    assert "concurrency" not in spec.definition()


# -- the key --------------------------------------------------------------------------------------


def test_the_key_is_the_graph_and_the_value_at_the_path() -> None:
    assert start(service="billing").concurrency_key == "k-service:billing"
    assert start("k-pair", customer={"id": 42}).concurrency_key == "k-pair:42"
    assert start("k-whole").concurrency_key == "k-whole"
    run = start("k-rate", service="s")
    assert (run.concurrency_key, run.concurrency_limit, run.concurrency_rate) == (
        "k-rate:s", None, {"starts": 2, "per_seconds": 60.0})
    assert start("t-count").concurrency_key == ""
    assert key_value("input.flag", {"flag": True}) == "true"
    assert key_value("input.items.1", {"items": ["a", "b"]}) == "b"


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "no value at input.service"),
        ({"service": None}, "not null"),
        ({"service": {"name": "x"}}, "not dict"),
        ({"service": ["x"]}, "not list"),
        ({"service": ""}, "is empty"),
        ({"service": "a\nb"}, "control character"),
        ({"service": "x" * 500}, f"at most {MAX_KEY_LENGTH} are kept"),
    ],
)
def test_an_unusable_key_value_is_invalid_input_naming_the_path_and_nothing_is_written(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        start(**data)
    assert caught.value.errors[0]["path"] == "input.service"
    assert Run.objects.count() == 0


def test_a_nested_key_that_is_absent_halfway_names_where() -> None:
    with pytest.raises(InvalidInput, match=r"no value at input\.customer \("):
        start("k-pair")
    with pytest.raises(InvalidInput, match=r"no value at input\.customer\.id \("):
        start("k-pair", customer={"name": "acme"})
    with pytest.raises(InvalidInput, match=r"no value at input\.customer\.id \("):
        start("k-pair", customer="acme")


def test_odd_characters_are_kept_as_they_are_and_shown_escaped(viewer: Client) -> None:
    odd = "<b>ünï</b> & \"quotes\" :colon: 🚀"
    first, second = start(service=odd), start(service=odd)
    assert first.concurrency_key == f"k-service:{odd}"
    assert claim_all() == [first.pk]
    page = viewer.get("/runs/").content.decode()
    assert "<b>ünï</b>" not in page and "&lt;b&gt;ünï&lt;/b&gt;" in page
    assert run_slot_notes(runs=[Run.objects.select_related("graph").get(pk=second.pk)])[second.pk].startswith(
        "waiting for a slot: 1 of 1 running for key k-service:"
    )


def test_an_override_replaces_the_graph_declaration_and_is_checked() -> None:
    run = run_start(graph_name="t-count", data={"who": "x"}, concurrency={"key": "input.who", "limit": 1})
    assert (run.concurrency_key, run.concurrency_limit) == ("t-count:x", 1)
    with pytest.raises(InvalidInput, match="limit must be a whole number"):
        run_start(graph_name="t-count", data={}, concurrency={"limit": 0})
    with pytest.raises(InvalidInput, match=r"no value at input\.who"):
        run_start(graph_name="t-count", data={}, concurrency={"key": "input.who", "limit": 1})


# -- enforcement ----------------------------------------------------------------------------------


def test_one_run_per_key_at_a_time_oldest_first_and_keys_do_not_block_each_other() -> None:
    a1, b1, a2, b2, a3 = (start(service=s) for s in "ababa")
    free = start("t-count")
    assert claim_all() == [a1.pk, b1.pk, free.pk]
    assert Run.objects.get(pk=a1.pk).status == "RUNNING"  # started under the slot's lock
    finish(a1.pk)
    assert claim_all() == [a2.pk]
    finish(b1.pk)
    finish(a2.pk)
    assert claim_all() == [b2.pk, a3.pk]


def test_a_limit_of_two_runs_two_of_a_key() -> None:
    runs = [start("k-pair", customer={"id": 7}) for _ in range(4)]
    assert claim_all() == [runs[0].pk, runs[1].pk]
    finish(runs[1].pk)
    assert claim_all() == [runs[2].pk]


def test_a_waiting_run_keeps_its_slot() -> None:
    first, second = start(service="x"), start(service="x")
    assert claim_all() == [first.pk]
    Run.objects.filter(pk=first.pk).update(status="WAITING", lease_owner="", lease_expires_at=None)
    assert claim_all() == []
    assert Run.objects.get(pk=second.pk).status == "PENDING"


def test_a_hint_for_a_run_behind_its_key_claims_nothing() -> None:
    first, second = start(service="x"), start(service="x")
    assert not leases.run_claim_hinted(run_id=second.pk, owner="w")
    assert leases.run_claim_hinted(run_id=first.pk, owner="w")
    assert not leases.run_claim_hinted(run_id=second.pk, owner="w")


def test_a_rate_limit_holds_the_next_start_until_a_start_leaves_the_period() -> None:
    runs = [start("k-rate", service="s") for _ in range(3)]
    assert claim_all() == [runs[0].pk, runs[1].pk]
    third = Run.objects.get(pk=runs[2].pk)
    started = Run.objects.get(pk=runs[0].pk).started_at
    assert third.status == "PENDING" and third.not_before == started + dt.timedelta(seconds=60)
    event = RunEvent.objects.get(run=third, kind="rate_limited")
    assert "allows 2 starts per 60 s" in event.message
    assert claim_all() == []  # not busy-polled: not runnable before not_before
    note = run_slot_notes(runs=[Run.objects.select_related("graph").get(pk=third.pk)])[third.pk]
    assert note.startswith("waiting for the rate of key k-rate:s: 2 starts per 60 s; the next at ")
    # the period passes: the oldest start leaves it
    past = timezone.now() - dt.timedelta(seconds=61)
    Run.objects.filter(pk=runs[0].pk).update(started_at=past)
    Run.objects.filter(pk=third.pk).update(not_before=timezone.now())
    assert claim_all() == [third.pk]


def test_branches_of_a_keyed_run_need_no_slot_and_do_not_deadlock() -> None:
    parent = start("k-fan", service="x")
    other = start("k-fan", service="x")
    drain(rounds=50)
    parent.refresh_from_db()
    assert parent.status == "COMPLETED", parent.error
    assert Run.objects.filter(spawned_by=parent, kind="branch", concurrency_key="").count() == 3
    other.refresh_from_db()
    assert other.status == "COMPLETED"


def test_a_child_run_of_its_spawners_key_runs_in_their_slot() -> None:
    parent = start(service="x")
    assert claim_all() == [parent.pk]
    child = run_start(graph_name="k-service", data={"service": "x"},
                      spawn={"kind": Run.KIND_CHILD, "spawned_by": parent, "spawn_step": 0, "spawn_seq": 0})
    other = run_start(graph_name="k-service", data={"service": "y"},
                      spawn={"kind": Run.KIND_CHILD, "spawned_by": parent, "spawn_step": 0, "spawn_seq": 1})
    assert child.concurrency_key == "" and other.concurrency_key == "k-service:y"


def test_a_fork_keeps_the_key_of_the_run_it_forks() -> None:
    from replay.services import run_fork

    run = start("k-two", service="x")
    drain()
    fork = run_fork(run=Run.objects.get(pk=run.pk), step=0, state={"no": "service"}, role="admin")
    assert fork.concurrency_key == "k-two:x"


# -- the graph cap is the key-less case -----------------------------------------------------------


def test_a_graph_cap_is_a_key_less_slot_in_submission_order() -> None:
    GraphLimit.objects.create(graph_name="t-count", max_running=2)
    runs = [start("t-count") for _ in range(4)]
    keyed = start(service="k")
    assert claim_all() == [runs[0].pk, runs[1].pk, keyed.pk]
    assert caps_waiting() == {"t-count": 2}
    finish(runs[0].pk)
    assert claim_all() == [runs[2].pk]


def test_a_graph_cap_overrides_a_key_less_declaration() -> None:
    GraphLimit.objects.create(graph_name="k-whole", max_running=2)
    runs = [start("k-whole") for _ in range(3)]
    assert claim_all() == [runs[0].pk, runs[1].pk]


# -- what the pages and metrics show --------------------------------------------------------------


def test_slot_waits_counts_per_key_and_bounds_the_keys() -> None:
    for s in ("a", "a", "a", "b", "b", "c"):
        start(service=s)
    claim_all()
    waits = {w["key"]: w for w in slot_waits()}
    assert {k: w["waiting"] for k, w in waits.items()} == {"k-service:a": 2, "k-service:b": 1}
    assert waits["k-service:a"]["in_flight"] == 1 and waits["k-service:a"]["limit"] == 1
    assert [w["key"] for w in slot_waits(limit=1)] == ["k-service:a"]


def test_many_keys_each_start_one_run() -> None:
    firsts = [start(service=f"svc-{i}") for i in range(120)]
    seconds = [start(service=f"svc-{i}") for i in range(120)]
    claimed = claim_all()
    assert claimed == [r.pk for r in firsts]
    assert len(slot_waits()) == 50  # bounded
    for r in firsts:
        finish(r.pk)
    assert claim_all() == [r.pk for r in seconds]


def test_the_runs_list_says_why_a_run_waits(viewer: Client) -> None:
    start(service="checkout")
    waiting = start(service="checkout")
    claim_all()
    page = viewer.get("/runs/").content.decode()
    assert "waiting for a slot: 1 of 1 running for key k-service:checkout" in page
    detail = viewer.get(f"/runs/{waiting.trace_id}/").content.decode()
    assert "Queued: waiting for a slot: 1 of 1 running for key k-service:checkout" in detail


def test_metrics_show_runs_waiting_per_key() -> None:
    from tests.unit.test_prometheus_metrics import scrape

    for s in ("a", "a", "a", "b"):
        start(service=s)
    claim_all()
    m = scrape()
    assert m[("cmo_runs_waiting_for_slot", (("graph", "k-service"), ("key", "k-service:a")))] == 2
    assert ("cmo_runs_waiting_for_slot", (("graph", "k-service"), ("key", "k-service:b"))) not in m


def test_the_api_shows_the_key() -> None:
    run = start(service="billing")
    body = client_as("viewer").get(f"/api/runs/{run.trace_id}").json()
    assert body["concurrency_key"] == "k-service:billing"


def test_a_keyed_runs_end_wakes_the_next_run_of_its_key_at_once() -> None:
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.conf import settings

    from runs.services.events import run_transition

    first, second = start(service="wake"), start(service="wake")
    assert claim_all() == [first.pk]
    layer = get_channel_layer()

    async def woken() -> list[int]:
        got = []
        while True:
            try:
                got.append((await asyncio.wait_for(layer.receive(settings.CMO_WORKER_CHANNEL), 0.05))["run_id"])
            except TimeoutError:
                return got

    async_to_sync(woken)()  # what run creation sent
    run_transition(run_id=first.pk, target="COMPLETED", message="done")
    assert second.pk in async_to_sync(woken)()
