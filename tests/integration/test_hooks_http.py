"""Webhook deliveries through the real HTTP stack: ``cmo_serve`` (daphne, the middleware, the API and a worker)
on PostgreSQL, sent real HTTP requests; and concurrent duplicates of one delivery on PostgreSQL, which start one
run (the unique (hook, idempotency key) constraint, not a lock in memory)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from hooks import signing
from hooks.models import Hook, HookAudit, HookDelivery
from hooks.services import MAX_BODY_BYTES, Delivery, HookConfig, hook_create, hook_deliver
from runs.models import Run
from runs.services.runs import run_start
from tests.integration.processes import ManagedProcess, child_database_url, wait_for
from tests.unit.dashboard_fixtures import make_user

pytestmark = [pytest.mark.integration]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(postgres_db: None, redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = _port()
    env = {"DATABASE_URL": child_database_url(), "CMO_VAR_DIR": str(tmp_path), "CMO_POLL_SECONDS": "0.2"}
    serve = ManagedProcess("cmo_serve", "--port", str(port), env=env, ready="CMO is serving").start(timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.stop()


def _hook(**config: Any) -> tuple[Hook, str]:
    owner = User.objects.filter(username="operator").first() or make_user("operator")
    config.setdefault("graph_name", "t-count")
    return hook_create(name="alerts", config=HookConfig(**config), user=owner, role="operator")


def _post(
    url: str,
    secret: str,
    payload: Any = None,
    *,
    body: bytes | None = None,
    ts: int | None = None,
    content_type: str = "application/json",
    secret_for_signing: str | None = None,
    name: str = "alerts",
) -> httpx.Response:
    raw = body if body is not None else json.dumps(payload).encode()
    stamp = int(time.time()) if ts is None else ts
    sig = signing.signature(secret=secret_for_signing or secret, timestamp=stamp, body=raw)
    headers = {"Content-Type": content_type, signing.TIMESTAMP_HEADER: str(stamp), signing.SIGNATURE_HEADER: sig}
    return httpx.post(f"{url}/api/hooks/{name}", content=raw, headers=headers, timeout=30)


def test_a_signed_delivery_over_http_starts_one_run_that_a_worker_completes(served: str) -> None:
    hook, secret = _hook()
    answer = _post(served, secret, {"target": 2})
    assert answer.status_code == 202, answer.text
    trace_id = answer.json()["trace_id"]
    assert answer.json() == {"trace_id": trace_id, "hook": "alerts", "duplicate": False}
    assert wait_for(lambda: Run.objects.get(trace_id=trace_id).status == "COMPLETED", timeout=30)
    run = Run.objects.get(trace_id=trace_id)
    assert run.context["hook"] == "alerts" and run.context["role"] == "operator"
    assert HookDelivery.objects.get(hook=hook).run == run
    assert HookAudit.objects.get().remote_addr == "127.0.0.1"


def test_the_same_delivery_twice_over_http_is_one_run(served: str) -> None:
    _, secret = _hook()
    stamp = int(time.time())
    first = _post(served, secret, {"target": 1}, ts=stamp)
    again = _post(served, secret, {"target": 1}, ts=stamp)
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["trace_id"] == first.json()["trace_id"] and again.json()["duplicate"] is True
    assert Run.objects.count() == 1


REFUSALS: dict[str, tuple[dict[str, Any], int, str]] = {
    "bad signature": ({"payload": {"target": 1}, "secret_for_signing": "forged"}, 401, "bad_signature"),
    "stale timestamp": ({"payload": {"target": 1}, "ts": int(time.time()) - 600}, 401, "stale_timestamp"),
    "wrong content type": ({"payload": {"target": 1}, "content_type": "text/plain"}, 415, "unsupported_media_type"),
    "oversized body": ({"body": b'{"p": "' + b"x" * (MAX_BODY_BYTES + 512 * 1024) + b'"}'}, 413, "payload_too_large"),
    "not JSON": ({"body": b"{"}, 400, "malformed_request"),
    "deeply nested": ({"body": b'{"a":' * 3000 + b"1" + b"}" * 3000}, 422, "too_deep"),
    "invalid payload": ({"payload": {"target": "three"}}, 422, "invalid_input"),
    "unknown hook": ({"payload": {}, "name": "no-such-hook"}, 404, "unknown_hook"),
}


def test_each_refusal_over_http_is_its_4xx_and_stores_one_audit_row_and_no_run(served: str) -> None:
    _, secret = _hook()
    for case, (kwargs, status, code) in REFUSALS.items():
        before = HookAudit.objects.count()
        answer = _post(served, secret, **kwargs)
        assert answer.status_code == status, (case, answer.status_code, answer.text[:300])
        body = answer.json()
        assert body["code"] == code and body["message"], (case, body)
        assert HookAudit.objects.count() == before + 1, case
        audit = HookAudit.objects.order_by("-id").first()
        assert audit is not None and (audit.outcome, audit.status_code, audit.code) == ("refused", status, code), case
    assert Run.objects.count() == 0 and HookDelivery.objects.count() == 0


def test_eight_concurrent_copies_of_a_delivery_over_http_start_one_run(served: str) -> None:
    _, secret = _hook(key_source="header", key_name="Idempotency-Key")
    body = json.dumps({"target": 1}).encode()

    def send(i: int) -> httpx.Response:
        stamp = int(time.time())  # each copy signed anew, as a sender's retries are: the key is what dedupes
        return httpx.post(
            f"{served}/api/hooks/alerts",
            content=body,
            timeout=30,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": "evt-1",
                signing.TIMESTAMP_HEADER: str(stamp),
                signing.SIGNATURE_HEADER: signing.signature(secret=secret, timestamp=stamp, body=body),
            },
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202], [a.text for a in answers]
    assert len({a.json()["trace_id"] for a in answers}) == 1
    assert Run.objects.count() == 1 and HookDelivery.objects.count() == 1


def test_a_duplicate_that_races_the_first_delivery_waits_on_the_unique_key_and_answers_its_run(
    postgres_db: None,
) -> None:
    """The first delivery's transaction holds its HookDelivery row uncommitted; the duplicate, in another
    thread and connection, finds no row, blocks on the unique index, then answers the committed run."""
    hook, secret = _hook(key_source="header", key_name="Idempotency-Key")
    body = json.dumps({"target": 1}).encode()
    digest = hashlib.sha256(body).hexdigest()
    inserted, results = threading.Event(), dict[str, Any]()

    def first() -> None:
        try:
            with transaction.atomic():
                row = HookDelivery.objects.create(hook=hook, idempotency_key="evt-9", payload_sha256=digest)
                row.run = run_start(graph_name="t-count", data={"target": 1})
                row.save(update_fields=["run"])
                results["first"] = row.run.trace_id
                inserted.set()
                time.sleep(1.0)  # the duplicate is now waiting on the unique index
        finally:
            connection.close()

    def duplicate() -> None:
        inserted.wait(10)
        stamp = int(time.time())
        started = time.monotonic()
        try:
            results["second"] = hook_deliver(
                delivery=Delivery(
                    name="alerts",
                    body=body,
                    content_type="application/json",
                    content_length=len(body),
                    headers={
                        "Idempotency-Key": "evt-9",
                        signing.TIMESTAMP_HEADER: str(stamp),
                        signing.SIGNATURE_HEADER: signing.signature(secret=secret, timestamp=stamp, body=body),
                    },
                )
            )
            results["waited"] = time.monotonic() - started
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=duplicate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    second = results["second"]
    assert second.duplicate is True and second.trace_id == results["first"]
    assert results["waited"] >= 0.5  # it waited for the first transaction rather than starting a run
    assert Run.objects.count() == 1 and HookDelivery.objects.count() == 1
    assert HookAudit.objects.get().outcome == "duplicate"
