"""Tests for agentfsm.testing.ScriptedOpenAIServer, driven by the real openai client over HTTP."""

from __future__ import annotations

import asyncio
import doctest
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

import agentfsm.testing
from agentfsm import Image, StopReason
from agentfsm.testing import (
    FakeClock,
    RecordedRequest,
    Reply,
    ScriptedOpenAIServer,
    call,
    default_token_counter,
    fault,
    scenarios,
    text,
    tool_calls,
    weather_scenario,
)

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parent.parent
# Where agentfsm is imported from, so the CLI subprocess imports the same code.
PACKAGE_ROOT = Path(agentfsm.testing.__file__).absolute().parents[2]
HI = [{"role": "user", "content": "Hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@asynccontextmanager
async def serve(
    script: Any = (), **options: Any
) -> AsyncIterator[tuple[ScriptedOpenAIServer, openai.AsyncOpenAI]]:
    """Run a server and a real client without retries pointed at it."""
    async with ScriptedOpenAIServer(script, **options) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        async with client:
            yield server, client


async def ask(client: openai.AsyncOpenAI, **options: Any) -> Any:
    """One non-streaming request with a default message."""
    options.setdefault("messages", HI)
    return await client.chat.completions.create(model="any", **options)


async def raw_chunks(client: openai.AsyncOpenAI, **options: Any) -> list[dict[str, Any]]:
    """One streaming request, returning every chunk as the JSON the server sent."""
    stream = await ask(client, stream=True, **options)
    return [chunk.model_dump(exclude_unset=True) async for chunk in stream]


def assemble_tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Rebuild streamed tool calls by index, the way a client has to."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                entry = calls.setdefault(delta["index"], {"id": None, "name": "", "arguments": ""})
                entry["id"] = delta.get("id") or entry["id"]
                entry["name"] += delta.get("function", {}).get("name") or ""
                entry["arguments"] += delta.get("function", {}).get("arguments") or ""
    return calls


def tool_deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tool-call delta of a stream, in order."""
    return [
        delta
        for chunk in chunks
        for choice in chunk["choices"]
        for delta in choice["delta"].get("tool_calls") or []
    ]


async def test_text_reply_parses_as_a_chat_completion() -> None:
    """A text reply reaches the SDK as a complete chat.completion."""
    async with serve([text("Sunny in Tokyo.")], model="fake-1") as (_, client):
        completion = await ask(client)
    assert completion.object == "chat.completion"
    assert completion.model == "fake-1"
    assert completion.id == "chatcmpl-scripted-1"
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant"
    assert choice.message.content == "Sunny in Tokyo."
    assert choice.message.tool_calls is None


async def test_text_can_send_null_content_and_other_finish_reasons() -> None:
    """text(None), content_null and finish_reason reach the client as given."""
    script = [text(None), text("ignored", content_null=True), text("trunc", finish_reason="length")]
    async with serve(script) as (_, client):
        answers = [await ask(client) for _ in range(3)]
    assert [answer.choices[0].message.content for answer in answers] == [None, None, "trunc"]
    assert answers[2].choices[0].finish_reason == "length"


async def test_tool_calls_get_deterministic_ids_across_the_server() -> None:
    """Calls without an id are numbered call_1, call_2, ... over the server's life."""
    script = [
        tool_calls(call("get_weather", {"city": "Tokyo"}), call("get_time", {"tz": "JST"})),
        tool_calls(call("get_weather", {"city": "Paris"}), call("x", {}, id="mine")),
    ]
    async with serve(script) as (_, client):
        first, second = await ask(client), await ask(client)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_1", "function", "get_weather", '{"city": "Tokyo"}'),
        ("call_2", "function", "get_time", '{"tz": "JST"}'),
    ]
    assert [c.id for c in second.choices[0].message.tool_calls] == ["call_3", "mine"]


async def test_tool_calls_can_omit_ids_and_carry_content() -> None:
    """omit_ids leaves the id key out of the JSON; content travels next to the calls."""
    script = [tool_calls(call("f", {"a": 1}), content="Checking.", omit_ids=True)]
    async with serve(script) as (_, client):
        raw = await client.chat.completions.with_raw_response.create(model="any", messages=HI)
    message = raw.http_response.json()["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"] == [
        {"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert raw.parse().choices[0].message.tool_calls[0].id is None


async def test_invalid_json_arguments_pass_through_verbatim() -> None:
    """String arguments are sent as they are, even when they are not JSON."""
    async with serve([tool_calls(call("f", '{"city": "Tok'))]) as (_, client):
        completion = await ask(client)
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"city": "Tok'


async def test_usage_is_computed_by_default() -> None:
    """Default usage: prompt from default_token_counter, completion ~ 4 chars per token."""
    async with serve([text("12345678"), tool_calls(call("ab", "cd"))]) as (server, client):
        first, second = await ask(client), await ask(client)
    assert default_token_counter(HI) == 10
    assert default_token_counter(server.requests[0].messages) == 10
    assert first.usage.model_dump(exclude_unset=True) == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
    }
    assert (second.usage.completion_tokens, second.usage.total_tokens) == (1, 11)


async def test_usage_uses_a_custom_token_counter() -> None:
    """A token_counter given to the server decides prompt_tokens."""

    def seven_per_message(messages: list[dict[str, Any]]) -> int:
        return 7 * len(messages)

    async with serve([text("hi")], token_counter=seven_per_message) as (_, client):
        completion = await ask(client, messages=HI * 3)
    assert completion.usage.prompt_tokens == 21


async def test_usage_override_and_omission() -> None:
    """A usage dict overrides fields (total recomputed); usage=False omits usage."""
    details = {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    script = [
        text("a", usage=details),
        text("b", usage={"total_tokens": 99}),
        text("c", usage=False),
    ]
    async with serve(script) as (_, client):
        overridden, total_only, omitted = [await ask(client) for _ in range(3)]
    assert overridden.usage.total_tokens == 13
    assert overridden.usage.prompt_tokens_details.cached_tokens == 2
    assert overridden.usage.completion_tokens_details.reasoning_tokens == 1
    assert total_only.usage.total_tokens == 99
    assert omitted.usage is None


async def test_streamed_text_reassembles_like_openai() -> None:
    """A streamed text comes in role chunk, small content chunks, finish chunk, no usage."""
    async with serve([text("Sunny in Tokyo.")]) as (_, client):
        chunks = await raw_chunks(client)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    contents = [delta.get("content") for delta in deltas[1:-1]]
    assert contents == ["Sunn", "y in", " Tok", "yo."]
    assert "".join(contents) == "Sunny in Tokyo."
    assert deltas[-1] == {}
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks][-2:] == [None, "stop"]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert all(chunk.get("usage") is None for chunk in chunks)


async def test_stream_usage_chunk_only_when_asked() -> None:
    """include_usage adds a last chunk with usage and no choices, unless usage=False."""
    script = [text("Hello", chunk_size=2), text("Hello", usage=False)]
    async with serve(script) as (_, client):
        with_usage = await raw_chunks(client, stream_options={"include_usage": True})
        without = await raw_chunks(client, stream_options={"include_usage": True})
    assert with_usage[-1]["choices"] == []
    assert with_usage[-1]["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
    }
    assert [c["choices"][0]["delta"].get("content") for c in with_usage[1:-2]] == ["He", "ll", "o"]
    assert all(chunk["choices"] for chunk in without)


async def test_streamed_tool_calls_follow_openai_deltas() -> None:
    """A call's first delta has index, id, type, name and empty arguments; the rest fragments."""
    script = [tool_calls(call("get_weather", {"city": "Tokyo"}), call("get_time", {"tz": "JST"}))]
    async with serve(script) as (_, client):
        chunks = await raw_chunks(client)
    deltas = tool_deltas(chunks)
    assert deltas[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    fragments = [delta for delta in deltas if "type" not in delta]
    assert fragments
    assert all(
        set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in fragments
    )
    assert [d["index"] for d in deltas] == sorted(d["index"] for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert assemble_tool_calls(chunks) == {
        0: {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Tokyo"}'},
        1: {"id": "call_2", "name": "get_time", "arguments": '{"tz": "JST"}'},
    }


async def test_streamed_tool_calls_can_interleave_and_omit_ids() -> None:
    """interleave alternates the calls' fragments by index and still reassembles."""
    script = [tool_calls(call("a", {"x": 1}), call("b", {"y": 2}), interleave=True, omit_ids=True)]
    async with serve(script) as (_, client):
        chunks = await raw_chunks(client)
    indexes = [d["index"] for d in tool_deltas(chunks)]
    assert indexes[:4] == [0, 1, 0, 1]
    assert all("id" not in delta for delta in tool_deltas(chunks))
    assert assemble_tool_calls(chunks) == {
        0: {"id": None, "name": "a", "arguments": '{"x": 1}'},
        1: {"id": None, "name": "b", "arguments": '{"y": 2}'},
    }


async def test_client_can_stop_reading_mid_stream() -> None:
    """Closing a slow stream early leaves the server serving the next request."""
    script = [text("a long answer that streams slowly", chunk_delay=0.05), text("next")]
    async with serve(script) as (_, client):
        stream = await ask(client, stream=True)
        async for _ in stream:
            break
        await stream.close()
        assert (await ask(client)).choices[0].message.content == "next"


async def test_rate_limit_reaches_the_sdk_with_retry_headers() -> None:
    """fault.rate_limit is a 429 RateLimitError carrying Retry-After and retry-after-ms."""
    async with serve([fault.rate_limit(retry_after=2, retry_after_ms=1500)]) as (_, client):
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(client)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.response.headers["retry-after-ms"] == "1500"
    assert caught.value.code == "rate_limit_exceeded"


async def test_status_faults_map_to_sdk_errors() -> None:
    """server_error is an InternalServerError; fault.status sets status, type and code."""
    script = [
        fault.server_error(),
        fault.status(400, "too long", error_code="context_length_exceeded"),
        fault.status(503, "busy", headers={"x-why": "maintenance"}),
    ]
    async with serve(script) as (_, client):
        with pytest.raises(openai.InternalServerError) as server_error:
            await ask(client)
        with pytest.raises(openai.BadRequestError) as bad_request:
            await ask(client)
        with pytest.raises(openai.APIStatusError) as unavailable:
            await ask(client)
    assert server_error.value.status_code == 500
    assert bad_request.value.body == {
        "message": "too long",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }
    assert unavailable.value.status_code == 503
    assert unavailable.value.response.headers["x-why"] == "maintenance"


async def test_hang_times_out_the_client_and_closes_cleanly() -> None:
    """A hanging request makes the client time out; the server still exits promptly."""
    started = time.monotonic()
    async with serve([fault.hang(), fault.hang()]) as (_, client):
        with pytest.raises(openai.APITimeoutError):
            await client.with_options(timeout=0.2).chat.completions.create(model="m", messages=HI)
        # The second one is still pending when the server shuts down.
        pending = asyncio.ensure_future(ask(client))
        await asyncio.sleep(0.05)
    with pytest.raises(openai.APIConnectionError):
        await pending
    assert time.monotonic() - started < 2


async def test_disconnect_is_a_connection_error() -> None:
    """fault.disconnect closes the connection with no response: APIConnectionError."""
    async with serve([fault.disconnect(), text("after")]) as (_, client):
        with pytest.raises(openai.APIConnectionError):
            await ask(client)
        assert (await ask(client)).choices[0].message.content == "after"


async def test_delay_answers_after_waiting() -> None:
    """fault.delay answers with its reply once the delay is over."""
    async with serve([fault.delay(0.2, text("late"))]) as (_, client):
        started = time.monotonic()
        completion = await ask(client)
    assert completion.choices[0].message.content == "late"
    assert time.monotonic() - started >= 0.2


async def test_exhausted_script_answers_400_that_no_client_retries() -> None:
    """A request past the end of the script gets one 400 naming it; even a retrying client
    sends it once (x-should-retry: false), so "request #2" is the second request sent."""
    async with ScriptedOpenAIServer([text("only one")]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=2)
        async with client:
            await ask(client)
            with pytest.raises(openai.BadRequestError) as caught:
                await ask(client)
    assert caught.value.body == {
        "message": "ScriptedOpenAIServer: the script has no reply left for request #2 "
        "(it had 1); add more with server.add()",
        "type": "invalid_request_error",
        "param": None,
        "code": "script_exhausted",
    }
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(server.requests) == 2


async def test_an_agent_stops_at_once_on_an_exhausted_script(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """An agent whose test scripted too few replies stops with the server's message, no
    backoff sleeps and no extra requests."""
    clock = FakeClock()
    agent = make_agent(clock=clock, sleep=clock.sleep)
    response = await agent.send_message("hi")
    assert response.error is not None
    assert (response.error.status, clock.sleeps, len(server.requests)) == (400, [], 1)
    assert "no reply left for request #1 (it had 0)" in response.error.message


class _Heard(logging.Handler):
    """Sets ``event`` when a record with ``message`` is logged (on the loop's thread)."""

    def __init__(self, message: str) -> None:
        super().__init__(logging.DEBUG)
        self.message = message
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.event.set()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_client_gone_before_its_body_is_no_error(
    caplog: pytest.LogCaptureFixture, framing: str
) -> None:
    """A client that hangs up before sending its whole body (a cancelled request) is logged
    at debug, not as an ERROR traceback, and the server goes on serving."""
    caplog.set_level(logging.DEBUG)
    heard = _Heard("client_gone_before_body")
    logging.getLogger("agentfsm.testing").addHandler(heard)
    head = (
        b"Content-Length: 100000\r\n\r\n"
        if framing == "content-length"
        else b"Transfer-Encoding: chunked\r\n\r\n"
    )
    async with serve([text("still here")]) as (server, client):
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\n" + head
        )
        await writer.drain()
        # The server says "100 Continue" when the handler starts reading the body.
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 100")
        writer.write(b'{"messa' if framing == "content-length" else b'7\r\n{"messa')
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        try:
            await asyncio.wait_for(heard.event.wait(), 5)
        finally:
            logging.getLogger("agentfsm.testing").removeHandler(heard)
        assert (await ask(client)).choices[0].message.content == "still here"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert server.requests[0].messages == HI  # the broken request was not recorded


def _png(padding: int) -> bytes:
    """A 1x1 PNG header followed by ``padding`` bytes: an image of any size to send."""
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (1).to_bytes(4, "big") * 2
    return header + b"\x08\x02\x00\x00\x00" + b"\x00" * padding


async def test_the_largest_image_an_agent_accepts_reaches_the_server(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A 20 MiB image (27 MiB as base64) is served like any request, not refused with 413."""
    image = Image.from_bytes(_png(20 * 1024 * 1024 - 64))
    server.add(text("a tiny red dot"))
    response = await make_agent(context_handling_method="simple").send_message(
        ["what is this?", image]
    )
    assert (response.stop_reason, response.output) == (StopReason.RESPONSE, "a tiny red dot")
    part = server.requests[0].messages[-1]["content"][1]
    assert part["image_url"]["url"] == image.url


async def test_a_body_over_max_request_bytes_gets_a_413_naming_the_setting() -> None:
    """A request larger than the server's max_request_bytes is refused with a message
    saying which setting to raise, and is not retried."""
    async with serve([text("never")], max_request_bytes=1000) as (server, client):
        with pytest.raises(openai.APIStatusError) as caught:
            await ask(client, messages=[{"role": "user", "content": "x" * 2000}])
    assert caught.value.status_code == 413
    assert "larger than max_request_bytes=1000" in caught.value.message
    assert (server.requests, server.remaining) == ([], (text("never"),))


async def _post(server: ScriptedOpenAIServer, body: dict[str, Any]) -> tuple[int, str, bytes]:
    """POST ``body`` with a plain HTTP client: status, content type and the exact bytes."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.read()


@pytest.mark.parametrize(
    ("reply", "status", "content_type", "body"),
    [
        (fault.raw(b"\xff\xfe\x00 not utf-8"), 200, "application/json", b"\xff\xfe\x00 not utf-8"),
        (fault.raw("not json {"), 200, "application/json", b"not json {"),
        (fault.raw({"choices": "many"}), 200, "application/json", b'{"choices":"many"}'),
        (fault.raw(None), 200, "application/json", b"null"),
        (fault.raw(b""), 200, "application/json", b""),
        (
            fault.raw("<html>bad gateway</html>", status=502, content_type="text/html"),
            502,
            "text/html",
            b"<html>bad gateway</html>",
        ),
    ],
    ids=["not-utf8", "not-json", "wrong-shape", "null", "empty", "html-502"],
)
async def test_raw_replies_send_exactly_their_bytes(
    reply: Reply, status: int, content_type: str, body: bytes
) -> None:
    """fault.raw answers with exactly the given body, status and content type."""
    async with ScriptedOpenAIServer([reply]) as server:
        assert await _post(server, {"messages": HI}) == (status, content_type, body)


async def test_raw_streams_send_exactly_their_events() -> None:
    """fault.raw_stream writes its events and nothing else: no finish_reason, no [DONE]."""
    chunk = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
    script = [fault.raw_stream(chunk, "{oops", b": comment\n\n", b"data: \xff\n\n")]
    async with ScriptedOpenAIServer(script) as server:
        status, content_type, body = await _post(server, {"messages": HI, "stream": True})
    assert (status, content_type) == (200, "text/event-stream; charset=utf-8")
    assert body == (
        b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{}}]}'
        b"\n\ndata: {oops\n\n: comment\n\ndata: \xff\n\n"
    )


async def test_a_raw_stream_that_just_ends_reaches_the_sdk_unfinished() -> None:
    """Through the openai client, a raw stream that stops mid-answer gives the chunks sent and
    then ends, with no finish_reason: the case a client must cope with."""
    pieces = [{"choices": [{"index": 0, "delta": {"content": c}}]} for c in ("Hel", "lo")]
    async with serve([fault.raw_stream(*pieces)]) as (_, client):
        chunks = await raw_chunks(client)
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["Hel", "lo"]
    assert all(c["choices"][0].get("finish_reason") is None for c in chunks)


def test_raw_faults_refuse_impossible_settings() -> None:
    """A status outside 200-599 and a negative delay are refused when scripted."""
    with pytest.raises(ValueError, match="HTTP status"):
        fault.raw(b"", status=42)
    with pytest.raises(ValueError, match="chunk_delay"):
        fault.raw_stream("x", chunk_delay=-1)


async def test_add_extends_the_script_while_running() -> None:
    """add() appends replies; remaining lists those not used yet."""
    async with serve([text("one")]) as (server, client):
        server.add(text("two"), text("three"))
        assert server.remaining == (text("one"), text("two"), text("three"))
        answers = [(await ask(client)).choices[0].message.content for _ in range(2)]
        assert server.remaining == (text("three"),)
    assert answers == ["one", "two"]


async def test_sync_and_async_script_functions() -> None:
    """A script may be a sync or an async function of the recorded request."""

    def sync_echo(request: RecordedRequest) -> Reply:
        return text(f"sync: {request.messages[-1]['content']}")

    async def async_echo(request: RecordedRequest) -> Reply:
        await asyncio.sleep(0)
        return text(f"async: {len(request.messages)} messages")

    async with serve(sync_echo) as (server, client):
        assert (await ask(client)).choices[0].message.content == "sync: Hi"
        assert server.remaining == ()
        with pytest.raises(TypeError, match="list script"):
            server.add(text("x"))
    async with serve(async_echo) as (_, client):
        assert (await ask(client)).choices[0].message.content == "async: 1 messages"


async def test_script_function_errors_are_raised_on_exit() -> None:
    """A script function that raises gives a 500, then fails the test at exit."""

    def failing(request: RecordedRequest) -> Reply:
        raise AssertionError("the fake saw something wrong")

    async def one_request() -> None:
        async with ScriptedOpenAIServer(failing) as server:
            retrying = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=2)
            async with retrying:
                with pytest.raises(openai.InternalServerError, match="script function raised"):
                    await ask(retrying)
            assert len(server.requests) == 1  # x-should-retry: false, so not asked again

    with pytest.raises(AssertionError, match="the fake saw something wrong"):
        await one_request()


async def test_requests_are_recorded_in_order() -> None:
    """requests holds each body, lower-cased headers, path, model, tools and stream flag."""
    async with serve([text("a"), text("b")]) as (server, client):
        await ask(client, messages=HI, tools=[WEATHER_TOOL], temperature=0)
        stream = await ask(client, messages=[{"role": "user", "content": "again"}], stream=True)
        async for _ in stream:
            pass
    first, second = server.requests
    assert first.body == {"model": "any", "messages": HI, "tools": [WEATHER_TOOL], "temperature": 0}
    assert (first.model, first.stream, first.path) == ("any", False, "/v1/chat/completions")
    assert first.tools == [WEATHER_TOOL]
    assert first.headers["authorization"] == "Bearer test"
    assert second.stream is True
    assert second.tools == []
    assert second.messages == [{"role": "user", "content": "again"}]


async def test_base_url_needs_a_running_server_that_runs_once() -> None:
    """base_url before start and a second `async with` raise RuntimeError."""
    server = ScriptedOpenAIServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    async with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
    with pytest.raises(RuntimeError, match="runs once"):
        await server.__aenter__()


async def test_models_endpoint_lists_the_model() -> None:
    """GET /v1/models lists the server's one model."""
    async with serve(model="fake-model") as (_, client):
        models = [model.id async for model in client.models.list()]
        retrieved = await client.models.retrieve("fake-model")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("other")
    assert models == ["fake-model"]
    assert retrieved.id == "fake-model"


async def test_weather_scenario_runs_a_tool_loop() -> None:
    """The weather scenario calls get_weather for the asked city, then reports it."""
    assert scenarios.weather is weather_scenario
    async with serve(weather_scenario) as (_, client):
        messages: list[Any] = [{"role": "user", "content": "What's the weather in paris?"}]
        first = await ask(client, messages=messages, tools=[WEATHER_TOOL])
        tool_call = first.choices[0].message.tool_calls[0]
        assert (tool_call.function.name, tool_call.function.arguments) == (
            "get_weather",
            '{"city": "Paris"}',
        )
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny"},
        ]
        second = await ask(client, messages=messages, tools=[WEATHER_TOOL])
        greeting = await ask(client)
        defaulted = await ask(
            client, messages=[{"role": "user", "content": "?"}], tools=[WEATHER_TOOL]
        )
    assert second.choices[0].message.content == "It is sunny and 22 °C in Paris."
    assert greeting.choices[0].message.content.startswith("Hello!")
    assert defaulted.choices[0].message.tool_calls[0].function.arguments == '{"city": "Tokyo"}'


async def test_cli_serves_in_another_process() -> None:
    """python -m agentfsm.testing prints READY <base_url>, answers, and stops on SIGTERM."""
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "agentfsm.testing", "--scenario", "weather", "--port", "0"],
        cwd=PACKAGE_ROOT,
        env={**os.environ, "PYTHONPATH": path},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode()
        match = re.fullmatch(r"READY (http://127\.0\.0\.1:\d+/v1)\n", line)
        if match is None:
            pytest.fail(f"no READY line: {line!r}, stderr: {(await process.stderr.read())!r}")
        client = openai.AsyncOpenAI(base_url=match.group(1), api_key="test", max_retries=0)
        async with client:
            completion = await ask(client, tools=[WEATHER_TOOL])
        assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == 0, stderr.decode()


def python_blocks(markdown: str) -> list[str]:
    """The ```python code blocks of a markdown page."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(source, id=f"example-{number}")
        for number, source in enumerate(
            python_blocks((ROOT / "docs" / "testing.md").read_text(encoding="utf-8")), start=1
        )
    ],
)
async def test_docs_examples_run(source: str) -> None:
    """Every Python example in docs/testing.md runs as written."""
    # The examples call asyncio.run themselves, so they need a thread without a loop.
    await asyncio.to_thread(exec, compile(source, "docs/testing.md", "exec"), {"__name__": "docs"})


@pytest.mark.parametrize(
    "public", [text, call, default_token_counter, weather_scenario, fault.raw, fault.raw_stream]
)
def test_docstring_examples_run(public: Any) -> None:
    """The examples in the public docstrings hold."""
    runner = doctest.DocTestRunner()
    for example in doctest.DocTestFinder().find(public):
        runner.run(example)
    assert runner.summarize(verbose=False) == doctest.TestResults(0, runner.tries)
    assert runner.tries > 0
