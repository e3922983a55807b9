"""The runs list's search by input/state field and by error text (page and API), on SQLite and PostgreSQL;
and `cmo_serve` refusing a busy port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from runs import selectors
from runs.engine import statemachine as sm
from runs.fields import ReadableJSONField
from runs.models import Graph, Run
from runs.services.graphs import graph_resolve
from tests.integration.processes import ROOT
from tests.unit.api_fixtures import assert_error, client_as
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def graph() -> Graph:
    return graph_resolve(name="t-count")


def _run(graph: Graph, *, input: Any = None, state: Any = None, error: str = "", status: str = sm.COMPLETED) -> Run:
    return Run.objects.create(graph=graph, seed=0, status=status, input=input or {}, state=state, error=error)


def _found(*fields: str, error: str = "", **filters: Any) -> set[int]:
    conditions, text, problems = selectors.parse_run_search(list(fields), error)
    assert not problems, problems
    page = selectors.run_list(filters=selectors.RunFilters(fields=conditions, error=text, **filters), limit=200)
    return {r.pk for r in page.runs}


def _api(client: Client, **params: Any) -> Any:
    return client.get("/api/runs?" + urlencode(params, doseq=True))


def test_the_search_fields_are_readable_json_fields() -> None:
    # Lookups on them are JSONField's own (ReadableJSONField only changes how a value is read back).
    assert isinstance(Run._meta.get_field("input"), ReadableJSONField)
    assert isinstance(Run._meta.get_field("state"), ReadableJSONField)


def test_a_string_value_matches_the_string_exactly(graph: Graph) -> None:
    search = _run(graph, input={"service": "search"})
    _run(graph, input={"service": "Search"})
    _run(graph, input={"service": "search-api"})
    _run(graph, input={"other": "search"})
    assert _found("service=search") == {search.pk}
    assert _found("service = search ") == {search.pk}  # spaces around the path and value are not part of them


def test_a_number_matches_the_number_and_its_text(graph: Graph) -> None:
    number = _run(graph, input={"attempts": 3})
    text = _run(graph, input={"attempts": "3"})
    real = _run(graph, input={"attempts": 3.0})
    _run(graph, input={"attempts": 30})
    _run(graph, input={"attempts": "3x"})
    _run(graph, input={"attempts": True})
    assert _found("attempts=3") == {number.pk, text.pk, real.pk}
    assert _found("attempts=3.0") == {number.pk, real.pk}  # the text "3.0" is not "3"
    negative = _run(graph, input={"delta": -2.5})
    assert _found("delta=-2.5") == {negative.pk}


def test_a_boolean_or_null_matches_that_json_value_not_a_number(graph: Graph) -> None:
    yes = _run(graph, input={"dry_run": True})
    no = _run(graph, input={"dry_run": False})
    one = _run(graph, input={"dry_run": 1})
    zero = _run(graph, input={"dry_run": 0})
    null = _run(graph, input={"dry_run": None})
    _run(graph, input={})
    assert _found("dry_run=true") == {yes.pk}
    assert _found("dry_run=false") == {no.pk}
    assert _found("dry_run=1") == {one.pk}
    assert _found("dry_run=0") == {zero.pk}
    assert _found("dry_run=null") == {null.pk}  # a missing key is not null
    assert _found("dry_run=True") == set()  # JSON spells it true; "True" is only text


def test_nested_paths_array_indexes_and_keys_named_like_lookups(graph: Graph) -> None:
    nested = _run(graph, input={"incident": {"service": "search", "tags": ["db", "eu-west"]}})
    checkout = _run(graph, input={"incident": {"service": "checkout", "tags": ["eu-west"]}})
    _run(graph, input={"service": "search"})
    odd = _run(graph, input={"contains": "x", "exact": {"isnull": 1}, "regex": "y", "my-key_2": "z"})
    assert _found("incident.service=search") == {nested.pk}
    assert _found("incident.tags.1=eu-west") == {nested.pk}
    assert _found("incident.tags.0=eu-west") == {checkout.pk}
    assert _found("contains=x") == {odd.pk}
    assert _found("exact.isnull=1") == {odd.pk}
    assert _found("regex=y", "my-key_2=z") == {odd.pk}
    deep = _run(graph, input={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": "bottom"}}}}}}}})
    assert _found("a.b.c.d.e.f.g.h=bottom") == {deep.pk}  # 8 keys deep is allowed


def test_the_state_is_searched_too_and_a_prefix_picks_one_document(graph: Graph) -> None:
    healed = _run(graph, input={"service": "search"}, state={"service": "search", "outcome": "healed"})
    started = _run(graph, input={"outcome": "healed"}, state=None, status=sm.RUNNING)
    _run(graph, input={"service": "ledger"}, state={"outcome": "escalated"})
    assert _found("outcome=healed") == {healed.pk, started.pk}  # either document
    assert _found("state.outcome=healed") == {healed.pk}
    assert _found("input.outcome=healed") == {started.pk}
    assert _found("state.service=search", "outcome=healed") == {healed.pk}


def test_contains_is_any_case_on_the_text_and_escapes_wildcards(graph: Graph) -> None:
    search = _run(graph, input={"service": "Search-API", "note": "100% done"})
    _run(graph, input={"service": "checkout", "note": "1000 done"})
    research = _run(graph, input={"service": "research-ops"})
    assert _found("service~search") == {search.pk, research.pk}
    assert _found("service~SEARCH-a") == {search.pk}
    assert _found("note~0%") == {search.pk}  # % is a character, not LIKE's wildcard
    assert _found("note~_") == set()
    assert _found("service~a=b") == set()  # the first = or ~ ends the path; the value may hold either


def test_field_searches_combine_with_each_other_and_with_status_and_graph(graph: Graph) -> None:
    demo = graph_resolve(name="incident-healing")
    match = _run(demo, input={"service": "search", "severity": "high"}, status=sm.FAILED)
    _run(demo, input={"service": "search", "severity": "low"}, status=sm.FAILED)
    _run(demo, input={"service": "search", "severity": "high"}, status=sm.COMPLETED)
    other_graph = _run(graph, input={"service": "search", "severity": "high"}, status=sm.FAILED)
    assert _found("service=search", "severity=high", status=sm.FAILED) == {match.pk, other_graph.pk}
    assert _found("service=search", "severity=high", status=sm.FAILED, graph="incident-healing") == {match.pk}
    counts = selectors.run_status_counts(
        filters=selectors.RunFilters(fields=selectors.parse_run_search(["severity=high"])[0], graph="incident-healing")
    )
    assert counts[sm.FAILED] == 1 and counts[sm.COMPLETED] == 1 and sum(counts.values()) == 2


def test_error_text_is_found_in_any_case(graph: Graph) -> None:
    timeout = _run(graph, error="ConnectTimeout: the bank API did not answer", status=sm.FAILED)
    pager = _run(graph, error="pager for ledger is unreachable; nobody was notified", status=sm.FAILED)
    _run(graph, error="")
    assert _found(error="timeout") == {timeout.pk}
    assert _found(error="UNREACHABLE; NOBODY") == {pager.pk}
    assert _found(error="50%") == set()
    assert _found("service=x", error="timeout") == set()


def test_a_search_keeps_the_keyset_pages_on_the_page_and_in_the_api(graph: Graph) -> None:
    Run.objects.bulk_create(
        [Run(graph=graph, seed=i, status=sm.COMPLETED, input={"shard": i % 3, "service": "search"}) for i in range(160)]
    )
    wanted = set(Run.objects.filter(seed__in=[i for i in range(160) if i % 3 == 0]).values_list("trace_id", flat=True))
    assert len(wanted) == 54
    viewer = client_for("viewer")
    seen: list[str] = []
    url = "/runs/?" + urlencode({"field": ["shard=0", "service=search"]}, doseq=True)
    pages = 0
    while url:
        response = viewer.get(url)
        page = response.context["page"]
        seen += [r.trace_id for r in page.runs]
        pages += 1
        assert response.context["counts"][sm.COMPLETED] == 54
        url = ""
        if page.next_cursor:
            html = response.content.decode()
            assert "field=shard%3D0&amp;field=service%3Dsearch&amp;c=" in html  # the next page keeps the search
            url = "/runs/?" + urlencode({"field": ["shard=0", "service=search"], "c": page.next_cursor}, doseq=True)
    assert pages == 2 and len(seen) == 54 and set(seen) == wanted

    api = client_as("viewer")
    seen = []
    cursor = ""
    while True:
        params: dict[str, Any] = {"field": "shard=0", "limit": 20, **({"cursor": cursor} if cursor else {})}
        body = _api(api, **params).json()
        seen += [r["trace_id"] for r in body["runs"]]
        if not body["next_cursor"]:
            break
        cursor = body["next_cursor"]
    assert len(seen) == 54 and set(seen) == wanted


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("service", "write PATH=VALUE"),
        ("=search", "names no key"),
        ("incident..service=x", "an empty key (a dot too many)"),
        ("incident.=x", "an empty key"),
        ("incident service=x", "bad key 'incident service'"),
        ("inc$ident=x", "bad key"),
        ("a.b.c.d.e.f.g.h.i=x", "9 keys deep: at most 8"),
        ("a" * 201 + "=x", "longer than 200"),
        ("items.-1=x", "reads as a number"),
        ("items.01=x", "reads as a number"),
        ("input=x", "name a key inside the run's input"),
        ("api_key=x", "names a secret"),
        ("incident.password~a", "names a secret"),
        ("service~", "needs some text"),
        ("service=a\x00b", "NUL character"),
    ],
)
def test_a_bad_field_search_is_a_422_in_the_api(field: str, says: str) -> None:
    body = assert_error(_api(client_as("viewer"), field=["service=ok", field]), 422, "invalid_search")
    assert says in body["message"], body
    assert body["details"]["problems"] == [body["message"]]


def test_too_many_conditions_or_too_long_an_error_text_is_a_422() -> None:
    viewer = client_as("viewer")
    body = assert_error(_api(viewer, field=[f"k{i}=v" for i in range(9)]), 422, "invalid_search")
    assert "at most 8" in body["message"]
    body = assert_error(_api(viewer, error="x" * 201), 422, "invalid_search")
    assert "longer than 200" in body["message"]
    body = assert_error(_api(viewer, error="a\x00"), 422, "invalid_search")  # not a database error
    assert "NUL" in body["message"]
    page = client_for("viewer").get("/runs/?" + urlencode({"field": "service=\x00", "error": "\x00"}))
    assert page.status_code == 200 and page.content.decode().count("NUL character") == 2


def test_a_viewer_searches_in_the_api(graph: Graph) -> None:
    run = _run(graph, input={"incident": {"service": "search"}}, error="read timeout", status=sm.FAILED)
    _run(graph, input={"incident": {"service": "checkout"}})
    body = _api(client_as("viewer"), field="incident.service=search", error="Timeout", status="FAILED").json()
    assert [r["trace_id"] for r in body["runs"]] == [run.trace_id]
    assert _api(client_as("viewer"), field="incident.service~CHECK").json()["runs"][0]["trace_id"] != run.trace_id


def test_the_page_round_trips_the_search_and_shows_a_bad_one_inline(graph: Graph) -> None:
    run = _run(graph, input={"service": "search", "attempts": 3}, error="upstream timeout", status=sm.FAILED)
    _run(graph, input={"service": "checkout", "attempts": 3})
    viewer = client_for("viewer")
    query = urlencode({"field": ["service=search", "attempts=3"], "error": "TIMEOUT"}, doseq=True)
    response = viewer.get("/runs/?" + query)
    assert response.status_code == 200
    assert [r.pk for r in response.context["page"].runs] == [run.pk]
    html = response.content.decode()
    assert 'name="field" value="service=search"' in html and 'name="field" value="attempts=3"' in html
    assert html.count('name="field"') == 3  # the two, and an empty one for one more
    assert 'name="error" value="TIMEOUT"' in html
    assert 'id="search-problems"' not in html

    response = viewer.get("/runs/?" + urlencode({"field": ["service=search", "bad path=1"]}, doseq=True))
    assert response.status_code == 200
    assert [r.pk for r in response.context["page"].runs] == [run.pk]  # the valid part still applies
    html = response.content.decode()
    assert 'id="search-problems"' in html and "Not searched:" in html
    assert "the key path &#x27;bad path&#x27; has a bad key" in html
    assert 'value="bad path=1" placeholder="path~contains" size="22" spellcheck="false" autocapitalize="off" ' in html
    assert html.count('aria-invalid="true"') == 1  # on the bad box only


def test_cmo_serve_on_a_busy_port_exits_1_with_a_message_before_it_starts(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CMO_VAR_DIR"] = str(tmp_path / "var")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for extra in ([], ["--check-port"]):
            done = subprocess.run(
                [sys.executable, "manage.py", "cmo_serve", "--port", str(port), *extra],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 1, (done.stdout, done.stderr)
            assert f"port {port} is in use (another CMO or program is listening): run `make run PORT={port + 1}`" in (
                done.stderr
            )
            assert "CMO is serving" not in done.stdout and "Using database" not in done.stdout  # nothing started
    assert not (tmp_path / "var" / "cmo.sqlite3").exists()  # nor migrated
