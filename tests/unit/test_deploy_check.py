"""``manage.py check --deploy`` is clean with production settings from the environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings

from cmo_site.checks import metrics_token_check, telemetry_exporter_check

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "cmo.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://cmo.example.com",
    "CMO_TRUST_X_FORWARDED_PROTO": "true",
    "CMO_SSL_REDIRECT": "true",
    "CMO_HSTS_SECONDS": "31536000",
    "CMO_HSTS_INCLUDE_SUBDOMAINS": "true",
    "CMO_HSTS_PRELOAD": "true",
    "CMO_METRICS_TOKEN": secrets.token_urlsafe(24),
}


def _check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("CMO_", "DEBUG", "SECRET_KEY", "ALLOWED_"))}
    child.update({"CMO_VAR_DIR": tempfile.mkdtemp(prefix="cmo-deploy-"), **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = _check_deploy(**PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_when_https_settings_are_missing() -> None:
    env = {k: v for k, v in PRODUCTION.items() if not k.startswith(("CMO_HSTS", "CMO_SSL"))}
    result = _check_deploy(**env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


def test_check_deploy_warns_about_an_open_metrics_endpoint() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "CMO_METRICS_TOKEN"}
    result = _check_deploy(**env)
    assert result.returncode != 0
    assert "cmo.W001" in result.stderr


def test_production_refuses_the_development_secret_key() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = _check_deploy(**env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


@override_settings(CMO_METRICS_TOKEN="")
def test_an_unset_metrics_token_is_a_deploy_warning() -> None:
    assert [m.id for m in metrics_token_check()] == ["cmo.W001"]
    with override_settings(CMO_METRICS_TOKEN="t" * 24):
        assert metrics_token_check() == []


def test_an_unknown_otel_exporter_is_a_deploy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert [m.id for m in telemetry_exporter_check()] == ["cmo.E001"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert telemetry_exporter_check() == []
