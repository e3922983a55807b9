"""The fake model API (tests/fixtures/model_server.py), driven by the real openai and anthropic clients.

No database: the server is a thread of the test process and the clients talk HTTP to it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fixtures.model_server import ANTHROPIC_PATH, OPENAI_PATH, ModelServer, model_server

__all__ = ["model_server"]

KEY = "sk-test-key"
SEARCH_OPENAI: Any = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
SEARCH_ANTHROPIC: Any = {
    "name": "search",
    "description": "Search the web.",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}
LONG = " ".join(f"w{i}" for i in range(50))


@pytest.fixture
def oai(model_server: ModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY, base_url=model_server.url + "/v1", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(model_server: ModelServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=model_server.url, max_retries=0) as client:
        yield client


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def post(server: ModelServer, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A raw POST (no client library): (status, headers, body)."""
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


# -- OpenAI Chat Completions -----------------------------------------------------------------


def test_openai_text_not_streamed(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.cached_tokens = 2
    answer = oai.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there model"}],
    )

    assert answer.id == "chatcmpl-ms000001" and answer.object == "chat.completion" and answer.model == "gpt-test"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "echo: hello there model"
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (5, 4, 9)
    assert answer.usage.prompt_tokens_details is not None and answer.usage.prompt_tokens_details.cached_tokens == 2

    received = model_server.last(OPENAI_PATH)
    assert received.method == "POST" and received.header("authorization") == f"Bearer {KEY}"
    assert received.body["model"] == "gpt-test" and received.body["messages"][1]["content"] == "hello there model"
    assert received.key is None and not received.stream and received.at <= time.time()


def test_openai_text_streamed_pieces_join_and_usage_arrives(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.script(text=LONG)
    stream = oai.chat.completions.create(
        model="gpt-test", messages=user("talk"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == LONG and len(pieces) == 50
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-ms000001" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1, 50)
    assert all(c.usage is None for c in chunks[:-1])
    assert model_server.last().stream


def test_openai_stream_without_include_usage_has_no_usage_chunk(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-test", messages=user("hi"), stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: hi"


def test_openai_tool_call_not_streamed(model_server: ModelServer, oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(model="gpt-test", messages=user("use the tool please"), tools=[SEARCH_OPENAI])

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id == "call_ms000001"
    assert call.function.name == "search" and json.loads(call.function.arguments) == {"q": "use the tool please"}
    assert model_server.last().body["tools"][0]["function"]["name"] == "search"


def test_openai_tool_call_streamed_assembles_from_deltas_and_the_helper(oai: openai.OpenAI) -> None:
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    finish: list[str] = []
    for chunk in oai.chat.completions.create(
        model="gpt-test", messages=user("a tool call, streamed"), tools=[SEARCH_OPENAI], stream=True
    ):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.function is None:
                continue
            if delta.function.name:
                names[delta.index] = delta.function.name
            arguments[delta.index] = arguments.get(delta.index, "") + (delta.function.arguments or "")
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert names == {0: "search"} and json.loads(arguments[0]) == {"q": "a tool call, streamed"}
    assert finish == ["tool_calls"]

    with oai.chat.completions.stream(
        model="gpt-test", messages=user("the tool again"), tools=[SEARCH_OPENAI]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in events and "tool_calls.function.arguments.done" in events
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "search"
    assert calls[0].function.parsed_arguments == {"q": "the tool again"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_tool_result_turn_answers_with_text(oai: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "user", "content": "use the tool"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "found it"},
    ]
    answer = oai.chat.completions.create(model="gpt-test", messages=messages, tools=[SEARCH_OPENAI])
    assert answer.choices[0].message.content == "echo: found it" and answer.choices[0].finish_reason == "stop"


def test_openai_malformed_tool_call_has_invalid_json_arguments(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.script(malformed_tool_call=True, times=2)
    answer = oai.chat.completions.create(model="gpt-test", messages=user("anything"), tools=[SEARCH_OPENAI])
    call = answer.choices[0].message.tool_calls
    assert call is not None and call[0].type == "function" and call[0].function.name == "search"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call[0].function.arguments)

    streamed = ""
    for chunk in oai.chat.completions.create(
        model="gpt-test", messages=user("anything"), tools=[SEARCH_OPENAI], stream=True
    ):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            if delta.function is not None:
                streamed += delta.function.arguments or ""
    assert streamed == call[0].function.arguments
    with pytest.raises(json.JSONDecodeError):
        json.loads(streamed)


def test_openai_429_retried_by_the_client_then_succeeds(model_server: ModelServer) -> None:
    model_server.script(status=429, headers={"retry-after": "0.01"}, times=1)
    with openai.OpenAI(api_key=KEY, base_url=model_server.url + "/v1", max_retries=2) as client:
        answer = client.chat.completions.create(
            model="gpt-test", messages=user("again"), extra_headers={"Idempotency-Key": "idem-1"}
        )
    assert answer.choices[0].message.content == "echo: again"
    assert model_server.count(OPENAI_PATH) == 2 and model_server.pending() == 0
    first, second = model_server.requests(OPENAI_PATH)
    assert first.key == second.key == "idem-1"
    assert (first.header("x-stainless-retry-count"), second.header("x-stainless-retry-count")) == ("0", "1")


def test_openai_500_surfaces_as_api_status_error(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.script(status=500)
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model="gpt-test", messages=user("hi"))
    assert isinstance(caught.value, openai.InternalServerError) and caught.value.status_code == 500
    assert caught.value.response.json() == {
        "error": {"message": "scripted error", "type": "server_error", "param": None, "code": None}
    }
    assert caught.value.request_id == "req_ms000001"
    assert model_server.count() == 1  # max_retries=0: no retry


def test_openai_wrong_key_is_an_authentication_error(model_server: ModelServer) -> None:
    with (
        openai.OpenAI(api_key="sk-wrong-1234", base_url=model_server.url + "/v1", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="gpt-test", messages=user("hi"))
    error = caught.value.response.json()["error"]
    assert caught.value.status_code == 401
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key" and error["param"] is None
    assert model_server.last().header("Authorization") == "Bearer sk-wrong-1234"


def test_openai_idempotency_key_from_extra_headers_is_recorded(model_server: ModelServer, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="gpt-test", messages=user("hi"), extra_headers={"Idempotency-Key": "run-1:0:0"})
    oai.chat.completions.create(model="gpt-test", messages=user("hi"))
    assert [r.key for r in model_server.requests(OPENAI_PATH)] == ["run-1:0:0", None]


def test_openai_max_tokens_and_stop(oai: openai.OpenAI) -> None:
    cut = oai.chat.completions.create(model="gpt-test", messages=user("one two three four"), max_completion_tokens=3)
    assert cut.choices[0].message.content == "echo: one two" and cut.choices[0].finish_reason == "length"
    stopped = oai.chat.completions.create(model="gpt-test", messages=user("one two STOP three"), stop=["STOP"])
    assert stopped.choices[0].message.content == "echo: one two " and stopped.choices[0].finish_reason == "stop"


def test_openai_error_mid_stream(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.script(error_after=2)
    received: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in oai.chat.completions.create(model="gpt-test", messages=user("a b c d"), stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "echo:"


def test_openai_client_killed_mid_stream(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.script(hang_after=3, text=LONG)
    stream = oai.chat.completions.create(model="gpt-test", messages=user("hi"), stream=True)
    got = [next(stream).choices[0].delta.content for _ in range(3)]
    assert got == ["", "w0", " w1"]
    assert model_server.wait_hanging(1, timeout=2)
    stream.close()  # the client goes away while the server holds the stream open
    assert model_server.wait_disconnects(1, timeout=2)


def test_openai_chunk_delay_spaces_the_chunks(model_server: ModelServer, oai: openai.OpenAI) -> None:
    model_server.chunk_delay = 0.02
    model_server.script(text=" ".join(["x"] * 10))
    started = time.monotonic()
    arrivals = []
    for _ in oai.chat.completions.create(model="gpt-test", messages=user("hi"), stream=True):
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 12  # role, 10 words, finish ([DONE] is not yielded)
    assert arrivals[-1] - arrivals[0] >= 11 * 0.02 * 0.9


# -- Anthropic Messages ----------------------------------------------------------------------


def test_anthropic_text_not_streamed(model_server: ModelServer, ant: anthropic.Anthropic) -> None:
    model_server.cached_tokens = 1
    model_server.cache_creation_tokens = 4
    message = ant.messages.create(
        model="claude-test",
        max_tokens=100,
        system="be brief",
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "part"}]},
        ],
    )

    assert message.id == "msg_ms000001" and message.type == "message" and message.role == "assistant"
    assert message.model == "claude-test" and message.stop_reason == "end_turn" and message.stop_sequence is None
    assert len(message.content) == 1 and message.content[0].type == "text"
    assert message.content[0].text == "echo: second\npart"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (7, 1, 4)
    assert usage.output_tokens == 3

    received = model_server.last(ANTHROPIC_PATH)
    assert received.api_key == KEY and received.header("anthropic-version")
    assert received.body["system"] == "be brief" and received.body["max_tokens"] == 100


def test_anthropic_text_streamed_pieces_join_and_usage_arrives(
    model_server: ModelServer, ant: anthropic.Anthropic
) -> None:
    model_server.script(text=LONG)
    with ant.messages.stream(model="claude-test", max_tokens=100, messages=user("talk to me")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == LONG and len(texts) == 50
    assert final.content[0].type == "text" and final.content[0].text == LONG
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 50 and final.usage.input_tokens == 3


def test_anthropic_raw_stream_has_the_documented_events(model_server: ModelServer) -> None:
    body = {"model": "claude-test", "max_tokens": 50, "stream": True, "messages": user("hi there")}
    status, headers, raw = post(model_server, ANTHROPIC_PATH, body, {"x-api-key": KEY, "anthropic-version": "x"})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    frames = [f for f in raw.decode().split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    datas = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["type"] for d in datas] == names
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["stop_reason"] is None
    assert datas[2]["content_block"] == {"type": "text", "text": ""}
    assert "".join(d["delta"]["text"] for d in datas[3:6]) == "echo: hi there"
    assert datas[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert datas[7]["usage"] == {"output_tokens": 3}


def test_openai_raw_stream_ends_with_done(model_server: ModelServer) -> None:
    body = {"model": "gpt-test", "stream": True, "stream_options": {"include_usage": True}, "messages": user("hi")}
    status, _, raw = post(model_server, OPENAI_PATH, body, {"Authorization": f"Bearer {KEY}"})
    lines = [line for line in raw.decode().split("\n\n") if line]
    assert status == 200 and all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2].removeprefix("data: "))["choices"] == []


def test_anthropic_tool_use_not_streamed(model_server: ModelServer, ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model="claude-test", max_tokens=100, messages=user("call a tool"), tools=[SEARCH_ANTHROPIC]
    )
    assert message.stop_reason == "tool_use" and len(message.content) == 1
    block = message.content[0]
    assert block.type == "tool_use" and block.id == "toolu_ms000001" and block.name == "search"
    assert block.input == {"q": "call a tool"}


def test_anthropic_tool_use_streamed_through_the_helper(ant: anthropic.Anthropic) -> None:
    with ant.messages.stream(
        model="claude-test", max_tokens=100, messages=user("call the tool, streamed"), tools=[SEARCH_ANTHROPIC]
    ) as stream:
        partial = [event.partial_json for event in stream if event.type == "input_json"]
        final = stream.get_final_message()
    assert len(partial) > 2 and json.loads("".join(partial)) == {"q": "call the tool, streamed"}
    block = final.content[0]
    assert block.type == "tool_use" and block.name == "search" and block.input == {"q": "call the tool, streamed"}
    assert final.stop_reason == "tool_use"


def test_anthropic_text_and_forced_tool_then_tool_result(model_server: ModelServer, ant: anthropic.Anthropic) -> None:
    model_server.script(text="Let me look.", tool_call=True)
    with ant.messages.stream(model="claude-test", max_tokens=100, messages=user("hi"), tools=[SEARCH_ANTHROPIC]) as s:
        first = s.get_final_message()
    assert [b.type for b in first.content] == ["text", "tool_use"] and first.stop_reason == "tool_use"
    assert first.content[1].type == "tool_use"
    tool_id = first.content[1].id

    second = ant.messages.create(
        model="claude-test",
        max_tokens=100,
        tools=[SEARCH_ANTHROPIC],
        messages=[
            {"role": "user", "content": "use the tool"},
            first.to_param(),
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "42 results"}]},
        ],
    )
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    assert second.content[0].text == "echo: 42 results"


def test_anthropic_429_retried_by_the_client_then_succeeds(model_server: ModelServer) -> None:
    model_server.script(status=429, headers={"retry-after": "0.01"}, path=ANTHROPIC_PATH)
    with anthropic.Anthropic(api_key=KEY, base_url=model_server.url, max_retries=2) as client:
        message = client.messages.create(model="claude-test", max_tokens=10, messages=user("again"))
    assert message.content[0].type == "text" and message.content[0].text == "echo: again"
    assert model_server.count(ANTHROPIC_PATH) == 2


def test_anthropic_errors_surface_as_api_status_errors(model_server: ModelServer, ant: anthropic.Anthropic) -> None:
    model_server.script(status=529)
    model_server.script(status=500)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        ant.messages.create(model="claude-test", max_tokens=10, messages=user("hi"))
    assert overloaded.value.status_code == 529
    assert overloaded.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "scripted error"},
        "request_id": "req_ms000001",
    }
    with pytest.raises(anthropic.InternalServerError) as internal:
        ant.messages.create(model="claude-test", max_tokens=10, messages=user("hi"))
    assert internal.value.response.json()["error"]["type"] == "api_error"


def test_anthropic_wrong_key_is_an_authentication_error(model_server: ModelServer) -> None:
    with (
        anthropic.Anthropic(api_key="sk-wrong", base_url=model_server.url, max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        client.messages.create(model="claude-test", max_tokens=10, messages=user("hi"))
    assert caught.value.status_code == 401
    assert caught.value.response.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}


def test_missing_keys_and_bad_requests_answer_in_each_format(model_server: ModelServer) -> None:
    model_server.script(status=500)  # not used up by the rejected requests below
    status, _, raw = post(model_server, OPENAI_PATH, {"model": "m", "messages": user("hi")}, {})
    assert status == 401 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = post(model_server, ANTHROPIC_PATH, {"model": "m", "messages": user("hi")}, {})
    assert status == 401 and json.loads(raw)["error"]["message"] == "x-api-key header is required"
    auth = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    status, _, raw = post(model_server, ANTHROPIC_PATH, {"model": "m", "messages": user("hi")}, auth)
    assert status == 400 and json.loads(raw)["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    status, _, raw = post(model_server, "/v1/nothing", {}, {"Authorization": f"Bearer {KEY}"})
    assert status == 404 and json.loads(raw)["error"]["message"] == "Invalid URL (POST /v1/nothing)"
    assert model_server.count() == 4 and model_server.pending() == 1


def test_anthropic_max_tokens_and_stop_sequences(ant: anthropic.Anthropic) -> None:
    cut = ant.messages.create(model="claude-test", max_tokens=2, messages=user("one two three"))
    assert cut.stop_reason == "max_tokens" and cut.content[0].type == "text" and cut.content[0].text == "echo: one"
    stopped = ant.messages.create(
        model="claude-test", max_tokens=50, messages=user("one END two"), stop_sequences=["END"]
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "END"
    assert stopped.content[0].type == "text" and stopped.content[0].text == "echo: one "


def test_anthropic_malformed_streamed_tool_input_fails_in_the_helper(
    model_server: ModelServer, ant: anthropic.Anthropic
) -> None:
    model_server.script(malformed_tool_call=True)
    with (
        pytest.raises(ValueError, match="Unable to parse tool parameter JSON"),
        ant.messages.stream(model="claude-test", max_tokens=50, messages=user("x"), tools=[SEARCH_ANTHROPIC]) as s,
    ):
        s.get_final_message()


def test_anthropic_error_event_mid_stream(model_server: ModelServer, ant: anthropic.Anthropic) -> None:
    model_server.script(error_after=4)
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded") as caught,
        ant.messages.stream(model="claude-test", max_tokens=50, messages=user("a b c")) as stream,
    ):
        for _ in stream:
            pass
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_openai_client_times_out_on_a_hung_stream(model_server: ModelServer) -> None:
    model_server.hang_after = 2  # every stream
    with openai.OpenAI(api_key=KEY, base_url=model_server.url + "/v1", max_retries=0, timeout=0.2) as client:
        stream = client.chat.completions.create(model="gpt-test", messages=user("a b"), stream=True)
        assert [c.choices[0].delta.content for c in (next(stream), next(stream))] == ["", "echo:"]
        with pytest.raises(openai.APITimeoutError):
            next(stream)
    assert model_server.hangs == 1 and model_server.wait_disconnects(1, timeout=2)


def test_anthropic_client_times_out_on_a_hung_stream(model_server: ModelServer) -> None:
    model_server.script(hang_after=4)
    with anthropic.Anthropic(api_key=KEY, base_url=model_server.url, max_retries=0, timeout=0.2) as client:
        texts: list[str] = []
        with (
            pytest.raises(httpx2.ReadTimeout),  # anthropic does not wrap a timeout mid-stream (openai does)
            client.messages.stream(model="claude-test", max_tokens=50, messages=user("a b c")) as stream,
        ):
            texts.extend(stream.text_stream)
    assert texts == ["echo:"]  # message_start, ping, content_block_start, the first delta
    assert model_server.hangs == 1 and model_server.wait_disconnects(1, timeout=2)


# -- the script queue ------------------------------------------------------------------------


def test_script_queue_per_path_then_default(
    model_server: ModelServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    model_server.script(text="scripted", path=ANTHROPIC_PATH, times=2)
    assert model_server.pending() == 2
    assert oai.chat.completions.create(model="m", messages=user("hi")).choices[0].message.content == "echo: hi"
    texts = []
    for _ in range(3):
        block = ant.messages.create(model="m", max_tokens=10, messages=user("hi")).content[0]
        assert block.type == "text"
        texts.append(block.text)
    assert texts == ["scripted", "scripted", "echo: hi"] and model_server.pending() == 0
    assert [r.number for r in model_server.requests()] == [1, 2, 3, 4]
    model_server.reset()
    assert model_server.count() == 0


def test_scripted_raw_body(model_server: ModelServer) -> None:
    model_server.script(body="not json at all", headers={"Content-Type": "text/plain"})
    status, headers, raw = post(
        model_server, OPENAI_PATH, {"model": "m", "messages": user("hi")}, {"Authorization": f"Bearer {KEY}"}
    )
    assert (status, headers["Content-Type"], raw) == (200, "text/plain", b"not json at all")
