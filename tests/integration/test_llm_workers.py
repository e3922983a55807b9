"""Model calls in real worker processes on PostgreSQL and Redis: a streamed answer reaches a channel-layer
subscriber (what a run page's socket listens to) before its record commits, and a worker killed mid-stream
leaves no record, so the next worker sends the call again with the same Idempotency-Key and records it once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from cmo_site.shared import live
from runs.models import Activity, LlmUsageDaily, Run
from runs.services.runs import run_start
from tests.fixtures.model_server import DEFAULT_API_KEY, OPENAI_PATH, ModelServer
from tests.integration.processes import wait_for, worker

pytestmark = [pytest.mark.integration]

WORDS = " ".join(f"w{i}" for i in range(30))


def _env(server: ModelServer) -> dict[str, str]:
    providers = {
        "oa": {"kind": "openai", "base_url": server.url + "/v1", "api_key_secret": "oa_key",
               "default_model": "m-small", "prices": {"m-small": {"input": 1.0, "output": 2.0}}},
    }  # fmt: skip
    return {
        "CMO_GRAPH_MODULES": "runs.demo,tests.graphs,tests.graphs_llm",
        "CMO_LLM_PROVIDERS": json.dumps(providers),
        "CMO_SECRET_OA_KEY": DEFAULT_API_KEY,
    }


async def _listen(run_id: int, seconds: float) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.run_group(run_id), channel)
    got: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=deadline - loop.time())
            except TimeoutError:
                break
            if message.get("type") == live.RUN_LLM:
                # What the record looks like at the moment this message arrives.
                records = await asyncio.to_thread(
                    lambda: Activity.objects.filter(run_id=run_id, type="llm").count()
                )
                got.append({**message, "records_then": records})
                if message["done"]:
                    break
    finally:
        await layer.group_discard(live.run_group(run_id), channel)
    return got


def test_streamed_text_reaches_a_subscriber_before_the_record_commits(postgres_db: None, redis_url: str) -> None:
    with ModelServer(chunk_delay=0.05) as server, worker("--poll", "0.2", env=_env(server)):
        run = run_start(graph_name="t-llm", data={"provider": "oa", "prompt": WORDS, "stream": True}, seed=1)
        messages = async_to_sync(_listen)(run.pk, 30)
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30)
    assert len(messages) >= 5, messages
    early = [m for m in messages if not m["done"]]
    assert early and all(m["records_then"] == 0 for m in early)  # text arrived while no record existed
    assert "w3" in early[0]["text"] or len(early[0]["text"]) < len(messages[-1]["text"])
    assert messages[-1]["done"] and messages[-1]["text"] == "echo: " + WORDS
    (record,) = Activity.objects.filter(run=run, type="llm")
    assert record.response["text"] == "echo: " + WORDS and record.response["ttft_ms"] is not None


def test_a_worker_killed_mid_stream_leaves_no_record_and_the_next_one_sends_the_call_again(
    postgres_db: None, redis_url: str
) -> None:
    with ModelServer(chunk_delay=0.2) as server:
        first = worker("--lease", "2", "--poll", "0.2", env=_env(server)).start()
        run = run_start(graph_name="t-llm", data={"provider": "oa", "prompt": WORDS, "stream": True}, seed=1)
        try:
            assert server.wait_for(1, path=OPENAI_PATH, timeout=30), first.output
            assert wait_for(lambda: server.requests(OPENAI_PATH)[0].at + 1.0 < time.time(), timeout=5)
            first.kill()  # about 5 of 31 words streamed
        finally:
            first.stop()
        assert not Activity.objects.filter(run=run, type="llm").exists()
        with worker("--lease", "2", "--poll", "0.2", env=_env(server)) as second:
            done = wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=60)
            assert done, second.output
        sent = server.requests(OPENAI_PATH)
    assert len(sent) == 2 and sent[0].key == sent[1].key == f"{run.trace_id}:0:0"
    (record,) = Activity.objects.filter(run=run, type="llm")
    assert record.status == "completed" and record.response["text"] == "echo: " + WORDS
    run.refresh_from_db()
    assert run.tokens == record.tokens == (2 + 30) + 31  # counted once, for the one record
    assert LlmUsageDaily.objects.get(graph_name="t-llm").calls == 1
