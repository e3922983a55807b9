"""Run the Channels worker for ``cmo.runs`` on an asyncio loop, surviving channel-layer outages.

While the channel layer is down the host still polls the database, so runs
progress (more slowly); the listener reconnects with backoff, and says so in
one warning line per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis
from channels.layers import get_channel_layer
from channels.routing import get_default_application
from channels.worker import Worker
from django.conf import settings

from cmo_site.shared.live import set_main_loop

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 10.0
# What a receive raises when Redis goes away (refused, closed by the server, timed out).
LAYER_OUTAGES = (OSError, redis.ConnectionError, redis.TimeoutError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Take a finished application instance's exception, so asyncio does not log it as never retrieved."""
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        log.debug("run dispatch consumer ended: %s", _one_line(exc))


class _Listener(Worker):
    """Channels' worker, ended cleanly when its listener fails.

    Its base (asgiref's StatelessServer) gathers the listener with an application checker
    and, when the listener fails, leaves the checker running: it then found the dispatch
    consumer, whose own channel receive failed in the same outage, and logged that at ERROR
    from the root logger with a traceback ("Exception inside application", raised in
    channels' await_many_dispatch) after the listener had already reported the outage. Here
    the checker and the application instances end with the listener, and an instance that
    failed because the channel layer did is logged at DEBUG; any other failure stays an ERROR.
    """

    async def arun(self) -> None:
        checker = asyncio.ensure_future(self.application_checker())
        try:
            await self.handle()
        finally:
            checker.cancel()
            for details in list(self.application_instances.values()):
                future = details["future"]
                future.add_done_callback(_retrieve)
                future.cancel()  # not awaited: a cancelled Redis receive may not end promptly

    async def application_exception(self, exception: BaseException, application_details: dict[str, Any]) -> None:
        if isinstance(exception, LAYER_OUTAGES):
            log.debug("run dispatch consumer stopped with the channel layer: %s", _one_line(exception))
            return
        log.error("run dispatch consumer failed: %s", _one_line(exception), exc_info=exception)


async def listen_forever(stop: asyncio.Event) -> None:
    """Listen on the worker channel until ``stop`` is set; restart the listener after a layer error.

    Reconnects after FIRST_DELAY_SECONDS, doubling to MAX_DELAY_SECONDS; a listener that
    had been up for longer than that starts the next outage from the first delay again.
    """
    set_main_loop(asyncio.get_running_loop())
    delay = FIRST_DELAY_SECONDS
    while not stop.is_set():
        layer = get_channel_layer()
        worker = _Listener(
            application=get_default_application(), channels=[settings.CMO_WORKER_CHANNEL], channel_layer=layer
        )
        started = time.monotonic()
        task = asyncio.ensure_future(worker.arun())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            task.cancel()
            break
        stopper.cancel()
        if time.monotonic() - started > MAX_DELAY_SECONDS:
            delay = FIRST_DELAY_SECONDS
        exc = task.exception()
        log.warning(
            "channel layer listener stopped (%s); reconnecting in %.1f s", _one_line(exc) if exc else "no error", delay
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_SECONDS)
