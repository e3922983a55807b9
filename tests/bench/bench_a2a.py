"""Agent-to-agent over Redis Streams: the transport's round trip against raw Redis, and invocations per
second end to end with 3 specialist processes and 2 workers (PostgreSQL + Redis).

1. Round trip, one message at a time, no database:
   - raw: XADD request, XREADGROUP, XACK, XADD reply, XREADGROUP reply, XACK;
   - CMO: publish_capped (schema validation + the cap's Lua), a StreamConsumer hands it to a handler
     thread that builds and validates a SpecialistResult and replies, the replies consumer takes it,
     release (Lua) frees the slot.
2. End to end with 3 `run_specialist` consumers of t-echo and 2 `cmo_worker` processes: the round trip
   from the request's record to its answer's record (the run resumes then), first for 100 runs one at
   a time, then for 600 runs at once with invocations/s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.bench.common import describe, header, start_event_loop

ROOT = Path(__file__).resolve().parents[2]
ROUND_TRIPS = 1000
RUNS = 600
SEQUENTIAL = 100


def _request(name: str, n: int) -> dict[str, Any]:
    from runs.specialists.envelopes import invocation_request

    return invocation_request(
        trace_id=uuid.uuid4().hex, step=n, seq=0, node="bench", specialist=name, task="echo", payload={"n": n}
    )


def raw_round_trips(url: str) -> list[float]:
    import redis

    r: Any = redis.Redis.from_url(url, decode_responses=True, protocol=2)
    key, replies = f"bench:raw:{uuid.uuid4().hex[:6]}", f"bench:raw-replies:{uuid.uuid4().hex[:6]}"
    for stream in (key, replies):
        r.xgroup_create(stream, "g", id="0", mkstream=True)
    body = '{"payload": {"n": 1}}'
    times = []
    for _ in range(ROUND_TRIPS):
        t0 = time.perf_counter()
        r.xadd(key, {"body": body})
        ((_, [(mid, _fields)]),) = r.xreadgroup("g", "c", {key: ">"}, count=1)
        r.xack(key, "g", mid)
        r.xadd(replies, {"body": body})
        ((_, [(rid, _fields)]),) = r.xreadgroup("g", "e", {replies: ">"}, count=1)
        r.xack(replies, "g", rid)
        times.append((time.perf_counter() - t0) * 1000)
    r.delete(key, replies)
    return times


def cmo_round_trips(url: str) -> list[float]:
    from runs.specialists.envelopes import specialist_result
    from runs.specialists.streams import (
        ENGINE_GROUP,
        REPLIES,
        Delivery,
        StreamConsumer,
        StreamTransport,
        dlq_key,
        held_key,
        inflight_key,
        stream_key,
    )

    name = f"bench-{uuid.uuid4().hex[:6]}"
    t = StreamTransport(url)
    engine = StreamTransport(url, group=ENGINE_GROUP)
    t.redis.delete(REPLIES)
    got = threading.Event()

    def specialist(d: Delivery) -> None:
        t.reply(specialist_result(request=d.envelope, result={"echo": d.envelope["payload"]}))

    def recorded(d: Delivery) -> None:
        engine.release(name, d.envelope["meta"]["idempotency_key"], cap=8)
        got.set()

    spec = StreamConsumer(t, name, "s1", specialist, threads=1)
    replies = StreamConsumer(engine, "replies", "e1", recorded, stream=REPLIES, group=ENGINE_GROUP, threads=1)
    times = []
    for n in range(ROUND_TRIPS):
        got.clear()
        t0 = time.perf_counter()
        t.publish_capped(name, _request(name, n), cap=8)
        while not spec.poll_once(block_ms=100):
            pass
        while not replies.poll_once(block_ms=100):
            pass
        got.wait(5)
        times.append((time.perf_counter() - t0) * 1000)
    for c in (spec, replies):
        c.drain()
    t.redis.delete(stream_key(name), dlq_key(name), inflight_key(name), held_key(name), REPLIES)
    return times


def _spawn(args: list[str], url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CMO_GRAPH_MODULES": "runs.demo,tests.graphs",
        "CMO_LOG_LEVEL": "WARNING",
    }
    log = open(f"/tmp/cmo-bench-{args[0]}-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log, stderr=log)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL after 30 s: a bench must never leave a worker behind on a shared Redis."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            print(f"pid {p.pid} ({' '.join(map(str, p.args[2:4]))}) ignored SIGTERM for 30 s; killed")  # type: ignore[index]
            p.kill()
            p.wait(10)


def end_to_end(url: str) -> dict[str, Any]:
    from django.db.models import Max, Min

    from runs.models import Run
    from runs.services.runs import run_start

    start_event_loop()  # channel sends from this process go through one loop, as in the web server
    Run.objects.all().delete()
    procs = [_spawn(["run_specialist", "t-echo", "--consumer", f"bench-{i}", "--threads", "8"], url) for i in range(3)]
    time.sleep(3)  # registered and consuming
    procs += [_spawn(["cmo_worker", "--concurrency", "16", "--poll", "0.5"], url) for _ in range(2)]
    time.sleep(3)
    # Sequential: one run at a time, so the round trip is not queueing behind other runs.
    sequential = []
    for n in range(SEQUENTIAL):
        pk = run_start(graph_name="t-remote", data={"text": f"s{n}"}).pk
        deadline = time.monotonic() + 30
        while Run.objects.filter(pk=pk).exclude(status="COMPLETED").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        sequential.append(pk)
    # Submitted while the workers are stopped, so the figure is the engine's pace, not the submitter's.
    _stop(procs[3:])
    runs = [run_start(graph_name="t-remote", data={"text": f"n{n}"}).pk for n in range(RUNS)]
    procs[3:] = [_spawn(["cmo_worker", "--concurrency", "16", "--poll", "0.5"], url) for _ in range(2)]
    try:
        deadline = time.monotonic() + 600
        while Run.objects.filter(pk__in=runs).exclude(status="COMPLETED").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("runs did not complete in 600 s")
            time.sleep(0.25)
    finally:
        _stop(procs)
    span = Run.objects.filter(pk__in=runs).aggregate(start=Min("started_at"), end=Max("finished_at"))
    seconds = (span["end"] - span["start"]).total_seconds()
    return {
        "seconds": seconds,
        "per_s": RUNS / seconds,
        "latencies": _asked_to_answered(runs),
        "sequential": _asked_to_answered(sequential),
        "resume": _answered_to_finished(runs),
    }


def _answered_to_finished(runs: list[int]) -> list[float]:
    """Per run, ms from the answer's record to the run's end (resume: claim, replay the step, finish)."""
    from runs.models import Run, RunEvent

    answered = dict(RunEvent.objects.filter(run_id__in=runs, kind="answered").values_list("run_id", "created_at"))
    finished = dict(Run.objects.filter(pk__in=runs, finished_at__isnull=False).values_list("pk", "finished_at"))
    return [(end - answered[r]).total_seconds() * 1000 for r, end in finished.items() if end and r in answered]


def _asked_to_answered(runs: list[int]) -> list[float]:
    """Per run, ms from the send_a2a request's record (published right after) to its answer's record."""
    from runs.models import Activity, RunEvent

    asked = dict(Activity.objects.filter(run_id__in=runs, type="send_a2a").values_list("run_id", "created_at"))
    answered = dict(RunEvent.objects.filter(run_id__in=runs, kind="answered").values_list("run_id", "created_at"))
    return [(answered[r] - asked[r]).total_seconds() * 1000 for r in runs if r in asked and r in answered]


def main(url: str) -> None:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    header(f"A2A round trip, {ROUND_TRIPS} sequential messages")
    raw = raw_round_trips(redis_url)
    cmo = cmo_round_trips(redis_url)
    import statistics

    print(f"raw XADD+XREADGROUP+XACK (request and reply): {describe(raw)}")
    print(f"CMO transport (validated envelopes, cap, replies stream): {describe(cmo)}")
    print(f"ratio CMO / raw (median): {statistics.median(cmo) / statistics.median(raw):.2f}x")
    header(f"A2A end to end: {RUNS} runs, 3 specialist consumers, 2 workers x 16")
    r = end_to_end(url)
    print(f"{r['seconds']:.1f} s, {r['per_s']:.0f} invocations/s (one per run, plus its run's two steps)")
    print(f"request recorded -> answer recorded, one run at a time: {describe(r['sequential'])}")
    print(f"request recorded -> answer recorded, {RUNS} runs at once: {describe(r['latencies'])}")
    print(f"answer recorded -> run finished, {RUNS} runs at once: {describe(r['resume'])}")
