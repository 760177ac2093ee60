"""Strict tools: OpenAI's strict function form, per tool and for a whole registry."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

import pydantic
import pytest

from agentfsm.errors import ToolArgumentError, ToolDefinitionError
from agentfsm.tools import PreparedCall, Tool, tool, tools_from_registry


class Query(pydantic.BaseModel):
    """A search query."""

    text: str
    limit: Annotated[int, pydantic.Field(ge=1, le=50)]
    language: str | None = None


@dataclasses.dataclass
class Window:
    start: dt.date
    end: dt.date | None = None


@tool(strict=True)
def search(query: Query, window: Window | None = None, page: int = 1) -> str:
    """Search the archive.

    Args:
        query: what to look for.
        page: which page of results.
    """
    return query.text


QUERY = {
    "type": "object",
    "description": "what to look for.",
    "properties": {
        "text": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "language": {"type": ["string", "null"]},
    },
    "required": ["text", "limit", "language"],
    "additionalProperties": False,
}
WINDOW = {
    "type": "object",
    "properties": {
        "start": {"type": "string", "format": "date"},
        "end": {"type": ["string", "null"], "format": "date"},
    },
    "required": ["start", "end"],
    "additionalProperties": False,
}


def test_strict_tool_is_sent_in_openai_strict_form() -> None:
    """Every parameter required, optional ones nullable, objects closed, "strict": true."""
    assert search.strict is True
    assert search.to_openai() == {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the archive.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": QUERY,
                    "window": {"anyOf": [WINDOW, {"type": "null"}]},
                    "page": {"type": ["integer", "null"], "description": "which page of results."},
                },
                "required": ["query", "window", "page"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


def test_null_for_an_optional_parameter_means_its_default() -> None:
    """A strict model sends every parameter; null for one with a default means the default."""
    call = search.prepare(
        '{"query": {"text": "q", "limit": 5, "language": null}, "window": null, "page": null}'
    )
    assert call.kwargs == {"query": Query(text="q", limit=5), "window": None}


def test_a_strict_tool_still_takes_arguments_left_out() -> None:
    """A server that ignores strict may leave optional parameters out: they take the default."""
    call = search.prepare('{"query": {"text": "q", "limit": 5, "language": "en"}}')
    assert call.kwargs == {"query": Query(text="q", limit=5, language="en")}


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (
            '{"query": {"text": "q", "limit": 500, "language": null}}',
            "'query.limit' must be <= 50",
        ),
        (
            '{"query": {"text": "q", "limit": 5}}',
            "missing required argument 'query.language'",
        ),
        (
            '{"query": {"text": "q", "limit": 5, "language": null}, "window": {"start": "x"}}',
            "missing required argument 'window.end'",
        ),
    ],
)
def test_strict_arguments_are_checked_against_the_strict_schema(
    arguments: str, problem: str
) -> None:
    """Nested objects are held to the strict form the model was shown."""
    with pytest.raises(ToolArgumentError) as info:
        search.prepare(arguments)
    assert str(info.value) == f"Invalid arguments for tool 'search': {problem}"


class Paged(pydantic.BaseModel):
    page: int = 1


def _open_map(scores: dict[str, int]) -> None: ...


def _defaulted(paged: Paged) -> None: ...


def _anything(value: Any) -> None: ...


def _pair(pair: tuple[int, str]) -> None: ...


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (
            _open_map,
            "Tool '_open_map': cannot be strict: $.scores: an open map (dict[str, X], or an "
            "object without declared properties) has no strict form: strict mode needs every "
            "key declared; use a class with named fields, or a list of key/value objects",
        ),
        (
            _defaulted,
            "Tool '_defaulted': cannot be strict: $.paged.page: an optional field (default 1) "
            "has no strict form: strict mode makes every field required; make it required, or "
            "type it 'X | None' with default None",
        ),
        (
            _anything,
            "Tool '_anything': cannot be strict: $.value: accepts any JSON value (Any, object "
            "or no annotation); strict mode needs a declared type",
        ),
        (
            _pair,
            "Tool '_pair': cannot be strict: $.pair: a fixed-length tuple (prefixItems) has no "
            "strict form; use a class with named fields, or tuple[X, ...]",
        ),
    ],
)
def test_what_cannot_be_strict_is_refused_saying_why(func: Any, message: str) -> None:
    """A parameter type with no strict form is a ToolDefinitionError naming it and why."""
    with pytest.raises(ToolDefinitionError) as info:
        tool(strict=True)(func)
    assert str(info.value) == message


def test_a_strict_tool_is_built_from_a_function_once() -> None:
    """The same function gives equal schemas built strict or turned strict later."""

    def lookup(key: str, fresh: bool = False) -> str:
        return key

    assert Tool.from_function(Tool.from_function(lookup), strict=True) == Tool.from_function(
        lookup, strict=True
    )


# --- tool dicts --------------------------------------------------------------------------------


def lookup(key: str, limit: int = 10) -> str:
    return key


LOOKUP = {
    "type": "object",
    "properties": {"key": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["key"],
}
STRICT_LOOKUP = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "limit": {"type": ["integer", "null"], "minimum": 1},
    },
    "required": ["key", "limit"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "spec",
    [
        {
            "function_schema": {"name": "lookup", "parameters": LOOKUP},
            "func": lookup,
            "strict": True,
        },
        {
            "function_schema": {"name": "lookup", "parameters": LOOKUP, "strict": True},
            "func": lookup,
        },
        {
            "function_schema": {
                "type": "function",
                "function": {"name": "lookup", "parameters": LOOKUP, "strict": True},
            },
            "func": lookup,
        },
    ],
)
def test_from_dict_accepts_strict_in_the_dict_or_the_function(spec: dict[str, Any]) -> None:
    """ "strict" in the tool dict or in the function schema gives the strict form."""
    built = Tool.from_dict(spec)
    assert built.strict is True
    assert built.to_openai()["function"] == {
        "name": "lookup",
        "parameters": STRICT_LOOKUP,
        "strict": True,
    }
    assert built.prepare('{"key": "k", "limit": null}') == PreparedCall(
        arguments={"key": "k", "limit": None}, kwargs={"key": "k"}, ignored=()
    )


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {
                "type": "object",
                "properties": {"key": {"type": "string"}, "limit": {"type": "object"}},
                "required": ["key"],
            },
            "Tool 'lookup': cannot be strict: $.limit: an open map (dict[str, X], or an object "
            "without declared properties) has no strict form: strict mode needs every key "
            "declared; use a class with named fields, or a list of key/value objects",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "key": {
                        "type": "object",
                        "properties": {"a": {"type": "string"}},
                    }
                },
                "required": ["key"],
            },
            "Tool 'lookup': cannot be strict: $.key.a: an optional field has no strict form: "
            "strict mode makes every field required; make it required, or type it 'X | None' "
            "with default None",
        ),
        (
            {
                "type": "object",
                "properties": {"key": {"type": "string", "maxLength": 5}},
                "required": ["key"],
            },
            "Tool 'lookup': cannot be strict: $.key: maxLength is not accepted by OpenAI's "
            "strict mode",
        ),
        (
            {
                "type": "object",
                "properties": {"key": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
                "required": ["key"],
            },
            "Tool 'lookup': cannot be strict: $.key: oneOf is not accepted by OpenAI's strict "
            "mode; use anyOf",
        ),
    ],
)
def test_from_dict_refuses_schemas_with_no_strict_form(
    parameters: dict[str, Any], message: str
) -> None:
    """A strict tool dict whose schema cannot be strict is refused, saying why."""
    spec = {"function_schema": {"name": "lookup", "parameters": parameters}, "func": lookup}
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_dict({**spec, "strict": True})
    assert str(info.value) == message


def test_strict_in_the_dict_and_the_function_must_agree() -> None:
    """Two different answers to "strict" are refused."""
    spec = {
        "function_schema": {"name": "lookup", "parameters": LOOKUP, "strict": False},
        "func": lookup,
        "strict": True,
    }
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_dict(spec)
    assert str(info.value) == (
        "Tool 'lookup': 'strict' in the tool dict and in its function schema disagree"
    )


# --- the whole registry ----------------------------------------------------------------------


def ping(host: str, count: int = 1) -> str:
    return host


@tool
def echo(text: str) -> str:
    return text


def test_registry_strict_makes_every_tool_strict() -> None:
    """Functions, Tool objects and tool dicts all come out strict."""
    spec = {"function_schema": {"name": "lookup", "parameters": LOOKUP}, "func": lookup}
    tools = tools_from_registry([ping, echo, spec], strict=True)
    assert [t.strict for t in tools] == [True, True, True]
    assert [t.to_openai()["function"]["parameters"]["required"] for t in tools] == [
        ["host", "count"],
        ["text"],
        ["key", "limit"],
    ]
    assert echo.strict is False  # the registry builds new tools; the decorated one is unchanged


def test_registry_strict_keeps_a_dict_that_says_strict_false() -> None:
    """A tool dict that asks not to be strict is left as it is."""
    spec = {"function_schema": {"name": "lookup", "parameters": LOOKUP}, "func": lookup}
    (built,) = tools_from_registry([{**spec, "strict": False}], strict=True)
    assert built.strict is False


def test_registry_without_strict_keeps_strict_tools_strict() -> None:
    """A tool built strict stays strict in a registry that is not."""
    (built,) = tools_from_registry([search])
    assert built is search


def test_registry_strict_refuses_a_tool_with_no_strict_form() -> None:
    """The agent-wide switch refuses a tool that cannot be strict, naming it."""

    def score(points: dict[str, int]) -> int:
        return 0

    with pytest.raises(ToolDefinitionError) as info:
        tools_from_registry([score], strict=True)
    assert str(info.value).startswith("Tool 'score': cannot be strict: $.points: an open map")


def test_strict_tool_with_literal_and_dates_round_trips() -> None:
    """Literal, dates and nested models convert as in a tool that is not strict."""

    @tool(strict=True)
    def plan(mode: Literal["fast", "slow"], on: dt.date, query: Query) -> None: ...

    call = plan.prepare(
        {"mode": "slow", "on": "2024-02-03", "query": {"text": "t", "limit": 1, "language": None}}
    )
    assert call.kwargs == {
        "mode": "slow",
        "on": dt.date(2024, 2, 3),
        "query": Query(text="t", limit=1),
    }


def test_registry_strict_turns_a_built_dict_tool_strict() -> None:
    """A Tool built from a dict becomes strict in a strict registry, its schema rewritten."""
    built = Tool.from_dict(
        {"function_schema": {"name": "lookup", "parameters": LOOKUP}, "func": lookup}
    )
    (strict,) = tools_from_registry([built], strict=True)
    assert (strict.strict, strict.parameters) == (True, STRICT_LOOKUP)
    assert built.parameters == LOOKUP


def test_a_tool_built_directly_with_strict_sends_the_strict_form() -> None:
    """Tool(..., strict=True) keeps the strict form as its parameters, so it is what is sent."""
    built = Tool(name="lookup", description="", parameters=LOOKUP, func=lookup, strict=True)
    assert built.parameters == STRICT_LOOKUP
    assert built == Tool(
        name="lookup", description="", parameters=STRICT_LOOKUP, func=lookup, strict=True
    )
