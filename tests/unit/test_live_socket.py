"""The dashboard's live socket, with Channels' WebsocketCommunicator."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from cmo_site.asgi import application
from cmo_site.routing import websocket_urlpatterns
from runs.models import RunEvent
from runs.services.runs import run_start
from tests.helpers import execute, start_and_execute
from tests.unit.dashboard_fixtures import make_user

pytestmark = pytest.mark.django_db(transaction=True)

router = URLRouter(websocket_urlpatterns)


async def _drain(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """Every message until the socket has been quiet for a moment."""
    messages = []
    while not await communicator.receive_nothing(timeout=0.3):
        messages.append(await communicator.receive_json_from())
    return messages


def _connect(path: str, user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(router, path)
    communicator.scope["user"] = user
    return communicator


def test_the_socket_refuses_anonymous_users() -> None:
    run = run_start(graph_name="t-count", data={}, seed=1)

    async def scenario() -> None:
        for path in (f"/ws/runs/{run.pk}/", "/ws/runs/"):
            # Through the real stack (session auth, no cookie) and with an explicit anonymous user.
            through_stack = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost")])
            connected, code = await through_stack.connect()
            assert (connected, code) == (False, 4401)
            connected, code = await _connect(path, AnonymousUser()).connect()
            assert (connected, code) == (False, 4401)

    async_to_sync(scenario)()


def test_a_signed_in_viewer_is_accepted_and_an_unknown_run_is_refused() -> None:
    viewer = make_user("viewer")

    async def scenario() -> None:
        communicator = _connect("/ws/runs/999999/", viewer)
        assert await communicator.connect() == (False, 4404)
        communicator = _connect("/ws/runs/", viewer)
        connected, _ = await communicator.connect()
        assert connected
        await get_channel_layer().group_send("runs", {"type": "run.status", "run_id": 5, "status": "RUNNING"})
        assert await communicator.receive_json_from() == {"type": "status", "run_id": 5, "status": "RUNNING"}
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_reconnect_with_the_last_sequence_gets_exactly_the_missed_steps_and_events() -> None:
    viewer = make_user("viewer")
    run = start_and_execute("t-count", {"target": 5})
    events = list(RunEvent.objects.filter(run=run).order_by("id").values_list("id", flat=True))
    seen_event = events[1]  # the page had seen two events and steps 0 and 1 before the connection dropped

    async def scenario() -> list[dict[str, Any]]:
        communicator = _connect(f"/ws/runs/{run.pk}/?step=1&event={seen_event}", viewer)
        connected, _ = await communicator.connect()
        assert connected
        messages = await _drain(communicator)
        # A broadcast that brings nothing new sends nothing: no step is repeated.
        await get_channel_layer().group_send(f"run-{run.pk}", {"type": "run.step", "run_id": run.pk, "index": 4})
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return messages

    messages = async_to_sync(scenario)()
    steps = [m["step"]["index"] for m in messages if m["type"] == "step"]
    sent_events = [m["event"]["id"] for m in messages if m["type"] == "event"]
    assert steps == [2, 3, 4]
    assert sent_events == events[2:]
    assert messages[-1]["type"] == "run" and messages[-1]["run"]["status"] == "COMPLETED"
    step_three = next(m["step"] for m in messages if m["type"] == "step" and m["step"]["index"] == 3)
    assert step_three["state"] == {"target": 5, "n": 4}
    assert step_three["diff"] == [{"op": "changed", "path": "$.n", "old": 3, "new": 4}]


def test_steps_committed_while_connected_arrive_once_each() -> None:
    viewer = make_user("viewer")
    run = run_start(graph_name="t-count", data={"target": 3}, seed=1)
    created = RunEvent.objects.get(run=run).pk

    async def scenario() -> list[dict[str, Any]]:
        communicator = _connect(f"/ws/runs/{run.pk}/?step=-1&event={created}", viewer)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_nothing(timeout=0.2)
        await database_sync_to_async(execute)(run)
        for _ in range(2):  # the engine's broadcasts plus duplicates: the page still gets each step once
            await get_channel_layer().group_send(f"run-{run.pk}", {"type": "run.step", "run_id": run.pk, "index": 2})
        messages = await _drain(communicator)
        await communicator.disconnect()
        return messages

    messages = async_to_sync(scenario)()
    assert [m["step"]["index"] for m in messages if m["type"] == "step"] == [0, 1, 2]
    statuses = [m["event"]["to_status"] for m in messages if m["type"] == "event" and m["event"]["to_status"]]
    assert statuses == ["RUNNING", "COMPLETED"]
    assert User.objects.filter(username="viewer").exists()


def test_a_ping_repairs_a_broadcast_that_never_arrived() -> None:
    viewer = make_user("viewer")
    run = run_start(graph_name="t-count", data={"target": 2}, seed=1)
    created = RunEvent.objects.get(run=run).pk

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        communicator = _connect(f"/ws/runs/{run.pk}/?step=-1&event={created}", viewer)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_nothing(timeout=0.2)
        # Written without a broadcast reaching this socket (the one the page would have missed).
        await database_sync_to_async(RunEvent.objects.create)(run=run, kind="note", message="missed")
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.send_json_to({"type": "ping"})
        after_ping = await _drain(communicator)
        await communicator.send_json_to({"type": "ping"})
        again = await _drain(communicator)
        await communicator.disconnect()
        return after_ping, again

    after_ping, again = async_to_sync(scenario)()
    assert [m["event"]["message"] for m in after_ping if m["type"] == "event"] == ["missed"]
    assert after_ping[-1] == {"type": "pong"}
    assert again == [{"type": "pong"}]  # nothing repeated


def test_a_page_rendered_with_an_older_status_than_its_events_gets_the_current_header() -> None:
    """The page read its header (RUNNING) before the run ended and its events after: nothing newer is left to send,
    but the header still has to reach it."""
    viewer = make_user("viewer")
    run = start_and_execute("t-count", {"target": 2})
    last_step = run.steps.order_by("-index").values_list("index", flat=True).first()
    last_event = RunEvent.objects.filter(run=run).order_by("-id").values_list("id", flat=True).first()

    async def scenario(status: str) -> list[dict[str, Any]]:
        path = f"/ws/runs/{run.pk}/?step={last_step}&event={last_event}&status={status}"
        communicator = _connect(path, viewer)
        connected, _ = await communicator.connect()
        assert connected
        messages = await _drain(communicator)
        await communicator.disconnect()
        return messages

    torn = async_to_sync(scenario)("RUNNING")
    assert [m["type"] for m in torn] == ["run"] and torn[0]["run"]["status"] == "COMPLETED"
    assert async_to_sync(scenario)("COMPLETED") == []  # a page already right gets nothing
