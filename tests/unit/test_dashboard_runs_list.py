"""The runs list: filters, search, sort, status counts and keyset pagination."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from runs import selectors
from runs.engine import statemachine as sm
from runs.models import Graph, Run
from runs.services.graphs import graph_resolve
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


def _runs(graph: Graph, n: int, *, status: str = sm.COMPLETED, created_at: dt.datetime | None = None) -> list[Run]:
    rows = Run.objects.bulk_create([Run(graph=graph, seed=i, status=status, input={}) for i in range(n)])
    if created_at is not None:
        Run.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=created_at)
    return rows


def _traces(client: Client, query: str) -> list[str]:
    return [r.trace_id for r in client.get("/runs/?" + query).context["page"].runs]


def test_filters_search_and_counts(viewer: Client) -> None:
    count = graph_resolve(name="t-count")
    demo = graph_resolve(name="incident-healing")
    old = timezone.now() - dt.timedelta(days=10)
    done = _runs(count, 3)
    failed = _runs(demo, 2, status=sm.FAILED)
    ancient = _runs(demo, 1, created_at=old)

    assert set(_traces(viewer, "status=FAILED")) == {r.trace_id for r in failed}
    assert set(_traces(viewer, "graph=t-count")) == {r.trace_id for r in done}
    assert set(_traces(viewer, f"graph=incident-healing&version={demo.version}&status=COMPLETED")) == {
        ancient[0].trace_id
    }
    assert _traces(viewer, f"graph=incident-healing&version={demo.version + 1}") == []
    recent_day = timezone.now().date().isoformat()
    assert len(_traces(viewer, f"since={recent_day}")) == 5
    assert _traces(viewer, f"until={(old.date()).isoformat()}") == [ancient[0].trace_id]
    assert _traces(viewer, f"trace={done[1].trace_id[:10].upper()}") == [done[1].trace_id]

    response = viewer.get("/runs/?graph=incident-healing&status=FAILED")
    assert response.context["counts"][sm.FAILED] == 2
    assert response.context["counts"][sm.COMPLETED] == 1  # counts ignore the status filter, keep the others
    assert response.context["counts"][sm.RUNNING] == 0

    partial = viewer.get("/runs/?partial=1&status=FAILED")
    assert partial.content.decode().startswith('<div id="run-table"')
    assert "<html" not in partial.content.decode()


def test_keyset_pagination_walks_every_run_once_in_order_even_with_equal_times(viewer: Client) -> None:
    graph = graph_resolve(name="t-count")
    same_moment = timezone.now() - dt.timedelta(hours=1)
    rows = _runs(graph, 70, created_at=same_moment) + _runs(graph, 45)
    seen: list[str] = []
    url = "/runs/?graph=t-count"
    pages = 0
    while url:
        page = viewer.get(url).context["page"]
        seen += [r.trace_id for r in page.runs]
        pages += 1
        url = f"/runs/?graph=t-count&c={page.next_cursor}" if page.next_cursor else ""
    assert pages == 3
    expected = sorted(rows, key=lambda r: (r.pk in {x.pk for x in rows[:70]}, -r.pk))
    assert seen == [r.trace_id for r in expected]

    oldest_first = selectors.run_list(filters=selectors.RunFilters(graph="t-count"), sort="created", limit=40)
    assert [r.pk for r in oldest_first.runs] == sorted(r.pk for r in rows[:70])[:40]
    second = selectors.run_list(
        filters=selectors.RunFilters(graph="t-count"), sort="created", cursor=oldest_first.next_cursor or "", limit=40
    )
    assert [r.pk for r in second.runs] == sorted(r.pk for r in rows[:70])[40:] + sorted(r.pk for r in rows[70:])[:10]


def test_a_bad_cursor_or_filter_shows_the_first_page(viewer: Client) -> None:
    _runs(graph_resolve(name="t-count"), 2)
    response = viewer.get("/runs/?c=garbage&status=NOPE&version=x&since=yesterday&sort=weird")
    assert response.status_code == 200
    assert len(response.context["page"].runs) == 2
    # An offset PostgreSQL cannot store is read in UTC, not passed through (it was a 500).
    response = viewer.get("/runs/?since=2000-01-01T00:00:00%2B19:11&until=9999-12-31T23:59:59-23:59")
    assert response.status_code == 200
    assert len(response.context["page"].runs) == 2
