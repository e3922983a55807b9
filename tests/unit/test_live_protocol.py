"""Every live-update message type round-trips through JSON against its schema, and has a consumer (as Zulip
checks every event its API sends)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from approvals.consumers import ApprovalsConsumer
from cmo_site.shared import live
from runs.consumers import RunDispatchConsumer, RunLiveConsumer

BUILT: list[tuple[str, Callable[..., dict[str, Any]], dict[str, Any]]] = [
    (live.RUN_STEP, live.step_message, {"run_id": 1, "index": 0, "node": "triage"}),
    (live.RUN_EVENT, live.event_message, {"run_id": 1, "event_id": 7, "kind": "status", "to_status": "RUNNING"}),
    (live.RUN_STATUS, live.status_message, {"run_id": 1, "status": "COMPLETED"}),
    (live.APPROVAL_CHANGED, live.approval_message, {"request_id": 3, "run_id": 1, "status": "pending", "level": "low"}),
    (live.RUN_DISPATCH, live.dispatch_message, {"run_id": 1}),
    (live.RUN_LLM, live.llm_message, {"run_id": 1, "step": 0, "seq": 2, "text": "echo: hi", "done": False}),
]
HANDLED_BY = {
    live.RUN_STEP: RunLiveConsumer,
    live.RUN_EVENT: RunLiveConsumer,
    live.RUN_STATUS: RunLiveConsumer,
    live.APPROVAL_CHANGED: ApprovalsConsumer,
    live.RUN_DISPATCH: RunDispatchConsumer,
    live.RUN_LLM: RunLiveConsumer,
}


def test_every_message_type_is_built_and_handled() -> None:
    assert {t for t, _, _ in BUILT} == set(live.MESSAGES) == set(HANDLED_BY)


@pytest.mark.parametrize(("kind", "build", "fields"), BUILT, ids=[t for t, _, _ in BUILT])
def test_a_message_round_trips_through_json_against_its_schema(
    kind: str, build: Callable[..., dict[str, Any]], fields: dict[str, Any]
) -> None:
    message = json.loads(json.dumps(build(**fields)))
    jsonschema.Draft202012Validator(live.MESSAGES[kind]).validate(message)
    assert message["type"] == kind
    assert callable(getattr(HANDLED_BY[kind], kind.replace(".", "_")))


def test_a_message_with_an_unknown_field_does_not_match() -> None:
    bad = {**live.step_message(run_id=1, index=0, node="x"), "state": {"leak": True}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(live.MESSAGES[live.RUN_STEP]).validate(bad)


def test_a_streamed_answer_sends_only_its_tail() -> None:
    text = "x" * (live.LLM_TAIL_CHARS + 10)
    message = live.llm_message(run_id=1, step=0, seq=0, text=text, done=True)
    assert len(message["text"]) == live.LLM_TAIL_CHARS and message["offset"] == 10
