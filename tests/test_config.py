"""Construction-time validation of the agent's keywords."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from agentfsm import (
    AsyncOpenAISimpleAgent,
    ConfigurationError,
    InvalidHistoryError,
    InvalidInputError,
    ToolDefinitionError,
    UnknownHookError,
)
from agentfsm.testing import ScriptedOpenAIServer, text

from .conftest import AgentFactory


def _agent(**kwargs: Any) -> AsyncOpenAISimpleAgent:
    options: dict[str, Any] = {"model": "m", "api_key": "sk-secret-value"}
    options.update(kwargs)
    return AsyncOpenAISimpleAgent(**options)


def test_unknown_hook_name_suggests_the_right_one() -> None:
    """A misspelled hook name is refused, with a suggestion and the valid names."""
    with pytest.raises(UnknownHookError) as info:
        _agent(hooks={"on_function_call_started": print})
    assert info.value.suggestion == "on_function_call_start"
    assert "on_manual_stop" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_turns": 0}, "max_turns must be an integer >= 1"),
        ({"max_turns": True}, "max_turns must be an integer >= 1"),
        ({"max_function_calls": -1}, "max_function_calls"),
        ({"temperature": 3}, "temperature must be a number from 0 to 2"),
        ({"check_for_stop_signal_time": 0, "manual_stop_signal_function": bool}, "positive"),
        ({"manual_stop_signal_function": "yes"}, "must be a callable"),
        ({"hooks": {"on_transition": "print"}}, "must be a callable"),
        ({"model": ""}, "model must be a non-empty string"),
        ({"context_handling_method": "exact"}, "context_handling_method must be one of"),
        ({"dropping_strategy": "random"}, "dropping_strategy must be one of"),
        ({"max_context_length": 0}, "max_context_length must be a positive integer"),
        ({"request_params": {"messages": []}}, "request_params may not set ['messages']"),
    ],
)
def test_bad_keywords_are_refused_with_a_clear_message(
    kwargs: dict[str, Any], message: str
) -> None:
    """Each invalid keyword raises ConfigurationError naming the problem."""
    with pytest.raises(ConfigurationError) as info:
        _agent(**kwargs)
    assert message in str(info.value)


def test_context_keywords_are_case_insensitive() -> None:
    """ "Accurate" and "Summary_Dropping" are accepted and normalized."""
    agent = _agent(context_handling_method="Accurate", dropping_strategy="Summary_Dropping")
    assert (agent.context.method, agent.context.dropping_strategy) == (
        "accurate",
        "summary_dropping",
    )


def test_tool_schema_naming_a_parameter_the_function_lacks_is_refused() -> None:
    """A dict tool whose schema does not fit its function fails at construction."""

    def get_time(timezone: str) -> str:
        return timezone

    schema = {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string"}},
            "required": ["tz"],
        },
    }
    with pytest.raises(ToolDefinitionError, match="tz"):
        _agent(tool_registry=[{"name": "get_time", "function_schema": schema, "func": get_time}])


def test_api_key_never_appears_in_repr() -> None:
    """The repr names the agent, model and tools, never the key."""
    agent = _agent(agent_name="Support")
    assert "sk-secret-value" not in repr(agent)
    assert "Support" in repr(agent)


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No api_key and no OPENAI_API_KEY: the error says how to provide one."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        AsyncOpenAISimpleAgent(model="m")


async def test_api_key_and_base_url_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only ``model`` is required: key and server are read from the environment."""
    async with ScriptedOpenAIServer([text("from env")]) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        async with AsyncOpenAISimpleAgent(model="m") as agent:
            response = await agent.send_message("hi")
        assert response.output == "from env"
        assert server.requests[0].headers["authorization"] == "Bearer env-key"


async def test_a_users_own_client_is_used() -> None:
    """``client=`` sends through the caller's AsyncOpenAI client."""
    async with ScriptedOpenAIServer([text("mine")]) as server:
        client = openai.AsyncOpenAI(api_key="own", base_url=server.base_url)
        response = await AsyncOpenAISimpleAgent(model="m", client=client).send_message("hi")
        assert response.output == "mine"
        await client.close()


async def test_temperature_and_request_params_are_sent(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Temperature, max_completion_tokens and extra params reach the server; None is not sent."""
    server.add(text("ok"))
    agent = make_agent(
        temperature=0.5,
        max_completion_tokens=100,
        request_params={"seed": 7, "top_p": None},
    )
    await agent.send_message("hi")
    body = server.requests[0].body
    assert (body["temperature"], body["max_completion_tokens"], body["seed"]) == (0.5, 100, 7)
    assert "top_p" not in body


@pytest.mark.parametrize(
    ("history", "path"),
    [
        ([{"role": "wizard", "content": "x"}], "$[0].role"),
        ([{"role": "user"}], "$[0].content"),
        (
            [{"role": "tool", "tool_call_id": "call_x", "content": "r"}],
            "$[0].tool_call_id",
        ),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]},
            ],
            "$[1].tool_calls[0].function",
        ),
        ("not a list", "$"),
    ],
)
def test_malformed_history_names_the_path_of_the_fault(history: Any, path: str) -> None:
    """Bad history is refused by start() with the JSON path of the first fault."""
    with pytest.raises(InvalidHistoryError) as info:
        _agent().start("hi", history=history)
    assert info.value.path == path
    assert path in str(info.value)


def test_history_with_unanswered_calls_is_closed_not_refused() -> None:
    """Calls left without results in a given history get an error result so it stays valid."""
    conv = _agent().start(
        "next",
        history=[
            {"role": "user", "content": "a"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
        ],
    )
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "user"]
    assert conv.messages[2].tool_call_id == "c1"  # type: ignore[union-attr]


@pytest.mark.parametrize("message", ["", 42, [], [object()]])
def test_bad_messages_are_refused(message: Any) -> None:
    """An empty or mistyped user message is an InvalidInputError."""
    with pytest.raises(InvalidInputError):
        _agent().start(message)


def test_history_and_conversation_together_are_refused() -> None:
    """One source of truth: history= and conversation= cannot both be given."""
    agent = _agent()
    conv = agent.start("hi")
    with pytest.raises(InvalidInputError, match="either history= or conversation="):
        agent.start("again", history=[], conversation=conv)
