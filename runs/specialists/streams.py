"""Redis Streams transport: one stream per specialist, a consumer group, acks, a DLQ, backpressure.

- ``publish`` validates the envelope and XADDs it to ``cmo:spec:<name>``.
- A :class:`StreamConsumer` reads with XREADGROUP, hands each message to a
  handler, and acknowledges it only after the handler returned (the caller
  records the result first). A message delivered more than ``max_deliveries``
  times, or one that fails envelope validation, goes to ``cmo:spec:<name>:dlq``
  with the reason, and is acknowledged: it never crashes the consumer.
- Backpressure: the consumer stops reading while ``max_pending`` messages are
  unacknowledged and resumes below 80% of that.
- A dead consumer's pending messages are reclaimed with XAUTOCLAIM once idle
  for ``claim_idle_ms``; a live consumer touches (XCLAIM JUSTID) the messages
  it is still handling at every poll, so a slow handler is not mistaken for a
  dead one. A restarted consumer first re-reads its own pending ones.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from runs.engine.schemas import EnvelopeInvalid, validate_envelope

log = logging.getLogger(__name__)

GROUP = "cmo-specialists"
RESUME_RATIO = 0.8

# Specialists answer on one stream that the engine's workers consume as a group.
REPLIES = "cmo:replies"
# A set whose absence says Redis lost its data; under cmo:spec: (workers may write there), a name no specialist
# can have (names start with a letter or digit).
SENTINEL = "cmo:spec:_alive"
ENGINE_GROUP = "cmo-engine"
# Re-invocations a RetryDirective asked for, due at their score (epoch ms).
DELAYED = "cmo:a2a:delayed"


def stream_key(specialist: str) -> str:
    return f"cmo:spec:{specialist}"


def dlq_key(specialist: str) -> str:
    return f"cmo:spec:{specialist}:dlq"


def inflight_key(specialist: str) -> str:
    """The idempotency keys of invocations published and not yet answered (a set)."""
    return f"cmo:spec:{specialist}:inflight"


def held_key(specialist: str) -> str:
    """Invocations over the specialist's cap, in submission order (a sorted set; bodies in a hash)."""
    return f"cmo:spec:{specialist}:held"


# Publish under a cap, atomically: a re-send of an invocation already in flight goes out again,
# a new one goes out while fewer than the cap are in flight, otherwise it is held in order.
_PUBLISH_CAPPED = """
local inflight, held, bodies, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cap, idem, kind, body = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
if redis.call('SISMEMBER', inflight, idem) == 1 or cap < 0 or redis.call('SCARD', inflight) < cap then
  redis.call('SADD', inflight, idem)
  redis.call('XADD', stream, '*', 'kind', kind, 'body', body)
  return 'sent'
end
if redis.call('HEXISTS', bodies, idem) == 0 then
  redis.call('HSET', bodies, idem, body)
  redis.call('ZADD', held, redis.call('INCR', held .. ':seq'), idem)
end
return 'held'
"""

# An invocation was answered: free its slot and publish held ones, oldest first, while there is room.
_RELEASE = """
local inflight, held, bodies, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cap, idem, kind = tonumber(ARGV[1]), ARGV[2], ARGV[3]
redis.call('SREM', inflight, idem)
local sent = 0
while cap < 0 or redis.call('SCARD', inflight) < cap do
  local first = redis.call('ZRANGE', held, 0, 0)
  if #first == 0 then break end
  local next_idem = first[1]
  redis.call('ZREM', held, next_idem)
  local body = redis.call('HGET', bodies, next_idem)
  redis.call('HDEL', bodies, next_idem)
  if body then
    redis.call('SADD', inflight, next_idem)
    redis.call('XADD', stream, '*', 'kind', kind, 'body', body)
    sent = sent + 1
  end
end
return sent
"""

# Move due re-invocations to their specialists' streams.
_PUBLISH_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, item in ipairs(due) do
  redis.call('ZREM', KEYS[1], item)
  local entry = cjson.decode(item)
  redis.call('XADD', entry['stream'], '*', 'kind', entry['kind'], 'body', entry['body'])
end
return #due
"""


@dataclass
class Delivery:
    id: str
    envelope: Any
    deliveries: int
    kind: str = "SpecialistInvocationRequest"


Handler = Callable[[Delivery], None]


class StreamTransport:
    def __init__(self, url: str, *, group: str = GROUP):
        # Any: redis-py 8 types replies for RESP2 and RESP3 at once; we use RESP2 shapes.
        self.redis: Any = redis.Redis.from_url(url, decode_responses=True, socket_timeout=15, protocol=2)
        self.group = group
        self._groups: set[tuple[str, str]] = set()

    def ensure_group(self, specialist: str) -> None:
        self.ensure_stream_group(stream_key(specialist), self.group)

    def ensure_stream_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    def publish(self, specialist: str, envelope: Any, *, kind: str = "SpecialistInvocationRequest") -> str:
        """Validate and append an envelope; returns the stream message id."""
        validate_envelope(kind, envelope)
        self.ensure_group(specialist)
        return str(self.redis.xadd(stream_key(specialist), {"kind": kind, "body": json.dumps(envelope)}))

    def data_lost(self) -> bool:
        """True once after Redis lost its data (a flush, a restart without persistence) or on first use: the
        sentinel set (SENTINEL) is gone. One caller gets True and re-publishes from the database."""
        return bool(self.redis.sadd(SENTINEL, "1"))

    def publish_capped(self, specialist: str, envelope: Any, *, cap: int | None) -> str:
        """Publish an invocation unless ``cap`` invocations await replies already; then hold it in order.

        Returns "sent" or "held". A re-send (same idempotency key) of one in flight always goes out.
        """
        kind = "SpecialistInvocationRequest"
        validate_envelope(kind, envelope)
        self.ensure_group(specialist)
        keys = [
            inflight_key(specialist),
            held_key(specialist),
            held_key(specialist) + ":bodies",
            stream_key(specialist),
        ]
        args = [-1 if cap is None else cap, envelope["meta"]["idempotency_key"], kind, json.dumps(envelope)]
        return str(self.redis.eval(_PUBLISH_CAPPED, len(keys), *keys, *args))

    def release(self, specialist: str, idempotency_key: str, *, cap: int | None) -> int:
        """Free an answered invocation's slot; returns how many held invocations were published."""
        self.ensure_group(specialist)
        keys = [
            inflight_key(specialist),
            held_key(specialist),
            held_key(specialist) + ":bodies",
            stream_key(specialist),
        ]
        args = [-1 if cap is None else cap, idempotency_key, "SpecialistInvocationRequest"]
        return int(self.redis.eval(_RELEASE, len(keys), *keys, *args))

    def publish_later(self, specialist: str, envelope: Any, *, due_ms: int) -> None:
        """Publish an invocation to ``specialist`` at ``due_ms`` (epoch ms); see ``publish_due``."""
        kind = "SpecialistInvocationRequest"
        validate_envelope(kind, envelope)
        self.ensure_group(specialist)
        item = json.dumps({"stream": stream_key(specialist), "kind": kind, "body": json.dumps(envelope)})
        self.redis.zadd(DELAYED, {item: due_ms})

    def publish_due(self, *, now_ms: int) -> int:
        return int(self.redis.eval(_PUBLISH_DUE, 1, DELAYED, now_ms))

    def reply(self, envelope: Any) -> str:
        """A specialist's SpecialistResult, to the engine's replies stream."""
        validate_envelope("SpecialistResult", envelope)
        return str(self.redis.xadd(REPLIES, {"kind": "SpecialistResult", "body": json.dumps(envelope)}))

    def notify(self, specialist: str, envelope: Any) -> str:
        """A DecisionNotice to a specialist's stream (it acknowledges it like any message)."""
        return self.publish(specialist, envelope, kind="DecisionNotice")

    def stats(self, specialist: str) -> dict[str, int]:
        """Depth, pending (unacknowledged), DLQ size, in flight and held over the cap, for admin and metrics."""
        key = stream_key(specialist)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(key)
        pipe.xlen(dlq_key(specialist))
        pipe.scard(inflight_key(specialist))
        pipe.zcard(held_key(specialist))
        depth, dlq, in_flight, held = (int(v) for v in pipe.execute())
        pending = 0
        if depth:
            try:
                pending = int(self.redis.xpending(key, self.group)["pending"])
            except redis.ResponseError:
                pending = 0
        return {"depth": depth, "pending": pending, "dlq": dlq, "in_flight": in_flight, "held": held}

    def dead_letters(self, specialist: str, count: int = 100) -> list[dict[str, Any]]:
        return [{"id": mid, **fields} for mid, fields in self.redis.xrange(dlq_key(specialist), count=count)]

    def redrive(self, specialist: str, dlq_id: str) -> str:
        """Publish a dead letter again (after a fix) and remove it from the DLQ."""
        entries = self.redis.xrange(dlq_key(specialist), min=dlq_id, max=dlq_id)
        if not entries:
            raise KeyError(f"no dead letter {dlq_id} for {specialist!r}")
        fields = entries[0][1]
        new_id = self.redis.xadd(stream_key(specialist), {"kind": fields["kind"], "body": fields["body"]})
        self.redis.xdel(dlq_key(specialist), dlq_id)
        return str(new_id)


class StreamConsumer:
    """One consumer of a specialist's stream; ``poll_once`` is the loop body (testable), ``run`` the loop."""

    def __init__(
        self,
        transport: StreamTransport,
        specialist: str,
        name: str,
        handler: Handler,
        *,
        max_deliveries: int = 5,
        max_pending: int = 16,
        claim_idle_ms: int = 30_000,
        threads: int = 4,
        batch: int = 16,
        stream: str | None = None,
        dlq: str | None = None,
        group: str | None = None,
    ):
        """Consume ``specialist``'s stream, or any ``stream`` (with its ``dlq`` and ``group``) such as the replies."""
        self.t = transport
        self.specialist = specialist
        self.stream = stream or stream_key(specialist)
        self.dlq = dlq or dlq_key(specialist)
        self.group = group or transport.group
        self.name = name
        self.handler = handler
        self.max_deliveries = max_deliveries
        self.max_pending = max_pending
        self.claim_idle_ms = claim_idle_ms
        self.batch = batch
        self.paused = False
        self.pauses = 0
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"cmo-{specialist}")
        self._inflight: dict[Future[None], str] = {}
        self._lock = threading.Lock()
        self._recovered_own = False
        transport.ensure_stream_group(self.stream, self.group)

    @property
    def key(self) -> str:
        return self.stream

    def pending_mine(self) -> int:
        info = self.t.redis.xpending_range(
            self.key, self.group, min="-", max="+", count=self.max_pending * 4, consumername=self.name
        )
        return len(info)

    def poll_once(self, block_ms: int = 500) -> int:
        """Reclaim, read what backpressure allows, dispatch to the handler threads; returns messages taken."""
        with self._lock:
            self._inflight = {f: mid for f, mid in self._inflight.items() if not f.done()}
            busy = len(self._inflight)
            holding = list(self._inflight.values())
        if holding:
            # Touch what we are still working on, so other consumers do not reclaim it as abandoned.
            self.t.redis.xclaim(self.key, self.group, self.name, min_idle_time=0, message_ids=holding, justid=True)
        if self.paused and busy < self.max_pending * RESUME_RATIO:
            self.paused = False
        if busy >= self.max_pending:
            if not self.paused:
                self.paused = True
                self.pauses += 1
            time.sleep(block_ms / 1000 / 10)
            return 0
        if self.paused:
            time.sleep(block_ms / 1000 / 10)
            return 0
        room = min(self.batch, self.max_pending - busy)
        messages = self._take(room, block_ms)
        for mid, fields, deliveries in messages:
            self._dispatch(mid, fields, deliveries)
        return len(messages)

    def _take(self, room: int, block_ms: int) -> list[tuple[str, dict[str, str], int]]:
        taken: list[tuple[str, dict[str, str], int]] = []
        if not self._recovered_own:
            # A restarted consumer first takes back what it read and never acknowledged.
            own = self.t.redis.xreadgroup(self.group, self.name, {self.key: "0"}, count=room)
            entries = own[0][1] if own else []
            if not entries:
                self._recovered_own = True
            taken += [(mid, fields, self._deliveries(mid)) for mid, fields in entries if fields]
            if taken:
                return taken
        claimed = self.t.redis.xautoclaim(
            self.key, self.group, self.name, min_idle_time=self.claim_idle_ms, start_id="0-0", count=room
        )
        mine = self._holding()
        for mid, fields in claimed[1]:
            if fields and mid not in mine:
                taken.append((mid, fields, self._deliveries(mid)))
        if len(taken) < room:
            fresh = self.t.redis.xreadgroup(
                self.group, self.name, {self.key: ">"}, count=room - len(taken), block=block_ms
            )
            for mid, fields in fresh[0][1] if fresh else []:
                taken.append((mid, fields, 1))
        return taken

    def _deliveries(self, mid: str) -> int:
        info = self.t.redis.xpending_range(self.key, self.group, min=mid, max=mid, count=1)
        return int(info[0]["times_delivered"]) if info else 1

    def _dispatch(self, mid: str, fields: dict[str, str], deliveries: int) -> None:
        if deliveries > self.max_deliveries:
            self._dead(mid, fields, f"delivered {deliveries} times (max {self.max_deliveries})")
            return
        kind = fields.get("kind", "SpecialistInvocationRequest")
        try:
            envelope = json.loads(fields.get("body", ""))
            validate_envelope(kind, envelope)
        except (json.JSONDecodeError, EnvelopeInvalid) as exc:
            self._dead(mid, fields, f"invalid envelope: {exc}")
            return
        except KeyError:
            self._dead(mid, fields, f"unknown envelope kind {kind!r}")
            return
        future = self._pool.submit(self._handle, Delivery(mid, envelope, deliveries, kind))
        with self._lock:
            self._inflight[future] = mid

    def _holding(self) -> set[str]:
        with self._lock:
            return {mid for f, mid in self._inflight.items() if not f.done()}

    def _handle(self, delivery: Delivery) -> None:
        try:
            self.handler(delivery)
        except Exception:
            # Not acknowledged: it is delivered again (after claim_idle_ms) until max_deliveries.
            log.exception(
                "specialist %s failed on message %s (delivery %d)", self.specialist, delivery.id, delivery.deliveries
            )
            return
        self.t.redis.xack(self.key, self.group, delivery.id)

    def _dead(self, mid: str, fields: dict[str, str], reason: str) -> None:
        pipe = self.t.redis.pipeline()
        pipe.xadd(self.dlq, {**fields, "reason": reason, "original_id": mid})
        pipe.xack(self.key, self.group, mid)
        pipe.execute()
        log.warning("message %s of %s moved to the DLQ: %s", mid, self.specialist, reason)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the handler threads to finish what they hold (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._inflight)
        for f in pending:
            f.result(max(0.0, deadline - time.monotonic()))

    def run(self, stop: threading.Event, *, before_poll: Callable[[], object] | None = None) -> None:
        """Consume until ``stop``; a Redis outage costs one warning per attempt, 1 s doubling to 30 s apart."""
        delay = 0.0
        while not stop.is_set():
            try:
                if before_poll is not None:
                    before_poll()
                self.poll_once()
                delay = 0.0
            except redis.ConnectionError as exc:
                delay = min(delay * 2, 30.0) if delay else 1.0
                log.warning("Redis unavailable (%s); retrying in %.0f s", " ".join(str(exc).split()), delay)
                stop.wait(delay)
            except redis.ResponseError as exc:
                # NOGROUP: Redis restarted empty; UNBLOCKED: the stream was deleted under a blocked read (a flush).
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                # Make the group again; what was published since is read from the start.
                self.t._groups.discard((self.stream, self.group))
                self.t.ensure_stream_group(self.stream, self.group)
        self.drain()
        self._pool.shutdown(wait=True)
