"""The code around the machine: tables checked at import, illegal moves typed, observers that
change nothing, construction that touches no tokenizer, and errors a newcomer can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from agentfsm import (
    AsyncOpenAISimpleAgent,
    AsyncOpenAIStreamingAgent,
    ConfigurationError,
    IllegalTransitionError,
    InvalidInputError,
    MachineDefinitionError,
    Phase,
    StopReason,
    ToolCallEvent,
    machine,
    tool,
)
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


# ---------------------------------------------------------------------- the tables


def test_a_table_without_an_edge_for_a_guard_is_refused() -> None:
    """A guard checked in a phase with no guard edge is a MachineDefinitionError, not an
    assert that ``python -O`` would skip."""
    edges = {
        k: v for k, v in machine.EDGES.items() if k != (Phase.AWAITING_MODEL, machine.GuardTripped)
    }
    with pytest.raises(MachineDefinitionError, match="guard 'stop_requested' has no edge"):
        machine.check_tables(edges=edges)


def test_a_table_with_an_unreachable_phase_is_refused() -> None:
    """A phase no edge enters is named."""
    edges = {
        key: (Phase.STOPPED if target is Phase.DONE else target)
        for key, target in machine.EDGES.items()
    }
    with pytest.raises(MachineDefinitionError, match="unreachable phases: \\['done'\\]"):
        machine.check_tables(edges=edges)


def test_a_guard_whose_hook_has_no_stop_event_is_refused() -> None:
    """Adding a guard is a table row plus an event class with ``from_stop``: a row naming a
    hook without one fails at import."""
    rogue = attrs.evolve(machine.GUARDS[2], name="rogue", hook="on_transition")
    with pytest.raises(MachineDefinitionError, match="guard 'rogue' fires 'on_transition'"):
        machine.check_tables(guards=(*machine.GUARDS, rogue))


def test_the_checks_run_under_python_O() -> None:
    """The table check does not rely on assert: it still refuses a broken table with -O."""
    code = (
        "from agentfsm import machine, MachineDefinitionError\n"
        "try:\n"
        "    machine.check_tables(edges={})\n"
        "except MachineDefinitionError as e:\n"
        "    print('refused:', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.startswith("refused: every phase with an action has edges")


async def test_an_illegal_move_is_a_typed_error_naming_phase_and_outcome(
    make_agent: AgentFactory,
) -> None:
    """A conversation forced into a move the table lacks raises IllegalTransitionError."""
    agent = make_agent()
    conv = attrs.evolve(agent.start("hi", chat_id="c1"), phase=Phase.EXECUTING_TOOLS)
    runtime = agent._runtime(conv, False, None)
    with pytest.raises(IllegalTransitionError) as caught:
        await machine._enter(runtime, conv, machine.FinalAnswer())
    assert (caught.value.phase, caught.value.outcome, caught.value.chat_id) == (
        "executing_tools",
        "final_answer",
        "c1",
    )


async def test_a_new_run_is_recognised_by_its_edge(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``run_begun`` finds the NEW_RUN transition of a continued chat, and nothing once the
    run has stepped (or for a brand-new chat)."""
    server.add(text("one"), text("two"))
    agent = make_agent()
    first = await agent.send_message("hi")
    assert machine.run_begun(agent.start("fresh")) is None
    continued = agent.start("again", conversation=first.conversation)
    record = machine.run_begun(continued)
    assert record is not None
    assert (record.from_phase, record.to_phase, record.reason) == (
        Phase.DONE,
        Phase.TRIMMING_CONTEXT,
        "user_message",
    )
    assert machine.run_begun(await agent.step(continued)) is None


# ---------------------------------------------------------------------- observers


@pytest.mark.parametrize("with_hook", [False, True])
async def test_a_streamed_tool_call_reports_the_same_turn_whoever_listens(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, with_hook: bool
) -> None:
    """The turn of a streamed ToolCallEvent is the model call that asked for it (1), with or
    without an ``on_after_request`` hook (it used to be 0 without one)."""
    server.add(tool_calls(call("get_weather", {"city": "Oslo"})), text("done"))
    hooks = {"on_after_request": lambda event: None} if with_hook else None
    agent = make_agent(
        agent_class=AsyncOpenAIStreamingAgent, tool_registry=[get_weather], hooks=hooks
    )
    events = [e async for e in agent.stream_message("weather?")]
    assert [e.turn for e in events if isinstance(e, ToolCallEvent)] == [1]


async def test_a_budget_that_only_warns_fires_its_hook_from_the_guard_table(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A budget guard that holds without binding warns (stopped=False) and the run goes on."""
    server.add(text("a"), text("b"))
    warned: list[Any] = []
    agent = make_agent(
        pricing={"input_per_million": 1_000_000, "output_per_million": 1_000_000},
        budget_control={"max_budget_for_this_chat": "0.000001", "stop_on_budget_exceeded": False},
        hooks={"on_budget_exceeded": warned.append},
    )
    first = await agent.send_message("hi")
    second = await agent.send_message("again", conversation=first.conversation)
    assert second.stop_reason is StopReason.RESPONSE
    assert [w.stopped for w in warned] == [False]


# ---------------------------------------------------------------------- construction


def test_building_an_agent_touches_no_tokenizer() -> None:
    """``import agentfsm`` and building an agent load neither tiktoken nor its encodings."""
    code = (
        "import sys\n"
        "import agentfsm\n"
        "agentfsm.AsyncOpenAISimpleAgent(model='gpt-4o', api_key='k', max_context_length=9)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tiktoken', 'tiktoken_ext')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


def test_an_unknown_keyword_names_the_valid_one() -> None:
    """``tools=`` (another library's name) points at ``tool_registry``."""
    with pytest.raises(
        ConfigurationError, match=r"unknown keyword argument 'tools'\. Did you mean 'tool_registry'"
    ):
        AsyncOpenAISimpleAgent(model="m", api_key="k", tools=[get_weather])  # type: ignore[call-arg]


def test_a_misspelled_keyword_gets_the_closest_valid_one() -> None:
    """A typo is matched to the nearest keyword of the agent class (its subclass's too)."""
    with pytest.raises(ConfigurationError, match="Did you mean 'stream_buffer'"):
        AsyncOpenAIStreamingAgent(model="m", api_key="k", stream_bufer=3)


def test_the_model_may_be_given_positionally() -> None:
    """``AsyncOpenAISimpleAgent("gpt-4o-mini")`` works, for every agent class."""
    assert AsyncOpenAISimpleAgent("gpt-4o-mini", api_key="k").model == "gpt-4o-mini"
    assert AsyncOpenAIStreamingAgent("gpt-4o-mini", api_key="k").model == "gpt-4o-mini"


def test_more_positional_arguments_say_to_use_keywords() -> None:
    """Positional arguments after the model are refused with the keyword form to use."""
    with pytest.raises(ConfigurationError, match="only positional argument"):
        AsyncOpenAISimpleAgent("gpt-4o-mini", "key")  # type: ignore[misc]


def test_no_model_says_how_to_give_one() -> None:
    """A missing model is a ConfigurationError with an example, not a TypeError."""
    with pytest.raises(ConfigurationError, match="needs a model"):
        AsyncOpenAISimpleAgent(api_key="k")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("localhost:8000/v1", "must start with http:// or https://"),
        ("ftp://example.com", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://localhost:99999/v1", "is not a valid URL"),
    ],
)
def test_a_malformed_base_url_is_refused_when_the_agent_is_built(url: str, fault: str) -> None:
    """A base URL that cannot work fails at construction, not after seconds of retries."""
    with pytest.raises(ConfigurationError, match=fault):
        AsyncOpenAISimpleAgent(model="m", api_key="k", base_url=url)


async def test_an_unreachable_server_is_named_in_the_error(make_agent: AgentFactory) -> None:
    """A connection error says which server could not be reached."""
    agent = make_agent(
        base_url="http://127.0.0.1:9/v1",
        retry_strategy={"connection_error": {"max_retries": 0}},
    )
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert "http://127.0.0.1:9" in response.error.message


async def test_a_conversation_passed_as_history_points_at_conversation(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``history=conversation`` says to pass ``conversation=`` instead."""
    server.add(text("hi"))
    agent = make_agent()
    first = await agent.send_message("hello")
    with pytest.raises(InvalidInputError, match="pass it as conversation="):
        await agent.send_message("again", history=first.conversation)
