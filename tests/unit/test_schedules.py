"""Schedules: slots from cron and intervals, exactly one fire per slot, overlap and catch-up policies, the
owner's rights, and the API and pages (roles, bad input)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

import tests.graphs  # noqa: F401 - registers t-count
from runs.models import Run
from runs.services.runs import run_abort
from schedules import services
from schedules.models import Schedule, ScheduleFire
from schedules.timing import slots_from
from tests.helpers import drain
from tests.unit.api_fixtures import assert_error, client_as, post_json, token_client, user_with

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


def _schedule(name: str = "every-5", *, owner: Any = None, **fields: Any) -> Schedule:
    owner = owner or user_with(f"{name}-owner", "operator")
    data = {"graph": "t-count", "input": {"target": 1}, "interval_seconds": 5, **fields}
    checked = services.schedule_check(data=data, user=owner, role="operator")
    schedule = services.schedule_create(name=name, fields=checked, user=owner, role="operator")
    Schedule.objects.filter(pk=schedule.pk).update(next_slot_at=T0)
    schedule.refresh_from_db()
    return schedule


def _fires(schedule: Schedule) -> list[tuple[str, str]]:
    return [(f"{f.slot:%H:%M:%S}", f.outcome) for f in schedule.fires.order_by("slot")]


def test_interval_slots_are_aligned_to_the_epoch_and_cron_reads_in_its_time_zone() -> None:
    it = slots_from(cron="", interval_seconds=15, timezone="UTC", start=T0 + dt.timedelta(seconds=1))
    assert [f"{next(it):%H:%M:%S}" for _ in range(2)] == ["12:00:15", "12:00:30"]
    berlin = slots_from(cron="0 9 * * *", interval_seconds=None, timezone="Europe/Berlin", start=T0)
    assert next(berlin) == dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)  # 09:00 in Berlin (UTC+1 in winter)


def test_due_slots_fire_once_each_and_a_second_scheduler_finds_nothing_to_do() -> None:
    schedule = _schedule(overlap="allow_all")
    now = T0 + dt.timedelta(seconds=11)
    assert services.schedules_fire_due(now=now) == 3  # 12:00:00, :05, :10
    assert services.schedules_fire_due(now=now) == 0
    Schedule.objects.filter(pk=schedule.pk).update(next_slot_at=T0)  # a scheduler that read a stale position
    assert services.schedule_fire_due(schedule_id=schedule.pk, now=now) == 0  # the slots are taken: none twice
    assert _fires(schedule) == [("12:00:00", "started"), ("12:00:05", "started"), ("12:00:10", "started")]
    runs = Run.objects.filter(pk__in=schedule.fires.values("run_id"))
    assert runs.count() == 3
    run = runs.first()
    assert run is not None and run.context["schedule"] == "every-5" and run.context["user"] == "every-5-owner"
    assert run.context["role"] == "operator"
    schedule.refresh_from_db()
    assert schedule.next_slot_at == T0 + dt.timedelta(seconds=15)


def test_overlap_skip_and_buffer_one_wait_for_the_active_run() -> None:
    skip = _schedule("skips", overlap="skip")
    buffer = _schedule("buffers", overlap="buffer_one")
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=11))
    assert _fires(skip) == [("12:00:00", "started"), ("12:00:05", "skipped"), ("12:00:10", "skipped")]
    assert _fires(buffer) == [("12:00:00", "started"), ("12:00:05", "buffered"), ("12:00:10", "skipped")]
    assert services.buffered_start() == 0  # the first run is still active
    drain()
    assert services.buffered_start() == 1
    assert _fires(buffer)[1] == ("12:00:05", "started")


def test_overlap_allow_all_and_cancel_other() -> None:
    allow = _schedule("allows", overlap="allow_all")
    cancel = _schedule("cancels", overlap="cancel_other")
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=6))
    assert _fires(allow) == [("12:00:00", "started"), ("12:00:05", "started")]
    assert _fires(cancel) == [("12:00:00", "started"), ("12:00:05", "started")]
    first, second = (f.run for f in cancel.fires.order_by("slot"))
    assert first is not None and second is not None
    first.refresh_from_db()
    assert first.status == "ABORTED" and second.status == "PENDING"
    assert first.events.filter(to_status="ABORTED", actor="schedule cancels").exists()


def test_catch_up_all_fires_the_slots_within_the_window_and_records_the_rest_as_missed() -> None:
    schedule = _schedule("catch-all", overlap="allow_all", catchup_window_seconds=20)
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=31))  # 7 slots due, the window (from :11) keeps 4
    assert _fires(schedule) == [
        ("12:00:10", "missed"), ("12:00:15", "started"), ("12:00:20", "started"), ("12:00:25", "started"),
        ("12:00:30", "started"),
    ]  # fmt: skip
    missed = schedule.fires.get(outcome="missed")
    assert missed.reason.startswith("3 slot(s) from 2026-12-01 12:00:00 to 2026-12-01 12:00:10 UTC not fired")
    assert services.schedules_fire_due(now=T0 + dt.timedelta(seconds=31)) == 0


def test_catch_up_latest_fires_only_the_latest_slot() -> None:
    schedule = _schedule("catch-latest", overlap="allow_all", catchup="latest")
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=31))
    assert _fires(schedule) == [("12:00:25", "missed"), ("12:00:30", "started")]


def test_a_paused_schedule_fires_nothing_and_resumes_from_the_next_slot() -> None:
    schedule = _schedule()
    services.schedule_pause(schedule=schedule, user=None, note="maintenance")
    assert services.schedules_fire_due(now=T0 + dt.timedelta(seconds=30)) == 0
    assert services.next_fire_times(schedule=schedule) == []
    services.schedule_resume(schedule=schedule, user=None)
    schedule.refresh_from_db()
    assert schedule.next_slot_at is not None and schedule.next_slot_at > timezone.now()
    assert len(services.next_fire_times(schedule=schedule)) == 5


def test_an_owner_who_lost_the_role_pauses_the_schedule_and_starts_nothing() -> None:
    owner = user_with("demoted", "operator")
    schedule = _schedule("demoted-owner", owner=owner)
    owner.groups.remove(Group.objects.get(name="operator"))
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=1))
    schedule.refresh_from_db()
    assert schedule.paused and "no longer holds the role 'operator'" in schedule.note
    assert _fires(schedule) == [("12:00:00", "failed")]
    assert not Run.objects.exists()


def test_a_token_capped_admin_owns_a_schedule_with_the_capped_role() -> None:
    admin = user_with("capped-admin", "admin")
    client, _ = token_client(admin, "operator")
    body = {"name": "capped", "graph": "t-count", "input": {"target": 1}, "interval_seconds": 60}
    response = post_json(client, "/api/schedules", body)
    assert response.status_code == 201, response.content
    assert response.json()["owner_role"] == "operator"
    schedule = Schedule.objects.get(name="capped")
    Schedule.objects.filter(pk=schedule.pk).update(next_slot_at=T0)
    services.schedules_fire_due(now=T0)
    run = Run.objects.get()
    assert run.context["role"] == "operator"


def test_a_graph_that_fails_at_fire_time_records_why() -> None:
    schedule = _schedule()
    Schedule.objects.filter(pk=schedule.pk).update(input={"target": "many"})  # as if the schema changed
    services.schedules_fire_due(now=T0)
    fire = schedule.fires.get()
    assert fire.outcome == "failed" and "the run could not start" in fire.reason and "'many'" in fire.reason


def test_backfill_fires_each_past_slot_once_as_the_requester() -> None:
    schedule = _schedule(overlap="skip")
    requester = user_with("backfiller", "operator")
    start, end = T0 - dt.timedelta(minutes=1), T0 - dt.timedelta(seconds=31)
    counts = services.schedule_backfill(schedule=schedule, start=start, end=end, user=requester, role="operator")
    assert counts == {"started": 6, "failed": 0, "already": 0}
    again = services.schedule_backfill(schedule=schedule, start=start, end=end, user=requester, role="operator")
    assert again == {"started": 0, "failed": 0, "already": 6}
    assert set(schedule.fires.values_list("actor", flat=True)) == {"backfiller"}
    with pytest.raises(services.BackfillRefused, match="more than 1000 slots"):
        day = T0 - dt.timedelta(days=1)
        services.schedule_backfill(schedule=schedule, start=day, end=T0, user=requester, role="operator")
    with pytest.raises(services.BackfillRefused, match="at the latest now"):
        services.schedule_backfill(
            schedule=schedule, start=T0, end=timezone.now() + dt.timedelta(hours=1), user=requester, role="operator"
        )


def test_trigger_now_runs_as_the_caller_under_the_overlap_policy() -> None:
    schedule = _schedule(overlap="skip")
    caller = user_with("trigger-happy", "operator")
    first = services.schedule_trigger(schedule=schedule, user=caller, role="operator")
    assert first.outcome == "started" and first.run is not None and first.run.context["user"] == "trigger-happy"
    second = services.schedule_trigger(schedule=schedule, user=caller, role="operator")
    assert second.outcome == "skipped" and first.run.trace_id in second.reason
    run_abort(run=first.run, actor="t")


# -- the API --------------------------------------------------------------------------------------


def test_the_api_creates_reads_pauses_triggers_and_lists_fires() -> None:
    operator = client_as("operator")
    body = {"name": "api-every-min", "graph": "t-count", "input": {"target": 2}, "cron": "* * * * *",
            "timezone": "Europe/Berlin", "overlap": "buffer_one"}  # fmt: skip
    created = post_json(operator, "/api/schedules", body)
    assert created.status_code == 201, created.content
    out = created.json()
    assert out["owner"] == "operator-user" and len(out["next_fire_times"]) == 5 and out["paused"] is False
    assert post_json(operator, "/api/schedules", body).status_code == 409
    paused = post_json(operator, "/api/schedules/api-every-min/pause", {"note": "deploy"}).json()
    assert paused["paused"] is True and paused["note"] == "deploy" and paused["next_fire_times"] == []
    fire = post_json(operator, "/api/schedules/api-every-min/trigger")
    assert fire.status_code == 201 and fire.json()["outcome"] == "started"
    fires = operator.get("/api/schedules/api-every-min/fires").json()["fires"]
    assert [f["kind"] for f in fires] == ["trigger"] and fires[0]["trace_id"]
    resumed = post_json(operator, "/api/schedules/api-every-min/resume").json()
    assert resumed["paused"] is False
    assert operator.delete("/api/schedules/api-every-min").json() == {"name": "api-every-min", "fires_deleted": 1}
    assert operator.get("/api/schedules/api-every-min").status_code == 404


def test_the_api_refuses_bad_schedules_naming_the_field_and_stores_nothing() -> None:
    operator = client_as("operator")
    base = {"name": "bad", "graph": "t-count", "input": {"target": 1}}
    cases = [
        ({"cron": "61 * * * *"}, "cron: not a cron expression"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "either a cron expression or an interval"),
        ({}, "either a cron expression or an interval"),
        ({"interval_seconds": 5, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"interval_seconds": 5, "graph": "no-such-graph"}, "graph:"),
        ({"interval_seconds": 5, "input": {"target": "x"}}, "input.target:"),
        ({"interval_seconds": 5, "jitter_seconds": 5}, "jitter must be shorter than the interval"),
        ({"interval_seconds": 5, "catchup_window_seconds": 1}, "catch-up window"),
    ]
    for extra, message in cases:
        refused = assert_error(post_json(operator, "/api/schedules", {**base, **extra}), 422, "invalid_schedule")
        assert message in refused["message"], (extra, refused)
    assert_error(post_json(operator, "/api/schedules", {**base, "name": "../x", "interval_seconds": 5}), 422,
                 "validation_error")  # fmt: skip
    assert not Schedule.objects.exists()


def test_viewers_read_but_do_not_change_and_an_editor_becomes_the_owner() -> None:
    admin = client_as("admin")
    post_json(admin, "/api/schedules", {"name": "admins", "graph": "t-count", "interval_seconds": 60})
    viewer = client_as("viewer")
    assert viewer.get("/api/schedules").status_code == 200
    for path in ("/api/schedules", "/api/schedules/admins/trigger", "/api/schedules/admins/pause"):
        assert post_json(viewer, path, {}).status_code == 403
    assert viewer.delete("/api/schedules/admins").status_code == 403
    operator = client_as("operator")
    changed = operator.put(
        "/api/schedules/admins", {"graph": "t-count", "input": {"target": 3}, "interval_seconds": 60},
        content_type="application/json",
    )  # fmt: skip
    assert changed.status_code == 200, changed.content
    assert changed.json()["owner"] == "operator-user" and changed.json()["owner_role"] == "operator"


# -- the pages ------------------------------------------------------------------------------------


def _login(role: str) -> Client:
    client = Client()
    client.force_login(user_with(f"page-{role}", role))
    return client


def test_an_operator_creates_a_schedule_from_the_page_and_sees_its_next_fire_times() -> None:
    client = _login("operator")
    form = {"name": "page-made", "graph": "t-count", "timing": "interval", "interval_seconds": "30",
            "timezone": "UTC", "overlap": "skip", "catchup": "all", "catchup_window_seconds": "60",
            "input": '{"target": 1}'}  # fmt: skip
    response = client.post("/schedules/new/", form)
    assert response.status_code == 302 and response["Location"] == "/schedules/page-made/"
    page = client.get("/schedules/page-made/").content.decode()
    assert page.count("<li><time") == 5 and "every 30 s" in page
    client.post("/schedules/page-made/pause/")
    assert Schedule.objects.get(name="page-made").paused
    bad = client.post("/schedules/new/", {**form, "name": "page-bad", "input": '{"target": "x"}'})
    assert bad.status_code == 422 and "input.target" in bad.content.decode()
    assert not Schedule.objects.filter(name="page-bad").exists()


def test_the_pages_enforce_roles_csrf_and_escape() -> None:
    viewer = _login("viewer")
    assert viewer.get("/schedules/").status_code == 200
    assert viewer.get("/schedules/new/").status_code == 403
    _schedule("escaped", description="<script>alert(1)</script>")
    page = viewer.get("/schedules/escaped/").content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert viewer.post("/schedules/escaped/trigger/").status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user_with("csrf-op", "operator"))
    assert strict.post("/schedules/escaped/trigger/").status_code == 403
    assert not ScheduleFire.objects.exists()
    assert _login("operator").post("/schedules/escaped/explode/").status_code == 404


def test_the_demo_schedule_is_made_once_for_the_demo_admin() -> None:
    from django.core.management import CommandError, call_command

    import runs.demo  # noqa: F401 - registers incident-research

    with pytest.raises(CommandError, match="cmo_demo"):
        call_command("cmo_demo_schedules")
    user_with("admin", "admin")
    call_command("cmo_demo_schedules")
    call_command("cmo_demo_schedules")
    schedule = Schedule.objects.get()
    assert schedule.name == "research-hourly" and schedule.owner_role == "admin" and not schedule.paused
    assert [t.minute for t in services.next_fire_times(schedule=schedule)] == [0] * 5


def test_a_schedule_gives_its_runs_its_concurrency_key_and_refuses_one_its_input_lacks() -> None:
    schedule = _schedule("keyed", overlap="allow_all", concurrency={"key": "input.target", "limit": 1})
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=6))
    runs = list(Run.objects.filter(pk__in=schedule.fires.values("run_id")))
    assert len(runs) == 2 and {r.concurrency_key for r in runs} == {"t-count:1"}
    owner = user_with("keyless-owner", "operator")
    for declaration, message in [
        ({"key": "input.service", "limit": 1}, "input.service"),
        ({"key": "input.target"}, "needs a limit, a rate or both"),
    ]:
        data = {"graph": "t-count", "input": {"target": 1}, "interval_seconds": 5, "concurrency": declaration}
        with pytest.raises(services.ScheduleInvalid, match="concurrency") as refused:
            services.schedule_check(data=data, user=owner, role="operator")
        assert message in str(refused.value)


def test_a_scheduled_runs_page_links_to_its_schedule_and_an_odd_name_breaks_nothing() -> None:
    schedule = _schedule("linked", overlap="allow_all")
    services.schedules_fire_due(now=T0)
    run = schedule.fires.get().run
    assert run is not None
    client = _login("viewer")
    page = client.get(f"/runs/{run.trace_id}/").content.decode()
    assert 'via schedule <a href="/schedules/linked/" id="run-started-via">linked</a>' in page
    Run.objects.filter(pk=run.pk).update(context={**run.context, "schedule": "../<b>x</b>"})
    odd = client.get(f"/runs/{run.trace_id}/")
    assert odd.status_code == 200 and "run-started-via" not in odd.content.decode()


def test_the_overlap_check_reads_open_fires_only_and_closes_the_ended() -> None:
    schedule = _schedule("closing", overlap="skip")
    services.schedules_fire_due(now=T0)
    fire = schedule.fires.get()
    assert fire.open and services.active_runs(schedule=schedule).count() == 1
    drain()
    assert services.active_runs(schedule=schedule).count() == 0
    fire.refresh_from_db()
    assert not fire.open  # closed by the look that found its run ended


def test_closed_fires_older_than_the_history_are_pruned_hourly(monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = _schedule("pruned", overlap="allow_all")
    services.schedules_fire_due(now=T0 + dt.timedelta(seconds=6))
    ScheduleFire.objects.filter(schedule=schedule).update(open=False)
    ScheduleFire.objects.filter(schedule=schedule, slot=T0).update(slot=T0 - dt.timedelta(days=40))
    monkeypatch.setattr(services, "_pruned_at", [-3600.0])
    assert services.fires_prune(now=T0) == 1
    assert services.fires_prune(now=T0) == 0  # at most hourly
    assert schedule.fires.count() == 1 and Run.objects.count() == 2  # the runs stay


def test_a_triggered_slot_is_never_buffered_to_run_later_with_the_owners_rights() -> None:
    admin = user_with("buffer-admin", "admin")
    schedule = _schedule("admins-buffer", owner=admin, overlap="buffer_one")
    Schedule.objects.filter(pk=schedule.pk).update(owner_role="admin")
    schedule.refresh_from_db()
    services.schedules_fire_due(now=T0)  # the admin's own slot: its run is active
    operator = user_with("buffer-operator", "operator")
    fire = services.schedule_trigger(schedule=schedule, user=operator, role="operator")
    assert fire.outcome == "skipped" and "overlap: buffer_one" in fire.reason
    assert not ScheduleFire.objects.filter(outcome="buffered").exists()
