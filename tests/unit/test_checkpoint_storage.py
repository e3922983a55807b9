"""Checkpoints store deltas between snapshots, and any step's state is rebuilt exactly."""

from __future__ import annotations

import json

import pytest

from runs.engine.hashing import json_hash
from runs.models import Step
from runs.services.run_store import SNAPSHOT_EVERY, step_state, step_states
from runs.services.runs import run_start
from tests.helpers import execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_large_state_that_changes_a_little_stores_far_less_than_a_snapshot_per_step() -> None:
    steps = 2 * SNAPSHOT_EVERY + 5
    run = start_and_execute("t-grow", {"kb": 100, "steps": steps})
    assert run.status == "COMPLETED", run.error
    rows = Step.objects.filter(run=run)
    assert rows.count() == steps
    snapshots = rows.filter(state_delta__isnull=True).count()
    assert snapshots <= steps // SNAPSHOT_EVERY + 2
    full_size = rows.order_by("-index").first().state_size
    assert full_size > 100_000
    stored = sum(len(json.dumps(r.state)) + len(json.dumps(r.state_delta)) for r in rows)
    assert stored / steps < full_size / 8


def test_every_step_state_is_rebuilt_exactly_from_snapshots_and_deltas() -> None:
    run = start_and_execute("t-grow", {"kb": 5, "steps": SNAPSHOT_EVERY + 10})
    hashes = dict(Step.objects.filter(run=run).values_list("index", "state_hash"))
    for index, expected in hashes.items():
        assert json_hash(step_state(run_id=run.pk, index=index)) == expected
    assert {i: json_hash(s) for i, s in step_states(run_id=run.pk).items()} == hashes
    with pytest.raises(Step.DoesNotExist):
        step_state(run_id=run.pk, index=len(hashes) + 3)


def test_a_run_resumed_by_a_new_worker_continues_from_the_rebuilt_state() -> None:
    run = run_start(graph_name="t-grow", data={"kb": 5, "steps": 12})
    execute(run, owner="first", max_steps=7)  # yields after 7 steps, like a worker stopping
    from runs.services.leases import lease_release

    lease_release(run_id=run.pk, owner="first")
    execute(run, owner="second")
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.state["i"] == 12
    assert len(run.state["log"]) == 12
    assert list(Step.objects.filter(run=run).values_list("index", flat=True)) == list(range(12))
