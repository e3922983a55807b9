"""Which keys and text shapes count as secrets (runs.engine.redaction)."""

from __future__ import annotations

import pytest

from runs.engine.redaction import REDACTED, is_secret_key, redact, redact_text


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "Authorization",
        "authorization",
        "X-Api-Key",
        "api_key",
        "apiKey",
        "access_token",
        "refreshToken",
        "X-Auth-Token",
        "client_secret",
        "Cookie",
        "Set-Cookie",
        "sessionid",
        "private_key",
        "credentials",
        "passwd",
        "key",
    ],
)
def test_secret_names_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["max_tokens", "token_count", "keys", "monkey", "author", "passenger", "bypass", "status", "url", "step"]
)
def test_ordinary_names_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_replaces_values_at_any_depth_and_keeps_the_rest() -> None:
    value = {
        "headers": {"Authorization": "Bearer abcdef123456", "Accept": "application/json"},
        "json": {"items": [{"api_key": "k-1", "n": 1}], "max_tokens": 50},
    }
    assert redact(value) == {
        "headers": {"Authorization": REDACTED, "Accept": "application/json"},
        "json": {"items": [{"api_key": REDACTED, "n": 1}], "max_tokens": 50},
    }


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("calling with Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("GET https://api.example.com/v1?q=1&api_key=sk-live-123&x=2", "sk-live-123"),
        ("connect postgres://app:hunter2@db:5432/cmo failed", "hunter2"),
        ("{'password': 'hunter2', 'user': 'bob'}", "hunter2"),
        ('{"client_secret": "abc def", "n": 1}', "abc def"),
        ("token=t0k3n-value; path=/", "t0k3n-value"),
        ("http://testserver/health?token=tk-0987654321", "tk-0987654321"),
        ("POST https://h/x?a=1&access_token=at-123&b=2 failed", "at-123"),
    ],
)
def test_credentials_in_free_text_are_masked(text: str, secret: str) -> None:
    masked = redact_text(text)
    assert secret not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "text",
    ["2026-11-22T08:00:00+00:00", "max_tokens=100 and status: ok", "http://example.com:8080/path?q=1", "plain words"],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize("text", ["x" * 300_000 + ":", "http://" + "a:" * 100_000, "a." * 150_000 + "=1"])
def test_long_payloads_are_scanned_in_linear_time(text: str) -> None:
    """A 300 kB string without separators once took minutes (backtracking); now well under a second."""
    import time

    t0 = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - t0 < 2.0
