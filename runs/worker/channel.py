"""Run the Channels worker for ``cmo.runs`` on an asyncio loop, surviving channel-layer outages.

While the channel layer is down the host still polls the database, so runs
progress (more slowly); the listener reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer
from channels.routing import get_default_application
from channels.worker import Worker
from django.conf import settings

from runs.services.dispatch import set_main_loop

log = logging.getLogger(__name__)


async def listen_forever(stop: asyncio.Event) -> None:
    """Listen on the worker channel until ``stop`` is set; restart the listener after a layer error."""
    set_main_loop(asyncio.get_running_loop())
    delay = 0.5
    while not stop.is_set():
        layer = get_channel_layer()
        worker = Worker(
            application=get_default_application(), channels=[settings.CMO_WORKER_CHANNEL], channel_layer=layer
        )
        task = asyncio.ensure_future(worker.arun())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            task.cancel()
            break
        stopper.cancel()
        exc = task.exception()
        log.warning("channel layer listener stopped (%s); reconnecting in %.1fs", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
