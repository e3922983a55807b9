"""ctx.activities.call_mcp against a real MCP server process (tests/fixtures/mcp_server.py).

The server appends a line to MCP_CALL_LOG for every tool it really runs, so the
replay tests can prove a recorded call is not made again.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from runs.engine import END, graph, node
from runs.models import Activity, Run
from tests.helpers import execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)

SERVER_SCRIPT = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py")

# Flipped by the crash test: the node dies (like a killed worker) right after its activity is recorded.
KNOBS: dict[str, Any] = {"crash_after_call": False}


@node("m_call")
def m_call(state: dict[str, Any], ctx: Any) -> Any:
    response = ctx.activities.call_mcp(state["server"], state["tool"], state["arguments"])
    if KNOBS["crash_after_call"]:
        raise SystemExit("simulated worker crash after the MCP call was recorded")
    result = (response["structured"] or {}).get("result")
    return ctx.result({**state, "result": result, "response": response})


graph("m-call", entry="m_call", edges=[("m_call", END)])


@pytest.fixture
def call_log(tmp_path: Path) -> Path:
    return tmp_path / "mcp-calls.log"


@pytest.fixture
def mcp_servers(settings: Any, call_log: Path) -> dict[str, Any]:
    settings.CMO_MCP_SERVERS = {
        "tools": {"command": sys.executable, "args": [SERVER_SCRIPT], "env": {"MCP_CALL_LOG": str(call_log)}},
        "impatient": {
            "command": sys.executable,
            "args": [SERVER_SCRIPT],
            "env": {"MCP_CALL_LOG": str(call_log)},
            "timeout": 1,
        },
    }
    return dict(settings.CMO_MCP_SERVERS)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def run_call(server: str, tool: str, arguments: dict[str, Any]) -> Run:
    return start_and_execute("m-call", {"server": server, "tool": tool, "arguments": arguments})


def test_a_node_calls_a_real_mcp_tool_and_the_activity_is_recorded(mcp_servers: Any, call_log: Path) -> None:
    run = run_call("tools", "add", {"a": 2, "b": 3})

    assert run.status == "COMPLETED", run.error
    assert run.state["result"] == 5
    assert run.state["response"] == {
        "content": [{"type": "text", "text": "5"}],
        "structured": {"result": 5},
        "is_error": False,
    }
    activity = Activity.objects.get(run=run)
    assert (activity.type, activity.step, activity.seq, activity.status) == ("call_mcp", 0, 0, "completed")
    assert activity.request == {"server": "tools", "tool": "add", "arguments": {"a": 2, "b": 3}}
    assert activity.response == run.state["response"]
    assert calls(call_log) == ["add 2 3"]


def test_a_step_re_executed_after_a_crash_replays_the_recorded_result_without_calling_the_server(
    mcp_servers: Any, call_log: Path
) -> None:
    KNOBS["crash_after_call"] = True
    try:
        with pytest.raises(SystemExit):
            run_call("tools", "echo", {"text": "once"})
    finally:
        KNOBS["crash_after_call"] = False
    run = Run.objects.get(graph__name="m-call")
    # The crash left the activity committed but no step, and the run leased to the dead worker.
    assert run.status == "RUNNING" and run.step_index == 0 and not run.steps.exists()
    assert Activity.objects.filter(run=run, status="completed").count() == 1
    assert calls(call_log) == ["echo once"]

    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    execute(run, owner="second-worker")
    run.refresh_from_db()

    assert run.status == "COMPLETED", run.error
    assert run.state["result"] == "once"
    assert run.state["response"]["content"] == [{"type": "text", "text": "once"}]
    assert calls(call_log) == ["echo once"], "the replayed step called the MCP server again"
    assert Activity.objects.filter(run=run).count() == 1


def test_a_completed_run_reset_and_re_executed_does_not_call_the_server_again(mcp_servers: Any, call_log: Path) -> None:
    run = run_call("tools", "add", {"a": 20, "b": 22})
    assert run.status == "COMPLETED", run.error
    run.steps.all().delete()
    Run.objects.filter(pk=run.pk).update(
        status="RUNNING", step_index=0, node="m_call", state=run.input, lease_owner="", lease_expires_at=None
    )

    execute(run, owner="second-worker")
    run.refresh_from_db()

    assert run.status == "COMPLETED", run.error
    assert run.state["result"] == 42
    assert calls(call_log) == ["add 20 22"]


def test_an_unknown_server_fails_the_step_with_the_configured_names(mcp_servers: Any, call_log: Path) -> None:
    run = run_call("nowhere", "add", {"a": 1, "b": 1})

    assert run.status == "FAILED"
    assert "unknown MCP server 'nowhere'; configured: impatient, tools" in run.error
    step = run.steps.get()
    assert "unknown MCP server 'nowhere'" in step.error
    activity = Activity.objects.get(run=run)
    assert activity.status == "failed"
    assert activity.error == "unknown MCP server 'nowhere'; configured: impatient, tools"
    assert calls(call_log) == []


def test_a_tool_error_is_recorded_as_a_failed_activity_and_replayed_without_a_new_call(
    mcp_servers: Any, call_log: Path
) -> None:
    run = run_call("tools", "fail", {"message": "disk on fire"})

    assert run.status == "FAILED"
    assert "disk on fire" in run.error
    activity = Activity.objects.get(run=run)
    assert (activity.type, activity.status, activity.response) == ("call_mcp", "failed", None)
    assert "tool 'fail' on MCP server 'tools' returned an error" in activity.error
    assert "disk on fire" in activity.error
    assert calls(call_log) == ["fail disk on fire"]

    # Re-executing the step raises the recorded error again; the server is not asked twice.
    run.steps.all().delete()
    Run.objects.filter(pk=run.pk).update(
        status="RUNNING", step_index=0, node="m_call", state=run.input, lease_owner="", lease_expires_at=None
    )
    execute(run, owner="second-worker")
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "disk on fire" in run.error
    assert calls(call_log) == ["fail disk on fire"]


def test_the_per_server_timeout_bounds_a_slow_tool(mcp_servers: Any, call_log: Path) -> None:
    started = time.monotonic()
    run = run_call("impatient", "slow", {"seconds": 20})
    elapsed = time.monotonic() - started

    assert run.status == "FAILED"
    activity = Activity.objects.get(run=run)
    assert activity.status == "failed"
    assert activity.error == "MCP server 'impatient': 'slow' did not finish within 1 s"
    # 1 s timeout plus the SDK's bounded stdio shutdown (stdin close, grace, SIGTERM), far below 20 s.
    assert elapsed < 10


@pytest.fixture
def http_server(call_log: Path) -> Iterator[str]:
    """The same fixture server over streamable HTTP on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"MCP_CALL_LOG": str(call_log), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, SERVER_SCRIPT, "--http", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _, err = proc.communicate(timeout=5)
                    pytest.fail(f"the HTTP MCP server did not start: {err.decode()[-2000:]}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_streamable_http_server_is_called_by_url(settings: Any, http_server: str, call_log: Path) -> None:
    settings.CMO_MCP_SERVERS = {"remote": {"url": http_server, "timeout": 10}}

    run = run_call("remote", "add", {"a": 40, "b": 2})

    assert run.status == "COMPLETED", run.error
    assert run.state["result"] == 42
    assert Activity.objects.get(run=run).response["structured"] == {"result": 42}
    assert calls(call_log) == ["add 40 2"]
