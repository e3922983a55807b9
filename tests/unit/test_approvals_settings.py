"""CMO_APPROVAL_EXPIRY_HOURS: parsed from the environment; a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRINT = "from django.conf import settings; print(sorted(settings.CMO_APPROVAL_EXPIRY_HOURS.items()))"


def settings_with(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cmo_site.settings", "CMO_APPROVAL_EXPIRY_HOURS": value}
    code = f"import django; django.setup(); {PRINT}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_defaults_and_overrides() -> None:
    default = settings_with("")
    assert default.returncode == 0, default.stderr
    assert "[('critical', 4.0), ('high', 4.0), ('low', 24.0), ('medium', 8.0)]" in default.stdout
    custom = settings_with("high=2, low=0.5")
    assert "[('critical', 4.0), ('high', 2.0), ('low', 0.5), ('medium', 8.0)]" in custom.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("severe=3", "unknown level 'severe'"),
        ("high=soon", "'high=soon' is not level=hours"),
        ("low=0", "must be a positive number of hours"),
    ],
)
def test_a_bad_value_is_refused(value: str, message: str) -> None:
    result = settings_with(value)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "CMO_APPROVAL_EXPIRY_HOURS" in result.stderr
    assert message in result.stderr
