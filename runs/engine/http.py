"""The effect behind ``ctx.activities.http``: a real HTTP request (httpx), made once and recorded."""

from __future__ import annotations

from typing import Any

import httpx

_http_client: httpx.Client | None = None


def _client() -> httpx.Client:
    global _http_client
    if _http_client is None:
        _http_client = httpx.Client(follow_redirects=False, trust_env=False)
    return _http_client


def http_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None,
    json: Any,
    params: dict[str, Any] | None,
    timeout: float,
    idempotency_key: str,
) -> dict[str, Any]:
    all_headers = {"Idempotency-Key": idempotency_key, **(headers or {})}
    resp = _client().request(method.upper(), url, headers=all_headers, json=json, params=params, timeout=timeout)
    content_type = resp.headers.get("content-type", "")
    body: Any
    if "json" in content_type:
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
    else:
        body = resp.text
    return {"status": resp.status_code, "headers": dict(resp.headers), "body": body}
