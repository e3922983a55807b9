"""Replay on runs with branches and children: verify, compare and fork."""

from __future__ import annotations

import json
from typing import Any

import pytest

from replay.services import ReplayError, run_compare, run_fork, run_verify
from runs.models import Run, Step
from runs.services.runs import run_start
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


def _run(graph: str, data: dict[str, Any], seed: int = 7) -> Run:
    run = run_start(graph_name=graph, data=data, seed=seed)
    drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    return run


def test_verify_re_executes_the_run_its_branches_and_its_children() -> None:
    for graph, data, spawned in (
        ("c-static", {}, 3),
        ("c-dynamic", {"docs": ["a", "bb", "ccc"], "limit": 2}, 3),
        ("c-child", {"targets": [2, 3]}, 2),
    ):
        report = run_verify(run=_run(graph, data))
        assert report.ok, report.as_dict()
        assert len(report.spawned) == spawned and all(r.ok for r in report.spawned)
        assert all(s.status == "match" for s in report.steps)


@pytest.fixture
def knobs() -> Any:
    import tests.graphs_composition as graphs

    saved = dict(graphs.KNOBS)
    yield graphs.KNOBS
    graphs.KNOBS.clear()
    graphs.KNOBS.update(saved)


def test_verify_names_a_fan_out_that_now_sends_different_branches(knobs: dict[str, Any]) -> None:
    run = _run("c-dynamic", {"docs": ["a", "bb"]})
    knobs["extra_send"] = True
    report = run_verify(run=run)
    assert not report.ok
    first = report.first_divergence
    assert first is not None and (first.index, first.cause) == (0, "fanout_changed")
    assert "now sends 3 branches (c_summarize); the run sent 2 branches" in first.detail["message"]


def test_a_divergence_inside_a_branch_fails_the_whole_verification(knobs: dict[str, Any]) -> None:
    run = _run("c-static", {})
    knobs["changed_asker"] = "b"
    report = run_verify(run=run)
    assert not report.ok and report.first_divergence is None, "the run's own steps still match"
    bad = [r for r in report.spawned if not r.ok]
    assert len(bad) == 1 and bad[0].kind == "branch"
    assert bad[0].first_divergence is not None and bad[0].first_divergence.node == "c_ask_b"


def test_compare_pairs_branches_by_their_place_and_children_by_theirs() -> None:
    left = _run("c-dynamic", {"docs": ["a", "bb", "ccc"]})
    right = _run("c-dynamic", {"docs": ["a", "XX", "ccc", "dddd"]})
    report = run_compare(left=left, right=right)
    places = {p.place: p for p in report.spawned}
    assert list(places) == [f"fan-out 1, branch {i} (c_summarize)" for i in range(4)]
    assert places["fan-out 1, branch 0 (c_summarize)"].report.match_percent == 100.0  # type: ignore[union-attr]
    assert places["fan-out 1, branch 1 (c_summarize)"].report.match_percent < 100.0  # type: ignore[union-attr]
    assert places["fan-out 1, branch 3 (c_summarize)"].left is None
    children = run_compare(left=_run("c-child", {"targets": [2]}), right=_run("c-child", {"targets": [3]}))
    assert [p.place for p in children.spawned] == ["child 1 (t-count)"]


def test_a_fork_inside_a_branch_ends_where_the_branch_would() -> None:
    parent = _run("c-static", {})
    branch = Run.objects.filter(spawned_by=parent, spawn_seq=0).get()
    with pytest.raises(ReplayError, match="ended the branch"):
        run_fork(run=branch, step=0)


def test_a_fork_at_the_fan_out_runs_the_branches_anew_and_joins() -> None:
    parent = _run("c-dynamic", {"docs": ["a", "bb"]})
    fork = run_fork(run=parent, step=0)
    assert fork.node == "c_gather"
    branches = Run.objects.filter(spawned_by=fork, kind="branch").order_by("spawn_seq")
    assert [b.input["doc"] for b in branches] == ["a", "bb"]
    drain()
    fork.refresh_from_db()
    assert fork.status == "COMPLETED", fork.error
    assert fork.state["summaries"] == parent.state["summaries"]
    assert run_verify(run=fork).ok


def test_a_static_fork_at_the_fan_out_gives_its_branches_the_edited_state() -> None:
    parent = _run("c-static", {})
    fork = run_fork(run=parent, step=0, state={"answers": ["edited"], "asked": True})
    drain()
    fork.refresh_from_db()
    assert fork.status == "COMPLETED", fork.error
    assert fork.state["answers"] == ["edited", "a says yes", "b says yes", "c says yes"]


def test_a_fork_after_the_join_continues_from_the_joined_state() -> None:
    parent = _run("c-static-then", {})
    join_step = Step.objects.get(run=parent, node="c_merge").index
    fork = run_fork(run=parent, step=join_step)
    assert fork.node == "c_after" and not Run.objects.filter(spawned_by=fork).exists()
    drain()
    fork.refresh_from_db()
    assert fork.status == "COMPLETED"
    assert fork.state == parent.state
    with pytest.raises(ReplayError, match="ended the run"):
        run_fork(run=parent, step=join_step + 1)


# -- trace bundles ----------------------------------------------------------------------------------------


def _reseal(bundle: dict[str, Any]) -> dict[str, Any]:
    from runs.engine.hashing import json_hash

    body = {k: v for k, v in bundle.items() if k != "sha256"}
    return {**body, "sha256": json_hash(body)}


def _exported_tree(graph: str, data: dict[str, Any]) -> tuple[dict[str, Any], str, int]:
    import json

    from replay.bundles import bundle_export

    run = _run(graph, data)
    bundle = json.loads(json.dumps(bundle_export(run=run, spawned=True)))
    spawned = Run.objects.filter(spawned_by=run).count()
    Run.objects.filter(pk=run.pk).delete()  # its spawned runs go with it (CASCADE)
    assert not Run.objects.exists()
    return bundle, run.trace_id, spawned


def test_a_bundle_with_its_branches_and_children_imports_as_one_tree_that_verifies() -> None:
    from replay.bundles import bundle_import

    bundle, trace, spawned = _exported_tree("c-child", {"graph": "c-static", "targets": [0]})
    assert bundle["format_version"] == 3 and len(bundle["spawned"]) == spawned == 1
    assert len(bundle["spawned"][0]["spawned"]) == 3, "the child's branches are nested in the child's bundle"
    run = bundle_import(bundle=bundle)
    assert run.trace_id == trace and Run.objects.count() == 5
    [child] = Run.objects.filter(spawned_by=run)
    assert child.kind == "child" and Run.objects.filter(spawned_by=child, kind="branch").count() == 3
    assert all(r.until_node == "c_merge" for r in Run.objects.filter(spawned_by=child))
    report = run_verify(run=run)
    assert report.ok and len(report.spawned) == 1 and len(report.spawned[0].spawned) == 3


def test_a_branch_imported_alone_is_not_attached_to_a_run_that_lives_here() -> None:
    import json

    from replay.bundles import bundle_export, bundle_import

    parent = _run("c-static", {})
    branch = Run.objects.filter(spawned_by=parent, spawn_seq=1).get()
    bundle = json.loads(json.dumps(bundle_export(run=branch)))
    branch.delete()
    imported = bundle_import(bundle=bundle)
    assert imported.spawned_by is None and imported.kind == "run"
    assert imported.until_node == "c_merge", "a fork of it still ends before the join"


def test_a_nested_bundle_that_names_another_parent_or_place_is_refused_and_nothing_is_written() -> None:
    from replay.bundles import BundleError, bundle_import

    bundle, _, _ = _exported_tree("c-static", {})
    forged = json.loads(json.dumps(bundle))
    forged["spawned"][1]["run"]["spawned_by_trace_id"] = "f" * 32
    forged["spawned"][1] = _reseal(forged["spawned"][1])
    with pytest.raises(BundleError, match="names ffff"):
        bundle_import(bundle=_reseal(forged))
    twice = json.loads(json.dumps(bundle))
    twice["spawned"][2]["run"]["spawn_seq"] = 0
    twice["spawned"][2] = _reseal(twice["spawned"][2])
    with pytest.raises(BundleError, match="claim the same place"):
        bundle_import(bundle=_reseal(twice))
    tampered = json.loads(json.dumps(bundle))
    tampered["spawned"][0]["steps"][0]["output_hash"] = "0" * 64
    with pytest.raises(BundleError):
        bundle_import(bundle=_reseal(tampered))
    assert not Run.objects.exists()
