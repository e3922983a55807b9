"""Replay: steps, --to, verify (with causes), compare, fork and trace bundles."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

import tests.graphs_replay as graphs_replay
from replay.bundles import BundleError, bundle_export, bundle_import
from replay.services import ReplayError, run_compare, run_fork, run_verify
from runs.engine import node
from runs.engine.graph import NODES
from runs.engine.hashing import json_hash
from runs.models import Graph, Run
from runs.services.run_store import step_state
from tests.helpers import execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "r_pipeline.json"


@pytest.fixture(autouse=True)
def knobs() -> Iterator[dict[str, Any]]:
    saved = dict(graphs_replay.REPLAY_KNOBS)
    yield graphs_replay.REPLAY_KNOBS
    graphs_replay.REPLAY_KNOBS.clear()
    graphs_replay.REPLAY_KNOBS.update(saved)


def pipeline(seed: int = 7, rounds: int = 3, topic: str = "disks") -> Run:
    run = start_and_execute("r-pipeline", {"topic": topic, "rounds": rounds}, seed=seed)
    assert run.status == "COMPLETED", run.error
    return run


def test_verify_passes_on_an_unchanged_run() -> None:
    report = run_verify(run=pipeline())
    assert report.ok, report.first_divergence
    assert [c.status for c in report.steps] == ["match"] * 6
    out = io.StringIO()
    call_command("replay", "--trace", report.trace_id, "--verify", stdout=out)
    assert "verified: all 6 steps match" in out.getvalue()


def test_verify_names_changed_code_with_both_source_hashes_and_versions(fresh_registry: None) -> None:
    run = pipeline()
    NODES.unregister("r_end")  # a later deploy replaces the node's code

    @node("r_end")
    def r_end(state: dict[str, Any], ctx: Any) -> Any:  # a later deploy changed the total
        return ctx.result({**state, "total": 2 * sum(state["rolls"])}, output={"total": 2 * sum(state["rolls"])})

    report = run_verify(run=run)
    d = report.first_divergence
    assert not report.ok and d is not None
    assert (d.index, d.node, d.cause) == (5, "r_end", "code_changed")
    code = d.detail["code_changed"]
    assert code["recorded_source_hash"] == run.graph.node_hashes["r_end"]
    assert code["current_source_hash"] != code["recorded_source_hash"]
    assert code["run_graph_version"] == run.graph.version
    assert {"path": "$.total", "before": run.state["total"], "after": 2 * run.state["total"]} in d.detail["diff"]
    with pytest.raises(CommandError, match="divergence at step 5 \\(r_end\\): code_changed"):
        call_command("replay", "--trace", run.trace_id, "--verify", stdout=io.StringIO())


def test_verify_names_a_different_activity_with_both_requests(knobs: dict[str, Any]) -> None:
    run = pipeline()
    knobs["dice_high"] = 20
    d = run_verify(run=run).first_divergence
    assert d is not None and (d.index, d.cause) == (2, "activity_changed")
    assert d.detail["recorded"]["request"] == {"low": 1, "high": 6}
    assert d.detail["requested"]["request"] == {"low": 1, "high": 20}


def test_verify_names_a_non_deterministic_node(knobs: dict[str, Any]) -> None:
    knobs["unrecorded_random"] = True
    run = pipeline()
    d = run_verify(run=run).first_divergence
    assert d is not None and (d.index, d.node, d.cause) == (2, "r_dice", "non_deterministic")
    assert d.detail["diff_between_reexecutions"]


def test_replay_to_step_n_prints_the_state_there() -> None:
    run = pipeline()
    out = io.StringIO()
    call_command("replay", "--trace", run.trace_id, "--to", "3", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["state"] == step_state(run_id=run.pk, index=3)
    assert len(result["state"]["rolls"]) == 2
    with pytest.raises(CommandError, match="has no step 40"):
        call_command("replay", "--trace", run.trace_id, "--to", "40", stdout=io.StringIO())
    table = io.StringIO()
    call_command("replay", "--trace", run.trace_id, "--verbose", stdout=table)
    assert "write_artifact,read_artifact" in table.getvalue()


def test_two_runs_that_diverge_at_step_k_are_reported_at_k(fresh_registry: None) -> None:
    from runs.engine import END, graph

    @node("c_same")
    def c_same(state: dict[str, Any], ctx: Any) -> Any:
        return ctx.result({**state, "i": state.get("i", 0) + 1}, edge="again" if state.get("i", 0) < 4 else "done")

    graph("c-linear", entry="c_same", edges=[("c_same", "c_same", "again"), ("c_same", END, "done")])
    left = start_and_execute("c-linear", {"x": 1})
    right = start_and_execute("c-linear", {"x": 1})
    assert run_compare(left=left, right=right).match_percent == 100.0
    assert run_compare(left=left, right=right).first_divergence is None
    other = run_fork(run=left, step=1, state={**step_state(run_id=left.pk, index=1), "x": 2})
    execute(other)
    report = run_compare(left=left, right=Run.objects.get(pk=other.pk))
    assert report.first_divergence is not None
    assert report.first_divergence.left == 2
    assert {"path": "$.x", "before": 1, "after": 2} in report.first_divergence.diff


def test_a_fork_with_edited_state_runs_from_the_next_step_and_leaves_the_original_untouched() -> None:
    run = pipeline()
    original_steps = list(run.steps.values_list("index", "state_hash"))
    edited = {**step_state(run_id=run.pk, index=3), "rolls": [100, 100]}
    child = run_fork(run=run, step=3, state=edited)
    assert child.parent_id == run.pk and child.parent_step == 3 and child.step_index == 4
    execute(child)
    child.refresh_from_db()
    assert child.status == "COMPLETED"
    assert list(child.steps.values_list("index", flat=True)) == [4, 5]
    assert child.state["rolls"][:2] == [100, 100] and child.state["total"] >= 201
    assert list(run.steps.values_list("index", "state_hash")) == original_steps
    assert run.events.filter(kind="forked", detail__child=child.trace_id).exists()
    assert run_verify(run=child).ok
    with pytest.raises(ReplayError, match="nothing to continue"):
        run_fork(run=run, step=5)
    with pytest.raises(ReplayError, match="has no step 9"):
        run_fork(run=run, step=9)


def test_a_bundle_survives_export_and_import_into_an_empty_database_and_verifies() -> None:
    run = pipeline()
    bundle = json.loads(json.dumps(bundle_export(run=run)))
    Run.objects.all().delete()
    Graph.objects.all().delete()
    imported = bundle_import(bundle=bundle)
    assert imported.trace_id == run.trace_id and imported.status == "COMPLETED"
    assert run_verify(run=imported).ok
    assert json_hash(step_state(run_id=imported.pk, index=5)) == bundle["steps"][5]["state_hash"]
    with pytest.raises(BundleError, match="already exists"):
        bundle_import(bundle=bundle)


def test_a_tampered_or_malformed_bundle_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    bundle = bundle_export(run=pipeline())
    Run.objects.all().delete()
    tampered = json.loads(json.dumps(bundle))
    tampered["steps"][2]["duration_ms"] += 1
    with pytest.raises(BundleError, match="tampered bundle"):
        bundle_import(bundle=tampered)
    malformed = {k: v for k, v in bundle.items() if k != "steps"}
    with pytest.raises(BundleError, match="malformed bundle: at \\$: 'steps' is a required property"):
        bundle_import(bundle=malformed)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(tampered))
    with pytest.raises(CommandError, match="tampered bundle"):
        call_command("import_run", str(path), stdout=io.StringIO())
    assert not Run.objects.exists()


def test_the_committed_fixture_bundle_imports_replays_and_verifies() -> None:
    bundle = json.loads(FIXTURE.read_text())
    assert len(bundle["steps"]) >= 4 and len(bundle["activities"]) >= 5
    out = io.StringIO()
    call_command("import_run", str(FIXTURE), stdout=out)
    trace = bundle["run"]["trace_id"]
    call_command("replay", "--trace", trace, "--verify", stdout=out)
    assert "verified: all" in out.getvalue()
