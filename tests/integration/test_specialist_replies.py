"""Replies on the engine's stream, RetryDirectives, per-specialist caps and DecisionNotices,
against the machine's Redis and PostgreSQL with real worker and specialist processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runs.models import Activity, Run, RunEvent, Specialist
from runs.services.runs import run_start
from runs.specialists.envelopes import specialist_result
from runs.specialists.streams import REPLIES, StreamTransport, held_key, inflight_key, stream_key
from tests.integration.processes import ManagedProcess, child_database_url, wait_for, worker
from tests.integration.test_redis_streams import envelope, transport  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration]


def specialist(name: str, *extra: str, env: dict[str, str] | None = None) -> ManagedProcess:
    return ManagedProcess(
        "run_specialist",
        name,
        *extra,
        env={"DATABASE_URL": child_database_url(), **(env or {})},
        ready="consuming",
    )


def _stream_payloads(t: StreamTransport, name: str) -> list[int]:
    return [json.loads(fields["body"])["payload"]["n"] for _, fields in t.redis.xrange(stream_key(name))]


def test_over_the_cap_invocations_are_held_and_published_in_submission_order(
    transport: tuple[StreamTransport, str],  # noqa: F811
) -> None:
    t, name = transport
    sent = [envelope(n, name) for n in range(5)]
    outcomes = [t.publish_capped(name, e, cap=2) for e in sent]
    assert outcomes == ["sent", "sent", "held", "held", "held"]
    assert _stream_payloads(t, name) == [0, 1]
    assert t.stats(name)["in_flight"] == 2 and t.stats(name)["held"] == 3
    # A re-send of an invocation in flight goes out again; a held one stays held once.
    assert t.publish_capped(name, sent[0], cap=2) == "sent"
    assert t.publish_capped(name, sent[3], cap=2) == "held"
    assert t.stats(name)["held"] == 3
    # Answers free slots; held invocations go out oldest first.
    assert t.release(name, sent[1]["meta"]["idempotency_key"], cap=2) == 1
    assert t.release(name, sent[0]["meta"]["idempotency_key"], cap=2) == 1
    assert _stream_payloads(t, name) == [0, 1, 0, 2, 3]
    # Raising the cap lets the rest out at the next answer.
    assert t.release(name, sent[2]["meta"]["idempotency_key"], cap=10) == 1
    assert _stream_payloads(t, name)[-1] == 4
    assert t.stats(name)["held"] == 0
    t.redis.delete(inflight_key(name), held_key(name), held_key(name) + ":bodies", held_key(name) + ":seq")


def test_a_reply_with_an_unknown_kind_or_a_bad_envelope_goes_to_the_replies_dlq(
    postgres_db: None, redis_url: str
) -> None:
    t = StreamTransport(redis_url)
    t.redis.delete(REPLIES, f"{REPLIES}:dlq")
    reply = specialist_result(request=envelope(0, "t-echo"), result={"x": 1})
    reply["status"] = "finished"  # not in the schema
    t.redis.xadd(REPLIES, {"kind": "SpecialistResult", "body": json.dumps(reply)})
    with worker("--poll", "0.2") as w:
        assert wait_for(lambda: t.redis.xlen(f"{REPLIES}:dlq") == 1, timeout=20), w.output
        # The worker's reply consumer is still alive: a run calling a remote specialist completes.
        with specialist("t-echo"):
            run = run_start(graph_name="t-remote", data={"text": "after the bad reply"})
            assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30), w.output
    (_, letter), *_ = t.redis.xrange(f"{REPLIES}:dlq")
    assert "invalid envelope" in letter["reason"] and "status" in letter["reason"]


def test_a_specialist_cap_bounds_invocations_in_flight_and_every_run_completes(
    postgres_db: None, redis_url: str
) -> None:
    with specialist("t-gauge", "--threads", "8", "--max-pending", "16") as spec:
        Specialist.objects.filter(name="t-gauge").update(max_in_flight=2)
        with worker("--concurrency", "8", "--poll", "0.2") as w:
            runs = [run_start(graph_name="t-gauged", data={"n": n, "sleep": 0.4}) for n in range(8)]
            done = wait_for(
                lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="COMPLETED").count() == 8, timeout=60
            )
            assert done, w.output + spec.output
    seen = [Run.objects.get(pk=r.pk).state["answer"]["max_seen"] for r in runs]
    # Without the cap the specialist's 8 threads would take all 8 at once.
    assert max(seen) <= 2, seen
    assert StreamTransport(redis_url).stats("t-gauge")["in_flight"] == 0
    assert Activity.objects.filter(run__in=runs, type="send_a2a", status="completed").count() == 8


def test_a_retry_directive_re_invokes_with_the_modifications_and_the_run_completes(
    postgres_db: None, redis_url: str
) -> None:
    with specialist("t-flaky") as spec, worker("--poll", "0.2") as w:
        ok = run_start(graph_name="t-flaky-call", data={"succeed_on": 2})
        gives_up = run_start(graph_name="t-flaky-call", data={"succeed_on": 0, "max_attempts": 2})
        assert wait_for(lambda: Run.objects.get(pk=ok.pk).status == "COMPLETED", timeout=40), w.output + spec.output
        assert wait_for(lambda: Run.objects.get(pk=gives_up.pk).status == "FAILED", timeout=40), w.output
    ok.refresh_from_db()
    assert ok.state["answer"]["attempt"] == 2
    assert ok.state["answer"]["payload"]["batch"] == 10  # the directive's modification
    retry = RunEvent.objects.get(run=ok, kind="a2a.retry")
    assert "upstream busy" in retry.message and "attempt 2 of 3" in retry.message
    gives_up.refresh_from_db()
    assert "asked to retry 2 times: upstream busy" in gives_up.error
    assert Activity.objects.get(run=gives_up, type="send_a2a").status == "failed"


def test_a_decision_notice_reaches_the_specialists_the_run_called(
    postgres_db: None, redis_url: str, tmp_path: Path
) -> None:
    from approvals.models import ApprovalRequest
    from approvals.services import approval_decide, risk_rules_install_defaults
    from tests.unit.dashboard_fixtures import make_user

    risk_rules_install_defaults()  # a flushed test database has no rules: everything would be low risk
    with specialist("t-flaky", env={"CMO_TEST_NOTICE_DIR": str(tmp_path)}) as spec, worker("--poll", "0.2") as w:
        run = run_start(graph_name="t-flaky-then-approve", data={"succeed_on": 1})
        assert wait_for(lambda: ApprovalRequest.objects.filter(run=run, status="pending").exists(), timeout=40), (
            w.output + spec.output
        )
        request = ApprovalRequest.objects.get(run=run)
        approval_decide(request=request, user=make_user("approver"), approve=True, reason="fine", ip="127.0.0.1")
        notice_file = tmp_path / f"notice-{request.pk}.json"
        assert wait_for(notice_file.exists, timeout=20), spec.output
        assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30), w.output
    notice = json.loads(notice_file.read_text())
    assert notice["decision"] == "approved" and notice["decided_by"] == "approver"
    assert notice["meta"]["trace_id"] == run.trace_id
