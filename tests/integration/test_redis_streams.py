"""The Redis Streams transport against the machine's Redis."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from runs.specialists.streams import Delivery, StreamConsumer, StreamTransport, dlq_key, stream_key

pytestmark = [pytest.mark.integration]


def envelope(n: int, specialist: str) -> dict[str, Any]:
    trace = uuid.uuid4().hex
    return {
        "meta": {
            "schema_version": "1",
            "message_id": uuid.uuid4().hex,
            "trace_id": trace,
            "step": n,
            "seq": 0,
            "idempotency_key": f"{trace}:{n}:0",
            "sent_at": "2026-11-22T04:40:00Z",
            "sender": {"kind": "node", "name": "heal"},
            "recipient": {"kind": "specialist", "name": specialist},
        },
        "specialist": specialist,
        "task": "heal",
        "payload": {"n": n},
    }


@pytest.fixture
def transport(redis_url: str) -> Iterator[tuple[StreamTransport, str]]:
    t = StreamTransport(redis_url)
    name = f"spec-{uuid.uuid4().hex[:8]}"
    yield t, name
    t.redis.delete(stream_key(name), dlq_key(name))


def drive(consumer: StreamConsumer, until: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        consumer.poll_once(block_ms=50)
    consumer.drain()


def test_publish_consume_and_acknowledge(transport: tuple[StreamTransport, str]) -> None:
    t, name = transport
    seen: list[int] = []
    consumer = StreamConsumer(t, name, "c1", lambda d: seen.append(d.envelope["payload"]["n"]))
    for n in range(10):
        t.publish(name, envelope(n, name))
    drive(consumer, lambda: len(seen) == 10)
    assert sorted(seen) == list(range(10))
    assert t.stats(name) == {"depth": 10, "pending": 0, "dlq": 0, "in_flight": 0, "held": 0}


def test_a_schema_invalid_envelope_is_refused_at_publish_and_a_malformed_message_goes_to_the_dlq(
    transport: tuple[StreamTransport, str],
) -> None:
    t, name = transport
    bad = envelope(1, name)
    del bad["meta"]["trace_id"]
    from runs.engine.schemas import EnvelopeInvalid

    with pytest.raises(EnvelopeInvalid, match="trace_id"):
        t.publish(name, bad)
    t.ensure_group(name)
    t.redis.xadd(stream_key(name), {"kind": "SpecialistInvocationRequest", "body": json.dumps(bad)})
    t.redis.xadd(stream_key(name), {"kind": "SpecialistInvocationRequest", "body": "{not json"})
    handled: list[Delivery] = []
    consumer = StreamConsumer(t, name, "c1", handled.append)
    drive(consumer, lambda: t.stats(name)["dlq"] == 2)
    assert handled == []
    letters = t.dead_letters(name)
    assert any("trace_id" in letter["reason"] for letter in letters)
    assert any("invalid envelope" in letter["reason"] for letter in letters)
    assert t.stats(name)["pending"] == 0


def test_a_poison_message_reaches_the_dlq_after_n_deliveries_and_can_be_redriven(
    transport: tuple[StreamTransport, str],
) -> None:
    t, name = transport
    attempts = Counter[str]()

    def explode(d: Delivery) -> None:
        attempts[d.id] += 1
        raise RuntimeError("poison")

    t.publish(name, envelope(1, name))
    consumer = StreamConsumer(t, name, "c1", explode, max_deliveries=3, claim_idle_ms=50)
    drive(consumer, lambda: t.stats(name)["dlq"] == 1)
    assert list(attempts.values()) == [3]
    (letter,) = t.dead_letters(name)
    assert "delivered 4 times (max 3)" in letter["reason"]
    t.redrive(name, letter["id"])
    ok: list[int] = []
    StreamConsumer(t, name, "c2", lambda d: ok.append(1), claim_idle_ms=50)
    drive(StreamConsumer(t, name, "c3", lambda d: ok.append(1), claim_idle_ms=50), lambda: ok == [1])
    assert ok == [1] and t.stats(name)["dlq"] == 0


def test_backpressure_pauses_at_max_pending_and_resumes_below_80_percent(
    transport: tuple[StreamTransport, str],
) -> None:
    t, name = transport
    gate = threading.Event()
    done: list[int] = []

    def slow(d: Delivery) -> None:
        gate.wait(10)
        done.append(1)

    for n in range(30):
        t.publish(name, envelope(n, name))
    consumer = StreamConsumer(t, name, "c1", slow, max_pending=10, threads=10)
    for _ in range(20):
        consumer.poll_once(block_ms=20)
    assert consumer.paused and consumer.pauses == 1
    assert t.stats(name)["pending"] == 10  # it stopped reading at max_pending
    gate.set()
    drive(consumer, lambda: len(done) == 30)
    assert len(done) == 30 and t.stats(name)["pending"] == 0


def test_a_killed_consumers_messages_are_reclaimed_and_a_restarted_one_resumes_its_own(
    transport: tuple[StreamTransport, str],
) -> None:
    t, name = transport
    for n in range(6):
        t.publish(name, envelope(n, name))
    # "dead" reads three messages and never acknowledges them (as if killed with -9).
    t.redis.xreadgroup(t.group, "dead", {stream_key(name): ">"}, count=3)
    # "restarted" read two and died; the same name comes back and finishes its own first.
    t.redis.xreadgroup(t.group, "restarted", {stream_key(name): ">"}, count=2)
    seen: list[int] = []
    restarted = StreamConsumer(
        t, name, "restarted", lambda d: seen.append(d.envelope["payload"]["n"]), claim_idle_ms=60_000
    )
    restarted.poll_once(block_ms=20)
    restarted.drain()
    assert sorted(seen) == [3, 4]
    other = StreamConsumer(t, name, "other", lambda d: seen.append(d.envelope["payload"]["n"]), claim_idle_ms=100)
    time.sleep(0.2)
    drive(other, lambda: len(seen) == 6)
    assert sorted(seen) == list(range(6))
    assert t.stats(name)["pending"] == 0
