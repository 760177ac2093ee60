"""Structured output: typed answers, the repair of an invalid one, the ``invalid_output`` stop,
the final-answer tool mode, per-call types, persistence, streaming, and static typing."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import attrs
import pydantic
import pytest
from typing_extensions import TypedDict

from agentfsm import (
    AsyncOpenAIStreamingAgent,
    InvalidOutputEvent,
    Phase,
    StopReason,
    dumps,
    loads,
    tool,
)
from agentfsm.store import MemoryStore
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Weather:
    """The weather in a city."""

    city: str
    celsius: int
    sunny: bool


GOOD = json.dumps({"city": "Tokyo", "celsius": 22, "sunny": True})


async def test_a_typed_answer_is_asked_for_with_a_schema_and_returned_as_a_value(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``output_type=Weather``: the request carries ``response_format`` (strict JSON schema),
    ``response.output`` is a Weather, ``output_text`` the raw answer."""
    server.add(text(GOOD))
    agent = make_agent(output_type=Weather)
    response = await agent.send_message("weather in Tokyo?")
    assert response.output == Weather("Tokyo", 22, True)
    assert response.output_text == GOOD
    assert response.stop_reason is StopReason.RESPONSE
    sent = server.requests[0].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["strict"] is True
    schema = sent["json_schema"]["schema"]
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"city", "celsius", "sunny"}
    assert schema["additionalProperties"] is False


async def test_an_invalid_answer_is_repaired_once(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """An answer that does not validate goes back to the model with its errors; the second,
    valid answer is the output. The repair is a transition and a hook event."""
    server.add(text('{"city": "Tokyo", "celsius": "warm", "sunny": true}'), text(GOOD))
    events: list[InvalidOutputEvent] = []
    agent = make_agent(output_type=Weather, hooks={"on_invalid_output": events.append})
    response = await agent.send_message("weather in Tokyo?")
    assert response.output == Weather("Tokyo", 22, True)
    assert [(t.from_phase, t.to_phase, t.reason) for t in response.conversation.transitions] == [
        (Phase.TRIMMING_CONTEXT, Phase.AWAITING_MODEL, "context_ready"),
        (Phase.AWAITING_MODEL, Phase.TRIMMING_CONTEXT, "output_repair"),
        (Phase.TRIMMING_CONTEXT, Phase.AWAITING_MODEL, "context_ready"),
        (Phase.AWAITING_MODEL, Phase.DONE, "final_answer"),
    ]
    (event,) = events
    assert (event.stopped, event.attempt) == (False, 0)
    assert any("celsius" in e for e in event.errors)
    repair = server.requests[1].messages[-1]
    assert repair["role"] == "user"
    assert "celsius" in repair["content"]


async def test_an_answer_that_stays_invalid_stops_the_run_with_invalid_output(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With its repairs spent, the run stops ``invalid_output`` with the errors on the
    response; the chat can go on."""
    server.add(text("sunny, 22 degrees"), text("{}"), text("fine"))
    events: list[InvalidOutputEvent] = []
    agent = make_agent(output_type=Weather, hooks={"on_invalid_output": events.append})
    response = await agent.send_message("weather?")
    assert response.stop_reason is StopReason.INVALID_OUTPUT
    assert response.output is None
    assert response.output_text == "{}"
    assert response.error is not None
    assert response.error.type == "InvalidOutput"
    assert [e.stopped for e in events] == [False, True]
    again = await agent.send_message(
        "just say fine", conversation=response.conversation, output_type=str
    )
    assert again.output == "fine"


async def test_max_output_retries_zero_stops_at_the_first_invalid_answer(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``max_output_retries=0``: no repair, the first invalid answer stops the run."""
    server.add(text("not json"))
    agent = make_agent(output_type=Weather, max_output_retries=0)
    response = await agent.send_message("weather?")
    assert response.stop_reason is StopReason.INVALID_OUTPUT
    assert len(server.requests) == 1


async def test_tool_mode_asks_for_the_answer_through_a_final_tool(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``output_mode="tool"``: no response_format; a ``final_result`` tool whose call carries
    the answer; the history stays valid (the call is answered)."""

    @tool
    def get_temperature(city: str) -> int:
        """The temperature in a city."""
        return 22

    server.add(
        tool_calls(call("get_temperature", {"city": "Tokyo"})),
        tool_calls(call("final_result", {"city": "Tokyo", "celsius": 22, "sunny": True})),
    )
    agent = make_agent(output_type=Weather, output_mode="tool", tool_registry=[get_temperature])
    response = await agent.send_message("weather in Tokyo?")
    assert response.output == Weather("Tokyo", 22, True)
    assert "response_format" not in server.requests[0].body
    names = [t["function"]["name"] for t in server.requests[0].body["tools"]]
    assert names == ["get_temperature", "final_result"]
    assert [m["role"] for m in response.history] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]


async def test_tool_mode_repairs_a_plain_text_answer(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A model that answers in text in tool mode is told to call the final-answer tool."""
    server.add(
        text("It is sunny."),
        tool_calls(call("final_result", {"city": "Tokyo", "celsius": 22, "sunny": True})),
    )
    agent = make_agent(output_type=Weather, output_mode="tool")
    response = await agent.send_message("weather?")
    assert response.output == Weather("Tokyo", 22, True)
    assert "final_result" in server.requests[1].messages[-1]["content"]


async def test_a_per_call_output_type_replaces_the_agents(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``send_message(..., output_type=...)`` types one run of a text agent."""
    server.add(text(GOOD), text("plain"))
    agent = make_agent()
    typed = await agent.send_message("weather?", output_type=Weather)
    assert typed.output == Weather("Tokyo", 22, True)
    plain = await agent.send_message("and now?", conversation=typed.conversation)
    assert plain.output == "plain"
    assert "response_format" not in server.requests[1].body


@dataclasses.dataclass
class Point:
    x: int
    y: int


class PointDict(TypedDict):
    x: int
    y: int


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Forecast(pydantic.BaseModel):
    city: str
    days: list[int] = pydantic.Field(max_length=3)


@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (Point, {"x": 1, "y": 2}, Point(1, 2)),
        (PointDict, {"x": 1, "y": 2}, {"x": 1, "y": 2}),
        (Forecast, {"city": "Oslo", "days": [1, 2]}, Forecast(city="Oslo", days=[1, 2])),
        (Color, {"result": "blue"}, Color.BLUE),
        (Literal["yes", "no"], {"result": "no"}, "no"),
        (list[Point], {"result": [{"x": 1, "y": 2}]}, [Point(1, 2)]),
        (int, {"result": 3}, 3),
    ],
    ids=["dataclass", "TypedDict", "pydantic", "Enum", "Literal", "list", "int"],
)
async def test_every_kind_of_output_type_round_trips(
    server: ScriptedOpenAIServer,
    make_agent: AgentFactory,
    output_type: Any,
    answer: Any,
    expected: Any,
) -> None:
    """Objects are asked for as they are; other types wrapped as ``{"result": ...}``."""
    server.add(text(json.dumps(answer)))
    response = await make_agent().send_message("go", output_type=output_type)
    assert response.output == expected
    schema = server.requests[0].body["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "object"
    assert ("result" in schema["properties"]) is ("result" in answer)


async def test_a_fenced_json_answer_is_accepted(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Models that wrap JSON in a Markdown fence are understood."""
    server.add(text(f"```json\n{GOOD}\n```"))
    response = await make_agent(output_type=Weather).send_message("weather?")
    assert response.output == Weather("Tokyo", 22, True)


async def test_the_output_type_survives_dumps_loads_and_a_resume(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The run's schema is stored (not the class); the agent that resumes supplies the class
    and the resumed run validates with it."""
    server.add(text(GOOD))
    store = MemoryStore()
    first = make_agent(output_type=Weather, store=store)
    conv = first.start("weather?", chat_id="c1")
    assert conv.output_spec is not None
    assert loads(dumps(conv)) == conv
    await store.save(conv, None)
    second = make_agent(output_type=Weather, store=store)
    final = await second.resume("c1")
    assert second.response(final).output == Weather("Tokyo", 22, True)


async def test_streaming_streams_the_text_and_validates_at_the_end(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A streaming agent streams the JSON as it comes; the final response is typed."""
    server.add(text(GOOD, chunk_size=5))
    agent = make_agent(agent_class=AsyncOpenAIStreamingAgent, output_type=Weather)
    tokens: list[str] = []
    final: Any = None
    async for event in agent.stream_message("weather?"):
        if type(event).__name__ == "TokenEvent":
            tokens.append(event.delta)  # type: ignore[union-attr]
        if type(event).__name__ == "FinalResponseEvent":
            final = event.response  # type: ignore[union-attr]
    assert "".join(tokens) == GOOD
    assert final.output == Weather("Tokyo", 22, True)


def test_a_tool_named_final_result_clashes_with_tool_mode(make_agent: AgentFactory) -> None:
    """The final-answer tool's name is the framework's in tool mode."""
    from agentfsm import ConfigurationError

    @tool
    def final_result(answer: str) -> str:
        """Mine."""
        return answer

    with pytest.raises(ConfigurationError, match="clashes with output_mode='tool'"):
        make_agent(output_type=Weather, output_mode="tool", tool_registry=[final_result])


def test_mypy_knows_the_output_type(tmp_path: Path) -> None:
    """``AgentResponse`` is generic: mypy sees ``response.output`` as a Weather (agent-level
    type) or an int (per-call type), and as ``str`` without one."""
    code = """
import attrs
from agentfsm import AsyncOpenAISimpleAgent

@attrs.frozen
class Weather:
    city: str

async def main() -> None:
    typed = AsyncOpenAISimpleAgent(model="m", output_type=Weather)
    reveal_type((await typed.send_message("hi")).output)
    plain = AsyncOpenAISimpleAgent(model="m")
    reveal_type((await plain.send_message("hi")).output)
    reveal_type((await plain.send_message("hi", output_type=int)).output)
"""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(code)
    done = subprocess.run(  # in tmp_path: the project's mypy settings (files=agentfsm) stay out
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", str(snippet)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    revealed = [
        line.split("Revealed type is ")[1]
        for line in done.stdout.splitlines()
        if "Revealed type" in line
    ]
    assert revealed == ['"snippet.Weather"', '"str"', '"int"'], done.stdout


async def test_strict_tools_sends_every_tool_in_strict_form(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``strict_tools=True`` on the agent: each function schema is sent with ``strict`` and
    every property required, ``additionalProperties: false``."""

    @tool
    def forecast(city: str, days: int = 1) -> str:
        """A forecast.

        Args:
            city: where.
            days: how many days.
        """
        return f"{city}: sunny for {days} days"

    server.add(tool_calls(call("forecast", {"city": "Oslo", "days": None})), text("done"))
    response = await make_agent(strict_tools=True, tool_registry=[forecast]).send_message("go")
    (sent,) = server.requests[0].body["tools"]
    assert sent["function"]["strict"] is True
    parameters = sent["function"]["parameters"]
    assert set(parameters["required"]) == {"city", "days"}
    assert parameters["additionalProperties"] is False
    assert response.history[2]["content"] == "Oslo: sunny for 1 days"  # null: the default


async def test_a_resumed_run_without_the_class_is_checked_against_the_stored_schema(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """An agent that does not know the run's output type still holds the answer to the
    stored schema (an invalid one is repaired) and returns the parsed JSON."""
    server.add(text('{"city": "Tokyo"}'), text(GOOD))
    store = MemoryStore()
    conv = make_agent(output_type=Weather, store=store).start("weather?", chat_id="c1")
    await store.save(conv, None)
    plain = make_agent(store=store)
    final = await plain.resume("c1")
    assert final.output_retries == 1
    assert "celsius" in server.requests[1].messages[-1]["content"]
    assert plain.response(final).output == {"city": "Tokyo", "celsius": 22, "sunny": True}
