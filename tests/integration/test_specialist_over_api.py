"""A specialist on "another machine": it registers and heartbeats over the JSON API with a token and
answers over Redis, with no database reachable from its process."""

from __future__ import annotations

from typing import Any

import pytest

from cmo_site.shared.tokens import api_token_create
from runs.models import Run, Specialist
from runs.services.runs import run_start
from tests.integration.processes import ManagedProcess, wait_for, worker
from tests.unit.dashboard_fixtures import make_user

pytestmark = [pytest.mark.integration]

NO_DATABASE = "postgres://nobody@127.0.0.1:1/unreachable"


def test_a_specialist_without_database_access_registers_over_the_api_and_answers_a_run(
    postgres_db: None, redis_url: str, live_server: Any
) -> None:
    user = make_user("operator")  # a specialist token acts for an operator or admin, capped to the specialist role
    _, raw = api_token_create(user=user, role="specialist", name="t-echo on host B", specialist="t-echo")
    env = {"DATABASE_URL": NO_DATABASE, "CMO_API_TOKEN": raw}
    with ManagedProcess("run_specialist", "t-echo", "--api", live_server.url, env=env, ready="consuming") as spec:
        row = Specialist.objects.get(name="t-echo")
        assert row.transport == "redis" and row.address == "cmo:spec:t-echo" and row.last_heartbeat_at is not None
        with worker("--poll", "0.2") as w:
            run = run_start(graph_name="t-remote", data={"text": "from afar"})
            assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "COMPLETED", timeout=30), (
                w.output + spec.output
            )
    run.refresh_from_db()
    assert run.state is not None
    assert run.state["answer"] == {"echo": "from afar", "task": "echo"}


def test_a_specialist_with_a_bad_token_refuses_to_start_with_the_apis_message(
    postgres_db: None, redis_url: str, live_server: Any
) -> None:
    env = {"DATABASE_URL": NO_DATABASE, "CMO_API_TOKEN": "not-a-token"}
    proc = ManagedProcess("run_specialist", "t-echo", "--api", live_server.url, env=env)
    proc.start()
    assert proc.proc is not None
    code = proc.proc.wait(60)
    assert wait_for(lambda: "could not register" in proc.output, timeout=5), proc.output
    assert code != 0
    assert "could not register 't-echo'" in proc.output and "401" in proc.output
