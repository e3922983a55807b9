"""LLM calls: the engine's overhead per ``ctx.activities.llm`` call against the bare official client.

Against the local fake provider (tests/fixtures/model_server.py, in this process), for four variants:
openai and anthropic, not streamed (the default short echo answer) and streamed (a scripted answer of
STREAM_WORDS words, one chunk a word). Per variant, after a warm-up, ITERATIONS pairs alternate:

- bare: the official client (``openai.OpenAI(...).chat.completions.create`` or
  ``anthropic.Anthropic(...).messages.create`` / ``.messages.stream``), one client made once and reused
  (as the engine keeps one per provider), the same messages, the stream consumed to its end;
- CMO: a one-step run whose node makes one ``ctx.activities.llm`` call, executed in this process by one
  Executor with the ORM checkpointer and the worker's policy (``PLUGINS.policy()``), as a worker would.
  A streamed run has one subscriber on its run group (the run page), so the live messages go somewhere.

Printed per variant, median and p95 in ms, and against the bare call (difference of the medians and of
the p95s, ratio of the medians):

- ``recorded duration_ms``: the activity's record, the effect alone (key, budget check, the client call,
  the live messages, the cost), without the record's write;
- ``activity call``: ``ctx.activities.llm(...)`` timed inside the node: the request checks, the spend
  read, the policy, the effect, redaction and the record with its usage, run totals and daily row;
- ``one-step run``: run_start, then claim and execute the run to COMPLETED (step and run commits).

``python -m tests.bench.bench_llm``: a fresh SQLite file (the embedded default) in a temporary
directory, or with DATABASE_URL=postgres://... the bench's fresh PostgreSQL database (as
``python -m tests.bench llm``). It asserts nothing about time; it checks that every call answered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from tests.bench.common import header, pct, setup_database, start_event_loop

ITERATIONS = 120  # pairs per variant
WARMUP = 10
STREAM_WORDS = 200
MODEL = "m-bench"
PRICES = {MODEL: {"input": 0.15, "output": 0.60, "cached": 0.075}}
SECRETS = {"bench_openai": "sk-test-key", "bench_anthropic": "sk-test-key"}
PROVIDERS = {"openai": "bench_openai", "anthropic": "bench_anthropic"}  # kind -> provider name (= its secret)
SYSTEM = "Be brief."
PROMPT = "summarise the incident on the checkout service"
LONG_ANSWER = " ".join(f"w{i}" for i in range(STREAM_WORDS))
VARIANTS = [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)]

# The node's own timing of ctx.activities.llm, read back by the loop (not in the run's state), and the
# database queries of one call, counted in the node.
_ACTIVITY_MS: list[float] = []
_ACTIVITY_QUERIES: list[int] = []


def _register_graph() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from runs.engine import END, graph, node
    from runs.engine.graph import GRAPHS

    if GRAPHS.get("b-llm") is not None:
        return

    @node("b_llm_call")
    def b_llm_call(state: dict[str, Any], ctx: Any) -> Any:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
        if state.get("count_queries"):
            with CaptureQueriesContext(connection) as captured:
                answer = ctx.activities.llm(messages, provider=state["provider"], stream=state["stream"])
            _ACTIVITY_QUERIES.append(len(captured.captured_queries))
            return ctx.result({**state, "words": len(answer["text"].split())})
        t0 = time.perf_counter()
        answer = ctx.activities.llm(messages, provider=state["provider"], stream=state["stream"])
        _ACTIVITY_MS.append((time.perf_counter() - t0) * 1000)
        return ctx.result({**state, "words": len(answer["text"].split())})

    graph("b-llm", entry="b_llm_call", edges=[("b_llm_call", END)])


def _providers(url: str) -> dict[str, Any]:
    return {
        PROVIDERS["openai"]: {"kind": "openai", "base_url": url + "/v1", "api_key_secret": "bench_openai",
                              "default_model": MODEL, "prices": PRICES},
        PROVIDERS["anthropic"]: {"kind": "anthropic", "base_url": url, "api_key_secret": "bench_anthropic",
                                 "default_model": MODEL, "prices": PRICES},
    }  # fmt: skip


@contextmanager
def _configured(url: str) -> Iterator[None]:
    """The two providers against the local server, their keys in this 'worker's' environment."""
    from django.test import override_settings

    from runs.engine import secrets as engine_secrets

    for name, value in SECRETS.items():
        os.environ[f"CMO_SECRET_{name.upper()}"] = value
    engine_secrets.reload()
    try:
        with override_settings(CMO_LLM_PROVIDERS=_providers(url)):
            yield
    finally:
        for name in SECRETS:
            os.environ.pop(f"CMO_SECRET_{name.upper()}", None)
        engine_secrets.reload()


@contextmanager
def _server_tuned() -> Iterator[None]:
    """No traceback for a client's reset while the bench runs (restored after). The sync openai client
    closes a stream at ``[DONE]`` without reading the chunked body's end (openai/openai-python#3440), so the
    connection is dropped, for the bare client and the engine alike, and the next streamed call opens a new
    one; when the end was already received, the close is a reset, which the server would print.
    (The server sends with Nagle's algorithm off: tests/fixtures/model_server.py.)
    """
    from tests.fixtures import model_server

    server = model_server._Server
    handle_error = server.handle_error

    def quiet(self: Any, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionResetError):
            handle_error(self, request, client_address)

    server.handle_error = quiet  # type: ignore[method-assign]
    try:
        yield
    finally:
        server.handle_error = handle_error  # type: ignore[method-assign]


# -- the bare calls ------------------------------------------------------------------------------------


def _bare_openai(client: Any, stream: bool, key: str) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    headers = {"Idempotency-Key": key}
    if not stream:
        resp = client.chat.completions.create(model=MODEL, messages=messages, extra_headers=headers)
        return str(resp.choices[0].message.content or "")
    parts: list[str] = []
    chunks = client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}, extra_headers=headers
    )
    with chunks:
        for chunk in chunks:
            for choice in chunk.choices[:1]:
                if choice.delta.content:
                    parts.append(choice.delta.content)
    return "".join(parts)


def _bare_anthropic(client: Any, stream: bool, key: str) -> str:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        "extra_headers": {"Idempotency-Key": key},
    }
    if not stream:
        message = client.messages.create(**body)
        return "".join(block.text for block in message.content if block.type == "text")
    parts: list[str] = []
    with client.messages.stream(**body) as events:
        parts.extend(events.text_stream)
        events.get_final_message()
    return "".join(parts)


# -- the CMO calls -------------------------------------------------------------------------------------


class _Subscriber:
    """One channel on a run's group, as the run page is: the streamed call's live messages reach it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        from channels.layers import get_channel_layer

        self.loop = loop
        self.layer = get_channel_layer()
        self.channel = self._on_loop(self.layer.new_channel())

    def _on_loop(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def join(self, group: str) -> None:
        self._on_loop(self.layer.group_add(group, self.channel))

    def leave(self, group: str) -> int:
        """Receive until the call's last live message (done); leave the group; how many arrived."""
        count = 0
        while True:
            try:
                message = self._on_loop(self.layer.receive(self.channel), timeout=5.0)
            except TimeoutError:
                raise AssertionError(f"no final live message on {group} within 5 s") from None
            if message.get("type") == "run.llm":
                count += 1
                if message.get("done"):
                    break
        self._on_loop(self.layer.group_discard(group, self.channel))
        return count


class _Cmo:
    """One-step runs of b-llm executed here by one Executor, as a worker executes them."""

    OWNER = "bench-llm"

    def __init__(self, loop: asyncio.AbstractEventLoop):
        from runs.engine.executor import Executor
        from runs.engine.plugins import PLUGINS
        from runs.services.run_store import DjangoCheckpointer

        self.executor = Executor(DjangoCheckpointer(owner=self.OWNER), policy=PLUGINS.policy())
        self.subscriber = _Subscriber(loop)
        self.live_messages: list[int] = []

    def close(self) -> None:
        self.executor.close()

    def call(self, provider: str, stream: bool, *, count_queries: bool = False) -> tuple[float, int]:
        """(ms from run_start to the run's end, the run's id); the node appends its activity time."""
        from cmo_site.shared.live import run_group
        from runs.services.leases import run_claim
        from runs.services.runs import run_start

        data: dict[str, Any] = {"provider": provider, "stream": stream}
        if count_queries:
            data["count_queries"] = True
        t0 = time.perf_counter()
        run = run_start(graph_name="b-llm", data=data)
        started = time.perf_counter() - t0
        group = run_group(run.pk)
        if stream:
            self.subscriber.join(group)  # not timed: the page subscribes before the call starts
        t1 = time.perf_counter()
        assert run_claim(run_id=run.pk, owner=self.OWNER)
        self.executor.run(run.pk)
        executed = time.perf_counter() - t1
        if stream:
            self.live_messages.append(self.subscriber.leave(group))
        return (started + executed) * 1000, int(run.pk)


# -- the measurement -----------------------------------------------------------------------------------


def _check(runs: list[int], expected: str) -> list[float]:
    """Every run COMPLETED with an answer as long as the bare client's; the recorded duration_ms of each call."""
    from runs.models import Activity, Run

    rows = list(Run.objects.filter(pk__in=runs).values_list("pk", "status", "state"))
    wrong = [(pk, status, state) for pk, status, state in rows if status != "COMPLETED" or
             (state or {}).get("words") != len(expected.split())]  # fmt: skip
    assert len(rows) == len(runs) and not wrong, f"runs that did not answer as the bare client: {wrong[:3]}"
    records = list(Activity.objects.filter(run_id__in=runs, type="llm").values("status", "duration_ms"))
    assert len(records) == len(runs) and all(r["status"] == "completed" for r in records), records[:3]
    return [float(r["duration_ms"]) for r in records]


def measure(server: Any, cmo: _Cmo, kind: str, stream: bool) -> dict[str, Any]:
    import anthropic
    import openai

    from runs.models import Run

    provider = PROVIDERS[kind]
    base = server.url + "/v1" if kind == "openai" else server.url
    cls = openai.OpenAI if kind == "openai" else anthropic.Anthropic
    client = cls(api_key=SECRETS[provider], base_url=base, max_retries=2, timeout=60.0)
    bare_call: Callable[[Any, bool, str], str] = _bare_openai if kind == "openai" else _bare_anthropic
    bare: list[float] = []
    runs: list[float] = []
    ids: list[int] = []
    expected = ""
    for i in range(WARMUP + ITERATIONS):
        if stream:
            server.script(text=LONG_ANSWER)
        t0 = time.perf_counter()
        expected = bare_call(client, stream, f"bench-bare:{kind}:{stream}:{i}")
        took = (time.perf_counter() - t0) * 1000
        if stream:
            server.script(text=LONG_ANSWER)
        ms, pk = cmo.call(provider, stream)
        if i >= WARMUP:
            bare.append(took)
            runs.append(ms)
            ids.append(pk)
    client.close()
    activity = _ACTIVITY_MS[-ITERATIONS:]
    recorded = _check(ids, expected)
    assert len(expected.split()) == (STREAM_WORDS if stream else len(("echo: " + PROMPT).split())), expected[:80]
    live = cmo.live_messages[-ITERATIONS:] if stream else []
    queries, pk = queries_per_run(server, cmo, kind, stream)
    Run.objects.filter(pk__in=[*ids, pk]).delete()  # the daily rows stay: the rollup updates one row per variant
    return {"bare": bare, "recorded": recorded, "activity": activity, "run": runs, "live": live, "queries": queries}


def queries_per_run(server: Any, cmo: _Cmo, kind: str, stream: bool) -> tuple[tuple[int, int], int]:
    """One more run, untimed: ((database queries of the activity call, of the rest of the run), its id).
    The node's queries go through this thread's connection too, so the whole run's count includes them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if stream:
        server.script(text=LONG_ANSWER)
    with CaptureQueriesContext(connection) as captured:
        _, pk = cmo.call(PROVIDERS[kind], stream, count_queries=True)
    activity = _ACTIVITY_QUERIES[-1]
    return (activity, len(captured.captured_queries) - activity), pk


def _row(label: str, values: list[float], bare: list[float] | None) -> str:
    med, p95 = statistics.median(values), pct(values, 95)
    line = f"  {label:<24} {med:9.3f} {p95:9.3f}"
    if bare is not None:
        bmed, bp95 = statistics.median(bare), pct(bare, 95)
        line += f" {med - bmed:+10.3f} {p95 - bp95:+10.3f} {med / bmed:8.2f}x"
    return line


def main(url: str) -> dict[str, float]:
    from runs.models import LlmUsageDaily
    from tests.fixtures.model_server import ModelServer

    header(
        f"LLM calls: engine overhead per ctx.activities.llm call against the bare client, "
        f"{ITERATIONS} interleaved pairs per variant ({url.split(':', 1)[0]})"
    )
    loop = start_event_loop()
    _register_graph()
    results: dict[str, float] = {}
    with _server_tuned(), ModelServer() as server, _configured(server.url):
        cmo = _Cmo(loop)
        try:
            measured = {(kind, stream): measure(server, cmo, kind, stream) for kind, stream in VARIANTS}
        finally:
            cmo.close()
        calls = sum(row.calls for row in LlmUsageDaily.objects.filter(graph_name="b-llm"))
    expected_calls = len(VARIANTS) * (WARMUP + ITERATIONS + 1)
    assert calls == expected_calls, f"daily rollup counted {calls} calls, expected {expected_calls}"
    print(f"  {'ms':<24} {'median':>9} {'p95':>9} {'CMO-bare':>10} {'CMO-bare':>10} {'CMO/bare':>9}")
    print(f"  {'':<24} {'':>9} {'':>9} {'median':>10} {'p95':>10} {'median':>9}")
    for (kind, stream), m in measured.items():
        name = f"{kind}, {'streamed' if stream else 'not streamed'}"
        if stream:
            name += f" ({STREAM_WORDS} chunks, median {statistics.median(m['live']):.0f} live messages)"
        print(name)
        print(_row("bare client call", m["bare"], None))
        print(_row("CMO recorded duration_ms", m["recorded"], m["bare"]))
        print(_row("CMO activity call", m["activity"], m["bare"]))
        print(_row("CMO one-step run", m["run"], m["bare"]))
        activity_sql, rest_sql = m["queries"]
        print(f"  SQL statements (as Django logs them): {activity_sql} in the activity call, {rest_sql} in the rest")
        tag = f"{kind}_{'stream' if stream else 'plain'}"
        results[f"{tag}_bare_ms"] = statistics.median(m["bare"])
        results[f"{tag}_activity_overhead_ms"] = statistics.median(m["activity"]) - statistics.median(m["bare"])
        results[f"{tag}_run_overhead_ms"] = statistics.median(m["run"]) - statistics.median(m["bare"])
    print(f"daily rollup: {calls} calls counted in LlmUsageDaily for b-llm, one per CMO call of the bench")
    return results


def setup_sqlite() -> str:
    """The embedded default (no DATABASE_URL): a fresh SQLite file in a temporary CMO_VAR_DIR, migrated."""
    var = tempfile.mkdtemp(prefix="cmo-bench-llm-")
    os.environ["CMO_VAR_DIR"] = var
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmo_site.settings")
    os.environ.setdefault("CMO_GRAPH_MODULES", "runs.demo,tests.graphs")
    os.environ.setdefault("CMO_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return f"sqlite:///{var}/cmo.sqlite3"


if __name__ == "__main__":
    if os.environ.get("DATABASE_URL"):
        main(setup_database())
    else:
        try:
            main(setup_sqlite())
        finally:
            shutil.rmtree(os.environ["CMO_VAR_DIR"], ignore_errors=True)
