"""A run whose graph version's code is not the code loaded here is not executed by this worker: it is given
back, says what it waits for, and this process's claims skip it; an operator can move it to another version
at its current step (runs.engine.versions, runs.services.versions)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from runs.engine.executor import Outcome
from runs.engine.graph import GRAPHS
from runs.models import AuditEvent, Graph, Run, RunEvent
from runs.services import leases
from runs.services.leases import run_claim
from runs.services.runs import run_start
from runs.services.versions import MoveRefused, move_targets, run_move_version, served_versions
from tests.helpers import OWNER, execute
from tests.unit.api_fixtures import assert_error, client_as, post_json, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_unserved() -> Iterator[None]:
    """The set of versions this process skips is process-wide: each test starts and ends with it empty."""
    leases._unserved.clear()
    yield
    leases._unserved.clear()


def _old_version(name: str = "t-count") -> Graph:
    """A stored version of ``name`` as a worker of other code synced it: one node's source hash differs."""
    current = run_start(graph_name=name, data={"target": 2}, seed=1).graph
    return Graph.objects.create(
        name=name,
        version=current.version + 1,
        definition=current.definition,
        definition_hash="other-code-" + current.definition_hash[:20],
        node_hashes={k: "0" * 64 for k in current.node_hashes},
        origin=Graph.ORIGIN_CODE,
    )


def _run_on(graph: Graph) -> Run:
    return run_start(graph_name=graph.name, version=graph.version, data={"target": 2}, seed=1)


def test_a_run_of_another_versions_code_is_given_back_unexecuted_and_says_what_it_waits_for() -> None:
    old = _old_version()
    run = _run_on(old)
    assert execute(run) is Outcome.NOT_SERVED
    run.refresh_from_db()
    assert run.status == "PENDING" and run.step_index == 0 and run.lease_owner == ""
    waits = f"waiting for a worker with t-count v{old.version}: this worker's code of t_count"
    assert run.wait_reason.startswith(waits)
    (event,) = RunEvent.objects.filter(run=run, kind="version_wait")
    assert event.message == run.wait_reason
    assert not run_claim(run_id=run.pk, owner=OWNER)  # this process's claims skip the version now
    other = run_start(graph_name="t-count", data={"target": 2}, seed=1)
    assert execute(other) is Outcome.COMPLETED  # runs of the loaded code's version are unaffected


def test_a_version_the_loaded_graph_declares_compatible_runs_here() -> None:
    old = _old_version()
    spec = GRAPHS.get("t-count")
    assert spec is not None
    before = spec.compatible_with
    spec.compatible_with = [old.version]
    try:
        run = _run_on(old)
        assert execute(run) is Outcome.COMPLETED
        assert f"t-count v{old.version}" in served_versions(graph_ids=[old.pk])
    finally:
        spec.compatible_with = before
    assert f"t-count v{old.version}" not in served_versions(graph_ids=[old.pk])


def test_an_operator_moves_a_waiting_run_to_the_loaded_version_and_it_completes() -> None:
    old = _old_version()
    run = _run_on(old)
    execute(run)
    current = Graph.objects.filter(name="t-count").exclude(pk=old.pk).order_by("-version").first()
    assert current is not None
    run.refresh_from_db()
    assert move_targets(run=run) == [current.version]
    operator = user_with("mover", "operator")
    moved = run_move_version(run=run, version=current.version, user=operator, role="operator")
    assert moved.graph_id == current.pk and moved.wait_reason == ""
    event = RunEvent.objects.get(run=run, kind="version_moved")
    assert event.actor == "mover" and event.detail["from_version"] == old.version
    assert AuditEvent.objects.filter(action="run_version_moved", target=f"run:{run.trace_id}").exists()
    assert execute(moved) is Outcome.COMPLETED
    moved.refresh_from_db()
    assert moved.status == "COMPLETED" and moved.state["n"] == 2
    with pytest.raises(MoveRefused, match="has ended"):
        run_move_version(run=moved, version=old.version, user=operator, role="operator")


def test_a_move_is_refused_while_a_worker_holds_the_run_or_to_a_version_without_its_node() -> None:
    old = _old_version()
    run = _run_on(old)
    assert run_claim(run_id=run.pk, owner="someone-else")
    current = Graph.objects.filter(name="t-count").exclude(pk=old.pk).order_by("-version").first()
    assert current is not None
    with pytest.raises(MoveRefused, match="someone-else"):
        run_move_version(run=run, version=current.version, user=None, role="admin")
    with pytest.raises(MoveRefused, match="no version 999"):
        run_move_version(run=run, version=999, user=None, role="admin")
    Run.objects.filter(pk=run.pk).update(lease_owner="", lease_expires_at=None, node="not_there")
    run.refresh_from_db()
    with pytest.raises(MoveRefused, match="has no node 'not_there'"):
        run_move_version(run=run, version=current.version, user=None, role="admin")


def test_the_api_and_the_page_move_a_run_for_an_operator_only() -> None:
    old = _old_version()
    run = _run_on(old)
    execute(run)
    current = Graph.objects.filter(name="t-count").exclude(pk=old.pk).order_by("-version").first()
    assert current is not None
    viewer = client_as("viewer")
    assert_error(post_json(viewer, f"/api/runs/{run.trace_id}/move", {"version": current.version}), 403, "forbidden")
    browser = Client()
    browser.force_login(user_with("page-viewer", "viewer"))
    page = browser.get(f"/runs/{run.trace_id}/").content.decode()
    assert "waiting for a worker with t-count" in page and 'id="move-form"' not in page
    browser.force_login(user_with("page-operator", "operator"))
    assert 'id="move-form"' in browser.get(f"/runs/{run.trace_id}/").content.decode()
    operator = client_as("operator")
    assert_error(post_json(operator, f"/api/runs/{run.trace_id}/move", {"version": 999}), 409, "move_refused")
    moved = post_json(operator, f"/api/runs/{run.trace_id}/move", {"version": current.version})
    assert moved.status_code == 200 and moved.json()["version"] == current.version
    again = post_json(operator, f"/api/runs/{run.trace_id}/move", {"version": current.version})
    assert_error(again, 409, "move_refused")


def test_metrics_count_active_runs_per_version() -> None:
    from tests.unit.test_prometheus_metrics import scrape

    old = _old_version()
    _run_on(old)
    m = scrape()
    assert m[("cmo_runs_active_by_version", (("graph", "t-count"), ("status", "PENDING"),
                                             ("version", str(old.version))))] >= 1  # fmt: skip
