"""Each activity does its real effect exactly once, and a re-executed step replays it from the record.

A "crash" here is what a worker dying after an activity but before the step's commit
leaves behind: the Activity rows exist, the Step row does not, and the run points at
the step again. ``simulate_crash`` makes that state from a finished run (deleting
the Step rows, keeping the Activity rows) and ``reexecute`` lets a new worker claim
and run it, with no mocks: real HTTP server, real storage, real database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

import tests.graphs_activities as ga
from runs.engine import statemachine as sm
from runs.engine.specialists import SPECIALISTS, specialist
from runs.models import Activity, Run, Specialist, Step
from runs.services.blobs import BLOB_KEY
from tests.fixtures.counting_server import CountingServer, counting_server, unused_port
from tests.helpers import execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["counting_server"]  # the fixture, imported for the tests below


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Path:
    """Artifacts and blobs of these tests go to a private directory."""
    root = tmp_path / "storage"
    root.mkdir()
    settings.MEDIA_ROOT = str(root)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


@pytest.fixture
def a_counter() -> Iterator[list[dict[str, Any]]]:
    """The in-process specialist "a_counter", registered for one test only."""
    ga.A2A_CALLS.clear()
    specialist("a_counter", capabilities=["count"])(ga.a_counter_specialist)
    yield ga.A2A_CALLS
    SPECIALISTS.pop("a_counter", None)
    ga.A2A_CALLS.clear()


def simulate_crash(run: Run, *, to_step: int = 0) -> None:
    """Undo the commits of steps >= ``to_step`` as if the worker died before them; keep the activities."""
    node = Step.objects.get(run=run, index=to_step).node
    Step.objects.filter(run=run, index__gte=to_step).delete()
    fields: dict[str, Any] = {
        "status": sm.RUNNING,
        "step_index": to_step,
        "node": node,
        "attempt": 1,
        "lease_owner": "",
        "lease_expires_at": None,
        "finished_at": None,
        "error": "",
    }
    if to_step == 0:
        fields["state"] = run.input
    Run.objects.filter(pk=run.pk).update(**fields)


def reexecute(run: Run) -> Run:
    """A new worker claims the run and executes it from where it stands."""
    execute(run, owner="second-worker")
    run.refresh_from_db()
    return run


def activity_rows(run: Run) -> list[dict[str, Any]]:
    return list(
        Activity.objects.filter(run=run)
        .order_by("step", "seq")
        .values("step", "seq", "type", "request", "request_hash", "status", "response", "error", "attempt")
    )


def only_activity(run: Run) -> Activity:
    rows = list(Activity.objects.filter(run=run))
    assert len(rows) == 1, rows
    return rows[0]


# -- the counting server itself -----------------------------------------------------------------


def test_counting_server_counts_per_path_and_key_and_honours_status_and_delay() -> None:
    with CountingServer(status=201) as server, httpx.Client(trust_env=False) as client:
        first = client.post(server.url + "/a", json={"n": 1}, headers={"Idempotency-Key": "k1"})
        client.post(server.url + "/a", json={"n": 2}, headers={"Idempotency-Key": "k1"})
        client.get(server.url + "/b?x=1")
        server.set_status(503, path="/b")
        server.set_delay(0.2, path="/slow")
        third = client.get(server.url + "/b")
        with pytest.raises(httpx.ReadTimeout):
            client.get(server.url + "/slow", timeout=0.05)

        assert first.status_code == 201
        assert first.json() == {
            "ok": True,
            "method": "POST",
            "path": "/a",
            "idempotency": "k1",
            "count": 1,
            "path_count": 1,
            "body": {"n": 1},
        }
        assert third.status_code == 503 and third.json()["ok"] is False
        assert server.count() == 5
        assert server.count("/a") == 2 and server.count("/a", key="k1") == 2
        assert server.count("/b") == 2 and server.count("/slow") == 1  # counted on arrival, before the delay
        assert server.keys("/a") == ["k1", "k1"]
        assert server.counts()[("/b", None)] == 2
        assert server.duplicates() == {("/a", "k1"): 2, ("/b", None): 2}
        assert server.last("/b").method == "GET"
        assert server.requests[2].query == {"x": ["1"]}
        assert server.wait_for(5, timeout=0.1)
        server.reset()
        assert server.count() == 0


# -- http -------------------------------------------------------------------------------------


def test_http_post_returns_status_and_body_sends_the_idempotency_key_and_records_the_activity(
    counting_server: CountingServer,
) -> None:
    run = start_and_execute("a-http", {"url": counting_server.url, "json": {"order": 17}})

    assert run.status == sm.COMPLETED, run.error
    key = f"{run.trace_id}:0:0"
    assert run.state["responses"] == [
        {
            "status": 200,
            "body": {
                "ok": True,
                "method": "POST",
                "path": "/hit",
                "idempotency": key,
                "count": 1,
                "path_count": 1,
                "body": {"order": 17},
            },
        }
    ]
    assert counting_server.count("/hit") == 1
    assert counting_server.keys("/hit") == [key]
    assert counting_server.last("/hit").body == {"order": 17}

    row = only_activity(run)
    assert (row.step, row.seq, row.type, row.status, row.error) == (0, 0, "http", "completed", "")
    assert row.idempotency_key == key
    assert row.request == {
        "method": "POST",
        "url": counting_server.url + "/hit",
        "headers": {},
        "json": {"order": 17},
        "params": {},
    }
    assert row.response["status"] == 200
    assert row.response["body"]["idempotency"] == key
    assert row.response["headers"]["content-type"] == "application/json"


def test_idempotency_keys_follow_step_and_sequence(counting_server: CountingServer) -> None:
    run = start_and_execute("a-http", {"url": counting_server.url, "calls": 2, "steps": 2})

    assert run.status == sm.COMPLETED, run.error
    expected = [f"{run.trace_id}:{step}:{seq}" for step in (0, 1) for seq in (0, 1)]
    assert counting_server.keys("/hit") == expected
    assert [r["body"]["idempotency"] for r in run.state["responses"]] == expected
    assert [(a["step"], a["seq"]) for a in activity_rows(run)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert counting_server.duplicates() == {}


def test_an_error_status_is_a_recorded_response_not_a_failure(counting_server: CountingServer) -> None:
    counting_server.set_status(503)
    run = start_and_execute("a-http", {"url": counting_server.url})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["responses"][0]["status"] == 503
    assert run.state["responses"][0]["body"]["ok"] is False
    row = only_activity(run)
    assert row.status == "completed" and row.response["status"] == 503


def test_http_is_not_sent_again_when_a_crashed_step_is_re_executed(counting_server: CountingServer) -> None:
    run = start_and_execute("a-http", {"url": counting_server.url, "calls": 2})
    assert run.status == sm.COMPLETED, run.error
    assert counting_server.count() == 2
    recorded = activity_rows(run)
    first_state = run.state

    simulate_crash(run)
    assert not Step.objects.filter(run=run).exists()
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert counting_server.count() == 2, "the re-executed step sent its requests again"
    assert counting_server.duplicates() == {}
    assert activity_rows(run) == recorded
    assert run.state == first_state
    assert Step.objects.filter(run=run).count() == 1


def test_only_the_crashed_step_is_re_executed_and_it_replays(counting_server: CountingServer) -> None:
    run = start_and_execute("a-http", {"url": counting_server.url, "steps": 3})
    assert run.status == sm.COMPLETED, run.error
    assert counting_server.count() == 3
    first_state = run.state

    simulate_crash(run, to_step=1)
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert counting_server.count() == 3
    assert run.state == first_state
    assert list(Step.objects.filter(run=run).values_list("index", flat=True)) == [0, 1, 2]


def test_a_retried_step_replays_the_request_its_first_attempt_made(counting_server: CountingServer) -> None:
    run = start_and_execute("a-http-retry", {"url": counting_server.url})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["attempt"] == 2
    assert counting_server.count("/retry") == 1
    assert run.state["body"]["idempotency"] == f"{run.trace_id}:0:0"
    row = only_activity(run)
    assert (row.status, row.attempt) == ("completed", 1)
    assert run.events.filter(kind="retry").count() == 1


def test_a_connection_error_is_recorded_as_a_failed_activity() -> None:
    port = unused_port()
    run = start_and_execute("a-http", {"url": f"http://127.0.0.1:{port}", "timeout": 2})

    assert run.status == sm.FAILED
    assert "http failed: ConnectError" in run.error
    row = only_activity(run)
    assert row.type == "http" and row.status == "failed"
    assert row.error.startswith("ConnectError")
    assert row.response is None
    assert row.request["url"] == f"http://127.0.0.1:{port}/hit"


def test_a_failed_http_activity_replays_its_error_without_connecting_again() -> None:
    port = unused_port()
    run = start_and_execute("a-http-catch", {"url": f"http://127.0.0.1:{port}"})
    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"].startswith("http failed: ConnectError")
    recorded = activity_rows(run)

    simulate_crash(run)
    with CountingServer(port=port) as server:  # the port answers now, but the step must not ask
        run = reexecute(run)
        assert server.count() == 0

    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"] == f"http failed: {recorded[0]['error']}"
    assert activity_rows(run) == recorded


def test_a_timed_out_request_is_a_failed_activity_and_is_not_retried_on_replay(
    counting_server: CountingServer,
) -> None:
    counting_server.set_delay(1.0)
    run = start_and_execute("a-http-catch", {"url": counting_server.url, "timeout": 0.2})
    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"].startswith("http failed: ReadTimeout")
    assert counting_server.count("/hit") == 1  # it reached the server: the key lets the server dedupe

    counting_server.set_delay(0)
    simulate_crash(run)
    run = reexecute(run)
    assert counting_server.count("/hit") == 1
    assert run.state["error"].startswith("http failed: ReadTimeout")


# -- secrets ------------------------------------------------------------------------------------


def test_an_authorization_header_is_sent_but_never_stored() -> None:
    with CountingServer(echo_headers=True) as server:
        run = start_and_execute(
            "a-http",
            {"url": server.url, "headers": {"Authorization": "Bearer s3cret"}, "json": {"plain": "visible"}},
        )
        assert run.status == sm.COMPLETED, run.error
        received = server.last("/hit")
        assert received.headers.get("Authorization") == "Bearer s3cret", "the real request must carry the secret"

        row = only_activity(run)
        assert row.request["headers"] == {"Authorization": "[redacted]"}
        assert row.request["json"] == {"plain": "visible"}
        row_json = json.dumps(Activity.objects.filter(pk=row.pk).values()[0], default=str)
        assert "s3cret" not in row_json

        # A re-execution with the same (redacted) request replays; nothing is sent again.
        simulate_crash(run)
        run = reexecute(run)
        assert run.status == sm.COMPLETED, run.error
        assert server.count() == 1


def test_secret_header_names_are_redacted_whatever_their_case() -> None:
    """Lower-case names, API-key headers and the server's echo of them in the response body are all redacted."""
    with CountingServer(echo_headers=True) as server:
        headers = {"authorization": "Bearer s3cret", "X-Api-Key": "s3cret-too"}
        run = start_and_execute("a-http", {"url": server.url, "headers": headers})
        assert run.status == sm.COMPLETED, run.error
        assert server.last().headers["X-Api-Key"] == "s3cret-too"
        for row in Activity.objects.filter(run=run).values():
            assert "s3cret" not in json.dumps(row, default=str)


# -- now / rand / randint --------------------------------------------------------------------------


def test_now_rand_and_randint_replay_the_recorded_values() -> None:
    run = start_and_execute("a-now-rand", seed=99)
    assert run.status == sm.COMPLETED, run.error
    first = run.state
    assert 0 <= first["r1"] < 1 and 0 <= first["r2"] < 1 and first["r1"] != first["r2"]
    assert 1 <= first["k"] <= 1_000_000
    assert dt.datetime.fromisoformat(first["now"]).tzinfo is not None
    assert [a["type"] for a in activity_rows(run)] == ["now", "rand", "rand", "randint"]

    simulate_crash(run)
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert run.state == first
    assert Activity.objects.filter(run=run).count() == 4


def test_a_replay_returns_the_recorded_value_not_a_recomputed_one() -> None:
    run = start_and_execute("a-now-rand", seed=5)
    assert run.status == sm.COMPLETED, run.error
    Activity.objects.filter(run=run, type="now").update(response="2001-02-03T04:05:06+00:00")
    Activity.objects.filter(run=run, type="rand", seq=1).update(response=0.25)
    Activity.objects.filter(run=run, type="randint").update(response=4)

    simulate_crash(run)
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert run.state["now"] == "2001-02-03T04:05:06+00:00"
    assert run.state["r1"] == 0.25
    assert run.state["k"] == 4


def test_rand_with_the_same_seed_gives_the_same_values_in_two_runs() -> None:
    one = start_and_execute("a-now-rand", seed=1234)
    two = start_and_execute("a-now-rand", seed=1234)
    other = start_and_execute("a-now-rand", seed=4321)

    for run in (one, two, other):
        assert run.status == sm.COMPLETED, run.error
    assert one.trace_id != two.trace_id
    picks = [(r.state["r1"], r.state["r2"], r.state["k"]) for r in (one, two, other)]
    assert picks[0] == picks[1]
    assert picks[0] != picks[2]


# -- artifacts ----------------------------------------------------------------------------------


def test_write_and_read_artifact_round_trip_through_default_storage(storage: Path) -> None:
    content = "# Runbook\nline two\nüñí\n"
    run = start_and_execute("a-artifacts", {"name": "a/runbook.md", "content": content})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["text"] == content
    ref = run.state["ref"]
    assert ref["name"] == "a/runbook.md"
    assert ref["size"] == len(content.encode())
    assert (storage / ref["path"]).read_text() == content
    assert default_storage.exists("artifacts/a/runbook.md")

    rows = activity_rows(run)
    assert [(a["type"], a["status"]) for a in rows] == [("write_artifact", "completed"), ("read_artifact", "completed")]
    assert rows[0]["request"] == {"name": "a/runbook.md", "sha256": ref["sha256"], "size": ref["size"]}
    assert rows[1]["response"] == content


def test_a_replayed_artifact_step_neither_writes_nor_reads_storage_again(storage: Path) -> None:
    content = "written once\n"
    run = start_and_execute("a-artifacts", {"name": "once.txt", "content": content})
    assert run.status == sm.COMPLETED, run.error
    first = run.state
    (storage / "artifacts" / "once.txt").unlink()

    simulate_crash(run)
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert run.state == first, "the read must come from the record"
    assert not (storage / "artifacts" / "once.txt").exists(), "the write must not be done again"


def test_reading_a_missing_artifact_is_a_failed_activity() -> None:
    run = start_and_execute("a-read-artifact", {"name": "nope.txt"})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"] == "read_artifact failed: artifact 'nope.txt' does not exist"
    row = only_activity(run)
    assert row.status == "failed" and row.error == "artifact 'nope.txt' does not exist"


def test_a_large_read_is_stored_as_a_blob_and_replays_the_original_value(settings: Any, storage: Path) -> None:
    settings.CMO_BLOB_THRESHOLD = 200
    content = "".join(f"line {i:04d} of a large artifact\n" for i in range(200))
    default_storage.save("artifacts/big.txt", ContentFile(content.encode()))

    run = start_and_execute("a-read-artifact", {"name": "big.txt"})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["text"] == content
    row = only_activity(run)
    assert set(row.response) == {BLOB_KEY, "size"}
    blob = storage / "blobs" / f"{row.response[BLOB_KEY]}.json"
    assert json.loads(blob.read_text()) == content
    assert row.response["size"] == len(json.dumps(content, separators=(",", ":")))
    assert "line 0100" not in json.dumps(Activity.objects.filter(pk=row.pk).values()[0], default=str)

    (storage / "artifacts" / "big.txt").unlink()
    simulate_crash(run)
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert run.state["text"] == content
    assert Activity.objects.filter(run=run).count() == 1


def test_a_large_round_trip_in_one_step_stays_under_the_threshold_for_the_write(settings: Any) -> None:
    settings.CMO_BLOB_THRESHOLD = 200
    content = "x" * 5000
    run = start_and_execute("a-artifacts", {"name": "x.txt", "content": content})

    assert run.status == sm.COMPLETED, run.error
    write, read = Activity.objects.filter(run=run).order_by("seq")
    assert BLOB_KEY not in write.response  # {name, path, sha256, size} is small
    assert set(read.response) == {BLOB_KEY, "size"}
    assert run.state["text"] == content


# -- db_query -------------------------------------------------------------------------------------


@pytest.fixture
def specialist_rows() -> list[dict[str, Any]]:
    Specialist.objects.create(name="a-spec-1", version="1", address="one")
    Specialist.objects.create(name="a-spec-2", version="2", address="two")
    return list(Specialist.objects.order_by("name").values())


def test_db_query_returns_the_rows_of_a_select(specialist_rows: list[dict[str, Any]]) -> None:
    run = start_and_execute(
        "a-db-query",
        {
            "sql": "SELECT name, version, address FROM runs_specialist WHERE name LIKE %s ORDER BY name",
            "params": ["a-spec-%"],
        },
    )

    assert run.status == sm.COMPLETED, run.error
    assert run.state["result"] == {
        "columns": ["name", "version", "address"],
        "rows": [["a-spec-1", "1", "one"], ["a-spec-2", "2", "two"]],
    }
    row = only_activity(run)
    assert row.type == "db_query" and row.status == "completed"
    assert row.request["params"] == ["a-spec-%"] and row.request["database"] == "default"

    # The replay gives the recorded rows, not what the table holds now.
    Specialist.objects.filter(name="a-spec-1").update(version="changed")
    simulate_crash(run)
    run = reexecute(run)
    assert run.state["result"]["rows"][0] == ["a-spec-1", "1", "one"]


WRITES = {
    "insert": (
        "INSERT INTO runs_specialist (name, version, capabilities, transport, address, registered, enabled, "
        "created_at, updated_at) VALUES ('a-intruder', '1', '[]', 'inprocess', '', TRUE, TRUE, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    ),
    "update": "UPDATE runs_specialist SET version = 'hacked'",
    "delete": "DELETE FROM runs_specialist",
}


@pytest.mark.parametrize("statement", sorted(WRITES))
def test_db_query_refuses_writes_and_leaves_the_data_unchanged(
    statement: str, specialist_rows: list[dict[str, Any]]
) -> None:
    run = start_and_execute("a-db-query", {"sql": WRITES[statement]})

    assert run.status == sm.COMPLETED, run.error
    row = only_activity(run)
    assert row.status == "failed", f"{statement} was not refused: {row.response}"
    assert "read-only" in row.error.lower() or "readonly" in row.error.lower(), row.error
    assert run.state["error"] == f"db_query failed: {row.error}"
    assert list(Specialist.objects.order_by("name").values()) == specialist_rows


ESCAPES = {
    "commit-then-write": "COMMIT; UPDATE runs_specialist SET version = 'hacked'",
    "read-write-then-write": "SET TRANSACTION READ WRITE; UPDATE runs_specialist SET version = 'hacked'",
}


@pytest.mark.parametrize("statement", sorted(ESCAPES))
def test_db_query_cannot_leave_its_read_only_transaction(statement: str, specialist_rows: list[dict[str, Any]]) -> None:
    run = start_and_execute("a-db-query", {"sql": ESCAPES[statement]})

    assert run.status == sm.COMPLETED, run.error
    row = only_activity(run)
    assert list(Specialist.objects.order_by("name").values()) == specialist_rows, (
        f"db_query ({connection.vendor}) wrote through {statement!r}; activity {row.status}: {row.error}"
    )
    assert row.status == "failed"


# -- send_a2a -------------------------------------------------------------------------------------


def test_send_a2a_to_the_in_process_healer_returns_its_action() -> None:
    payload = {"service": "db", "hypothesis": "disk full"}
    run = start_and_execute("a-a2a", {"specialist": "healer", "task": "heal", "payload": payload})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["answer"] == {"action": "rotated and compressed logs", "service": "db"}
    row = only_activity(run)
    assert row.type == "send_a2a" and row.status == "completed"
    assert row.request == {"specialist": "healer", "task": "heal", "payload": payload}
    assert row.response == run.state["answer"]


def test_send_a2a_invokes_the_specialist_once_and_replays_its_answer(a_counter: list[dict[str, Any]]) -> None:
    run = start_and_execute("a-a2a", {"specialist": "a_counter", "task": "count", "payload": {"n": 1}})
    assert run.status == sm.COMPLETED, run.error
    assert run.state["answer"] == {"calls": 1, "task": "count", "echo": {"n": 1}}
    assert len(a_counter) == 1
    assert a_counter[0]["meta"] == {
        "trace_id": run.trace_id,
        "step": 0,
        "node": "a_a2a",
        "specialist": "a_counter",
        "attempt": 1,
    }

    simulate_crash(run)
    run = reexecute(run)

    assert run.status == sm.COMPLETED, run.error
    assert len(a_counter) == 1, "the specialist was invoked again on re-execution"
    assert run.state["answer"] == {"calls": 1, "task": "count", "echo": {"n": 1}}


def test_send_a2a_to_an_unregistered_specialist_fails() -> None:
    Specialist.objects.create(name="healer", registered=False)
    run = start_and_execute("a-a2a", {"specialist": "healer", "payload": {"hypothesis": "disk full"}})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"] == "send_a2a failed: specialist 'healer' is not registered"
    row = only_activity(run)
    assert row.status == "failed" and "is not registered" in row.error
    assert row.response is None


def test_send_a2a_to_a_disabled_specialist_fails(a_counter: list[dict[str, Any]]) -> None:
    Specialist.objects.create(name="a_counter", registered=True, enabled=False)
    run = start_and_execute("a-a2a", {"specialist": "a_counter"})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"] == "send_a2a failed: specialist 'a_counter' is disabled"
    assert a_counter == []


def test_send_a2a_to_an_unknown_specialist_fails() -> None:
    run = start_and_execute("a-a2a", {"specialist": "a_nobody"})

    assert run.status == sm.COMPLETED, run.error
    assert run.state["error"].startswith("send_a2a failed: specialist 'a_nobody' is not")
    row = only_activity(run)
    assert row.status == "failed" and row.type == "send_a2a"


def test_an_in_process_specialist_asking_to_retry_is_invoked_again_with_its_modifications() -> None:
    from runs.engine.specialists import Retry

    attempts: list[dict[str, Any]] = []

    def busy_once(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        attempts.append({"attempt": meta["attempt"], "payload": payload})
        if meta["attempt"] == 1:
            raise Retry("warming up", after_ms=10, modifications={"batch": 5})
        return {"done": payload["batch"]}

    specialist("a_busy_once")(busy_once)
    try:
        run = start_and_execute("a-a2a", {"specialist": "a_busy_once", "task": "t", "payload": {"batch": 50}})
        assert run.status == sm.COMPLETED, run.error
        assert run.state["answer"] == {"done": 5}
        assert attempts == [{"attempt": 1, "payload": {"batch": 50}}, {"attempt": 2, "payload": {"batch": 5}}]
        # The recorded request is the node's; the answer is the last attempt's.
        assert only_activity(run).request["payload"] == {"batch": 50}

        def always_busy(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
            raise Retry("still busy", after_ms=1, max_attempts=2)

        specialist("a_busy_once")(always_busy)
        failed = start_and_execute("a-a2a", {"specialist": "a_busy_once", "task": "t", "payload": {}})
        # The node catches the activity's error (a-a2a routes on it); the activity is recorded as failed.
        assert "asked to retry 2 times: still busy" in failed.state["error"]
        assert only_activity(failed).status == "failed"
    finally:
        SPECIALISTS.pop("a_busy_once", None)
