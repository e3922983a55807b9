"""Non-deterministic calls are caught while the node runs: a warning event per call site, or in strict
mode a failed step; libraries' own clock reads, seeded generators and activity effects are not reported."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

import tests.graphs_determinism as gd
from replay.services import run_verify
from runs.engine import graph
from runs.engine.determinism import EVENT_KIND
from runs.engine.errors import GraphValidationError
from runs.engine.executor import Outcome
from runs.engine.reexecute import reexecute
from runs.engine.validation import validate_definition
from runs.models import Activity, Run, RunEvent
from runs.services.run_store import DjangoCheckpointer
from runs.services.runs import run_start
from runs.services.signals import run_signal
from tests.helpers import execute, start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)

CLOCK = "use ctx.activities.now(), which is recorded and replays the same"
SECONDS = "use ctx.activities.now().timestamp(), which is recorded and replays the same"
RANDOM = "use ctx.activities.rand() or ctx.activities.randint(a, b), drawn from the run's seed and recorded"
UUID = "use ctx.activities.uuid4(), which is generated once, recorded and replays the same"
ENTROPY = "use ctx.activities.uuid4(), generated once and recorded"

# key in tests.graphs_determinism._direct -> (what the event says the node called, the advice it starts with)
CALLS = {
    "time.time": ("time.time()", SECONDS),
    "time.time_ns": ("time.time_ns()", SECONDS),
    "datetime.now": ("datetime.datetime.now()", CLOCK),
    "datetime.utcnow": ("datetime.datetime.utcnow()", CLOCK),
    "datetime.today": ("datetime.datetime.today()", CLOCK),
    "date.today": ("datetime.date.today()", "use ctx.activities.now().date(), which is recorded"),
    "random.random": ("random.random()", RANDOM),
    "random.randint": ("random.randint()", RANDOM),
    "random.choice": ("random.choice()", RANDOM),
    "random.shuffle": ("random.shuffle()", RANDOM),
    "random.getrandbits": ("random.getrandbits()", RANDOM),
    "random.Random()": ("random.Random()", "give it a seed, e.g. random.Random(ctx.activities.randint(0, 2**32))"),
    "random.seed": ("random.seed()", RANDOM),
    "Random.seed": ("random.Random.seed()", "give it a seed, e.g. random.Random(ctx.activities.randint(0, 2**32))"),
    "SystemRandom": ("random.SystemRandom().randint()", ENTROPY),
    "uuid.uuid4": ("uuid.uuid4()", UUID),
    "uuid.uuid1": ("uuid.uuid1()", UUID),
    "os.urandom": ("os.urandom()", ENTROPY),
    "secrets.token_hex": ("secrets.token_hex()", ENTROPY),
    "secrets.choice": ("secrets.choice()", ENTROPY),
}


@pytest.fixture(autouse=True)
def _reset_counts() -> None:
    gd.COUNTS.clear()


def warnings_of(run: Run) -> list[RunEvent]:
    return list(RunEvent.objects.filter(run=run, kind=EVENT_KIND).order_by("id"))


@pytest.mark.parametrize("key", sorted(CALLS))
def test_each_call_is_reported_on_the_step_with_the_activity_to_use(key: str) -> None:
    run = start_and_execute("d-call", {"call": key})
    assert run.status == "COMPLETED", run.error
    assert run.state == {"call": key, "done": True}, "warn mode: the step itself completes"
    call, advice = CALLS[key]
    [event] = warnings_of(run)
    line = gd.site_line(key)
    expected = f"node 'd_call' called {call} (in tests.graphs_determinism._direct, line {line}): {advice}"
    assert event.message.startswith(expected), event.message
    assert event.step == 0
    assert event.detail == {
        "node": "d_call",
        "call": call,
        "advice": event.message.split("): ", 1)[1],
        "module": "tests.graphs_determinism",
        "function": "_direct",
        "line": line,
        "attempt": 1,
    }
    assert "/" not in event.message, "module and function names, never a path on the server"


def test_a_helper_of_the_node_is_named_as_the_caller() -> None:
    run = start_and_execute("d-helper")
    [event] = warnings_of(run)
    assert event.message.startswith(
        f"node 'd_helper' called datetime.datetime.now() (in tests.graphs_determinism._stamp, "
        f"line {gd.site_line('helper')}): {CLOCK}"
    )


def test_logging_json_threading_httpx_and_django_reading_the_clock_are_not_reported() -> None:
    run = start_and_execute("d-library")
    assert run.status == "COMPLETED", run.error
    assert run.state["text"] == '{"a": [1, 2, 3]}'
    assert run.state["url"] == "http://example.invalid/items?q=x"
    assert run.state["stamped"] and run.state["django_now"] and run.state["monotonic"]
    assert warnings_of(run) == []


def test_libraries_keep_working_in_strict_mode() -> None:
    run = start_and_execute("d-library-strict")
    assert run.status == "COMPLETED", run.error
    assert warnings_of(run) == []


@pytest.mark.parametrize("graph_name", ["d-seeded", "d-seeded-strict"])
def test_a_generator_the_node_seeded_itself_is_not_reported(graph_name: str) -> None:
    import random

    run = start_and_execute(graph_name, {"seed": 7})
    assert run.status == "COMPLETED", run.error
    assert warnings_of(run) == []
    rng = random.Random(7)
    assert run.state["values"][:2] == [rng.random(), rng.randint(1, 100)]


@pytest.mark.parametrize("graph_name", ["d-activities", "d-activities-strict"])
def test_activities_and_their_effects_are_not_reported(graph_name: str) -> None:
    run = start_and_execute(graph_name)
    assert run.status == "COMPLETED", run.error
    assert warnings_of(run) == []
    assert run.state["effect_keys"] == ["at", "id", "now", "r"]
    assert list(Activity.objects.filter(run=run).order_by("seq").values_list("type", flat=True)) == [
        "d_effect",
        "now",
        "rand",
        "randint",
        "uuid4",
    ]


def test_uuid4_is_an_activity_recorded_once_and_replayed() -> None:
    run = start_and_execute("d-activities")
    recorded = Activity.objects.get(run=run, type="uuid4")
    assert recorded.response == run.state["uuid"]
    assert len(run.state["uuid"]) == 36 and run.state["uuid"][14] == "4"
    assert run_verify(run=run).ok, "a verification gets the recorded id back"


def test_each_call_site_is_reported_once_per_step_execution() -> None:
    run = start_and_execute("d-repeat")
    assert run.status == "COMPLETED", run.error
    assert [(e.detail["call"], e.detail["line"]) for e in warnings_of(run)] == [
        ("time.time()", gd.site_line("repeat-loop")),
        ("time.time()", gd.site_line("repeat-again")),
    ]


def test_every_execution_of_a_step_reports_its_own_calls() -> None:
    run = start_and_execute("d-cycle")
    assert run.status == "COMPLETED", run.error
    assert [(e.step, e.detail["line"]) for e in warnings_of(run)] == [(i, gd.site_line("cycle")) for i in range(3)]


def test_graph_with_determinism_off_reports_nothing() -> None:
    run = start_and_execute("d-call-off", {"call": "uuid.uuid4"})
    assert run.status == "COMPLETED", run.error
    assert warnings_of(run) == []


@pytest.mark.parametrize("key", ["datetime.now", "random.randint", "uuid.uuid4", "secrets.token_hex"])
def test_strict_mode_fails_the_step_with_the_message_and_does_not_retry(key: str) -> None:
    run = start_and_execute("d-strict", {"call": key})
    assert run.status == "FAILED"
    call, advice = CALLS[key]
    assert run.error.startswith(
        f"node 'd_strict_call' called {call} (in tests.graphs_determinism._direct, line {gd.site_line(key)}): {advice}"
    ), run.error
    step = run.steps.get()
    assert step.error == run.error and step.state == {"call": key}
    assert gd.COUNTS["d_strict_call"] == 1, "not retried, although the node allows 3 attempts"
    assert gd.COUNTS["d_strict_call_after"] == 0, "the call raised: the node did not go on with the value"
    assert not RunEvent.objects.filter(run=run, kind="retry").exists()
    assert warnings_of(run) == [], "the failure is the report"
    assert run_verify(run=run).ok, "verification reproduces the failure"


@pytest.mark.parametrize("then", ["return", "raise"])
def test_strict_mode_fails_the_step_even_if_the_node_swallows_the_error(then: str) -> None:
    run = start_and_execute("d-strict-swallow", {"then": then})
    assert run.status == "FAILED"
    assert run.error.startswith(
        f"node 'd_strict_swallow' called uuid.uuid4() (in tests.graphs_determinism.d_strict_swallow, "
        f"line {gd.site_line('swallowed')}): {UUID}"
    ), run.error
    assert run.steps.get().state == {"then": then}, "the swallowing node's state is not kept"
    assert gd.COUNTS["d_strict_swallow"] == 1
    assert not RunEvent.objects.filter(run=run, kind="retry").exists()


def test_detection_works_in_the_thread_that_enforces_a_timeout() -> None:
    run = start_and_execute("d-timeout")
    assert run.status == "COMPLETED", run.error
    assert run.state["thread"], "the node ran in the timeout helper thread"
    [event] = warnings_of(run)
    assert event.detail["call"] == "time.time()" and event.detail["line"] == gd.site_line("timeout")


def test_strict_mode_works_in_the_thread_that_enforces_a_timeout() -> None:
    run = start_and_execute("d-timeout-strict")
    assert run.status == "FAILED"
    assert run.error.startswith(
        "node 'd_timeout_clock' called time.time() (in tests.graphs_determinism.d_timeout_clock"
    )


def test_the_detector_does_not_stay_installed_after_a_node() -> None:
    start_and_execute("d-call", {"call": "time.time"})
    assert sys.getprofile() is None


def test_a_profiler_already_running_is_left_alone() -> None:
    calls: list[str] = []

    def theirs(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            calls.append(getattr(arg, "__name__", ""))

    sys.setprofile(theirs)
    try:
        run = start_and_execute("d-call", {"call": "time.time"})
        assert sys.getprofile() is theirs
    finally:
        sys.setprofile(None)
    assert run.status == "COMPLETED", run.error
    assert warnings_of(run) == [], "their profiler wins: detection is off while it runs"
    assert "time" in calls


@pytest.mark.parametrize("graph_name", ["d-wait", "d-wait-strict"])
def test_suspension_passes_through_the_detector(graph_name: str) -> None:
    run = run_start(graph_name=graph_name, data={}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    run.refresh_from_db()
    assert run.status == "WAITING"
    run_signal(run=run, name="go", payload={"ok": 1})
    assert execute(run) is Outcome.COMPLETED
    run.refresh_from_db()
    assert run.state == {"payload": {"ok": 1}}
    assert warnings_of(run) == []


def test_a_step_that_suspends_reports_on_each_execution() -> None:
    run = run_start(graph_name="d-wait", data={"clock": True}, seed=1)
    assert execute(run) is Outcome.SUSPENDED
    assert len(warnings_of(run)) == 1, "reported although the step suspended"
    run_signal(run=run, name="go", payload=1)
    assert execute(run) is Outcome.COMPLETED
    assert [e.detail["line"] for e in warnings_of(run)] == [gd.site_line("wait")] * 2


def test_other_threads_are_not_watched_while_a_node_runs() -> None:
    """The profiler is per thread: the worker's other runner threads (and their logging) are unaffected."""
    stop = threading.Event()
    ticks: list[float] = []

    def other_runner() -> None:
        import time

        while not stop.is_set():
            ticks.append(time.time())
            stop.wait(0.001)

    thread = threading.Thread(target=other_runner)
    thread.start()
    try:
        run = start_and_execute("d-call", {"call": "random.random"})
    finally:
        stop.set()
        thread.join()
    assert [e.detail["call"] for e in warnings_of(run)] == ["random.random()"]
    assert ticks


def test_verification_reports_what_the_detector_found_and_stores_nothing() -> None:
    run = start_and_execute("d-call", {"call": "time.time"})
    events_before = RunEvent.objects.filter(run=run).count()
    assert run_verify(run=run).ok
    assert RunEvent.objects.filter(run=run).count() == events_before
    snapshot = DjangoCheckpointer(owner="verify").load(run.pk)
    replayed = reexecute(_spec("d_call"), snapshot=snapshot, step=run.steps.get(), input_state=run.input, records={})
    assert replayed.error == ""
    assert [m.split(" (in ")[0] for m in replayed.nondeterministic_calls] == ["node 'd_call' called time.time()"]


def _spec(name: str) -> Any:
    from runs.engine.graph import NODES

    spec = NODES.get(name)
    assert spec is not None
    return spec


def test_the_node_functions_own_file_is_node_code_even_in_site_packages() -> None:
    """A graph package installed as a wheel: its node functions are still watched."""
    import sysconfig

    from runs.engine.boundary import NodeGuard, node_region

    path = f"{sysconfig.get_paths()['purelib']}/acme_graphs/nodes.py"
    namespace: dict[str, Any] = {}
    exec(compile("import time\ndef triage(state, ctx):\n    return time.time()\n", path, "exec"), namespace)
    triage = namespace["triage"]
    for node_file, expected in ((path, ["time.time()"]), ("", [])):
        guard = NodeGuard(node="triage", node_file=node_file)
        with node_region(guard):
            triage({}, None)
        assert [f.call for f in guard.detector.findings] == expected


# -- the definition ------------------------------------------------------------------


def test_the_mode_is_stored_in_the_definition_only_when_not_the_default() -> None:
    warn = graph("d-def-warn", entry="d_call", edges=[("d_call", "__end__")], register=False)
    strict = graph("d-def-strict", entry="d_call", edges=[("d_call", "__end__")], determinism="strict", register=False)
    assert "determinism" not in warn.definition(), "graphs stored before the setting keep their hash"
    assert strict.definition()["determinism"] == "strict"
    assert validate_definition(strict.definition())["determinism"] == "strict"


@pytest.mark.parametrize("mode", ["warn", "strict", "off"])
def test_a_json_definition_may_name_a_mode(mode: str) -> None:
    definition = {
        "name": "d-json",
        "entry": "d_call",
        "nodes": [{"name": "d_call"}],
        "edges": [{"from": "d_call", "to": "__end__"}],
        "determinism": mode,
    }
    assert validate_definition(definition)["determinism"] == mode


def test_an_unknown_mode_is_refused_naming_the_field() -> None:
    definition = {
        "name": "d-json",
        "entry": "d_call",
        "nodes": [{"name": "d_call"}],
        "edges": [{"from": "d_call", "to": "__end__"}],
        "determinism": "loud",
    }
    with pytest.raises(GraphValidationError) as info:
        validate_definition(definition)
    assert "at $.determinism: 'loud' is not one of ['warn', 'strict', 'off']" in str(info.value)
