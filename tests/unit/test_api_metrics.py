"""Metrics through the API: activity per day over the last N days, and today's summary, after known runs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from runs.metrics import metrics_activity
from runs.models import Activity, Run, RunEvent, Step
from tests.helpers import start_and_execute
from tests.unit.api_fixtures import assert_error, client_as

pytestmark = pytest.mark.django_db


def move_to(run: Run, days_ago: int) -> None:
    """Pretend ``run`` (its steps, activities and events) happened ``days_ago`` days ago."""
    shift = dt.timedelta(days=days_ago)
    for model, field in ((Step, "started_at"), (Activity, "created_at"), (RunEvent, "created_at")):
        for pk, when in model.objects.filter(run=run).values_list("pk", field):
            model.objects.filter(pk=pk).update(**{field: when - shift})
    Run.objects.filter(pk=run.pk).update(created_at=run.created_at - shift, finished_at=run.finished_at - shift)


@pytest.fixture
def known_runs() -> dict[str, Run]:
    runs = {
        "count3": start_and_execute("t-count", {"target": 3}),
        "now_rand": start_and_execute("t-now-rand", {}),
        "failed_today": start_and_execute("t-not-json", {}),
        "failed_yesterday": start_and_execute("t-not-json", {}),
        "count2_3_days_ago": start_and_execute("t-count", {"target": 2}),
    }
    assert runs["count3"].status == runs["now_rand"].status == "COMPLETED"
    assert runs["failed_today"].status == runs["failed_yesterday"].status == "FAILED"
    move_to(runs["failed_yesterday"], 1)
    move_to(runs["count2_3_days_ago"], 3)
    return runs


def test_activity_counts_runs_steps_errors_and_activities_per_day(known_runs: dict[str, Run]) -> None:
    days = client_as("viewer").get("/api/metrics/activity", {"days": 5}).json()["days"]
    today = timezone.now().date()
    assert [d["day"] for d in days] == [(today - dt.timedelta(days=n)).isoformat() for n in (4, 3, 2, 1, 0)]
    by_age = {4 - i: d for i, d in enumerate(days)}
    failed_steps = Step.objects.filter(run=known_runs["failed_today"]).count()
    assert by_age[0] == {
        "day": today.isoformat(),
        "runs": 3,
        "steps": 3 + 1 + failed_steps,
        "errors": 1,
        "activities": 3,
    }
    assert by_age[1] | {"day": None} == {
        "day": None,
        "runs": 1,
        "steps": Step.objects.filter(run=known_runs["failed_yesterday"]).count(),
        "errors": 1,
        "activities": 0,
    }
    assert by_age[2] | {"day": None} == {"day": None, "runs": 0, "steps": 0, "errors": 0, "activities": 0}
    assert by_age[3] | {"day": None} == {"day": None, "runs": 1, "steps": 2, "errors": 0, "activities": 0}
    assert by_age[4]["runs"] == 0


def test_the_summary_counts_today_only(known_runs: dict[str, Run]) -> None:
    summary = client_as("viewer").get("/api/metrics/summary").json()
    assert summary["day"] == timezone.now().date().isoformat()
    assert (summary["runs_started"], summary["runs_completed"], summary["runs_failed"]) == (3, 2, 1)
    assert summary["error_rate"] == round(1 / 3, 4)
    assert summary["activities"] == 3 and summary["activity_errors"] == 0
    assert summary["runs_active"] == 0 and summary["approvals_waiting"] == 0
    top = summary["top_event_types"]
    assert {"kind": "created", "count": 3} in top
    assert [t["count"] for t in top] == sorted((t["count"] for t in top), reverse=True)
    assert len(top) <= 10


def test_the_summary_of_an_empty_day_has_a_zero_error_rate() -> None:
    summary = client_as("viewer").get("/api/metrics/summary").json()
    assert summary["error_rate"] == 0.0 and summary["runs_started"] == 0 and summary["top_event_types"] == []


@pytest.mark.parametrize("days", ["0", "91", "-1", "x"])
def test_days_must_be_between_1_and_90(days: str) -> None:
    assert_error(client_as("viewer").get("/api/metrics/activity", {"days": days}), 422, "validation_error")


def test_ninety_days_is_allowed_and_the_selector_refuses_more() -> None:
    assert len(client_as("viewer").get("/api/metrics/activity", {"days": 90}).json()["days"]) == 90
    with pytest.raises(ValueError, match="between 1 and 90"):
        metrics_activity(days=91)


def test_activity_is_four_queries_whatever_the_number_of_runs(django_assert_max_num_queries: object) -> None:
    for _ in range(5):
        start_and_execute("t-count", {"target": 2})
    with django_assert_max_num_queries(4):  # type: ignore[operator]
        metrics_activity(days=30)
