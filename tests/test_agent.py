"""End-to-end runs of the simple agent against the scripted server, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog

from agentfsm import (
    AgentResponse,
    ConversationFinishedError,
    Phase,
    RunInProgressError,
    StopReason,
    ToolContext,
    Usage,
    dumps,
    loads,
    tool,
)
from agentfsm.testing import ScriptedOpenAIServer, call, fault, text, tool_calls

from .conftest import AgentFactory


@tool
async def get_weather(city: str, user_id: str, chat_id: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city} for {user_id}/{chat_id}"


def _clock() -> Any:
    ticks = iter(range(1_000_000))
    return lambda: float(next(ticks))


async def test_weather_run_sends_and_returns_the_whole_conversation(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A tool call then a final answer: the output, history, usage and requests are exact."""
    server.add(
        tool_calls(call("get_weather", {"city": "Tokyo"}, id="call_1")),
        text("It is sunny in Tokyo."),
    )
    agent = make_agent(system_prompt="You are a helpful assistant", tool_registry=[get_weather])

    response = await agent.send_message(
        "what is the weather in tokyo", history=[], user_id="u1", chat_id="c1"
    )

    assert response.output == "It is sunny in Tokyo."
    assert response.stop_reason is StopReason.RESPONSE
    assert response.turns == 2
    assert (response.agent_name, response.chat_id, response.user_id) == ("agent", "c1", "u1")
    assert response.history == [
        {"role": "user", "content": "what is the weather in tokyo"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny in Tokyo for u1/c1"},
        {"role": "assistant", "content": "It is sunny in Tokyo."},
    ]
    assert response.history_without_function_calls == [
        {"role": "user", "content": "what is the weather in tokyo"},
        {"role": "assistant", "content": "It is sunny in Tokyo."},
    ]
    assert response.usage.requests == 2
    assert response.usage.total_tokens == sum(
        u.prompt_tokens + u.completion_tokens for u in [response.usage]
    )
    first, second = server.requests
    assert first.messages == [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "what is the weather in tokyo"},
    ]
    assert first.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    assert second.messages == [first.messages[0], *response.history[:3]]
    assert [r.to_phase for r in response.conversation.transitions] == [
        Phase.AWAITING_MODEL,
        Phase.EXECUTING_TOOLS,
        Phase.TRIMMING_CONTEXT,
        Phase.AWAITING_MODEL,
        Phase.DONE,
    ]


async def test_empty_system_prompt_is_not_sent(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Without a system prompt the request starts with the user's message."""
    server.add(text("hi"))
    await make_agent().send_message("hello")
    assert server.requests[0].messages == [{"role": "user", "content": "hello"}]
    assert "tools" not in server.requests[0].body


async def test_history_passed_back_continues_the_conversation(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``response.history`` given as ``history=`` is sent in full before the new message."""
    server.add(
        tool_calls(call("get_weather", {"city": "Tokyo"})),
        text("Sunny."),
        text("Osaka is rainy."),
    )
    agent = make_agent(tool_registry=[get_weather])
    first = await agent.send_message("tokyo?", user_id="u1")
    second = await agent.send_message("and osaka?", history=first.history, user_id="u1")

    assert server.requests[2].messages == [
        *first.history,
        {"role": "user", "content": "and osaka?"},
    ]
    assert second.history == [
        *first.history,
        {"role": "user", "content": "and osaka?"},
        {"role": "assistant", "content": "Osaka is rainy."},
    ]
    assert second.turns == 1
    assert second.usage.requests == 1


async def test_step_by_step_driving_records_one_transition_per_step(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``start`` records nothing; each ``step`` exactly one transition; ``response`` at the end."""
    server.add(tool_calls(call("get_weather", {"city": "Kyoto"})), text("Kyoto is sunny."))
    agent = make_agent(tool_registry=[get_weather])

    conv = agent.start("hi", history=[], user_id="u1", chat_id="c1")
    assert conv.phase is Phase.TRIMMING_CONTEXT
    assert conv.transitions == ()
    phases = []
    while not conv.finished:
        before = len(conv.transitions)
        conv = await agent.step(conv)
        assert len(conv.transitions) == before + 1
        assert conv.version == before + 1
        phases.append(conv.phase)
    assert phases == [
        Phase.AWAITING_MODEL,
        Phase.EXECUTING_TOOLS,
        Phase.TRIMMING_CONTEXT,
        Phase.AWAITING_MODEL,
        Phase.DONE,
    ]
    assert agent.response(conv).output == "Kyoto is sunny."
    with pytest.raises(ConversationFinishedError):
        await agent.step(conv)


async def test_next_message_continues_a_finished_conversation(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``start(conversation=...)`` records a user_message transition and resets run counters."""
    server.add(text("one"), text("two"))
    agent = make_agent()
    first = await agent.send_message("1", chat_id="c1")
    conv = agent.start("2", conversation=first.conversation)

    assert conv.phase is Phase.TRIMMING_CONTEXT
    assert conv.version == first.conversation.version + 1
    last = conv.transitions[-1]
    assert (last.from_phase, last.to_phase, last.reason) == (
        Phase.DONE,
        Phase.TRIMMING_CONTEXT,
        "user_message",
    )
    assert (conv.turn, conv.run_usage, conv.stop_reason) == (0, Usage(), None)
    steps = [c async for c in agent.iter(conv)]
    assert steps[-1].phase is Phase.DONE
    final = agent.response(steps[-1])
    assert final.output == "two"
    assert final.usage.requests == 1
    assert final.conversation.usage.requests == 2
    with pytest.raises(RunInProgressError):
        agent.start("3", conversation=conv)


async def test_dumps_loads_after_every_step_gives_the_same_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A conversation dumped after any step and loaded again steps on to the same result."""
    script = [tool_calls(call("get_weather", {"city": "Rome"}, id="call_r")), text("Rome: sun.")]
    server.add(*script)
    agent = make_agent(tool_registry=[get_weather], clock=_clock())
    conv = agent.start("rome?", user_id="u1", chat_id="c1")
    straight = await agent.run(conv)

    server.add(*script)
    agent = make_agent(tool_registry=[get_weather], clock=_clock())
    conv = agent.start("rome?", user_id="u1", chat_id="c1")
    while not conv.finished:
        restored = loads(dumps(conv))
        assert restored == conv
        conv = await agent.step(restored)
    assert conv == straight


async def test_concurrent_tools_overlap(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With concurrency on, three slow tools run at once, results still in call order."""
    import asyncio
    import time

    @tool
    async def slow(n: int) -> int:
        """Sleeps 0.3 s."""
        await asyncio.sleep(0.3)
        return n

    server.add(
        tool_calls(call("slow", {"n": 1}), call("slow", {"n": 2}), call("slow", {"n": 3})),
        text("done"),
    )
    agent = make_agent(tool_registry=[slow])
    began = time.perf_counter()
    response = await agent.send_message("go")
    elapsed = time.perf_counter() - began

    assert [m["content"] for m in response.history if m["role"] == "tool"] == ["1", "2", "3"]
    assert elapsed < 0.75
    assert len(server.requests) == 2


async def test_concurrent_sync_tools_run_in_threads_at_once(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Sync tools run in worker threads: three of them meet at a barrier only if concurrent."""
    import threading

    barrier = threading.Barrier(3, timeout=5)

    @tool
    def meet(n: int) -> str:
        """Waits for the two others."""
        barrier.wait()
        return f"met {n}"

    server.add(
        tool_calls(call("meet", {"n": 1}), call("meet", {"n": 2}), call("meet", {"n": 3})),
        text("done"),
    )
    response = await make_agent(tool_registry=[meet]).send_message("go")
    assert [m["content"] for m in response.history if m["role"] == "tool"] == [
        "met 1",
        "met 2",
        "met 3",
    ]


async def test_sequential_mode_runs_calls_one_by_one_in_order(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With concurrency off, each call starts after the previous one ended, in call order."""
    import asyncio

    log: list[str] = []

    @tool
    async def work(name: str) -> str:
        """Records its start and end."""
        log.append(f"start {name}")
        await asyncio.sleep(0.01)
        log.append(f"end {name}")
        return name

    server.add(tool_calls(call("work", {"name": "a"}), call("work", {"name": "b"})), text("done"))
    agent = make_agent(tool_registry=[work], execute_function_concurrently=False)
    response = await agent.send_message("go")
    assert log == ["start a", "end a", "start b", "end b"]
    assert [m["content"] for m in response.history if m["role"] == "tool"] == ["a", "b"]


async def test_model_cannot_pass_injected_identity(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """user_id/chat_id sent by the model are dropped and logged; the injected values win."""
    seen: list[tuple[str, str, ToolContext]] = []

    @tool
    def whoami(user_id: str, chat_id: str, context: ToolContext) -> str:
        """Who is asking."""
        seen.append((user_id, chat_id, context))
        return user_id

    server.add(tool_calls(call("whoami", {"user_id": "attacker", "chat_id": "other"})), text("ok"))
    with structlog.testing.capture_logs() as logs:
        response = await make_agent(tool_registry=[whoami], agent_name="A").send_message(
            "who am i", user_id="u1", chat_id="c1"
        )
    assert seen == [
        (
            "u1",
            "c1",
            ToolContext(chat_id="c1", user_id="u1", agent_name="A", turn=1, call_id="call_1"),
        )
    ]
    assert response.history[2]["content"] == "u1"
    assert {
        "event": "injected_arguments_ignored",
        "tool": "whoami",
        "chat_id": "c1",
        "names": ["user_id", "chat_id"],
        "log_level": "warning",
    } in logs


async def test_tool_errors_become_results_the_model_reads(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """An exception, an unknown tool and invalid JSON each give an error result; the run goes on."""

    @tool
    def explode(x: int) -> str:
        """Always fails."""
        raise ValueError(f"boom {x}")

    server.add(
        tool_calls(
            call("explode", {"x": 1}),
            call("nope", {}),
            call("explode", "{not json"),
            call("explode", {"x": "one"}),
        ),
        text("sorry"),
    )
    errors: list[Any] = []
    agent = make_agent(tool_registry=[explode], hooks={"on_function_call_error": errors.append})
    response = await agent.send_message("go")

    results = [m["content"] for m in response.history if m["role"] == "tool"]
    assert results[0] == "Error: ValueError: boom 1"
    assert results[1] == "Error: Unknown tool 'nope'. Available tools: explode."
    assert results[2].startswith("Error: ")
    assert "JSON" in results[2]
    assert results[3].startswith("Error: ")
    assert "'x'" in results[3]
    assert response.output == "sorry"
    assert response.stop_reason is StopReason.RESPONSE
    by_call = {e.call_id: e for e in errors}  # concurrent calls report in completion order
    call_ids = [m["tool_call_id"] for m in response.history if m["role"] == "tool"]
    assert [by_call[c].tool_name for c in call_ids] == ["explode", "nope", "explode", "explode"]
    assert [by_call[c].content for c in call_ids] == results
    assert isinstance(by_call[call_ids[0]].error, ValueError)
    assert all(m.is_error for m in response.conversation.messages if m.role == "tool")


async def test_tool_timeout_becomes_an_error_result(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A tool over its timeout is cut off and reported to the model."""
    import asyncio

    @tool(timeout=0.05)
    async def hang() -> str:
        """Never returns in time."""
        await asyncio.sleep(10)
        return "late"

    server.add(tool_calls(call("hang", {})), text("gave up"))
    response = await make_agent(tool_registry=[hang]).send_message("go")
    assert response.history[2]["content"].startswith("Error: TimeoutError")
    assert response.output == "gave up"


async def test_max_turns_stops_a_model_that_keeps_calling_tools(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A model calling tools forever stops after max_turns model calls, with a valid history."""
    server.add(*[tool_calls(call("get_weather", {"city": f"C{i}"})) for i in range(3)])
    reached: list[Any] = []
    agent = make_agent(
        tool_registry=[get_weather], max_turns=3, hooks={"on_max_turns_reached": reached.append}
    )
    response = await agent.send_message("loop")

    assert response.stop_reason is StopReason.MAX_TURNS
    assert response.turns == 3
    assert len(server.requests) == 3
    assert [r.max_turns for r in reached] == [3]
    roles = [m["role"] for m in response.history]
    assert roles == ["user"] + ["assistant", "tool"] * 3
    assert response.output == ""


async def test_max_function_calls_never_exceeds_the_cap(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Calls that would pass max_function_calls are not run; each gets a 'not executed' result."""
    server.add(
        tool_calls(call("get_weather", {"city": "A"})),
        tool_calls(call("get_weather", {"city": "B"}), call("get_weather", {"city": "C"})),
    )
    agent = make_agent(tool_registry=[get_weather], max_function_calls=2)
    response = await agent.send_message("go", user_id="u", chat_id="c")

    assert response.stop_reason is StopReason.MAX_FUNCTION_CALLS
    tool_results = [m["content"] for m in response.history if m["role"] == "tool"]
    assert tool_results[0] == "Sunny in A for u/c"
    assert (
        tool_results[1:]
        == ["Not executed: the run stopped (max_function_calls) before this call ran."] * 2
    )
    assert response.conversation.function_calls == 1


async def test_failed_request_stops_with_a_typed_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A 400 from the server ends the run in stopped/error; the conversation can continue."""
    server.add(fault.status(400, "model 'x' does not support tools"), text("recovered"))
    agent = make_agent()
    response = await agent.send_message("hi")

    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert response.error.status == 400
    assert response.error.type == "BadRequestError"
    assert "does not support tools" in response.error.message
    assert response.history == [{"role": "user", "content": "hi"}]
    again = await agent.send_message("again", conversation=response.conversation)
    assert again.output == "recovered"
    assert again.error is None


async def test_liberal_parsing_of_server_quirks(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Tool calls without ids and a missing usage are accepted; generated ids are answered."""
    server.add(
        tool_calls(call("get_weather", {"city": "Oslo"}), omit_ids=True, usage=False),
        text("Cold.", usage=False),
    )
    response = await make_agent(tool_registry=[get_weather]).send_message("oslo")

    call_id = response.history[1]["tool_calls"][0]["id"]
    assert call_id.startswith("call_")
    assert response.history[2]["tool_call_id"] == call_id
    assert (response.usage.requests, response.usage.estimated) == (2, True)
    assert response.usage.prompt_tokens > 0  # counted by the agent, since the server sent none
    assert server.requests[1].messages[1]["tool_calls"][0]["id"] == call_id


async def test_to_dict_is_plain_json(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``to_dict`` round-trips through ``json`` and carries the serialized conversation."""
    server.add(text("hello"))
    response = await make_agent().send_message("hi", chat_id="c9")
    data = json.loads(json.dumps(response.to_dict()))
    assert data["output"] == "hello"
    assert data["stop_reason"] == "response"
    assert data["conversation"]["chat_id"] == "c9"
    assert loads(data["conversation"]) == response.conversation
    assert isinstance(AgentResponse.from_conversation(response.conversation), AgentResponse)


async def test_debug_print_prints_a_readable_trace(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """``debug_print=True`` prints transitions, requests and tool calls."""
    server.add(tool_calls(call("get_weather", {"city": "Lima"})), text("Warm."))
    await make_agent(tool_registry=[get_weather]).send_message("lima", debug_print=True)
    out = capsys.readouterr().out
    assert "transition" in out
    assert "to=awaiting_model" in out
    assert "before_request" in out
    assert "function_call_start" in out
    assert "tool=get_weather" in out
    assert "final_response" in out
