"""The replay API: verify, compare, fork, export and import (trace bundles)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import override_settings

from runs.models import Run
from tests.helpers import start_and_execute
from tests.unit.api_fixtures import assert_error, client_as, post_json

pytestmark = pytest.mark.django_db


def test_verify_re_executes_a_run_and_reports_each_step() -> None:
    run = start_and_execute("t-count", {"target": 3})
    report = post_json(client_as("viewer"), f"/api/runs/{run.trace_id}/verify").json()
    assert report["ok"] and report["first_divergence"] is None
    assert [s["status"] for s in report["steps"]] == ["match"] * 3


def test_compare_aligns_two_runs() -> None:
    a = start_and_execute("t-count", {"target": 3})
    b = start_and_execute("t-count", {"target": 2})
    report = client_as("viewer").get(f"/api/runs/{a.trace_id}/compare", {"other": b.trace_id}).json()
    assert report["left"] == a.trace_id and report["right"] == b.trace_id
    assert report["match_percent"] < 100 and report["first_divergence"] is not None
    assert_error(client_as("viewer").get(f"/api/runs/{a.trace_id}/compare", {"other": "f" * 32}), 404, "not_found")


def test_fork_starts_a_run_from_a_step_with_edited_state() -> None:
    run = start_and_execute("t-count", {"target": 3})
    operator = client_as("operator")
    forked = post_json(operator, f"/api/runs/{run.trace_id}/fork", {"step": 0, "state": {"target": 5, "n": 1}})
    assert forked.status_code == 201, forked.content
    body = forked.json()
    assert body["parent_trace_id"] == run.trace_id and body["parent_step"] == 0
    assert body["status"] == "PENDING" and body["step_index"] == 1 and body["input"] == {"target": 5, "n": 1}


def test_fork_refusals_are_422s_and_forking_needs_an_operator() -> None:
    run = start_and_execute("t-count", {"target": 2})
    operator = client_as("operator")
    body = assert_error(post_json(operator, f"/api/runs/{run.trace_id}/fork", {"step": 9}), 422, "replay_refused")
    assert "no step 9" in body["message"]
    assert_error(post_json(operator, f"/api/runs/{run.trace_id}/fork", {"step": 1}), 422, "replay_refused")
    assert_error(post_json(client_as("viewer"), f"/api/runs/{run.trace_id}/fork", {"step": 0}), 403, "forbidden")


def test_export_then_import_round_trips_a_run() -> None:
    run = start_and_execute("t-count", {"target": 2})
    operator = client_as("operator")
    bundle = operator.get(f"/api/runs/{run.trace_id}/export").json()
    assert bundle["format"] == "cmo-trace-bundle" and len(bundle["steps"]) == 2

    assert_error(post_json(operator, "/api/runs/import", bundle), 409, "already_exists")
    Run.objects.filter(pk=run.pk).delete()
    imported = post_json(operator, "/api/runs/import", bundle)
    assert imported.status_code == 201, imported.content
    assert imported.json()["trace_id"] == run.trace_id and imported.json()["status"] == "COMPLETED"
    steps = operator.get(f"/api/runs/{run.trace_id}/steps").json()["steps"]
    assert [s["state"] for s in steps] == [b["state"] for b in bundle["steps"]]


def test_a_tampered_or_malformed_bundle_is_a_422() -> None:
    run = start_and_execute("t-count", {"target": 1})
    operator = client_as("operator")
    bundle = operator.get(f"/api/runs/{run.trace_id}/export").json()
    Run.objects.filter(pk=run.pk).delete()
    tampered = {**bundle, "run": {**bundle["run"], "seed": bundle["run"]["seed"] + 1}}
    assert (
        "tampered" in assert_error(post_json(operator, "/api/runs/import", tampered), 422, "invalid_bundle")["message"]
    )
    assert_error(post_json(operator, "/api/runs/import", {"format": "zip"}), 422, "invalid_bundle")
    assert not Run.objects.exists()


def test_an_imported_run_keeps_its_original_creation_time() -> None:
    run = start_and_execute("t-count", {"target": 1})
    Run.objects.filter(pk=run.pk).update(created_at=run.created_at - dt.timedelta(days=3))
    operator = client_as("operator")
    bundle = operator.get(f"/api/runs/{run.trace_id}/export").json()
    Run.objects.filter(pk=run.pk).delete()
    imported = post_json(operator, "/api/runs/import", bundle).json()
    original = dt.datetime.fromisoformat(bundle["run"]["created_at"])
    assert dt.datetime.fromisoformat(imported["created_at"]) == original.replace(
        microsecond=original.microsecond // 1000 * 1000
    )


def test_a_bundle_over_the_bundle_limit_is_a_413_and_the_request_limit_does_not_apply() -> None:
    run = start_and_execute("t-count", {"target": 2})
    operator = client_as("operator")
    bundle = operator.get(f"/api/runs/{run.trace_id}/export").json()
    Run.objects.filter(pk=run.pk).delete()
    with override_settings(CMO_MAX_BUNDLE_BYTES=len(json.dumps(bundle)) - 1):
        assert_error(post_json(operator, "/api/runs/import", bundle), 413, "payload_too_large")
    assert not Run.objects.exists()
    with override_settings(CMO_MAX_REQUEST_BYTES=1024):
        too_big = post_json(operator, "/api/runs", {"graph": "t-count", "input": {"x": "y" * 2000}})
        assert_error(too_big, 413, "payload_too_large")
    assert not Run.objects.exists()
    assert post_json(operator, "/api/runs/import", bundle).status_code == 201
