"""The activity record: a re-executed step gets recorded answers back and repeats no effect."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid

import pytest
from django.utils import timezone

import tests.graphs_engine as ge
from runs.engine.errors import NonDeterminismError
from runs.engine.executor import Outcome
from runs.engine.hashing import json_hash
from runs.engine.stores import ActivityRecord
from runs.models import Activity, Run, RunEvent, Step
from runs.services.run_store import DjangoCheckpointer
from runs.services.runs import run_start
from tests.helpers import OWNER, execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_knobs() -> None:
    ge.reset()


def crash(run: Run) -> None:
    """Execute until the node raises SystemExit: the worker process dies mid-step."""
    with pytest.raises(SystemExit, match="simulated crash"):
        execute(run)
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert run.lease_owner == OWNER


def take_over(run: Run) -> Outcome:
    """The crashed worker's lease expires; another worker claims the run and executes it."""
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    outcome = execute(run, owner="worker-2")
    run.refresh_from_db()
    return outcome


def activity_keys(run: Run) -> list[tuple[int, int, str]]:
    return list(Activity.objects.filter(run=run).order_by("step", "seq").values_list("step", "seq", "type"))


def test_activities_are_recorded_in_order_with_their_responses() -> None:
    run = start_and_execute("e-effects", {"steps": 1}, seed=42)
    assert run.status == "COMPLETED", run.error
    assert ge.EFFECTS["fx"] == 1
    rows = list(Activity.objects.filter(run=run).order_by("seq"))
    assert [(a.step, a.seq, a.type, a.status, a.attempt) for a in rows] == [
        (0, 0, "e_effect", "completed", 1),
        (0, 1, "now", "completed", 1),
        (0, 2, "rand", "completed", 1),
    ]
    assert rows[0].request == {"tag": "fx", "i": 0}
    assert rows[0].request_hash == json_hash({"tag": "fx", "i": 0})
    assert rows[0].response == {"count": 1}
    assert run.state["now"] == rows[1].response
    assert run.state["r"] == rows[2].response == random.Random("42:0:2").random()
    assert rows[0].idempotency_key == f"{run.trace_id}:0:0"


def test_a_step_re_executed_after_a_crash_gets_its_recorded_results_back() -> None:
    ge.E_KNOBS["crash_at_step"] = 0
    run = run_start(graph_name="e-effects", data={"steps": 1}, seed=42)
    crash(run)
    assert ge.EFFECTS["fx"] == 1
    assert run.steps.count() == 0, "the crashed step must not have committed"
    recorded = {a.type: a.response for a in Activity.objects.filter(run=run)}
    assert len(recorded) == 3

    assert take_over(run) == Outcome.COMPLETED
    assert run.status == "COMPLETED", run.error
    assert ge.EFFECTS["fx"] == 1, "the effect ran again on re-execution"
    assert run.state == {"steps": 1, "i": 1, "count": 1, "now": recorded["now"], "r": recorded["rand"]}
    assert len(activity_keys(run)) == 3
    assert RunEvent.objects.filter(run=run, kind="resumed").exists()


def test_a_crash_in_a_later_step_repeats_only_that_steps_node_not_its_effects() -> None:
    ge.E_KNOBS["crash_at_step"] = 1
    run = run_start(graph_name="e-effects", data={"steps": 3}, seed=7)
    crash(run)
    assert ge.EFFECTS["fx"] == 2
    assert list(run.steps.values_list("index", flat=True)) == [0]

    assert take_over(run) == Outcome.COMPLETED
    assert run.status == "COMPLETED", run.error
    assert ge.EFFECTS["fx"] == 3, "one effect per step, none repeated"
    assert run.state["count"] == 3
    assert activity_keys(run) == [(s, q, t) for s in range(3) for q, t in enumerate(["e_effect", "now", "rand"])]


def test_deleting_the_last_step_and_re_executing_reproduces_it_without_effects() -> None:
    run = start_and_execute("e-effects", {"steps": 3}, seed=5)
    assert run.status == "COMPLETED", run.error
    assert ge.EFFECTS["fx"] == 3
    final_state = run.state
    last = Step.objects.get(run=run, index=2)
    final_hash, final_input = last.state_hash, last.input_hash

    # The database as a crash between the last step's activities and its commit leaves it.
    last.delete()
    Run.objects.filter(pk=run.pk).update(
        status="RUNNING", step_index=2, node="e_effects", finished_at=None, lease_owner="", lease_expires_at=None
    )
    assert execute(run, owner="worker-2") == Outcome.COMPLETED
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    assert ge.EFFECTS["fx"] == 3
    assert run.state == final_state
    redone = Step.objects.get(run=run, index=2)
    assert (redone.state_hash, redone.input_hash) == (final_hash, final_input)
    assert Activity.objects.filter(run=run).count() == 9


def test_deleting_every_step_and_re_executing_the_run_reproduces_it_without_effects() -> None:
    run = start_and_execute("e-effects", {"steps": 2}, seed=5)
    assert run.status == "COMPLETED", run.error
    hashes = list(run.steps.order_by("index").values_list("state_hash", flat=True))
    final_state = run.state

    Step.objects.filter(run=run).delete()
    Run.objects.filter(pk=run.pk).update(
        status="RUNNING",
        step_index=0,
        node="e_effects",
        state=run.input,
        finished_at=None,
        lease_owner="",
        lease_expires_at=None,
    )
    assert execute(run, owner="worker-2") == Outcome.COMPLETED
    run.refresh_from_db()
    assert ge.EFFECTS["fx"] == 2
    assert run.state == final_state
    assert list(run.steps.order_by("index").values_list("state_hash", flat=True)) == hashes


def test_a_recorded_failure_is_raised_again_identically_without_redoing_the_effect() -> None:
    ge.E_KNOBS["crash_at_step"] = 0
    run = run_start(graph_name="e-failing-effect", data={})
    crash(run)
    assert ge.EFFECTS["boom"] == 1
    row = Activity.objects.get(run=run)
    assert (row.status, row.error, row.response) == ("failed", "ValueError: boom #1", None)

    assert take_over(run) == Outcome.COMPLETED
    assert ge.EFFECTS["boom"] == 1
    assert run.state == {"message": "e_boom failed: ValueError: boom #1"}


def test_random_numbers_come_from_the_run_seed() -> None:
    first = start_and_execute("t-now-rand", {}, seed=42)
    second = start_and_execute("t-now-rand", {}, seed=42)
    other = start_and_execute("t-now-rand", {}, seed=43)
    assert first.state["r"] == second.state["r"] == random.Random("42:0:1").random()
    assert first.state["k"] == second.state["k"] == random.Random("42:0:2").randint(1, 6)
    assert other.state["r"] == random.Random("43:0:1").random()
    assert other.state["r"] != first.state["r"]
    now = dt.datetime.fromisoformat(first.state["now"])
    assert now.tzinfo is not None
    assert abs((timezone.now() - now).total_seconds()) < 60


def test_secrets_in_a_request_are_redacted_before_they_are_stored() -> None:
    run = start_and_execute("e-secret")
    assert run.status == "COMPLETED", run.error
    row = Activity.objects.get(run=run)
    assert row.request == {"q": 1, "api_key": "[redacted]"}
    assert "s3cret-value" not in json.dumps(row.request)


def test_a_large_response_is_kept_as_a_blob_and_returned_intact() -> None:
    nonce = uuid.uuid4().hex  # a new blob: storage must really be written
    run = start_and_execute("e-big", {"size": 70_000, "nonce": nonce})
    assert run.status == "COMPLETED", run.error
    assert run.state["length"] == 70_032
    assert run.state["head"].startswith(nonce)
    row = Activity.objects.get(run=run)
    assert set(row.response) == {"$blob", "size"}
    loaded = DjangoCheckpointer(owner=OWNER).activities(run.pk, 0)[0]
    assert loaded.response == nonce + "x" * 70_000


def test_the_first_record_at_a_sequence_number_wins() -> None:
    run = run_start(graph_name="e-effects", data={})
    cp = DjangoCheckpointer(owner=OWNER)
    first = ActivityRecord(step=0, seq=0, type="e_effect", request={"a": 1}, request_hash=json_hash({"a": 1}))
    first.response = {"count": 1}
    second = ActivityRecord(step=0, seq=0, type="e_effect", request={"a": 1}, request_hash=json_hash({"a": 1}))
    second.response = {"count": 2}
    assert cp.put_activity(run.pk, first).response == {"count": 1}
    assert cp.put_activity(run.pk, second).response == {"count": 1}
    assert Activity.objects.filter(run=run).count() == 1


# -- non-determinism --------------------------------------------------------------------------


def test_a_re_execution_asking_for_a_different_request_fails_the_step_and_is_not_retried() -> None:
    ge.E_KNOBS["crash_at_step"] = 0
    run = run_start(graph_name="e-nondet", data={})
    crash(run)
    ge.E_KNOBS["nondet_q"] = "b"

    assert take_over(run) == Outcome.FAILED
    assert run.status == "FAILED"
    assert ge.EFFECTS["nondet"] == 1
    recorded = json.dumps({"request": {"q": "a"}, "type": "e_probe"}, sort_keys=True)
    requested = json.dumps({"request": {"q": "b"}, "type": "e_probe"}, sort_keys=True)
    expected = (
        f"non-determinism in run {run.trace_id} at step 0, activity #0: "
        f"recorded {recorded} but the node now requests {requested}"
    )
    assert run.error == expected
    step = run.steps.get()
    assert (step.index, step.attempt, step.error) == (0, 1, expected)
    assert not RunEvent.objects.filter(run=run, kind="retry").exists(), "non-determinism must not be retried"


def test_a_re_execution_asking_for_a_different_activity_type_fails_naming_both() -> None:
    ge.E_KNOBS["crash_at_step"] = 0
    run = run_start(graph_name="e-nondet", data={})
    crash(run)
    ge.E_KNOBS["nondet_kind"] = "e_other"

    assert take_over(run) == Outcome.FAILED
    assert "at step 0, activity #0" in run.error
    assert '"type": "e_probe"' in run.error.split(" but ")[0]
    assert '"type": "e_other"' in run.error.split(" but ")[1]
    assert ge.EFFECTS["nondet"] == 1


def test_a_re_execution_asking_for_the_same_request_replays() -> None:
    ge.E_KNOBS["crash_at_step"] = 0
    run = run_start(graph_name="e-nondet", data={})
    crash(run)
    assert take_over(run) == Outcome.COMPLETED
    assert ge.EFFECTS["nondet"] == 1


def test_non_determinism_error_carries_its_parts() -> None:
    err = NonDeterminismError(trace_id="abc", step=3, seq=1, recorded={"type": "x"}, requested={"type": "y"})
    assert (err.trace_id, err.step, err.seq, err.recorded, err.requested) == ("abc", 3, 1, {"type": "x"}, {"type": "y"})
    expected = (
        'non-determinism in run abc at step 3, activity #1: recorded {"type": "x"} '
        'but the node now requests {"type": "y"}'
    )
    assert str(err) == expected


def test_non_determinism_fails_the_step_even_when_the_node_swallows_the_error() -> None:
    """Like a boundary violation, a detected divergence must not be hidden by ``except Exception``."""
    ge.E_KNOBS["crash_at_step"] = 0
    run = run_start(graph_name="e-nondet-swallow", data={})
    crash(run)
    ge.E_KNOBS["nondet_q"] = "b"

    assert take_over(run) == Outcome.FAILED
    assert run.status == "FAILED"
    assert "non-determinism" in run.error
