"""The step inspector fragment (GET /runs/<trace id>/steps/<index>/inspector/): the run page's player swaps it in
when it moves, so it is exactly the inspector the run page renders for that step, for the same roles, with the
same masking; a step the run does not have is 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from replay.services import run_fork
from runs.models import Run
from runs.services.runs import run_start
from tests.helpers import execute, start_and_execute
from tests.unit.dashboard_fixtures import PASSWORD, client_for

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-live-0123456789abcdef"
INSPECTOR = re.compile(r'<div id="inspector" data-fragment="(?P<url>[^"]+)">(?P<html>.*?)</div>\n</section>', re.S)


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


def fragment(client: Client, run: Run, index: int) -> str:
    response = client.get(f"/runs/{run.trace_id}/steps/{index}/inspector/")
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def page_inspector(client: Client, run: Run, index: int) -> str:
    match = INSPECTOR.search(client.get(f"/runs/{run.trace_id}/?step={index}").content.decode())
    assert match is not None
    assert match["url"] == reverse("runs:step_inspector", args=[run.trace_id, 0])
    return match["html"]


def test_the_fragment_is_the_inspector_the_run_page_renders_for_each_step(viewer: Client) -> None:
    run = start_and_execute("t-now-rand", {})
    counted = start_and_execute("t-count", {"target": 3})
    assert reverse("runs:step_inspector", args=[counted.trace_id, 2]) == f"/runs/{counted.trace_id}/steps/2/inspector/"
    for index in (0, 1, 2):
        html = fragment(viewer, counted, index)
        assert html == page_inspector(viewer, counted, index)
        assert f'<h3 id="step-title">Step {index} · t_count</h3>' in html and "<html" not in html
    assert 'id="step-diff"' in html and "$.n" in html and 'id="step-hashes"' in html
    with_activities = fragment(viewer, run, 0)
    assert with_activities == page_inspector(viewer, run, 0)
    assert "<td>now</td>" in with_activities and "<td>rand</td>" in with_activities


def test_a_later_step_of_a_long_run_reads_on_from_the_step_before_it(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = start_and_execute("t-count", {"target": 40})  # snapshots every 32 steps, deltas between
    expected = page_inspector(viewer, run, 37)

    def every_state(**kwargs: Any) -> Any:
        raise AssertionError("a later step reconstructed every state of the run")

    monkeypatch.setattr("runs.selectors.step_states", every_state)
    html = fragment(viewer, run, 37)
    assert html == expected and "&quot;n&quot;: 38" in html
    counts = []
    for index in (3, 37):
        with CaptureQueriesContext(connection) as queries:
            fragment(viewer, run, index)
        counts.append(len(queries))
    assert counts[0] == counts[1]  # the same few reads wherever the step is


def test_a_forks_first_own_step_has_the_state_it_was_forked_with_as_its_input(viewer: Client) -> None:
    parent = start_and_execute("t-count", {"target": 5})
    child = run_fork(run=parent, step=1, state={"n": 2, "target": 5, "edited": True}, version=parent.graph.version)
    execute(child)
    child.refresh_from_db()
    assert child.status == "COMPLETED", child.error
    first = fragment(viewer, child, 2)
    assert first == page_inspector(viewer, child, 2)
    inputs = re.search(r'<pre class="mono json" id="step-input"[^>]*>(.*?)</pre>', first, re.S)
    assert inputs is not None and "&quot;edited&quot;: true" in inputs[1]
    assert fragment(viewer, child, 4) == page_inspector(viewer, child, 4)
    # the fork's steps up to its fork step are its parent's: the fork itself has none of them
    assert viewer.get(f"/runs/{child.trace_id}/steps/1/inspector/").status_code == 404


def test_a_step_or_run_that_does_not_exist_is_404_and_only_get_is_allowed(viewer: Client) -> None:
    run = start_and_execute("t-count", {"target": 2})
    assert viewer.get(f"/runs/{run.trace_id}/steps/2/inspector/").status_code == 404
    assert viewer.get(f"/runs/{run.trace_id}/steps/-1/inspector/").status_code == 404
    assert viewer.get("/runs/0123456789abcdef0123456789abcdef/steps/0/inspector/").status_code == 404
    pending = run_start(graph_name="t-count", data={"target": 2}, seed=1)
    assert viewer.get(f"/runs/{pending.trace_id}/steps/0/inspector/").status_code == 404
    assert viewer.post(f"/runs/{run.trace_id}/steps/0/inspector/").status_code == 405


def test_the_fragment_needs_a_sign_in_and_any_role_may_view_it() -> None:
    run = start_and_execute("t-count", {"target": 2})
    url = f"/runs/{run.trace_id}/steps/0/inspector/"
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    User.objects.create_user("nobody", password=PASSWORD)  # in no group: a viewer
    client = Client()
    assert client.login(username="nobody", password=PASSWORD)
    assert client.get(url).status_code == 200
    for role in ("operator", "approver", "admin"):
        assert client_for(role).get(url).status_code == 200


def test_the_fragment_masks_secret_named_fields_and_escapes_what_users_typed(viewer: Client) -> None:
    run = start_and_execute("t-count", {"target": 2, "api_key": SECRET, "note": "<script>alert(1)</script>"})
    assert run.state is not None and run.state["api_key"] == SECRET  # stored as the node returned it
    for index in (0, 1):
        html = fragment(viewer, run, index)
        assert SECRET not in html and "&quot;api_key&quot;: &quot;[redacted]&quot;" in html
        assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert html == page_inspector(viewer, run, index)
