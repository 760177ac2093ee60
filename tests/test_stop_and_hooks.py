"""Stop signals (request_stop, the polled function) and the typed hooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog

from agentfsm import (
    FunctionCallStartEvent,
    HookError,
    Phase,
    StopReason,
    TransitionEvent,
    tool,
)
from agentfsm.testing import ScriptedOpenAIServer, call, fault, text, tool_calls

from .conftest import AgentFactory


async def test_request_stop_during_a_long_tool_returns_promptly(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A stop during a slow tool cancels it: user_stop, a 'cancelled' result, nothing lost."""
    started = asyncio.Event()

    @tool
    async def slow() -> str:
        """Takes a minute."""
        started.set()
        await asyncio.sleep(60)
        return "finished"

    server.add(tool_calls(call("slow", {}, id="call_s")), text("next run"))
    stops: list[Any] = []
    agent = make_agent(tool_registry=[slow], hooks={"on_manual_stop": stops.append})

    async def press_stop() -> None:
        await started.wait()
        agent.request_stop("c1")

    began = time.perf_counter()
    response, _ = await asyncio.gather(agent.send_message("go", chat_id="c1"), press_stop())
    assert time.perf_counter() - began < 5

    assert response.stop_reason is StopReason.USER_STOP
    assert response.history[-1] == {
        "role": "tool",
        "tool_call_id": "call_s",
        "content": "Cancelled: the run was stopped before this call finished.",
    }
    assert [(s.phase, s.source) for s in stops] == [(Phase.EXECUTING_TOOLS, "request_stop")]
    again = await agent.send_message("again", conversation=response.conversation)
    assert again.stop_reason is StopReason.RESPONSE
    assert again.output == "next run"


async def test_stop_signal_function_is_polled_during_a_model_request(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """An async stop function taking chat_id stops a hung request at the next poll."""
    server.add(fault.hang())
    polls: list[str] = []
    requested = asyncio.Event()

    async def should_stop(chat_id: str) -> bool:
        polls.append(chat_id)
        return requested.is_set()

    async def on_before_request(event: Any) -> None:
        requested.set()

    agent = make_agent(
        manual_stop_signal_function=should_stop,
        check_for_stop_signal_time=0.02,
        hooks={"on_before_request": on_before_request},
    )
    response = await agent.send_message("hi", chat_id="c7")
    assert response.stop_reason is StopReason.USER_STOP
    assert response.conversation.transitions[-1].from_phase is Phase.AWAITING_MODEL
    assert set(polls) == {"c7"}
    assert response.history == [{"role": "user", "content": "hi"}]


async def test_stop_signal_checked_before_the_first_phase(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A sync stop function that is already true stops before any request is sent."""
    agent = make_agent(manual_stop_signal_function=lambda user_id: user_id == "banned")
    response = await agent.send_message("hi", user_id="banned")
    assert response.stop_reason is StopReason.USER_STOP
    assert server.requests == []
    assert [(t.from_phase, t.to_phase, t.reason) for t in response.conversation.transitions] == [
        (Phase.TRIMMING_CONTEXT, Phase.STOPPED, "user_stop")
    ]


async def test_a_failing_stop_function_is_logged_and_the_run_goes_on(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """An exception in the stop function does not stop or break the run."""

    def broken() -> bool:
        raise RuntimeError("redis down")

    server.add(text("fine"))
    with structlog.testing.capture_logs() as logs:
        response = await make_agent(manual_stop_signal_function=broken).send_message("hi")
    assert response.output == "fine"
    assert any(e["event"] == "stop_signal_function_failed" for e in logs)


async def test_request_stop_before_a_run_is_cleared_by_start(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A stop pressed while no run is going does not kill the next message's run."""
    server.add(text("hello"))
    agent = make_agent()
    agent.request_stop("c1")
    response = await agent.send_message("hi", chat_id="c1")
    assert response.stop_reason is StopReason.RESPONSE


async def test_hooks_fire_in_order_with_their_payloads(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Every named hook fires once in the run's order, with ids, turn and payload."""
    events: list[tuple[str, Any]] = []

    def recorder(name: str) -> Any:
        async def record(event: Any) -> None:
            events.append((name, event))

        return record

    @tool
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    names = [
        "on_transition",
        "on_before_request",
        "on_after_request",
        "on_function_call_start",
        "on_function_call_end",
        "on_final_response",
    ]
    server.add(tool_calls(call("add", {"a": 2, "b": 3}, id="call_a")), text("5"))
    agent = make_agent(
        agent_name="calc", tool_registry=[add], hooks={n: recorder(n) for n in names}
    )
    response = await agent.send_message("2+3", user_id="u1", chat_id="c1")

    order = [
        (name, str(e.to_phase)) if isinstance(e, TransitionEvent) else (name, e.turn)
        for name, e in events
    ]
    assert order == [
        ("on_transition", "awaiting_model"),
        ("on_before_request", 0),
        ("on_after_request", 1),
        ("on_transition", "executing_tools"),
        ("on_function_call_start", 1),
        ("on_function_call_end", 1),
        ("on_transition", "trimming_context"),
        ("on_transition", "awaiting_model"),
        ("on_before_request", 1),
        ("on_after_request", 2),
        ("on_transition", "done"),
        ("on_final_response", 2),
    ]
    assert all((e.chat_id, e.user_id, e.agent_name) == ("c1", "u1", "calc") for _, e in events)
    start = next(e for n, e in events if n == "on_function_call_start")
    assert isinstance(start, FunctionCallStartEvent)
    assert (start.tool_name, start.call_id, dict(start.arguments)) == (
        "add",
        "call_a",
        {"a": 2, "b": 3},
    )
    end = next(e for n, e in events if n == "on_function_call_end")
    assert (end.result, end.content) == (5, "5")
    assert end.duration >= 0
    before = next(e for n, e in events if n == "on_before_request")
    assert list(before.messages) == [{"role": "user", "content": "2+3"}]
    assert before.tools == ("add",)
    final = events[-1][1]
    assert final.response.output == "5"
    transition = events[0][1]
    assert transition.conversation.phase is Phase.AWAITING_MODEL
    assert response.conversation.transitions[0] == transition.record


async def test_a_raising_hook_is_logged_and_does_not_break_the_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """By default a hook exception is logged; the run finishes."""

    def bad(event: Any) -> None:
        raise KeyError("oops")

    server.add(text("ok"))
    with structlog.testing.capture_logs() as logs:
        response = await make_agent(hooks={"on_transition": bad}).send_message("hi")
    assert response.output == "ok"
    assert [e["hook"] for e in logs if e["event"] == "hook_failed"] == ["on_transition"] * 2


async def test_raise_hook_errors_makes_a_hook_exception_fatal(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With raise_hook_errors=True a hook exception surfaces as HookError."""

    def bad(event: Any) -> None:
        raise KeyError("oops")

    server.add(text("ok"))
    agent = make_agent(hooks={"on_before_request": [bad]}, raise_hook_errors=True)
    with pytest.raises(HookError, match="on_before_request"):
        await agent.send_message("hi")


async def test_hooks_have_finished_when_send_message_returns(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Async hooks are awaited inline: a slow final-response hook completes before return."""
    done: list[str] = []

    async def slow_hook(event: Any) -> None:
        await asyncio.sleep(0.01)
        done.append(event.response.output)

    server.add(text("bye"))
    await make_agent(hooks={"on_final_response": slow_hook}).send_message("hi")
    assert done == ["bye"]
