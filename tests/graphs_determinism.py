"""Nodes (``d_*``) and graphs (``d-*``) for the determinism detector's tests, registered on import.

Each offending call is on its own line, marked ``# site:<key>``, so a test can
tell which line an event must name (:func:`site_line`). :data:`COUNTS` counts
executions, so a test can tell whether a step was retried.
"""

from __future__ import annotations

import collections
import datetime
import email.utils
import json
import logging
import os
import random
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from django.utils import timezone

from runs.engine import END, RetryPolicy, graph, node

COUNTS: collections.Counter[str] = collections.Counter()
log = logging.getLogger(__name__)


def site_line(key: str) -> int:
    """The line of this file marked ``# site:<key>``."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# site:{key}"):
            return number
    raise LookupError(key)


def _direct(call: str) -> None:
    if call == "time.time":
        time.time()  # site:time.time
    elif call == "time.time_ns":
        time.time_ns()  # site:time.time_ns
    elif call == "datetime.now":
        datetime.datetime.now(datetime.UTC)  # site:datetime.now
    elif call == "datetime.utcnow":
        datetime.datetime.utcnow()  # site:datetime.utcnow
    elif call == "datetime.today":
        datetime.datetime.today()  # site:datetime.today
    elif call == "date.today":
        datetime.date.today()  # site:date.today
    elif call == "random.random":
        random.random()  # site:random.random
    elif call == "random.randint":
        random.randint(1, 6)  # site:random.randint
    elif call == "random.choice":
        random.choice("abc")  # site:random.choice
    elif call == "random.shuffle":
        random.shuffle([1, 2, 3])  # site:random.shuffle
    elif call == "random.getrandbits":
        random.getrandbits(8)  # site:random.getrandbits
    elif call == "random.Random()":
        random.Random().random()  # site:random.Random()
    elif call == "random.seed":
        random.seed(5)  # site:random.seed
    elif call == "Random.seed":
        random.Random(1).seed()  # site:Random.seed
    elif call == "SystemRandom":
        random.SystemRandom().randint(1, 6)  # site:SystemRandom
    elif call == "uuid.uuid4":
        uuid.uuid4()  # site:uuid.uuid4
    elif call == "uuid.uuid1":
        uuid.uuid1()  # site:uuid.uuid1
    elif call == "os.urandom":
        os.urandom(8)  # site:os.urandom
    elif call == "secrets.token_hex":
        secrets.token_hex(8)  # site:secrets.token_hex
    elif call == "secrets.choice":
        secrets.choice("abc")  # site:secrets.choice
    else:
        raise ValueError(call)


@node("d_call")
def d_call(state: dict[str, Any], ctx: Any) -> Any:
    COUNTS["d_call"] += 1
    _direct(state["call"])
    return ctx.result({**state, "done": True})


@node("d_seeded")
def d_seeded(state: dict[str, Any], ctx: Any) -> Any:
    """A generator the node seeded itself is deterministic."""
    rng = random.Random(state.get("seed", 42))
    values = [rng.random(), rng.randint(1, 100), rng.choice("abcdef"), rng.getrandbits(16), rng.randbytes(4).hex()]
    deck = list(range(10))
    rng.shuffle(deck)
    return ctx.result({**state, "values": values, "deck": deck})


@node("d_library")
def d_library(state: dict[str, Any], ctx: Any) -> Any:
    """Libraries that read the clock for their own bookkeeping: not the node's call."""
    log.warning("d_library logs a record (logging stamps it with time.time())")
    logging.info("and the root logger too")
    text = json.dumps({"a": [1, 2, 3]}, sort_keys=True)
    woke = threading.Event().wait(0.001)  # a timeout: the monotonic clock
    stamp = email.utils.formatdate()  # the standard library reads time.time() itself
    django_now = timezone.now()  # site-packages reads datetime.now() itself
    request = httpx.Request("GET", "http://example.invalid/items", params={"q": "x"})
    timeout = httpx.Timeout(1.5)
    started = time.monotonic()
    elapsed = time.perf_counter() - time.perf_counter()
    epoch = datetime.datetime.fromtimestamp(0, datetime.UTC).isoformat()
    parsed = uuid.UUID("12345678-1234-5678-1234-567812345678")
    return ctx.result(
        {
            **state,
            "text": text,
            "woke": woke,
            "stamped": bool(stamp),
            "django_now": django_now.tzinfo is not None,
            "url": str(request.url),
            "timeout": timeout.connect,
            "monotonic": started > 0,
            "elapsed": elapsed <= 0,
            "epoch": epoch,
            "uuid": str(parsed),
        }
    )


@node("d_repeat")
def d_repeat(state: dict[str, Any], ctx: Any) -> Any:
    """Three calls at one site and one at another: two events."""
    for _ in range(3):
        time.time()  # site:repeat-loop
    time.time()  # site:repeat-again
    return ctx.result(state)


@node("d_cycle")
def d_cycle(state: dict[str, Any], ctx: Any) -> Any:
    time.time()  # site:cycle
    i = state.get("i", 0) + 1
    return ctx.result({**state, "i": i}, edge="again" if i < 3 else "done")


@node("d_activities")
def d_activities(state: dict[str, Any], ctx: Any) -> Any:
    """The recorded ways, and an activity effect that reads the clock: nothing to report."""

    def effect() -> dict[str, Any]:
        return {"at": time.time(), "id": str(uuid.uuid4()), "r": random.random(), "now": str(datetime.datetime.now())}

    got = ctx.activities.call("d_effect", {"what": "clock"}, effect)
    return ctx.result(
        {
            **state,
            "now": ctx.activities.now().isoformat(),
            "rand": ctx.activities.rand(),
            "randint": ctx.activities.randint(1, 6),
            "uuid": ctx.activities.uuid4(),
            "effect_keys": sorted(got),
        }
    )


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()  # site:helper


@node("d_helper")
def d_helper(state: dict[str, Any], ctx: Any) -> Any:
    """A helper of the node's own code is node code: the event names the helper."""
    _stamp()
    return ctx.result(state)


@node("d_strict_call", retry=RetryPolicy(max_attempts=3, backoff=0))
def d_strict_call(state: dict[str, Any], ctx: Any) -> Any:
    COUNTS["d_strict_call"] += 1
    _direct(state["call"])
    COUNTS["d_strict_call_after"] += 1
    return ctx.result({**state, "done": True})


@node("d_strict_swallow", retry=RetryPolicy(max_attempts=3, backoff=0))
def d_strict_swallow(state: dict[str, Any], ctx: Any) -> Any:
    """Swallows the failure, then returns or raises something else: the step fails with it anyway."""
    COUNTS["d_strict_swallow"] += 1
    try:
        uuid.uuid4()  # site:swallowed
    except Exception:  # noqa: BLE001 - the careless node under test
        pass
    if state.get("then") == "raise":
        raise RuntimeError("something else went wrong")
    return ctx.result({**state, "swallowed": True})


@node("d_timeout_clock", timeout=5)
def d_timeout_clock(state: dict[str, Any], ctx: Any) -> Any:
    """Runs in the helper thread that enforces the timeout."""
    state = {**state, "thread": threading.current_thread().name.startswith("cmo-node")}
    time.time()  # site:timeout
    return ctx.result(state)


@node("d_wait")
def d_wait(state: dict[str, Any], ctx: Any) -> Any:
    """Reads the clock, then waits for a signal (a BaseException through the detector)."""
    if state.get("clock"):
        time.time()  # site:wait
    payload = ctx.activities.wait_for_signal("go")
    return ctx.result({**state, "payload": payload})


graph("d-call", entry="d_call", edges=[("d_call", END)])
graph("d-call-off", entry="d_call", edges=[("d_call", END)], determinism="off")
graph("d-seeded", entry="d_seeded", edges=[("d_seeded", END)])
graph("d-library", entry="d_library", edges=[("d_library", END)])
graph("d-repeat", entry="d_repeat", edges=[("d_repeat", END)])
graph("d-cycle", entry="d_cycle", edges=[("d_cycle", "d_cycle", "again"), ("d_cycle", END, "done")])
graph("d-activities", entry="d_activities", edges=[("d_activities", END)])
graph("d-activities-strict", entry="d_activities", edges=[("d_activities", END)], determinism="strict")
graph("d-helper", entry="d_helper", edges=[("d_helper", END)])
graph("d-strict", entry="d_strict_call", edges=[("d_strict_call", END)], determinism="strict")
graph("d-strict-swallow", entry="d_strict_swallow", edges=[("d_strict_swallow", END)], determinism="strict")
graph("d-timeout", entry="d_timeout_clock", edges=[("d_timeout_clock", END)])
graph("d-timeout-strict", entry="d_timeout_clock", edges=[("d_timeout_clock", END)], determinism="strict")
graph("d-wait", entry="d_wait", edges=[("d_wait", END)])
graph("d-wait-strict", entry="d_wait", edges=[("d_wait", END)], determinism="strict")
graph("d-library-strict", entry="d_library", edges=[("d_library", END)], determinism="strict")
graph("d-seeded-strict", entry="d_seeded", edges=[("d_seeded", END)], determinism="strict")
