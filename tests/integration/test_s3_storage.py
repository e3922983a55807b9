"""Artifacts and blobs on S3: django-storages' S3 backend against a local moto server.

The moto server is a real S3-compatible HTTP server in a thread of the test
process; the S3 backend talks to it over HTTP exactly as to AWS or MinIO.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.files.storage import default_storage
from django.test import Client, override_settings
from django.utils import timezone
from moto.server import ThreadedMotoServer

import tests.graphs_activities  # registers a-artifacts
import tests.graphs_engine  # noqa: F401 - registers e-big
from runs.engine import statemachine as sm
from runs.models import Activity, Run
from runs.retention import retention_apply
from runs.services.blobs import BLOB_KEY, blob_load, blob_store
from runs.services.run_store import activity_record
from tests.fixtures.counting_server import unused_port
from tests.helpers import start_and_execute

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "cmo-test"
KEYS = {"access_key": "testing-access", "secret_key": "testing-secret", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEYS["access_key"],
        aws_secret_access_key=KEYS["secret_key"],
        region_name=KEYS["region_name"],
    )


def _bucket_keys(endpoint: str, prefix: str = "") -> set[str]:
    listing = _client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for o in listing.get("Contents", [])}


@pytest.fixture
def s3_storage(s3_endpoint: str) -> Iterator[str]:
    """settings.STORAGES as cmo_site.settings builds it for CMO_STORAGE=s3, pointed at the moto server."""
    storages = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "addressing_style": "path",
                "file_overwrite": True,
                **KEYS,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        yield s3_endpoint


@pytest.mark.django_db(transaction=True)
def test_a_large_activity_payload_round_trips_through_an_s3_blob(s3_storage: str) -> None:
    payload = {"nonce": uuid.uuid4().hex, "rows": ["x" * 100] * 1000}
    ref = blob_store(payload)
    assert set(ref) == {BLOB_KEY, "size"}
    assert f"blobs/{ref[BLOB_KEY]}.json" in _bucket_keys(s3_storage, "blobs/")
    assert blob_load(ref) == payload

    run = start_and_execute("e-big", {"size": 70_000, "nonce": uuid.uuid4().hex})
    assert run.status == sm.COMPLETED, run.error
    row = Activity.objects.get(run=run)
    digest = row.response[BLOB_KEY]
    assert f"blobs/{digest}.json" in _bucket_keys(s3_storage, "blobs/")
    assert len(activity_record(row).response) == 70_032  # read back from the bucket, as a replay does

    # Retention removes the run's blob from the bucket too.
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - dt.timedelta(days=10))
    assert retention_apply(now=timezone.now(), keep_days=5, keep_failed_days=5)["blobs"] == 1
    assert f"blobs/{digest}.json" not in _bucket_keys(s3_storage, "blobs/")


@pytest.mark.django_db(transaction=True)
def test_an_artifact_is_saved_listed_read_and_deleted_on_s3(s3_storage: str) -> None:
    name = f"report-{uuid.uuid4().hex[:8]}.txt"
    run = start_and_execute("a-artifacts", {"name": name, "content": "healing report\n"})
    assert run.status == sm.COMPLETED, run.error
    assert run.state["text"] == "healing report\n"
    assert f"artifacts/{name}" in _bucket_keys(s3_storage, "artifacts/")
    _dirs, files = default_storage.listdir("artifacts")
    assert name in files
    assert default_storage.size(f"artifacts/{name}") == len("healing report\n")

    default_storage.delete(f"artifacts/{name}")
    assert f"artifacts/{name}" not in _bucket_keys(s3_storage, "artifacts/")
    assert not default_storage.exists(f"artifacts/{name}")

    ready = Client().get("/health/ready").json()
    assert ready["checks"]["storage"] == {**ready["checks"]["storage"], "ok": True, "detail": "S3Storage"}


def test_cmo_storage_s3_settings_reach_the_bucket_from_a_fresh_process(s3_endpoint: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "cmo_site.settings",
        "CMO_STORAGE": "s3",
        "CMO_S3_BUCKET": BUCKET,
        "CMO_S3_ENDPOINT_URL": s3_endpoint,
        "CMO_S3_ACCESS_KEY": KEYS["access_key"],
        "CMO_S3_SECRET_KEY": KEYS["secret_key"],
        "CMO_S3_REGION": KEYS["region_name"],
        "CMO_S3_ADDRESSING_STYLE": "path",
    }
    code = (
        "import django; django.setup(); from django.core.files.base import ContentFile; "
        "from django.core.files.storage import default_storage as s; "
        "from cmo_site.shared.health import configuration_summary; "
        "print(s.save('artifacts/from-env.txt', ContentFile(b'hello'))); print(configuration_summary()['storage'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == ["artifacts/from-env.txt", f"S3 bucket {BUCKET} at {s3_endpoint}"]
    assert "artifacts/from-env.txt" in _bucket_keys(s3_endpoint, "artifacts/")
