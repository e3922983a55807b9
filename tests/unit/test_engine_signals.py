"""Control-flow signals (suspend, cancel, abort, lease lost) cannot be swallowed by node code."""

from __future__ import annotations

import pytest

from approvals.services import risk_rules_install_defaults
from replay.services import run_verify
from runs.engine.errors import Cancelled, EngineSignal, LeaseLost, RunAborted, Suspend
from runs.engine.executor import Outcome
from runs.models import Activity
from runs.services.runs import run_start
from runs.services.signals import run_signal
from tests.helpers import execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _risk_rules() -> None:
    risk_rules_install_defaults()  # so the approval is high risk and waits


@pytest.mark.parametrize("signal", [Suspend, Cancelled, RunAborted, LeaseLost])
def test_engine_signals_are_not_exceptions(signal: type[BaseException]) -> None:
    assert issubclass(signal, EngineSignal)
    assert not issubclass(signal, Exception)


@pytest.mark.parametrize("wait", ["signal", "approval"])
def test_except_exception_in_a_node_does_not_swallow_a_suspend(wait: str) -> None:
    run = run_start(graph_name="h-catch-exception", data={"wait": wait}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert run.status == "WAITING" and not run.steps.exists()
    assert Activity.objects.get(run=run).status == "pending"


@pytest.mark.parametrize("wait", ["signal", "approval"])
def test_a_swallowed_suspend_fails_the_step(wait: str) -> None:
    run = run_start(graph_name="h-catch-everything", data={"wait": wait}, seed=1)
    assert execute(run) is Outcome.FAILED
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "is still waiting for an answer" in run.error and "caught the engine's Suspend signal" in run.error
    step = run.steps.get()
    assert step.error == run.error and step.state == {"wait": wait}, "nothing the node computed is stored"
    assert run.events.filter(kind="retry").count() == 0, "a swallowed suspend is a code bug: never retried"
    assert run_verify(run=run).ok, "verification reproduces the failure"


def test_a_node_that_catches_the_signal_gets_it_again_on_its_next_activity() -> None:
    run = run_start(graph_name="h-catch-everything", data={"then_call_again": True}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert run.status == "WAITING"
    assert list(Activity.objects.filter(run=run).values_list("type", "status")) == [("signal", "pending")]
    run_signal(run=run, name="go", payload={"ok": 1})
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state["answer"] == {"ok": 1}
