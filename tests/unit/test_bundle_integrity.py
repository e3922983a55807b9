"""A trace bundle is checked whole before anything is written, and an import never carries authority.

Each attack recomputes the bundle's sha256 (anyone can), so only the deeper checks stand in its way.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from replay.bundles import BundleError, bundle_export, bundle_import
from replay.services import run_verify
from runs.engine.hashing import json_hash
from runs.models import Activity, Run, RunEvent, Step
from tests.helpers import start_and_execute
from tests.unit.api_fixtures import assert_error, client_as, post_json

pytestmark = pytest.mark.django_db


def reseal(bundle: dict[str, Any]) -> dict[str, Any]:
    """What an attacker does after editing: recompute the bundle's own hash."""
    body = {k: v for k, v in bundle.items() if k != "sha256"}
    return {**body, "sha256": json_hash(body)}


def exported(graph: str = "t-count", data: Any = None) -> dict[str, Any]:
    run = start_and_execute(graph, data if data is not None else {"target": 3})
    bundle = json.loads(json.dumps(bundle_export(run=run)))
    Run.objects.filter(pk=run.pk).delete()
    return bundle


def refused(bundle: dict[str, Any], match: str) -> None:
    runs, steps, activities = Run.objects.count(), Step.objects.count(), Activity.objects.count()
    with pytest.raises(BundleError, match=match):
        bundle_import(bundle=bundle)
    assert (Run.objects.count(), Step.objects.count(), Activity.objects.count()) == (runs, steps, activities)


# -- identity (hole 2) --------------------------------------------------------------------------------------


def test_an_import_records_the_importer_and_keeps_the_bundle_context_as_history_only() -> None:
    bundle = exported()
    bundle["run"]["context"] = {"user": "admin", "role": "admin"}
    forged = reseal(bundle)
    operator = client_as("operator")
    response = post_json(operator, "/api/runs/import", forged)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created_by"] == "operator-user" and body["role"] == "operator"
    run = Run.objects.get(trace_id=body["trace_id"])
    assert run.context["role"] == "operator" and run.created_by is not None
    assert run.context["original_context"] == {"user": "admin", "role": "admin"}, "kept, as history"
    event = RunEvent.objects.get(run=run, kind="imported")
    assert event.actor == "operator-user" and event.detail["role"] == "operator"


# -- the hash chain and the recipes (hole 14) ---------------------------------------------------------------


def test_an_edited_step_state_breaks_the_chain_even_with_its_hashes_recomputed() -> None:
    bundle = exported()
    step = bundle["steps"][1]
    state = {"target": 3, "n": 99}
    step.pop("state_delta", None)
    step["state"] = state
    step["state_hash"] = json_hash(state)
    refused(reseal(bundle), r"steps\[2\] \(index 2\)'s input_hash is not the hash of the state before it")


def test_an_edited_output_is_refused() -> None:
    bundle = exported()
    bundle["steps"][0]["output"] = {"forged": True}
    refused(reseal(bundle), "output does not match its output_hash")


def test_an_edited_activity_request_is_refused() -> None:
    bundle = exported("h-artifact", {"name": "h/a.txt", "content": "hello"})
    assert bundle["activities"], "the run recorded its write"
    bundle["activities"][0]["request"]["name"] = "h/other.txt"
    refused(reseal(bundle), "request does not match its request_hash")


def test_a_graph_definition_edited_without_its_hash_is_refused() -> None:
    bundle = exported()
    bundle["graph"]["definition"]["max_steps"] = 5
    refused(reseal(bundle), "graph.definition_hash is not the hash of")


@pytest.mark.parametrize(
    ("definition", "match"),
    [({}, "cannot be stored here"), ({"name": "../x y"}, "cannot be stored here")],
)
def test_an_imported_definition_is_validated_like_any_other(definition: dict[str, Any], match: str) -> None:
    bundle = exported()
    bundle["graph"]["definition"] = definition
    bundle["graph"]["definition_hash"] = json_hash({"definition": definition, "node_hashes": {}})
    bundle["graph"]["node_hashes"] = {}
    refused(reseal(bundle), match)
    assert client_as("viewer").get("/graphs/").status_code in (200, 302)


def test_the_recipes_in_the_schema_are_enough_to_write_a_bundle_by_hand() -> None:
    """Another tool writes full states (no deltas, no blobs) following only the documented recipes."""
    bundle = exported()
    states = [{"target": 3, "n": i + 1} for i in range(3)]
    before = bundle["run"]["input"]
    for step, state in zip(bundle["steps"], states, strict=True):
        step.pop("state_delta", None)
        step["state"] = state
        assert step["input_hash"] == json_hash(before) and step["state_hash"] == json_hash(state)
        before = state
    bundle["blobs"] = {}
    run = bundle_import(bundle=reseal(bundle))
    assert run_verify(run=run).ok


# -- blobs (hole 12) ------------------------------------------------------------------------------------------


def test_a_blob_reference_the_bundle_does_not_carry_is_refused() -> None:
    bundle = exported("h-artifact", {"name": "h/a.txt", "content": "hello"})
    bundle["activities"][0]["response"] = {"$blob": "0" * 64, "size": 3}
    refused(reseal(bundle), "refers to blob '0000")


def test_a_blob_that_does_not_hash_to_its_key_is_refused() -> None:
    bundle = exported("h-artifact", {"name": "h/a.txt", "content": "hello"})
    forged_key = json_hash({"any": "thing"})
    bundle["blobs"] = {forged_key: {"secret": "../../cmo.sqlite3"}}
    bundle["activities"][0]["response"] = {"$blob": forged_key, "size": 20}
    refused(reseal(bundle), "does not hold the value that hashes to it")


def test_a_reference_can_never_name_a_path_in_storage() -> None:
    bundle = exported("h-artifact", {"name": "h/a.txt", "content": "hello"})
    bundle["activities"][0]["response"] = {"$blob": "../artifacts/h/a.txt", "size": 3}
    refused(reseal(bundle), "malformed bundle")


def test_a_run_with_a_9_mb_input_exports_a_bundle_that_imports_again() -> None:
    """Large values are stored once in blobs and steps carry deltas: the bundle is not 6 x the input."""
    big = "x" * (9 * 1024 * 1024)
    run = start_and_execute("t-count", {"target": 3, "payload": big})
    assert run.status == "COMPLETED", run.error
    text = json.dumps(bundle_export(run=run))
    assert len(text) < 2 * len(big) + 100_000, len(text)
    Run.objects.filter(pk=run.pk).delete()
    operator = client_as("operator")
    response = operator.post("/api/runs/import", data=text, content_type="application/json")
    assert response.status_code == 201, response.content[:300]
    imported = Run.objects.get(trace_id=run.trace_id)
    assert imported.input["payload"] == big and run_verify(run=imported).ok


# -- dates and artifacts (hole 10) -------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["created_at", "finished_at"])
def test_an_impossible_calendar_date_is_refused(field: str) -> None:
    bundle = exported()
    bundle["run"][field] = "2026-02-30T10:00:00+00:00"
    refused(reseal(bundle), "is not a valid date-time")


def test_invalid_base64_is_refused_and_writes_no_empty_artifact() -> None:
    bundle = exported()
    bundle["artifacts"] = {"h/empty.txt": "!!!"}
    refused(reseal(bundle), "is not valid base64")
    assert not default_storage.exists("artifacts/h/empty.txt")


def test_an_unsafe_artifact_name_is_refused_and_leaves_no_earlier_artifact_on_disk() -> None:
    bundle = exported()
    bundle["artifacts"] = {
        "h/first-and-valid.txt": base64.b64encode(b"ok").decode(),
        "../escape.txt": base64.b64encode(b"out").decode(),
    }
    refused(reseal(bundle), "is not allowed")
    assert not default_storage.exists("artifacts/h/first-and-valid.txt")
    assert not (Path(settings.MEDIA_ROOT).parent / "escape.txt").exists()


def test_a_failure_while_writing_removes_the_artifacts_already_written(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = exported()
    bundle["artifacts"] = {"h/one.txt": base64.b64encode(b"1").decode(), "h/two.txt": base64.b64encode(b"2").decode()}
    sealed = reseal(bundle)
    saved: list[str] = []
    real_save = default_storage.save

    def save_then_fail(name: str, content: Any, **kwargs: Any) -> str:
        if saved:
            raise OSError("disk full")
        saved.append(real_save(name, content, **kwargs))
        return saved[-1]

    monkeypatch.setattr(default_storage, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        bundle_import(bundle=sealed)
    monkeypatch.undo()
    assert saved and not default_storage.exists(saved[0])
    assert not Run.objects.exists()


def test_the_api_answers_each_refusal_with_a_422() -> None:
    bundle = exported()
    bundle["run"]["created_at"] = "2026-13-01T00:00:00"
    body = assert_error(post_json(client_as("operator"), "/api/runs/import", reseal(bundle)), 422, "invalid_bundle")
    assert "created_at" in body["message"]
