"""The run page's state: Verify and Play only with steps, and one step numbering (by index from 0) in the player,
the Steps fact and the runs list's Steps column, a fork's inherited steps counted the same way."""

from __future__ import annotations

import re

import pytest

from replay.services import run_fork
from runs.services.run_store import step_state
from runs.services.runs import run_start
from tests.helpers import execute, start_and_execute
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _fact(html: str, name: str) -> str:
    found = re.search(rf'<dd data-fact="{name}">(.*?)</dd>', html, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found[1]).strip()


def _position(html: str) -> str:
    found = re.search(r'<output id="step-position"[^>]*>(.*?)</output>', html, re.S)
    assert found is not None
    return found[1]


def test_a_run_with_no_steps_has_verify_and_play_disabled() -> None:
    run = run_start(graph_name="t-count", data={"target": 2}, seed=1)
    html = client_for("viewer").get(f"/runs/{run.trace_id}/").content.decode()
    assert re.search(r'<button type="submit" id="verify-button" disabled>', html)
    assert re.search(r'<button type="button" id="play" disabled>', html)
    assert _position(html) == "No steps yet" and _fact(html, "steps") == "0"


def test_the_player_the_steps_fact_and_the_runs_list_agree() -> None:
    run = start_and_execute("t-count", {"target": 3})
    client = client_for("viewer")
    html = client.get(f"/runs/{run.trace_id}/").content.decode()
    assert re.search(r'<button type="submit" id="verify-button">', html)
    assert re.search(r'<button type="button" id="play">', html)
    assert _position(html) == "Step 2 of steps 0 to 2" and _fact(html, "steps") == "3"
    listed = client.get("/runs/").content.decode()
    row = re.search(rf'<tr[^>]*>\s*<td><a class="mono" href="/runs/{run.trace_id}/".*?</tr>', listed, re.S)
    assert row is not None and '<th scope="col">Steps</th>' in listed
    assert "<td>3</td>" in row[0]


def test_a_fork_counts_the_steps_it_inherits_and_numbers_its_own_after_them() -> None:
    parent = start_and_execute("t-count", {"target": 4})  # steps 0-3
    fork = run_fork(run=parent, step=1, state=step_state(run_id=parent.pk, index=1), role="operator")
    execute(fork)
    fork.refresh_from_db()
    html = client_for("viewer").get(f"/runs/{fork.trace_id}/").content.decode()
    assert _fact(html, "steps") == "4 (2 from the parent)"
    assert _position(html) == "Step 3 of steps 2 to 3 (0 to 1 in the parent)"
