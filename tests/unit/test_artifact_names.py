"""Artifact names are checked before any storage call and never reach beyond artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from replay.bundles import bundle_export
from replay.services import run_verify
from runs.activities.artifacts import artifact_name_problem
from runs.models import Activity
from runs.services.blobs import BLOB_KEY, is_blob_ref
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db

BAD_NAMES = ["..", "../escape.txt", "a/../b", "/etc/passwd", ".hidden", "", "a//b", "a/", "x" * 256, "sp ace", "a\\b"]


def _run_with_a_blob() -> tuple[str, str]:
    start_and_execute("h-artifact", {"name": "h/big.txt", "content": "y" * 100_000})
    reader = start_and_execute("h-artifact", {"name": "h/big.txt", "read": True})
    response = Activity.objects.get(run=reader).response
    assert is_blob_ref(response), response
    return reader.trace_id, f"blobs/{response[BLOB_KEY]}.json"


def test_a_dot_dot_artifact_name_deletes_nothing_and_fails_the_step() -> None:
    reader_trace, blob_path = _run_with_a_blob()
    attack = start_and_execute("h-artifact", {"name": "../" + blob_path, "content": "gone"})
    assert attack.status == "FAILED"
    assert "is not allowed" in attack.error and "'..'" in attack.error
    assert default_storage.exists(blob_path), "the other run's blob is intact"
    reader = type(attack).objects.get(trace_id=reader_trace)
    bundle = bundle_export(run=reader)
    assert bundle["blobs"][bundle["activities"][0]["response"][BLOB_KEY]] == "y" * 100_000
    assert run_verify(run=reader).ok
    record = Activity.objects.get(run=attack)
    assert record.status == "failed" and "is not allowed" in record.error, "the refusal is recorded"


def test_an_artifact_named_dot_dot_leaves_the_media_root_alone() -> None:
    run = start_and_execute("h-artifact", {"name": "..", "content": "x"})
    assert run.status == "FAILED" and "is not allowed" in run.error
    assert Path(settings.MEDIA_ROOT).is_dir()


def test_reading_through_dot_dot_is_refused() -> None:
    _, blob_path = _run_with_a_blob()
    run = start_and_execute("h-artifact", {"name": "../" + blob_path, "read": True})
    assert run.status == "FAILED" and "is not allowed" in run.error
    assert "content" not in (run.state or {})


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_artifact_names_are_refused(name: str) -> None:
    assert artifact_name_problem(name)


@pytest.mark.parametrize("name", ["report.txt", "a1b2/report.final.txt", "healing/checkout/plan-2.json", "_x"])
def test_ordinary_artifact_names_are_allowed(name: str) -> None:
    assert artifact_name_problem(name) == ""


def test_rewriting_an_artifact_replaces_it() -> None:
    start_and_execute("h-artifact", {"name": "h/same.txt", "content": "first"})
    second = start_and_execute("h-artifact", {"name": "h/same.txt", "content": "second"})
    assert second.status == "COMPLETED", second.error
    with default_storage.open("artifacts/h/same.txt", "rb") as fh:
        assert fh.read() == b"second"
