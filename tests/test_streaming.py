"""The streaming agent: token events, assembled tool calls, stops mid-stream, early exits."""

from __future__ import annotations

import asyncio
import functools
import gc
from typing import Any

import pytest

from agentfsm import (
    AsyncOpenAIStreamingAgent,
    FinalResponseEvent,
    Phase,
    StopReason,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TransitionEvent,
    Usage,
    tool,
)
from agentfsm.context.counting import AccurateCounter
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory


@tool
def get_weather(city: str, unit: str = "c") -> str:
    """Weather for a city."""
    return f"Sunny in {city} ({unit})"


@pytest.fixture
def make_streaming(make_agent: AgentFactory) -> AgentFactory:
    """Builds streaming agents pointed at the scripted server (closed after the test)."""
    return functools.partial(make_agent, AsyncOpenAIStreamingAgent)


async def test_stream_message_yields_every_event_in_order(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """Tokens, the whole tool call, its result, transitions and the final response, in order."""
    server.add(
        tool_calls(call("get_weather", {"city": "Paris", "unit": "f"}, id="call_p"), chunk_size=3),
        text("Paris is sunny today.", chunk_size=4),
    )
    agent = make_streaming(tool_registry=[get_weather])
    events = [e async for e in agent.stream_message("paris?", user_id="u1", chat_id="c1")]

    kinds = [type(e).__name__ for e in events]
    assert kinds[:4] == ["TransitionEvent", "ToolCallEvent", "TransitionEvent", "ToolResultEvent"]
    assert kinds[-2:] == ["TransitionEvent", "FinalResponseEvent"]
    tokens = [e.delta for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 1
    assert "".join(tokens) == "Paris is sunny today."
    (tool_call,) = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert (tool_call.id, tool_call.name) == ("call_p", "get_weather")
    assert tool_call.arguments == '{"city": "Paris", "unit": "f"}'
    (result,) = [e for e in events if isinstance(e, ToolResultEvent)]
    assert (result.call_id, result.content, result.is_error) == (
        "call_p",
        "Sunny in Paris (f)",
        False,
    )
    phases = [e.to_phase for e in events if isinstance(e, TransitionEvent)]
    assert phases == [
        Phase.AWAITING_MODEL,
        Phase.EXECUTING_TOOLS,
        Phase.TRIMMING_CONTEXT,
        Phase.AWAITING_MODEL,
        Phase.DONE,
    ]
    final = events[-1]
    assert isinstance(final, FinalResponseEvent)
    assert final.response.output == "Paris is sunny today."
    assert final.response.usage.requests == 2
    assert not final.response.usage.estimated
    assert all(r.body["stream"] is True for r in server.requests)
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_interleaved_parallel_tool_call_fragments_are_assembled(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """Argument fragments of parallel calls, interleaved by index, become whole calls."""
    server.add(
        tool_calls(
            call("get_weather", {"city": "Rome", "unit": "c"}),
            call("get_weather", {"city": "Oslo", "unit": "f"}),
            call("get_weather", {"city": "Lima"}),
            interleave=True,
            chunk_size=2,
        ),
        text("done"),
    )
    response = await make_streaming(tool_registry=[get_weather]).send_message("three cities")
    results = [m["content"] for m in response.history if m["role"] == "tool"]
    assert results == ["Sunny in Rome (c)", "Sunny in Oslo (f)", "Sunny in Lima (c)"]
    calls = response.history[1]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == [
        '{"city": "Rome", "unit": "c"}',
        '{"city": "Oslo", "unit": "f"}',
        '{"city": "Lima"}',
    ]


async def test_send_message_streams_inside_and_fires_token_hooks(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """send_message on the streaming agent gives the same response and fires on_token_received."""
    server.add(text("Hello there, friend.", chunk_size=5))
    tokens: list[str] = []
    agent = make_streaming(hooks={"on_token_received": lambda e: tokens.append(e.delta)})
    response = await agent.send_message("hi")
    assert response.output == "Hello there, friend."
    assert tokens == ["Hello", " ther", "e, fr", "iend."]
    assert response.interrupted is False


async def test_a_server_without_usage_chunk_gets_an_estimated_usage(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """No usage chunk: the request is recorded with counted tokens, flagged as estimated."""
    server.add(text("ok", usage=False))
    response = await make_streaming().send_message("hi")
    assert response.usage.requests == 1
    assert response.usage.estimated is True
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0


async def test_a_stop_mid_stream_keeps_the_partial_text_exactly(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """request_stop while tokens arrive: the text so far is kept verbatim and flagged."""
    server.add(text("One two three four five six seven eight.", chunk_size=4, chunk_delay=0.05))
    received: list[str] = []
    agent = make_streaming()

    def on_token(event: TokenEvent) -> None:
        received.append(event.delta)
        if len(received) == 3:
            agent.request_stop(event.chat_id)

    agent = make_streaming(hooks={"on_token_received": on_token})
    response = await agent.send_message("count", chat_id="c1")

    assert response.stop_reason is StopReason.USER_STOP
    assert response.interrupted is True
    assert response.output == "".join(received)
    assert response.output == "One two thre"
    assert response.history[-1] == {"role": "assistant", "content": "One two thre"}
    assert response.conversation.last_assistant is not None
    assert response.conversation.last_assistant.interrupted is True
    counter = AccurateCounter("o200k_base")
    sent = server.requests[0].messages
    prompt = sum(counter.count_wire(m) for m in sent) + counter.reply_overhead
    completion = counter.count_wire({"role": "assistant", "content": "One two thre"})
    assert response.usage == Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        requests=1,
        estimated=True,
    )

    server.add(text("continuing"))
    again = await agent.send_message("go on", conversation=response.conversation)
    assert again.output == "continuing"
    assert again.interrupted is False


async def test_breaking_out_of_the_stream_stops_the_run_and_leaks_nothing(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """A consumer that stops iterating ends the run: no task or connection left behind."""
    server.add(text("a b c d e f g h i j k l m n o p", chunk_size=2, chunk_delay=0.05))
    finals: list[Any] = []
    agent = make_streaming(hooks={"on_final_response": finals.append})
    before = asyncio.all_tasks()

    stream = agent.stream_message("spell", chat_id="c1")
    async for event in stream:
        if isinstance(event, TokenEvent):
            break
    await stream.aclose()

    left = [t for t in asyncio.all_tasks() - before if not _server_side(t)]
    assert left == []
    assert [f.response.stop_reason for f in finals] == [StopReason.USER_STOP]
    assert finals[0].response.interrupted is True


def _server_side(task: asyncio.Task[Any]) -> bool:
    """Tasks of the scripted server (it runs in the test's loop), not of the client."""
    frame = task.get_coro().cr_frame  # type: ignore[union-attr]
    where = frame.f_code.co_filename if frame is not None else ""
    return "aiohttp" in where or "agentfsm/testing" in where or "asyncio/locks" in where


async def test_an_abandoned_stream_is_cleaned_up_by_the_garbage_collector(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """Breaking without aclose(): the generator's finalizer still stops the run."""
    server.add(text("x " * 50, chunk_size=2, chunk_delay=0.02))
    finals: list[Any] = []
    agent = make_streaming(hooks={"on_final_response": finals.append})

    async def consume() -> None:
        async for event in agent.stream_message("spell"):
            if isinstance(event, TokenEvent):
                break

    await consume()
    gc.collect()
    for _ in range(100):
        if finals:
            break
        await asyncio.sleep(0.01)
    assert [f.response.stop_reason for f in finals] == [StopReason.USER_STOP]


async def test_a_slow_consumer_holds_back_the_run(
    server: ScriptedOpenAIServer, make_streaming: Any
) -> None:
    """Backpressure: with a full buffer the run waits for the consumer instead of buffering."""
    server.add(text("z" * 200, chunk_size=1))
    produced: list[str] = []
    agent = make_streaming(
        stream_buffer=2, hooks={"on_token_received": lambda e: produced.append(e.delta)}
    )
    stream = agent.stream_message("many")
    first = await stream.__anext__()  # the first transition; the run goes on meanwhile
    assert isinstance(first, TransitionEvent)
    for _ in range(500):  # until the model's stream is flowing
        if len(produced) >= 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # ample time to read all 200 chunks if nothing held the run back
    assert 2 <= len(produced) <= 4  # the buffer's 2 + what is in flight, not all 200
    rest = [e async for e in stream]
    assert isinstance(rest[-1], FinalResponseEvent)
    assert rest[-1].response.output == "z" * 200
    assert len(produced) == 200
