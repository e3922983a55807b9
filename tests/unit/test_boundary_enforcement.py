"""I/O inside a node must go through ctx.activities; reads stay allowed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

import tests.graphs_engine as ge
from runs.engine.errors import BoundaryViolation
from runs.models import Activity, RunEvent
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_knobs() -> None:
    ge.reset()


def test_boundary_violation_is_a_permission_error() -> None:
    assert issubclass(BoundaryViolation, PermissionError)
    assert issubclass(BoundaryViolation, OSError)


def test_a_socket_fails_the_step_and_says_to_use_http() -> None:
    run = start_and_execute("t-socket", {"port": 9})
    assert run.status == "FAILED"
    assert "node 't_socket' opened a network connection to ('127.0.0.1', 9) outside the activity boundary" in run.error
    assert "use ctx.activities.http(...)" in run.error
    assert "use ctx.activities.http" in run.steps.get().error


def test_a_file_write_fails_the_step_and_the_file_is_not_created(tmp_path: Path) -> None:
    target = tmp_path / "sneaky.txt"
    run = start_and_execute("t-write-file", {"path": str(target)})
    assert run.status == "FAILED"
    assert f"node 't_write_file' opened {str(target)!r} for writing outside the activity boundary" in run.error
    assert "use ctx.activities.write_artifact(...)" in run.error
    assert not target.exists()


def test_a_subprocess_fails_the_step_and_says_what_to_do_instead() -> None:
    run = start_and_execute("t-subprocess")
    assert run.status == "FAILED"
    assert "node 't_subprocess' started a process (subprocess.Popen" in run.error
    assert "run it behind an activity (call_mcp to a tool server, or a specialist)" in run.error


def test_os_system_is_a_process_too() -> None:
    run = start_and_execute("e-os-system")
    assert run.status == "FAILED"
    assert "node 'e_os_system' started a process (os.system" in run.error


def test_a_swallowed_violation_still_fails_the_step() -> None:
    run = start_and_execute("t-swallow")
    assert run.status == "FAILED"
    assert "node 't_swallow_violation' opened a network connection" in run.error
    assert "use ctx.activities.http" in run.error
    assert run.state == {}, "the swallowing node's state must not be kept"


def test_a_violation_is_not_retried() -> None:
    run = start_and_execute("e-socket-retry")
    assert run.status == "FAILED"
    assert "use ctx.activities.http" in run.error
    assert ge.EFFECTS["socket_attempts"] == 1
    assert not RunEvent.objects.filter(run=run, kind="retry").exists()


def test_the_boundary_holds_in_the_thread_that_enforces_a_timeout() -> None:
    run = start_and_execute("e-socket-timeout")
    assert run.status == "FAILED"
    assert "node 'e_socket_timeout' opened a network connection" in run.error


def test_reads_and_imports_are_allowed_in_a_node(tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_text("hello from disk")
    run = start_and_execute("e-read-file", {"path": str(source)})
    assert run.status == "COMPLETED", run.error
    assert run.state["text"] == "hello from disk"
    assert run.state["bytes"] == len(b"hello from disk")
    assert run.state["hls"] == [0.0, 0.5, 1.0]


def test_an_activity_may_write_what_the_node_may_not() -> None:
    name = "e-boundary-test.txt"
    run = start_and_execute("e-artifact", {"name": name, "content": "artifact body"})
    try:
        assert run.status == "COMPLETED", run.error
        assert run.state["back"] == "artifact body"
        assert run.state["size"] == len(b"artifact body")
        assert default_storage.exists(f"artifacts/{name}")
        assert list(Activity.objects.filter(run=run).values_list("type", flat=True)) == [
            "write_artifact",
            "read_artifact",
        ]
    finally:
        default_storage.delete(f"artifacts/{name}")


def test_the_guard_is_lifted_outside_nodes(tmp_path: Path) -> None:
    run = start_and_execute("t-write-file", {"path": str(tmp_path / "x.txt")})
    assert run.status == "FAILED"
    # After a violating node, the test process itself may still write and connect.
    written = tmp_path / "after.txt"
    written.write_text("fine")
    assert written.read_text() == "fine"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=1) as client:
            assert client.getpeername() == server.getsockname()
