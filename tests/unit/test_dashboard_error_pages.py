"""The error pages: 403, 404 and 500 in the site's layout, saying why; no traceback logged for a 403; no server
paths in a displayed run error."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from unittest import mock

import pytest
from django.conf import settings
from django.test import override_settings

from runs.engine import statemachine as sm
from runs.models import Run
from runs.selectors import shown_error
from runs.services.runs import run_start
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_INPUT = {"service": "checkout", "symptom": "slow", "severity": "high"}
NAV = 'aria-label="Main"'


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What the console handler (settings.LOGGING, with its filters) writes for django.request."""
    handler = next(h for h in logging.getLogger("django").handlers if isinstance(h, logging.StreamHandler))
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(old)  # type: ignore[arg-type]


def test_a_viewers_403_keeps_the_navigation_and_says_which_action_the_role_lacks(server_log: io.StringIO) -> None:
    response = client_for("viewer").get("/runs/new/")
    html = response.content.decode()
    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
    assert "You cannot do this: your role does not allow operate." in html
    assert NAV in html and "Sign out" in html and "role <strong>viewer</strong>" in html
    logged = server_log.getvalue()
    assert "Forbidden (Permission denied): /runs/new/" in logged
    assert "Traceback" not in logged and "PermissionDenied" not in logged


def test_an_approval_refused_to_a_viewer_says_why() -> None:
    response = client_for("viewer").post("/approvals/1/decide/", {"decision": "approve"})
    assert response.status_code == 403
    assert "your role does not allow approve" in response.content.decode()


@override_settings(DEBUG=False)
def test_a_missing_page_is_the_styled_404_with_the_navigation() -> None:
    response = client_for("viewer").get("/no-such-page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert "Not found" in html and NAV in html and "There is no page at <code>/no-such-page/</code>" in html
    assert "URLconf" not in html and "Resolver404" not in html


@override_settings(DEBUG=False)
def test_a_missing_graph_says_which() -> None:
    response = client_for("viewer").get("/graphs/nope/")
    assert response.status_code == 404
    assert "No graph named nope." in response.content.decode()


@override_settings(DEBUG=True)
def test_an_unknown_run_is_the_styled_404_even_with_debug_on() -> None:
    response = client_for("viewer").get("/runs/" + "f" * 32 + "/")
    html = response.content.decode()
    assert response.status_code == 404
    assert f"There is no run {'f' * 32}." in html and NAV in html and "technical" not in html.lower()


@override_settings(DEBUG=False)
def test_a_server_error_is_the_styled_500_not_the_debug_page() -> None:
    client = client_for("viewer")
    client.raise_request_exception = False
    with mock.patch("runs.views.selectors.graph_summaries", side_effect=RuntimeError("boom /work/secret")):
        response = client.get("/graphs/")
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in html and "cmo.css" in html
    assert "boom" not in html and "Traceback" not in html


def test_an_error_shows_no_directory_of_the_server() -> None:
    project_file = f'File "{settings.BASE_DIR}/runs/demo.py", line 115'
    library = f"{sys.prefix}/lib/python3.11/site-packages/httpx/_client.py:42"
    assert (
        shown_error(f"node 'x' raised OSError: {project_file}") == "node 'x' raised OSError: File \"demo.py\", line 115"
    )
    assert shown_error(f"at {library}") == "at _client.py:42"
    assert shown_error("node 'x' raised KeyError: 'a' (in runs.demo.x, line 3)") == (
        "node 'x' raised KeyError: 'a' (in runs.demo.x, line 3)"
    )
    assert shown_error("") == ""


def test_the_run_page_and_its_api_show_a_failed_runs_error_without_server_paths() -> None:
    run = run_start(graph_name="incident-healing", data=GOOD_INPUT, seed=1)
    error = f"node 'triage' raised FileNotFoundError: [Errno 2] No such file: '{settings.BASE_DIR}/var/x.json'"
    Run.objects.filter(pk=run.pk).update(status=sm.FAILED, error=error)
    client = client_for("viewer")
    html = client.get(f"/runs/{run.trace_id}/").content.decode()
    assert "No such file: &#x27;x.json&#x27;" in html
    assert str(settings.BASE_DIR) not in html
    api = client.get(f"/api/runs/{run.trace_id}")
    assert api.status_code == 200 and api.json()["error"].endswith("No such file: 'x.json'")
