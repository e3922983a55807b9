"""Least privilege on Redis: ``manage.py redis_acl``'s users, loaded into the machine's Redis.

Each role does its job as its own user, in this process with the real clients (channels-redis's layer, the
streams transport and consumer) and across real processes (a worker and ``run_specialist`` completing a
remote call, a scheduler, the web's readiness check and /metrics), with no denial in Redis's ACL log; each is
refused with NOPERM outside its commands and keys. The users' names are unique to the test and deleted after
it (with the keys of its specialists).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from channels_redis.core import RedisChannelLayer
from django.core.management import CommandError, call_command

from cmo_site.shared.live import dispatch_message, status_message
from runs.specialists.envelopes import invocation_request, specialist_result
from runs.specialists.redis_acl import LayerKeys
from runs.specialists.streams import (
    DELAYED,
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
from tests.conftest import service_missing
from tests.integration.processes import ROOT, ManagedProcess, child_database_url, wait_for, worker

pytestmark = [pytest.mark.integration]

ECHO = "t-echo"  # tests.graphs' remote specialist, which the graph t-remote calls
# Children get this as REDIS_URL: nothing listens there, so a process that did not take its role's URL fails.
NOWHERE = "redis://127.0.0.1:1/13"


@dataclass
class Acl:
    admin: Any  # redis.Redis as the default user; Any: redis-py 8 types replies for RESP2 and RESP3 at once
    prefix: str
    text: str  # the command's stdout: the ACL file
    notes: str  # its stderr: the processes' URLs
    a: str  # two specialists of this test
    b: str
    urls: dict[str, str] = field(default_factory=dict)  # user -> URL

    def user(self, role: str) -> str:
        """``web``, ``worker``, ``scheduler`` or a specialist's name."""
        return f"{self.prefix}{role}" if role in ("web", "worker", "scheduler") else f"{self.prefix}specialist-{role}"

    def url(self, role: str) -> str:
        return self.urls[self.user(role)]

    def client(self, role: str) -> Any:
        return redis.Redis.from_url(self.url(role), decode_responses=True, protocol=2)

    def denials(self) -> list[dict[str, Any]]:
        """Redis's ACL log entries for this test's users."""
        return [e for e in self.admin.acl_log(count=1000) if str(e.get("username", "")).startswith(self.prefix)]


def redis_acl(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("redis_acl", "--no-registry", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def urls_in(notes: str) -> dict[str, str]:
    found = {}
    for line in notes.splitlines():
        if line and not line.startswith("#"):
            url = line.partition("=")[2]
            found[str(urlsplit(url).username)] = url
    return found


@pytest.fixture
def acl(redis_url: str) -> Iterator[Acl]:
    admin: Any = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
    run = uuid.uuid4().hex[:8]
    prefix, a, b = f"cmo-test-{run}-", f"acl-a-{run}", f"acl-b-{run}"
    text, notes = redis_acl("--user-prefix", prefix, "--url", redis_url, *(f"--specialist={n}" for n in (ECHO, a, b)))
    try:
        for line in text.splitlines():
            _, name, *rules = line.split()
            admin.execute_command("ACL", "SETUSER", name, *rules)
        yield Acl(admin, prefix, text, notes, a, b, urls_in(notes))
    finally:
        for name in admin.acl_users():
            if name.startswith(prefix):
                admin.acl_deluser(name)
        for name in (a, b):
            admin.delete(stream_key(name), dlq_key(name), inflight_key(name), *held_keys(name))


def held_keys(name: str) -> list[str]:
    return [held_key(name), held_key(name) + ":bodies", held_key(name) + ":seq"]


def refused(acl: Acl, role: str, *command: Any) -> None:
    """``role`` may not run ``command``: Redis's dry run says so first (so nothing is run that would do harm),
    then the command itself, sent over the role's own connection, is refused with NOPERM."""
    verdict = acl.admin.execute_command("ACL", "DRYRUN", acl.user(role), *command)
    assert verdict != "OK", f"{role} may run {command}"
    with pytest.raises(redis.exceptions.NoPermissionError):
        acl.client(role).execute_command(*command)


def refused_in_a_script(acl: Acl, role: str, call: str) -> None:
    """A script (EVAL, which the role may run) calls only what the role could call itself."""
    with pytest.raises(redis.ResponseError, match="user executing the script can't"):
        acl.client(role).eval(f"return redis.call({call})", 0)


# -- the file ------------------------------------------------------------------------------------------------


def test_a_user_per_role_and_per_specialist_each_on_only_its_own_keys(acl: Acl, redis_url: str) -> None:
    acl_redis_url = redis_url  # the test's Redis database, whichever index the run uses
    lines = {line.split()[1]: line for line in acl.text.splitlines()}
    specialists = sorted([ECHO, acl.a, acl.b])
    assert list(lines) == [acl.user("web"), acl.user("worker"), acl.user("scheduler"), *map(acl.user, specialists)]
    for name, line in lines.items():
        assert line.startswith(f"user {name} reset on >") and "resetchannels -@all +@connection -@dangerous" in line
        assert "~*" not in line and "&" not in line and "+@all" not in line
    mine = lines[acl.user(acl.a)]
    assert f"(~{stream_key(acl.a)} " in mine and f"%W~{dlq_key(acl.a)} %W~{REPLIES} +xadd)" in mine
    assert acl.b not in mine and ECHO not in mine and "asgi" not in mine and "+eval" not in mine
    assert "cmo:spec:*" in lines[acl.user("worker")] and "asgicmo.runs$inflight" in lines[acl.user("worker")]
    # Each process's URL, to the test's Redis, as its user with the password in its line.
    for name, url in acl.urls.items():
        parts = urlsplit(url)
        assert parts.path == urlsplit(acl_redis_url).path and f" >{parts.password} " in lines[name]


def test_the_file_loads_as_a_redis_aclfile(acl: Acl, tmp_path: Path) -> None:
    """Redis refuses an ACL file with anything but user lines (even a comment): a Redis of its own loads this one."""
    server = shutil.which("redis-server")
    if server is None:
        service_missing("redis-server (the ACL file is loaded by a Redis of the test's own)")
    assert server is not None
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(acl.text)
    own_file = ["--aclfile", str(aclfile), "--dir", str(tmp_path)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *own_file],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        own: Any = redis.Redis(port=port, decode_responses=True)
        assert wait_for(lambda: _pings(own), timeout=10), proc.communicate()[0] if proc.poll() is not None else ""
        assert {acl.user(r) for r in ("web", "worker", "scheduler", ECHO)} <= set(own.acl_users())
        assert own.execute_command("ACL", "LOAD") == "OK"
        password = urlsplit(acl.url(ECHO)).password
        assert redis.Redis(port=port, username=acl.user(ECHO), password=password).ping()
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_passwords_are_kept_from_an_earlier_file_or_written_as_hashes(acl: Acl, tmp_path: Path) -> None:
    earlier = tmp_path / "users.acl"
    earlier.write_text(acl.text)
    again, notes = redis_acl("--user-prefix", acl.prefix, "--specialist", ECHO, "--keep", str(earlier))
    assert {line.split()[4] for line in again.splitlines()} <= {line.split()[4] for line in acl.text.splitlines()}
    assert urls_in(notes)[acl.user("web")].rpartition("@")[0] == acl.url("web").rpartition("@")[0]
    hashed, notes = redis_acl("--user-prefix", acl.prefix, "--specialist", ECHO, "--keep", str(earlier), "--hash")
    password = str(urlsplit(acl.url("worker")).password)
    assert f" #{hashlib.sha256(password.encode()).hexdigest()} " in hashed and password not in hashed
    assert password in notes  # the URL still has it, for the worker's environment
    kept_hashes = tmp_path / "hashed.acl"
    kept_hashes.write_text(hashed)
    _, notes = redis_acl("--user-prefix", acl.prefix, "--specialist", ECHO, "--keep", str(kept_hashes))
    assert "unchanged (password kept from" in notes and password not in notes


def test_a_configured_url_names_its_roles_user_and_password(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMO_REDIS_URL_WORKER", "redis://engine:s3cret@redis.internal:6379/0")
    text, _ = redis_acl("--user-prefix", acl.prefix)
    assert "user engine reset on >s3cret " in text and f"user {acl.user('worker')} " not in text


def test_a_name_whose_stream_is_another_specialists_key_is_refused() -> None:
    with pytest.raises(CommandError, match="is a key of specialist 'healer'"):
        redis_acl("--specialist", "healer:dlq")
    with pytest.raises(CommandError, match="not a specialist name"):
        redis_acl("--specialist", "a*")


def test_the_example_in_deploy_is_what_the_command_prints_for_the_demos_healer() -> None:
    """deploy/redis/users.acl.example, with placeholders for the passwords (which Redis refuses to load)."""
    text, _ = redis_acl("--specialist", "healer")
    example = (ROOT / "deploy" / "redis" / "users.acl.example").read_text()

    def rules(acl_text: str) -> list[list[str]]:
        return [line.split()[:4] + line.split()[5:] for line in acl_text.splitlines()]

    assert rules(example) == rules(text)
    assert all(line.split()[4].startswith("#<") for line in example.splitlines())


def test_the_channel_layer_keys_are_channels_redis_defaults() -> None:
    import inspect

    assert inspect.signature(RedisChannelLayer).parameters["prefix"].default == LayerKeys.prefix


# -- which URL each process takes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "role_env", "expected"),
    [
        (["/opt/cmo/.venv/bin/daphne", "--port", "8000", "cmo_site.asgi:application"], "", "web"),
        ([f"{sys.prefix}/lib/python3/site-packages/daphne/__main__.py", "cmo_site.asgi:application"], "", "web"),
        (["manage.py", "cmo_worker", "--concurrency", "2"], "", "worker"),
        (["/opt/cmo/manage.py", "cmo_scheduler"], "", "scheduler"),
        (["manage.py", "run_specialist", "healer"], "", "specialist"),
        (["manage.py", "runserver"], "web", "web"),
        (["manage.py", "start_run", "demo"], "", ""),
        (["manage.py", "cmo_serve"], "", ""),
    ],
)
def test_each_process_takes_its_roles_redis_url(argv: list[str], role_env: str, expected: str) -> None:
    urls = {role: f"redis://cmo-{role}:pw@redis:6379/0" for role in ("web", "worker", "scheduler", "specialist")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMO_REDIS_URL_", "CMO_PROCESS_ROLE"))}
    env.update({"REDIS_URL": "redis://fallback:6379/0", "CMO_PROCESS_ROLE": role_env})
    env.update({f"CMO_REDIS_URL_{role.upper()}": url for role, url in urls.items()})
    probe = (
        f"import sys; sys.argv = {argv!r}\n"
        "from django.conf import settings\n"
        "layer = settings.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['address']\n"
        "import json; print(json.dumps([settings.CMO_PROCESS_ROLE, settings.REDIS_URL, layer]))\n"
    )
    env["DJANGO_SETTINGS_MODULE"] = "cmo_site.settings"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    url = urls[expected] if expected else "redis://fallback:6379/0"
    assert json.loads(out.stdout) == [expected, url, url]


# -- each role does its job --------------------------------------------------------------------------------


def _notice(specialist: str) -> dict[str, Any]:
    notice = json.loads((ROOT / "runs" / "schemas" / "examples" / "DecisionNotice.approved.json").read_text())
    notice["meta"]["recipient"] = {"kind": "specialist", "name": specialist}
    return notice


def _request(specialist: str, n: int) -> dict[str, Any]:
    trace = uuid.uuid4().hex
    return invocation_request(
        trace_id=trace, step=n, seq=0, node="ask", specialist=specialist, task="echo", payload={"n": n}
    )


async def _channel_layer_job(url: str, *, receive_wakeups: bool) -> None:
    """What the web (live pages, readiness), the scheduler (wake-ups, live updates, its start-up check) and
    the workers (the same, and the wake-ups they consume) do on the channel layer."""
    layer = RedisChannelLayer(hosts=[{"address": url}])
    try:
        channel = await layer.new_channel()
        await layer.group_add("runs", channel)
        await layer.group_send("runs", status_message(run_id=0, status="RUNNING"))
        assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "run.status"
        await layer.group_discard("runs", channel)
        await layer.send(channel, {"type": "health.ping"})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "health.ping"
        await layer.send("cmo.runs", dispatch_message(run_id=0))
        if receive_wakeups:
            assert (await asyncio.wait_for(layer.receive("cmo.runs"), 5))["type"] == "run.dispatch"
    finally:
        await layer.close_pools()


def _drive(consumer: StreamConsumer, until: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        consumer.poll_once(block_ms=50)
    consumer.drain()
    assert until(), "the consumer did not get there"


def test_each_role_does_its_job_as_its_own_user(acl: Acl) -> None:
    a = acl.a
    for role, receives in (("web", False), ("scheduler", False), ("worker", True)):
        asyncio.run(_channel_layer_job(acl.url(role), receive_wakeups=receives))
    # The worker consumes replies in a group of this test's own, made at "$": only this test's replies come.
    group = f"acl-{acl.prefix}"
    acl.admin.xgroup_create(REPLIES, group, id="$", mkstream=True)
    try:
        _streams_job(acl, a, group)
    finally:
        acl.admin.xgroup_destroy(REPLIES, group)
    assert acl.denials() == []


def _streams_job(acl: Acl, a: str, group: str) -> None:
    """The streams as the worker, the specialist, the web and the scheduler use them, each as its own user."""
    # The worker publishes under a cap of 1: the second request is held until the first is answered.
    engine = StreamTransport(acl.url("worker"))
    first, second, later = _request(a, 1), _request(a, 2), _request(a, 3)
    assert engine.publish_capped(a, first, cap=1) == "sent"
    assert engine.publish_capped(a, second, cap=1) == "held"

    # The specialist reads its stream, answers on the replies stream and acknowledges.
    own = StreamTransport(acl.url(a))
    handled: list[Delivery] = []

    def answer(delivery: Delivery) -> None:
        handled.append(delivery)
        if delivery.kind == "SpecialistInvocationRequest":
            own.reply(specialist_result(request=delivery.envelope, instance="acl", result={"ok": True}))

    specialist = StreamConsumer(own, a, "acl-1", answer)
    _drive(specialist, lambda: len(handled) == 1)

    # The worker records the reply (here: takes it) and frees the slot: the held request goes out; a delayed
    # re-invocation goes out when due.
    replies: list[Delivery] = []
    listener = StreamConsumer(
        StreamTransport(acl.url("worker"), group=ENGINE_GROUP),
        "replies",
        "acl-worker",
        replies.append,
        stream=REPLIES,
        dlq=f"{REPLIES}:dlq",
        group=group,
    )
    key = first["meta"]["idempotency_key"]
    _drive(listener, lambda: any(d.envelope["meta"]["idempotency_key"] == key for d in replies))
    assert engine.release(a, key, cap=1) == 1
    engine.publish_later(a, later, due_ms=int(time.time() * 1000) - 1)
    assert engine.publish_due(now_ms=int(time.time() * 1000)) >= 1
    _drive(specialist, lambda: len(handled) == 3)
    # A malformed reply goes to the replies' dead letters (the worker writes there and reads nothing there).
    bad = own.redis.xadd(REPLIES, {"kind": "SpecialistResult", "body": "{not json"})
    try:
        _drive(listener, lambda: bool(_dead_letters_of(acl, f"{REPLIES}:dlq", bad)))
    finally:
        for mid in _dead_letters_of(acl, f"{REPLIES}:dlq", bad):
            acl.admin.xdel(f"{REPLIES}:dlq", mid)

    # A malformed request goes to the specialist's dead letters; the web lists them and drives one again.
    acl.admin.xadd(stream_key(a), {"kind": "SpecialistInvocationRequest", "body": "{not json"})
    _drive(specialist, lambda: acl.admin.xlen(dlq_key(a)) == 1)
    web = StreamTransport(acl.url("web"))
    letters = web.dead_letters(a)
    assert len(letters) == 1 and "invalid envelope" in letters[0]["reason"]
    web.redrive(a, letters[0]["id"])
    # The counts of /metrics and the admin: the second request is in flight (nobody released it here).
    assert web.stats(a) | {"depth": 0} == {"depth": 0, "pending": 0, "dlq": 0, "in_flight": 1, "held": 0}

    # Decision notices: from the web (a decision) and the scheduler (an expiry), to the specialist.
    web.notify(a, _notice(a))
    StreamTransport(acl.url("scheduler")).notify(a, _notice(a))
    _drive(specialist, lambda: sum(d.kind == "DecisionNotice" for d in handled) == 2)
    assert acl.admin.xlen(dlq_key(a)) == 1  # the re-driven malformed request, dead-lettered again


def _dead_letters_of(acl: Acl, dlq: str, original: str) -> list[str]:
    return [mid for mid, fields in acl.admin.xrange(dlq) if fields.get("original_id") == original]


def test_a_worker_and_a_specialist_complete_a_remote_call_each_as_its_own_user(
    acl: Acl, postgres_db: None, redis_url: str
) -> None:
    from runs.models import Run
    from runs.services.runs import run_start

    def env(role: str, **more: str) -> dict[str, str]:
        return {"REDIS_URL": NOWHERE, f"CMO_REDIS_URL_{role.upper()}": acl.url(role), **more}

    db = child_database_url()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec_env = {"REDIS_URL": NOWHERE, "CMO_REDIS_URL_SPECIALIST": acl.url(ECHO), "DATABASE_URL": db}
    web_env = {**env("web"), "CMO_PROCESS_ROLE": "web", "DATABASE_URL": db}
    with (
        ManagedProcess("run_specialist", ECHO, env=spec_env, ready="consuming") as spec,
        worker("--concurrency", "2", "--poll", "0.2", env=env("worker")) as w,
        ManagedProcess("cmo_scheduler", "--interval", "0.5", env={**env("scheduler"), "DATABASE_URL": db}) as sched,
        ManagedProcess("runserver", "--noreload", f"127.0.0.1:{port}", env=web_env, ready="Starting ASGI") as web,
    ):
        assert f"redis://{acl.user('worker')}:***@" in w.output
        run = run_start(graph_name="t-remote", data={"text": "least privilege"})
        done = wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=40)
        assert done, w.output + spec.output + sched.output
        assert wait_for(lambda: f"redis://{acl.user('scheduler')}:***@" in sched.output, timeout=20), sched.output
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(f"{base}/health"), timeout=30), web.output
        ready = httpx.get(f"{base}/health/ready", timeout=20).json()
        assert ready["status"] == "ok" and ready["checks"]["channel_layer"]["ok"], ready
        metrics = httpx.get(f"{base}/metrics", timeout=20).text
        assert f'cmo_specialist_stream_depth{{specialist="{ECHO}"}}' in metrics, web.output
        connected = {c["user"] for c in acl.admin.client_list()}
        assert {acl.user("worker"), acl.user(ECHO), acl.user("web")} <= connected
    run.refresh_from_db()
    assert run.state["answer"] == {"echo": "least privilege", "task": "echo"}
    assert acl.denials() == []
    for process in (w, spec, sched, web):
        assert "NOPERM" not in process.output, process.output


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- and nothing else ----------------------------------------------------------------------------------------

EVERY_ROLE_REFUSED: list[tuple[Any, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("ACL", "SETUSER", "someone", "on", "+@all"),
    ("ACL", "LIST"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"),
    ("CLIENT", "TRACKING", "ON", "BCAST"),
    ("SHUTDOWN",),
    ("SWAPDB", "13", "14"),
    ("BGSAVE",),
    ("MONITOR",),
    ("PUBLISH", "cmo", "hello"),
    ("GET", "anything"),
]


@pytest.mark.parametrize("role", ["web", "worker", "scheduler", "specialist"])
def test_no_role_may_flush_configure_list_keys_or_administer(acl: Acl, role: str) -> None:
    name = ECHO if role == "specialist" else role
    for command in EVERY_ROLE_REFUSED:
        refused(acl, name, *command)


def test_a_specialist_reads_only_its_own_stream_and_writes_only_replies_and_its_dead_letters(acl: Acl) -> None:
    a, b = acl.a, acl.b
    StreamTransport(acl.url("worker")).publish(b, _request(b, 1))  # b's stream, with its group
    refused(acl, a, "XREADGROUP", "GROUP", "cmo-specialists", "x", "STREAMS", stream_key(b), ">")
    refused(acl, a, "XLEN", stream_key(b))
    refused(acl, a, "XADD", stream_key(b), "*", "kind", "SpecialistInvocationRequest", "body", "{}")
    refused(acl, a, "XRANGE", stream_key(a), "-", "+")  # its own stream only as the group's consumer
    refused(acl, a, "XADD", stream_key(a), "*", "kind", "SpecialistInvocationRequest", "body", "{}")
    refused(acl, a, "XRANGE", REPLIES, "-", "+")  # others' replies
    refused(acl, a, "XREADGROUP", "GROUP", ENGINE_GROUP, "x", "STREAMS", REPLIES, ">")
    refused(acl, a, "XRANGE", dlq_key(a), "-", "+")
    refused(acl, a, "DEL", stream_key(a))
    refused(acl, a, "SADD", inflight_key(a), "x")
    refused(acl, a, "ZRANGE", "asgi:group:runs", "0", "-1")  # the channel layer's keys
    refused(acl, a, "BZPOPMIN", "asgicmo.runs", "0.01")
    refused(acl, a, "ZADD", "asgispecific.x!", "1", "m")
    refused(acl, a, "EVAL", "return 1", "0")
    assert acl.denials()  # each refusal is in the ACL log, under the user's name


def test_the_web_scheduler_and_worker_stay_off_what_is_not_theirs(acl: Acl) -> None:
    a = acl.a
    StreamTransport(acl.url("worker")).publish(a, _request(a, 1))
    # The web: no request payload, no reply, no wake-up taken from the workers, no cap bookkeeping.
    refused(acl, "web", "XRANGE", stream_key(a), "-", "+")
    refused(acl, "web", "XREADGROUP", "GROUP", "cmo-specialists", "x", "STREAMS", stream_key(a), ">")
    refused(acl, "web", "XRANGE", REPLIES, "-", "+")
    refused(acl, "web", "XADD", REPLIES, "*", "kind", "SpecialistResult", "body", "{}")
    refused(acl, "web", "BZPOPMIN", "asgicmo.runs", "0.01")
    refused(acl, "web", "SADD", inflight_key(a), "x")
    refused(acl, "web", "DEL", stream_key(a))
    refused(acl, "web", "ZADD", DELAYED, "1", "x")
    refused_in_a_script(acl, "web", f"'XRANGE', '{stream_key(a)}', '-', '+'")
    refused_in_a_script(acl, "web", f"'SADD', '{inflight_key(a)}', 'x'")
    # The worker: publishes to the streams but reads none of them, nor any dead letter; forges no reply.
    refused(acl, "worker", "XREADGROUP", "GROUP", "cmo-specialists", "x", "STREAMS", stream_key(a), ">")
    refused(acl, "worker", "XRANGE", stream_key(a), "-", "+")
    refused(acl, "worker", "XRANGE", dlq_key(a), "-", "+")
    refused(acl, "worker", "XADD", REPLIES, "*", "kind", "SpecialistResult", "body", "{}")
    refused(acl, "worker", "XRANGE", f"{REPLIES}:dlq", "-", "+")
    refused(acl, "worker", "DEL", stream_key(a))
    refused_in_a_script(acl, "worker", f"'XRANGE', '{stream_key(a)}', '-', '+'")
    refused_in_a_script(acl, "worker", f"'DEL', '{stream_key(a)}'")
    # The scheduler: wake-ups and notices only.
    refused(acl, "scheduler", "BZPOPMIN", "asgicmo.runs", "0.01")
    refused(acl, "scheduler", "XRANGE", stream_key(a), "-", "+")
    refused(acl, "scheduler", "XLEN", stream_key(a))
    refused(acl, "scheduler", "XREADGROUP", "GROUP", ENGINE_GROUP, "x", "STREAMS", REPLIES, ">")
    refused(acl, "scheduler", "SADD", inflight_key(a), "x")
    refused_in_a_script(acl, "scheduler", f"'ZADD', '{held_key(a)}', '1', 'x'")
