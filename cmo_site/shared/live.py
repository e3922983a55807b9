"""The live-update protocol: its groups, its message types, and sending them after commit.

Messages only say "look again" (or "this run may be runnable"): a page re-reads the database
(runs.consumers), a worker claims from it (runs.worker). So a lost message delays, and a duplicate
is harmless. Every message type is in MESSAGES with its JSON Schema; tests/unit/test_live_protocol.py
round-trips each builder's message through JSON against it.

Groups: ``run_group(id)`` (one run's page), RUNS_GROUP (status changes of every run: the runs list,
home, the approvals inbox), APPROVALS_GROUP (the inbox and the navigation badge). The worker channel
(settings.CMO_WORKER_CHANNEL) carries RUN_DISPATCH.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

RUNS_GROUP = "runs"
APPROVALS_GROUP = "approvals"


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


# Message types (Channels calls a consumer's method of the same name with "." as "_").
RUN_STEP = "run.step"
RUN_EVENT = "run.event"
RUN_STATUS = "run.status"
APPROVAL_CHANGED = "approval.changed"
RUN_DISPATCH = "run.dispatch"
RUN_LLM = "run.llm"  # a streamed model call's text so far (its tail), while the call runs

_INT = {"type": "integer"}
_STR = {"type": "string"}


def _schema(type_: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", *fields],
        "additionalProperties": False,
        "properties": {"type": {"const": type_}, **fields},
    }


MESSAGES: dict[str, dict[str, Any]] = {
    RUN_STEP: _schema(RUN_STEP, run_id=_INT, index=_INT, node=_STR),
    RUN_EVENT: _schema(RUN_EVENT, run_id=_INT, event_id=_INT, kind=_STR, to_status=_STR),
    RUN_STATUS: _schema(RUN_STATUS, run_id=_INT, status=_STR),
    APPROVAL_CHANGED: _schema(APPROVAL_CHANGED, request_id=_INT, run_id=_INT, status=_STR, level=_STR),
    RUN_DISPATCH: _schema(RUN_DISPATCH, run_id=_INT),
    RUN_LLM: _schema(RUN_LLM, run_id=_INT, step=_INT, seq=_INT, text=_STR, offset=_INT, done={"type": "boolean"}),
}

# A streamed call's live message carries at most this much of its text (the end of it), so a long answer
# costs each message a bounded size; the page shows "…" before it. The record keeps the whole answer.
LLM_TAIL_CHARS = 16_000


def step_message(*, run_id: int, index: int, node: str) -> dict[str, Any]:
    return {"type": RUN_STEP, "run_id": run_id, "index": index, "node": node}


def event_message(*, run_id: int, event_id: int, kind: str, to_status: str) -> dict[str, Any]:
    return {"type": RUN_EVENT, "run_id": run_id, "event_id": event_id, "kind": kind, "to_status": to_status}


def status_message(*, run_id: int, status: str) -> dict[str, Any]:
    return {"type": RUN_STATUS, "run_id": run_id, "status": status}


def approval_message(*, request_id: int, run_id: int, status: str, level: str) -> dict[str, Any]:
    return {"type": APPROVAL_CHANGED, "request_id": request_id, "run_id": run_id, "status": status, "level": level}


def dispatch_message(*, run_id: int) -> dict[str, Any]:
    return {"type": RUN_DISPATCH, "run_id": run_id}


def llm_message(*, run_id: int, step: int, seq: int, text: str, done: bool) -> dict[str, Any]:
    tail = text[-LLM_TAIL_CHARS:]
    return {
        "type": RUN_LLM,
        "run_id": run_id,
        "step": step,
        "seq": seq,
        "text": tail,
        "offset": len(text) - len(tail),
        "done": done,
    }


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

# Every send in flight holds one of its event loop's Redis connections, and a worker's runner
# threads all send on the one loop: 128 of them at once overran the pool (redis-py raises
# "Too many connections" past max_connections, settings.CHANNEL_LAYERS). So at most SEND_SLOTS
# sends per loop hold a connection and the rest wait their turn, leaving the pool's other
# connections to the listener and the consumers. A send that waits SEND_WAIT_SECONDS for a
# slot is dropped: messages only wake, and polling and the sweeper find what a lost one missed.
SEND_SLOTS = 32
SEND_WAIT_SECONDS = 10.0
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def _in_slot(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` holding one of the running loop's SEND_SLOTS (TimeoutError after SEND_WAIT_SECONDS)."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(SEND_SLOTS)
    try:
        await asyncio.wait_for(slots.acquire(), SEND_WAIT_SECONDS)
    except TimeoutError:
        coro.close()
        raise TimeoutError(f"no free channel-layer connection within {SEND_WAIT_SECONDS:g} s") from None
    try:
        return await coro
    finally:
        slots.release()


# While Redis is down every step would log a dropped message; one line per DROP_LOG_SECONDS says
# how many went (the listener reports the outage itself, once per reconnect attempt).
DROP_LOG_SECONDS = 10.0
_drops_lock = threading.Lock()
_drops_logged_at = -DROP_LOG_SECONDS
_drops_unlogged = 0


def _dropped(target: str, exc: BaseException) -> None:
    global _drops_logged_at, _drops_unlogged
    with _drops_lock:
        now = time.monotonic()
        if now - _drops_logged_at < DROP_LOG_SECONDS:
            _drops_unlogged += 1
            return
        more, _drops_unlogged, _drops_logged_at = _drops_unlogged, 0, now
    also = f" ({more} more dropped in the last {DROP_LOG_SECONDS:g} s)" if more else ""
    log.warning("could not send to %s: %s%s", target, " ".join(str(exc).split()) or type(exc).__name__, also)


async def _flush_forever() -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        with _pending_lock:
            batch = list(_pending.items())
            _pending.clear()
        layer = get_channel_layer()
        for group, message in batch:
            try:
                await _in_slot(layer.group_send(group, message))
            except Exception as exc:  # noqa: BLE001 - live updates are best effort; pages re-read the database
                _dropped(group, exc)


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


def _run(coro: Coroutine[Any, Any, Any], target: str) -> None:
    """Send on the main loop without waiting when there is one (a failure is logged there), else here."""
    loop = _main_loop
    if loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            future = asyncio.run_coroutine_threadsafe(_in_slot(coro), loop)
            future.add_done_callback(lambda f: _sent(f, target))
            return
    async_to_sync(_in_slot)(coro)


def _sent(future: concurrent.futures.Future[Any], target: str) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, ChannelFull):
        log.debug("channel %s is full; not queueing another wake-up", target)
    elif exc is not None:
        _dropped(target, exc)


def send_now(channel: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _run(layer.send(channel, message), channel)
    except ChannelFull:
        # Enough wake-ups are already queued; the run is in the database and will be claimed.
        log.debug("channel %s is full; not queueing another wake-up", channel)
    except Exception as exc:  # noqa: BLE001 - a lost wake-up is repaired by polling and the sweeper
        _dropped(channel, exc)


def group_send_now(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _run(layer.group_send(group, message), group)
    except Exception as exc:  # noqa: BLE001 - live updates are best effort; pages re-read the database
        _dropped(group, exc)


def send_on_commit(group: str, message: dict[str, Any], *, coalesce: bool = False) -> None:
    """Broadcast ``message`` to ``group`` once the current transaction commits (at once outside one).

    ``coalesce``: a burst to one group sends only its latest message (for "look again" messages).
    """
    send = group_send_coalesced if coalesce else group_send_now
    transaction.on_commit(lambda: send(group, message))


def run_wake(run_id: int) -> None:
    """Ask a worker to look at ``run_id``; sent only after the current transaction commits."""
    transaction.on_commit(lambda: wake_now(run_id))


def wake_now(run_id: int) -> None:
    send_now(settings.CMO_WORKER_CHANNEL, dispatch_message(run_id=run_id))
