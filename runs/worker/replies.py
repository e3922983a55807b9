"""The engine's side of the replies stream, run by every worker process when Redis is configured.

Workers form one consumer group on ``cmo:replies``: each reply is recorded by
one of them (the run resumes) and acknowledged after. A worker killed while
holding replies has them reclaimed by the others after ``claim_idle_ms``. The
same loop publishes re-invocations that a RetryDirective asked for once due.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import close_old_connections

from runs.services.run_store import release_connection
from runs.specialists.a2a import invocations_republish, specialist_reply_record
from runs.specialists.streams import ENGINE_GROUP, REPLIES, Delivery, StreamConsumer, StreamTransport

log = logging.getLogger(__name__)
LOSS_CHECK_SECONDS = 2.0  # how often a worker looks whether Redis lost its data (one SADD)


class ReplyListener:
    def __init__(self, url: str, name: str, *, threads: int = 4, claim_idle_ms: int = 30_000, max_deliveries: int = 10):
        self.transport = StreamTransport(url, group=ENGINE_GROUP)
        self.consumer = StreamConsumer(
            self.transport,
            "replies",
            name,
            self._handle,
            stream=REPLIES,
            dlq=f"{REPLIES}:dlq",
            group=ENGINE_GROUP,
            threads=threads,
            max_pending=64,
            claim_idle_ms=claim_idle_ms,
            max_deliveries=max_deliveries,
        )
        self.recorded = 0
        self._checked_at = float("-inf")

    def _handle(self, delivery: Delivery) -> None:
        if delivery.kind != "SpecialistResult":
            log.warning("a %s on the replies stream was dropped (message %s)", delivery.kind, delivery.id)
            return
        try:
            if specialist_reply_record(envelope=delivery.envelope) == "recorded":
                self.recorded += 1
        finally:
            release_connection()
            close_old_connections()

    def publish_due(self) -> int:
        """Before each poll: the re-invocations now due and, every LOSS_CHECK_SECONDS, whether Redis lost its
        data, in which case the pending invocations are published again from the database (one worker does it:
        the one whose check restores the sentinel)."""
        if time.monotonic() - self._checked_at > LOSS_CHECK_SECONDS:
            self._checked_at = time.monotonic()
            if self.transport.data_lost():
                try:
                    invocations_republish()
                finally:
                    release_connection()
                    close_old_connections()
        return self.transport.publish_due(now_ms=int(time.time() * 1000))

    def run(self, stop: threading.Event) -> None:
        self.consumer.run(stop, before_poll=self.publish_due)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="cmo-replies", daemon=True)
        thread.start()
        log.info("consuming specialist replies from %s as %s", REPLIES, self.consumer.name)
        return thread
