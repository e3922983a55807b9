"""/health (liveness), /health/ready (dependencies) and processes refusing to start without them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from botocore.config import Config
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_S3 = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "cmo",
            "endpoint_url": "http://127.0.0.1:1",
            "access_key": "k",
            "secret_key": "s",
            "region_name": "us-east-1",
            "client_config": Config(connect_timeout=1, retries={"max_attempts": 0}),
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def test_liveness_answers_without_touching_dependencies() -> None:
    with override_settings(CHANNEL_LAYERS={"default": _redis_layer(DEAD_REDIS)}):
        response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_reports_each_dependency_with_its_latency() -> None:
    response = Client().get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "channel_layer", "storage"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert isinstance(check["latency_ms"], float) and check["latency_ms"] >= 0


@pytest.mark.django_db
def test_ready_is_503_naming_the_channel_layer_when_redis_is_down() -> None:
    with override_settings(CHANNEL_LAYERS={"default": _redis_layer(DEAD_REDIS)}):
        response = Client().get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["channel_layer"]
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]
    assert (
        "Connect" in body["checks"]["channel_layer"]["detail"] or "refused" in body["checks"]["channel_layer"]["detail"]
    )


@pytest.mark.django_db
def test_ready_is_503_naming_storage_when_the_bucket_is_unreachable() -> None:
    with override_settings(STORAGES=DEAD_S3):
        response = Client().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["down"] == ["storage"]


@pytest.mark.django_db
def test_a_storage_that_never_answers_reads_as_down_within_the_check_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from cmo_site.shared import health

    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.5)
    hanging = {**DEAD_S3, "default": {**DEAD_S3["default"], "OPTIONS": {**DEAD_S3["default"]["OPTIONS"]}}}
    with socket.socket() as listener:  # accepts the connection, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        hanging["default"]["OPTIONS"]["endpoint_url"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
        hanging["default"]["OPTIONS"]["client_config"] = Config(read_timeout=30, retries={"max_attempts": 0})
        with override_settings(STORAGES=hanging):
            t0 = time.perf_counter()
            report = health.dependency_report(["storage"])
            elapsed = time.perf_counter() - t0
    assert report["storage"]["ok"] is False
    assert report["storage"]["detail"] == "TimeoutError: no answer within 0.5 s"
    assert elapsed < 2


def _redis_layer(url: str) -> dict[str, object]:
    return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}


CHILD_VAR_DIR = tempfile.mkdtemp(prefix="cmo-health-")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a child on the embedded defaults (SQLite in a scratch dir), with ``env`` on top."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    child_env.update({"CMO_VAR_DIR": CHILD_VAR_DIR, **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=child_env, text=True, capture_output=True, timeout=60
    )


def test_worker_refuses_to_start_when_the_database_is_unreachable() -> None:
    result = _manage("cmo_worker", DATABASE_URL="postgres://postgres@127.0.0.1:1/cmo", CMO_DB_POOL_SIZE="8")
    assert result.returncode != 0
    assert "cannot start: the database" in result.stderr
    assert "is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_refuses_to_start_when_the_channel_layer_is_unreachable() -> None:
    result = _manage("cmo_worker", REDIS_URL=DEAD_REDIS)
    assert result.returncode != 0
    assert "cannot start: the channel layer" in result.stderr
    assert "database" not in result.stderr


def test_scheduler_refuses_to_start_when_a_dependency_is_unreachable() -> None:
    result = _manage("cmo_scheduler", "--once", REDIS_URL=DEAD_REDIS)
    assert result.returncode != 0
    assert "cannot start: the channel layer" in result.stderr


def test_scheduler_prints_what_it_uses_when_everything_answers() -> None:
    migrated = _manage("migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    result = _manage("cmo_scheduler", "--once")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("using database: SQLite ")
    assert "channel layer: in-memory" in first
    assert first.endswith(f"storage: filesystem {CHILD_VAR_DIR}/artifacts")
