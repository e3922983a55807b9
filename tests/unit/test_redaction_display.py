"""Secrets a node keeps in its state are masked wherever the UI shows state: the run page, its step
data, diffs and the compare page (the stored state is what the node returned, so replay still holds)."""

from __future__ import annotations

import pytest
from django.test import Client

from runs.diffing import pairs as replay_diff
from runs.diffing import rows as state_diff
from runs.selectors import run_steps_view
from tests.helpers import start_and_execute
from tests.unit.dashboard_fixtures import make_user

pytestmark = pytest.mark.django_db

SECRET = "sk-live-0123456789abcdef"


def test_state_secrets_are_masked_on_the_run_page_and_in_diffs() -> None:
    run = start_and_execute("t-count", {"target": 2, "api_key": SECRET})
    assert run.status == "COMPLETED", run.error
    assert run.state is not None and run.state["api_key"] == SECRET  # stored as the node returned it

    steps = run_steps_view(run=run)
    assert SECRET not in repr(steps)
    assert steps[0]["input"]["api_key"] == "[redacted]"

    client = Client()
    client.force_login(make_user("viewer"))
    page = client.get(f"/runs/{run.trace_id}/").content.decode()
    assert SECRET not in page

    assert state_diff({"api_key": "a"}, {"api_key": SECRET}) == [
        {"op": "changed", "path": "$.api_key", "old": "[redacted]", "new": "[redacted]"}
    ]
    assert replay_diff({"auth": {"password": "x"}}, {"auth": {"password": SECRET}})[0]["after"] == "[redacted]"


@pytest.mark.django_db
def test_the_compare_page_never_carries_a_secret_named_value() -> None:
    left = start_and_execute("t-count", {"target": 2, "api_key": SECRET})
    right = start_and_execute("t-count", {"target": 3, "api_key": SECRET})
    page = Client()
    page.force_login(make_user("viewer"))
    html = page.get("/compare/", {"left": left.trace_id, "right": right.trace_id}).content.decode()
    assert SECRET not in html and "[redacted]" in html
