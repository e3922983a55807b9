"""A rolling deploy with real worker processes on PostgreSQL: runs in flight on v1 are never executed by a
worker with v2's code. They wait, saying for what; one completes when a v1 worker runs again, the other is
moved to v2 at its current step by an operator and completes there; a new run of v2 is never taken by the
v1 worker. The two releases are tests/deploy/v1.py and v2.py (graph t-deploy, node d_step)."""

from __future__ import annotations

import pytest

from runs.models import Graph, Run, RunEvent, Step, WorkerStatus
from runs.services.runs import run_start
from runs.services.versions import run_move_version
from tests.integration.processes import ManagedProcess, wait_for, worker
from tests.unit.api_fixtures import user_with

pytestmark = [pytest.mark.integration]


def _worker(release: str) -> ManagedProcess:
    modules = f"runs.demo,tests.graphs,tests.deploy.{release}"
    return worker("--poll", "0.2", "--lease", "3", env={"CMO_GRAPH_MODULES": modules})


def _steps(run: Run) -> int:
    return Step.objects.filter(run=run).count()


def _marks(run: Run) -> list[str]:
    run.refresh_from_db()
    return list(run.state.get("done", []))


def test_a_rolling_deploy_strands_no_run_and_changes_none_silently(postgres_db: None, redis_url: str) -> None:
    with _worker("v1") as old:
        assert wait_for(lambda: Graph.objects.filter(name="t-deploy").exists(), timeout=20), old.output
        v1 = Graph.objects.get(name="t-deploy")
        waits_v1, moves = (run_start(graph_name="t-deploy", data={"steps": 8, "sleep": 0.2}, seed=s) for s in (1, 2))
        assert wait_for(lambda: _steps(waits_v1) >= 2 and _steps(moves) >= 2, timeout=30), old.output
    # The old release stopped (SIGTERM: its leases released); the new one starts with the node's new code.
    with _worker("v2") as new:
        assert wait_for(lambda: Graph.objects.filter(name="t-deploy").count() == 2, timeout=20), new.output
        v2 = Graph.objects.get(name="t-deploy", version=v1.version + 1)
        held = {r.pk: _steps(r) for r in (waits_v1, moves)}
        said = f"waiting for a worker with t-deploy v{v1.version}"
        assert wait_for(
            lambda: all(said in Run.objects.get(pk=pk).wait_reason for pk in held), timeout=20
        ), new.output
        assert {r.pk: _steps(r) for r in (waits_v1, moves)} == held  # the v2 worker executed nothing of theirs
        assert all(m == "v1" for r in (waits_v1, moves) for m in _marks(r))
        assert wait_for(lambda: any("t-deploy v2" in (w.serves or []) for w in WorkerStatus.objects.all()))
        assert not any("t-deploy v1" in (w.serves or []) for w in WorkerStatus.objects.all())

        # An operator moves one of them to v2 at its current step: the v2 worker completes it.
        at = Run.objects.get(pk=moves.pk).step_index
        run_move_version(run=moves, version=v2.version, user=user_with("deployer", "operator"), role="operator")
        assert wait_for(lambda: Run.objects.get(pk=moves.pk).status == "COMPLETED", timeout=30), new.output
        marks = _marks(moves)
        assert marks == ["v1"] * at + ["v2"] * (8 - at), marks
        moved = RunEvent.objects.get(run=moves, kind="version_moved")
        assert moved.actor == "deployer" and moved.detail == {
            "from_version": v1.version, "to_version": v2.version, "step": at, "node": "d_step"
        }  # fmt: skip

        # A new run starts on v2; the other waits on until a v1 worker is back, side by side with v2's.
        fresh = run_start(graph_name="t-deploy", data={"steps": 4, "sleep": 0.3}, seed=3)
        assert fresh.graph_id == v2.pk
        with _worker("v1") as back:
            done = wait_for(
                lambda: {Run.objects.get(pk=pk).status for pk in (waits_v1.pk, fresh.pk)} == {"COMPLETED"}, timeout=40
            )
            assert done, back.output + new.output
        # The old release found its own version again instead of storing its code as a third one.
        assert Graph.objects.filter(name="t-deploy").count() == 2
    assert _marks(waits_v1) == ["v1"] * 8
    assert _marks(fresh) == ["v2"] * 4
    assert Run.objects.get(pk=waits_v1.pk).wait_reason == ""
