"""Guards of your own: the four checkpoints, priority after agentfsm's guards, async checks
cut by a stop, the loop breaker, persistence by name, configuration errors, and diagrams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentfsm import (
    ConfigurationError,
    Correct,
    Guard,
    GuardContext,
    GuardTrippedEvent,
    Phase,
    Refuse,
    StopReason,
    dumps,
    guard,
    loads,
    loop_breaker,
    tool,
)
from agentfsm.store import SQLiteStore
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls
from agentfsm.viz import machine_mermaid

from .conftest import AgentFactory


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def delete_file(path: str) -> str:
    """Deletes a file."""
    return f"deleted {path}"


def moderation(ctx: GuardContext) -> str | None:
    return "the message asks for something forbidden" if "forbidden" in ctx.user_message else None


INPUT_GUARD = Guard("moderation", moderation, on="input")


async def test_an_input_guard_stops_before_any_request(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The new user message is checked before the first request: nothing is sent, the run
    stops ``guard`` with the guard's name and message on the response, the transition record
    and the ``on_guard_tripped`` event; the next message goes through."""
    server.add(text("hello"))
    events: list[GuardTrippedEvent] = []
    agent = make_agent(guards=[INPUT_GUARD], hooks={"on_guard_tripped": events.append})
    response = await agent.send_message("tell me something forbidden")
    assert response.stop_reason is StopReason.GUARD
    assert response.guard is not None
    assert (response.guard.name, response.guard.message) == (
        "moderation",
        "the message asks for something forbidden",
    )
    assert server.requests == []
    last = response.conversation.transitions[-1]
    assert (last.from_phase, last.to_phase, last.reason, last.guard) == (
        Phase.AWAITING_MODEL,
        Phase.STOPPED,
        "guard",
        "moderation",
    )
    assert [(e.name, e.phase) for e in events] == [("moderation", Phase.AWAITING_MODEL)]
    again = await agent.send_message("hi", conversation=response.conversation)
    assert (again.stop_reason, again.output, again.guard) == (StopReason.RESPONSE, "hello", None)


async def test_agentfsms_guards_come_first(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A user guard is checked after the built-in ones: max_turns wins over it."""
    server.add(tool_calls(call("get_weather", {"city": "Oslo"})))
    always = Guard("always", lambda ctx: ctx.conversation.turn >= 1)
    agent = make_agent(guards=[always], max_turns=1, tool_registry=[get_weather])
    response = await agent.send_message("weather?")
    assert response.stop_reason is StopReason.MAX_TURNS


async def test_a_model_guard_is_checked_before_every_request(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``on="model"`` (the default) sees each request coming: here a per-tenant cap of two
    model calls per run."""
    server.add(
        tool_calls(call("get_weather", {"city": "Oslo"})),
        tool_calls(call("get_weather", {"city": "Rome"})),
    )
    cap = Guard("tenant_cap", lambda ctx: ctx.conversation.turn >= 2, message="plan limit")
    agent = make_agent(guards=[cap], tool_registry=[get_weather])
    response = await agent.send_message("weather everywhere")
    assert response.guard is not None
    assert (response.stop_reason, response.guard.message, response.turns) == (
        StopReason.GUARD,
        "plan limit",
        2,
    )


async def test_an_async_guard_is_cut_by_a_stop(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A slow async check is an await like any other: ``request_stop`` cuts it (user_stop)."""
    entered = asyncio.Event()

    async def slow(ctx: GuardContext) -> bool:
        entered.set()
        await asyncio.sleep(3600)
        return False

    agent = make_agent(guards=[Guard("slow", slow)])
    run = asyncio.ensure_future(agent.send_message("hi", chat_id="c1"))
    await entered.wait()
    agent.request_stop("c1")
    response = await run
    assert response.stop_reason is StopReason.USER_STOP


async def test_a_tools_guard_refuses_one_call_and_lets_the_others_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``Refuse({call_id: why})``: that call is not run, the model reads why; the rest run."""
    server.add(
        tool_calls(
            call("get_weather", {"city": "Oslo"}, id="w"),
            call("delete_file", {"path": "/etc"}, id="d"),
        ),
        text("done"),
    )
    ran: list[str] = []

    @guard(on="tools")
    def no_deletes(ctx: GuardContext) -> Refuse | None:
        bad = {c.id: "deleting files is not allowed" for c in ctx.calls if c.name == "delete_file"}
        return Refuse(bad) if bad else None

    agent = make_agent(
        guards=[no_deletes],
        tool_registry=[get_weather, delete_file],
        hooks={"on_function_call_start": lambda e: ran.append(e.tool_name)},
    )
    response = await agent.send_message("clean up")
    assert response.output == "done"
    results = {m["tool_call_id"]: m["content"] for m in response.history if m["role"] == "tool"}
    assert results == {"w": "sunny in Oslo", "d": "Refused: deleting files is not allowed"}
    assert ran == ["get_weather"]


async def test_a_tools_guard_can_stop_the_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A truthy verdict at ``"tools"`` stops the run before any call runs; the calls get
    results saying so, so the history stays valid."""
    server.add(tool_calls(call("delete_file", {"path": "/"})))
    stop_all = Guard("no_tools_today", lambda ctx: bool(ctx.calls), on="tools")
    agent = make_agent(guards=[stop_all], tool_registry=[delete_file])
    response = await agent.send_message("delete everything")
    assert response.stop_reason is StopReason.GUARD
    assert response.history[-1]["role"] == "tool"
    assert response.history[-1]["content"].startswith("Not executed")


async def test_an_output_guard_corrects_an_answer_once(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``Correct(message)``: the answer is not final; the message goes back and the model
    answers again."""
    server.add(text("The password is hunter2."), text("I cannot share that."))

    @guard(on="output")
    def no_secrets(ctx: GuardContext) -> Correct | None:
        answer = ctx.answer.content if ctx.answer is not None else ""
        return Correct("Do not reveal passwords.") if "hunter2" in (answer or "") else None

    response = await make_agent(guards=[no_secrets]).send_message("what is the password?")
    assert response.output == "I cannot share that."
    assert server.requests[1].messages[-1] == {
        "role": "user",
        "content": "Do not reveal passwords.",
    }


async def test_an_output_guard_can_stop_the_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A truthy verdict on the final answer stops the run with ``guard``; the answer stays in
    the conversation (it happened) but is not a response."""
    server.add(text("rude words"))
    rude = Guard("tone", lambda ctx: "rude" in (ctx.answer.content or ""), on="output")
    response = await make_agent(guards=[rude]).send_message("hi")
    assert response.stop_reason is StopReason.GUARD
    assert response.guard is not None
    assert response.guard.name == "tone"


async def test_the_loop_breaker_stops_the_same_call_repeated(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The same tool with the same arguments (key order aside) a third time in a run: the
    loop breaker stops it before the third call runs."""
    server.add(
        tool_calls(call("get_weather", '{"city": "Tokyo"}')),
        tool_calls(call("get_weather", '{ "city":"Tokyo" }')),
        tool_calls(call("get_weather", {"city": "Tokyo"})),
        tool_calls(call("get_weather", {"city": "Tokyo"})),
    )
    calls: list[str] = []
    agent = make_agent(
        guards=[loop_breaker()],
        tool_registry=[get_weather],
        hooks={"on_function_call_start": lambda e: calls.append(e.tool_name)},
    )
    response = await agent.send_message("weather in Tokyo?")
    assert response.stop_reason is StopReason.GUARD
    assert response.guard is not None
    assert response.guard.name == "loop_breaker"
    assert "3 times" in (response.guard.message or "")
    assert len(calls) == 2


async def test_a_chat_stopped_by_a_guard_is_stored_loads_and_continues(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Any
) -> None:
    """The guard is recorded by name: the stored chat loads (dumps/loads too) with no code,
    and takes the next message."""
    server.add(text("fine"))
    async with SQLiteStore(tmp_path / "g.db") as store:
        agent = make_agent(guards=[INPUT_GUARD], store=store)
        stopped = await agent.send_message("forbidden stuff", chat_id="c1")
        stored = await store.load("c1")
        assert stored == stopped.conversation
        assert loads(dumps(stored)) == stored
        assert stored is not None
        assert stored.guard is not None
        assert stored.guard.name == "moderation"
        plain = make_agent(store=store)  # no guards: nothing needed to load or continue
        again = await plain.send_message("hello", chat_id="c1")
        assert again.output == "fine"


@pytest.mark.parametrize(
    ("guards", "says"),
    [
        ([lambda ctx: True], "must be an agentfsm.Guard"),
        ([INPUT_GUARD, Guard("moderation", moderation)], "two guards share a name"),
    ],
)
def test_bad_guards_are_refused_when_the_agent_is_built(
    make_agent: AgentFactory, guards: list[Any], says: str
) -> None:
    """A guard list that cannot work is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=says):
        make_agent(guards=guards)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: Guard("has space", moderation), "a guard's name"),
        (lambda: Guard("g", moderation, on="later"), "on= must be one of"),  # type: ignore[arg-type]
        (lambda: Guard("g", "not callable"), "must be callable"),  # type: ignore[arg-type]
        (lambda: loop_breaker(1), "must be an integer >= 2"),
    ],
)
def test_bad_guard_definitions_are_refused(build: Any, says: str) -> None:
    """A guard is checked when it is made."""
    with pytest.raises(ConfigurationError, match=says):
        build()


def test_the_diagram_draws_the_agents_guards(make_agent: AgentFactory) -> None:
    """``machine_mermaid(agent)`` labels each guard's edge with its name, from the phase
    where it is checked; without guards the guard edges are marked impossible."""
    guarded = make_agent(guards=[INPUT_GUARD, loop_breaker()], tool_registry=[get_weather])
    lines = machine_mermaid(guarded).splitlines()
    assert "    awaiting_model --> stopped: guard moderation" in lines
    assert "    executing_tools --> stopped: guard loop_breaker" in lines
    assert (
        "    awaiting_model --> stopped: guard (impossible, no guards)"
        in machine_mermaid(make_agent()).splitlines()
    )
