"""``python manage.py run_specialist NAME``: host a Python specialist as a Redis Streams consumer.

The specialist is the function registered with ``@specialist(NAME)`` (the same
code the embedded mode calls in-process). Each request's answer goes to the
engine's replies stream as a SpecialistResult before the request is
acknowledged; a handler raising ``Retry`` answers with a RetryDirective.
DecisionNotices reach the specialist's ``on_decision`` hook.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from runs.engine.specialists import SPECIALISTS, Retry, SpecialistSpec
from runs.specialists.announce import ApiRegistry, DatabaseRegistry, Registry, RegistryError
from runs.specialists.envelopes import specialist_result
from runs.specialists.streams import Delivery, StreamConsumer, StreamTransport, stream_key

HEARTBEAT_SECONDS = 10.0


class Command(BaseCommand):
    help = "Host a registered Python specialist as a consumer of its Redis stream."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="the specialist's name (registered with @specialist)")
        parser.add_argument("--consumer", default=None, help="consumer name (default: host:pid)")
        parser.add_argument("--threads", type=int, default=4, help="requests handled at once")
        parser.add_argument("--max-pending", type=int, default=16, help="stop reading at this many unacked")
        parser.add_argument("--max-deliveries", type=int, default=5, help="then the message goes to the DLQ")
        parser.add_argument("--claim-idle-ms", type=int, default=30_000, help="reclaim a dead consumer's messages")
        parser.add_argument(
            "--api",
            default=os.environ.get("CMO_API_URL", ""),
            help="register and heartbeat over this CMO API base URL (no database needed); token from CMO_API_TOKEN",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        spec = SPECIALISTS.get(name)
        if spec is None:
            raise CommandError(f"no specialist {name!r} is registered; known: {', '.join(sorted(SPECIALISTS))}")
        if not settings.REDIS_URL:
            raise CommandError("run_specialist needs REDIS_URL (Redis Streams)")
        transport = StreamTransport(settings.REDIS_URL)
        registry = self._registry(options["api"])
        try:
            registry.register(name=name, version=spec.version, capabilities=spec.capabilities, address=stream_key(name))
        except RegistryError as exc:
            raise CommandError(f"could not register {name!r}: {exc}") from exc

        instance = options["consumer"] or f"{socket.gethostname()}:{os.getpid()}"

        def handle_one(delivery: Delivery) -> None:
            if delivery.kind == "DecisionNotice":
                if spec.on_decision is not None:
                    spec.on_decision(delivery.envelope)
                return
            transport.reply(answer(spec, delivery, instance))

        consumer = StreamConsumer(
            transport,
            name,
            instance,
            handle_one,
            max_deliveries=options["max_deliveries"],
            max_pending=options["max_pending"],
            claim_idle_ms=options["claim_idle_ms"],
            threads=options["threads"],
        )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        threading.Thread(target=self._heartbeat, args=(registry, name, stop), daemon=True).start()
        self.stdout.write(f"specialist {name} consuming {stream_key(name)} as {consumer.name}", ending="\n")
        self.stdout.flush()
        consumer.run(stop)
        self.stdout.write(f"specialist {name} stopped")

    @staticmethod
    def _registry(api: str) -> Registry:
        if not api:
            return DatabaseRegistry()
        token = os.environ.get("CMO_API_TOKEN", "")
        if not token:
            raise CommandError("--api needs CMO_API_TOKEN (create one: manage.py api_token create --role specialist)")
        return ApiRegistry(api, token)

    @staticmethod
    def _heartbeat(registry: Registry, name: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                registry.heartbeat(name=name)
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat turns the specialist stale, not dead
                logging.getLogger(__name__).warning("heartbeat failed: %s", exc)


def answer(spec: SpecialistSpec, delivery: Delivery, instance: str) -> dict[str, Any]:
    """Run the handler on an invocation; its result, failure or retry request as a SpecialistResult."""
    request = delivery.envelope
    asked = request["meta"]
    meta = {
        "trace_id": asked["trace_id"],
        "step": asked.get("step"),
        "specialist": spec.name,
        "idempotency_key": asked.get("idempotency_key"),
        "attempt": asked.get("attempt", 1),
        "delivery": delivery.deliveries,
    }
    started = time.perf_counter()
    try:
        result = spec.handler(request["task"], request["payload"], meta)
    except Retry as retry:
        return specialist_result(request=request, instance=instance, retry=retry.directive())
    except Exception as exc:  # noqa: BLE001 - the specialist's failure is the node's answer
        return specialist_result(request=request, instance=instance, error=(type(exc).__name__, str(exc)))
    elapsed = (time.perf_counter() - started) * 1000
    if not isinstance(result, dict):
        error = ("bad_result", f"specialist returned {type(result).__name__}, not an object")
        return specialist_result(request=request, instance=instance, error=error, duration_ms=elapsed)
    return specialist_result(request=request, instance=instance, result=result, duration_ms=elapsed)
