"""Wake workers after commit. Messages only wake; the database says what to run."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# In the embedded single-process mode the in-memory channel layer lives on the
# server's event loop; threads that are not on it hand their sends to it.
_main_loop: asyncio.AbstractEventLoop | None = None


# Step announcements are coalesced per group and flushed from the loop every
# FLUSH_SECONDS: a cross-thread wake-up per step cost about 0.4 ms of a 1 ms step.
FLUSH_SECONDS = 0.05
_pending: dict[str, dict[str, Any]] = {}
_pending_lock = threading.Lock()


def set_main_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    global _main_loop
    _main_loop = loop
    if loop is not None:
        loop.call_soon_threadsafe(lambda: _tasks.add(loop.create_task(_flush_forever())))


_tasks: set[asyncio.Task[None]] = set()


async def _flush_forever() -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        with _pending_lock:
            batch = list(_pending.items())
            _pending.clear()
        layer = get_channel_layer()
        for group, message in batch:
            try:
                await layer.group_send(group, message)
            except Exception as exc:  # noqa: BLE001 - live updates are best effort; pages re-read the database
                log.warning("could not broadcast to %s: %s", group, exc)


def group_send_coalesced(group: str, message: dict[str, Any]) -> None:
    """Like group_send_now, but a burst to one group sends only its latest message (within 50 ms).

    For messages that mean "look again" (a step committed): the receiver reads what is new.
    """
    loop = _main_loop
    if loop is None or not loop.is_running():
        group_send_now(group, message)
        return
    with _pending_lock:
        _pending[group] = message


def _run(coro: Coroutine[Any, Any, Any]) -> None:
    loop = _main_loop
    if loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            asyncio.run_coroutine_threadsafe(coro, loop)
            return
    async_to_sync(_await)(coro)


async def _await(coro: Coroutine[Any, Any, Any]) -> Any:
    return await coro


def send_now(channel: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _run(layer.send(channel, message))
    except ChannelFull:
        # Enough wake-ups are already queued; the run is in the database and will be claimed.
        log.debug("channel %s is full; not queueing another wake-up", channel)
    except Exception as exc:  # noqa: BLE001 - a lost wake-up is repaired by polling and the sweeper
        log.warning("could not send to %s: %s", channel, exc)


def group_send_now(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _run(layer.group_send(group, message))
    except Exception as exc:  # noqa: BLE001 - live updates are best effort; pages re-read the database
        log.warning("could not broadcast to %s: %s", group, exc)


def run_wake(run_id: int) -> None:
    """Ask a worker to look at ``run_id``; sent only after the current transaction commits."""
    transaction.on_commit(lambda: send_now(settings.CMO_WORKER_CHANNEL, {"type": "run.dispatch", "run_id": run_id}))
