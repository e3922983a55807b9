"""Opening a run by a short id: a unique prefix (6 or more hex characters) redirects to the run, an ambiguous one
lists the choices, an unknown one is the styled 404."""

from __future__ import annotations

import pytest

from runs.models import Run
from runs.services.runs import run_start
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _run_with_id(trace_id: str) -> Run:
    run = run_start(graph_name="t-count", data={"target": 1}, seed=1)
    Run.objects.filter(pk=run.pk).update(trace_id=trace_id)
    return Run.objects.get(pk=run.pk)


def test_a_unique_prefix_redirects_to_the_run_keeping_the_query() -> None:
    run = _run_with_id("abcdef012345" + "0" * 20)
    _run_with_id("abcdef999999" + "0" * 20)
    client = client_for("viewer")
    for prefix in ("abcdef012345", "abcdef0", "ABCDEF012345"):
        response = client.get(f"/runs/{prefix}/")
        assert response.status_code == 302 and response["Location"] == f"/runs/{run.trace_id}/", prefix
    assert client.get("/runs/abcdef0123/?step=0")["Location"] == f"/runs/{run.trace_id}/?step=0"


def test_an_ambiguous_prefix_lists_the_runs_it_could_be() -> None:
    first = _run_with_id("abcdef012345" + "0" * 20)
    second = _run_with_id("abcdef999999" + "0" * 20)
    response = client_for("viewer").get("/runs/abcdef/")
    html = response.content.decode()
    assert response.status_code == 300
    assert "Several runs start with" in html and 'aria-label="Main"' in html
    assert f'href="/runs/{first.trace_id}/"' in html and f'href="/runs/{second.trace_id}/"' in html


def test_a_prefix_that_is_too_short_unknown_or_not_hex_is_the_styled_404() -> None:
    _run_with_id("abcdef012345" + "0" * 20)
    client = client_for("viewer")
    short = client.get("/runs/abcde/")
    assert short.status_code == 404 and "a short id has 6 to 32 hex characters" in short.content.decode()
    unknown = client.get("/runs/123456/")
    assert unknown.status_code == 404 and "No run&#x27;s id starts with 123456." in unknown.content.decode()
    assert client.get("/runs/abcdefzz/").status_code == 404
    assert "Not found" in client.get("/runs/" + "f" * 32 + "/").content.decode()
