"""Many runner threads broadcasting at once share the worker's Redis connections instead of failing.

As in a worker: the channel layer lives on one event loop (set_main_loop) and
runner threads hand their sends to it, all at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from channels.layers import get_channel_layer

from cmo_site.shared import live as dispatch

pytestmark = [pytest.mark.integration]

THREADS = 128


@pytest.fixture
def worker_loop(redis_url: str) -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-worker-loop", daemon=True)
    thread.start()
    dispatch.set_main_loop(loop)
    yield loop
    dispatch.set_main_loop(None)

    async def close() -> None:
        for task in list(dispatch._tasks):
            task.cancel()
        await get_channel_layer().close_pools()

    asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _on(loop: asyncio.AbstractEventLoop, coro: object, timeout: float = 30.0) -> object:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]


def test_128_threads_broadcasting_at_once_all_get_through_without_too_many_connections(
    worker_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    group, channel = f"ops-{uuid.uuid4().hex}", f"ops-{uuid.uuid4().hex}"
    _on(worker_loop, layer.group_add(group, channel))
    start = threading.Barrier(THREADS)

    def runner(n: int) -> None:
        start.wait()
        dispatch.group_send_now(group, {"type": "run.step", "n": n})

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(THREADS)]
    with caplog.at_level(logging.DEBUG, logger="cmo_site.shared.live"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

        async def receive_all() -> set[int]:
            seen: set[int] = set()
            while len(seen) < THREADS:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), 10)
                except TimeoutError:
                    break
                seen.add(message["n"])
            return seen

        seen = _on(worker_loop, receive_all(), timeout=120)
    assert seen == set(range(THREADS)), f"{THREADS - len(seen)} lost: {caplog.text[-2000:]}"  # type: ignore[arg-type]
    assert "Too many connections" not in caplog.text
