"""Tool parameters of every supported type, and descriptions from every docstring style."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Annotated, Any

import pydantic
import pytest
import typing_extensions

from agentfsm.errors import ToolArgumentError, ToolDefinitionError
from agentfsm.schema._docstrings import Docstring, parse_docstring
from agentfsm.tools import Tool, ToolContext, tool

CONTEXT = ToolContext(chat_id="chat-1", user_id="user-1", agent_name="helper", turn=0)


class Booking(pydantic.BaseModel):
    """A table booking."""

    name: str
    guests: Annotated[int, pydantic.Field(ge=1, le=10, description="How many people.")]
    at: dt.datetime

    @pydantic.field_validator("name")
    @classmethod
    def _no_digits(cls, value: str) -> str:
        if any(ch.isdigit() for ch in value):
            raise ValueError("a name has no digits")
        return value


class Address(typing_extensions.TypedDict):
    """A postal address."""

    street: str
    zip: typing_extensions.NotRequired[str]


@tool
def book(
    booking: Booking,
    ref: uuid.UUID,
    deposit: decimal.Decimal,
    address: Address,
    n: Annotated[int, pydantic.Field(ge=1, le=10)] = 1,
    user_id: str | None = None,
) -> str:
    """Book a table."""
    return booking.name


def _error(target: Tool, arguments: Any) -> str:
    with pytest.raises(ToolArgumentError) as info:
        target.prepare(arguments)
    return str(info.value)


ARGUMENTS = {
    "booking": {"name": "Ada", "guests": 2, "at": "2024-05-06T19:30:00"},
    "ref": "12345678-1234-5678-1234-567812345678",
    "deposit": "12.50",
    "address": {"street": "Main St 1"},
}


def test_model_uuid_decimal_and_typeddict_parameters_have_schemas() -> None:
    """A BaseModel, UUID, Decimal and a typing_extensions TypedDict are parameters like any."""
    assert book.parameters == {
        "type": "object",
        "properties": {
            "booking": {
                "type": "object",
                "description": "A table booking.",
                "properties": {
                    "name": {"type": "string"},
                    "guests": {
                        "type": "integer",
                        "description": "How many people.",
                        "minimum": 1,
                        "maximum": 10,
                    },
                    "at": {"type": "string", "format": "date-time"},
                },
                "required": ["name", "guests", "at"],
                "additionalProperties": False,
            },
            "ref": {"type": "string", "format": "uuid"},
            "deposit": {"type": ["number", "string"]},
            "address": {
                "type": "object",
                "description": "A postal address.",
                "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["street"],
                "additionalProperties": False,
            },
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
        },
        "required": ["booking", "ref", "deposit", "address"],
        "additionalProperties": False,
    }


def test_arguments_convert_to_models_uuids_and_decimals() -> None:
    """The function receives a Booking, a UUID, a Decimal and a dict."""
    call = book.prepare({**ARGUMENTS, "n": 10, "user_id": "forged"})
    assert call.kwargs == {
        "booking": Booking(name="Ada", guests=2, at=dt.datetime(2024, 5, 6, 19, 30)),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "deposit": decimal.Decimal("12.50"),
        "address": {"street": "Main St 1"},
        "n": 10,
    }
    assert call.ignored == ("user_id",)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"n": 50}, "'n' must be <= 10"),
        ({"booking": {**ARGUMENTS["booking"], "guests": 0}}, "'booking.guests' must be >= 1"),
        (
            {"booking": {**ARGUMENTS["booking"], "extra": 1}},
            "unexpected argument 'booking.extra' (accepted: 'name', 'guests', 'at')",
        ),
        ({"ref": "not-a-uuid"}, "'ref' must be a valid UUID, invalid character: found `n` at 0"),
        ({"address": {"street": 3}}, "'address.street' must be string, got integer"),
        (
            {"booking": {**ARGUMENTS["booking"], "name": "R2D2"}},
            "'booking.name' is invalid: a name has no digits",
        ),
    ],
)
def test_constraints_and_validators_refuse_with_messages(
    change: dict[str, Any], problem: str
) -> None:
    """Field constraints, extra keys and the model's own validators give model-readable text."""
    assert _error(book, {**ARGUMENTS, **change}) == f"Invalid arguments for tool 'book': {problem}"


async def test_injection_works_beside_a_model_parameter() -> None:
    """user_id is injected while the model supplies the Booking."""

    @tool
    async def whoami(booking: Booking, user_id: str | None, context: ToolContext) -> Any:
        return booking.name, user_id, context.chat_id

    call = whoami.prepare({"booking": ARGUMENTS["booking"]})
    assert await whoami.invoke(call, CONTEXT) == ("Ada", "user-1", "chat-1")


def test_injected_user_id_must_be_a_string() -> None:
    """`user_id: int` would receive a string: refused when the tool is defined."""

    def f(booking: Booking, user_id: int) -> None: ...

    with pytest.raises(ToolDefinitionError) as info:
        tool(f)
    assert str(info.value).startswith("Tool 'f': parameter 'user_id' is injected by agentfsm")


# --- docstring styles --------------------------------------------------------------------------


def google(city: str, days: int = 1) -> str:
    """Get the forecast.

    Args:
        city: The city,
            for example Oslo.
        days (int): Days ahead.

    Returns:
        The forecast.
    """
    return city


def numpy(city: str, days: int = 1) -> str:
    """Get the forecast.

    Parameters
    ----------
    city : str
        The city,
        for example Oslo.
    days : int, optional
        Days ahead.

    Returns
    -------
    str
        The forecast.
    """
    return city


def sphinx(city: str, days: int = 1) -> str:
    """Get the forecast.

    :param city: The city,
        for example Oslo.
    :param int days: Days ahead.
    :returns: The forecast.
    :rtype: str
    """
    return city


@pytest.mark.parametrize("func", [google, numpy, sphinx], ids=lambda f: f.__name__)
def test_every_docstring_style_gives_the_descriptions(func: Any) -> None:
    """Google, NumPy and Sphinx docstrings give the tool and parameter descriptions."""
    built = Tool.from_function(func)
    assert built.description == "Get the forecast."
    assert built.parameters["properties"] == {
        "city": {"type": "string", "description": "The city, for example Oslo."},
        "days": {"type": "integer", "description": "Days ahead.", "default": 1},
    }


@pytest.mark.parametrize(
    ("doc", "parsed"),
    [
        (None, Docstring()),
        ("Just prose.\n\nMore prose.", Docstring(description="Just prose.\n\nMore prose.")),
        (
            """Summary.

            Attributes:
                x: across.
                y: down,
                    far down.
            """,
            Docstring(description="Summary.", attributes={"x": "across.", "y": "down, far down."}),
        ),
        (
            """Summary.

            Attributes
            ----------
            x, y : int
                A coordinate.
            """,
            Docstring(
                description="Summary.", attributes={"x": "A coordinate.", "y": "A coordinate."}
            ),
        ),
        (
            """Summary.

            :ivar x: across.
            :param y: down.
            """,
            Docstring(description="Summary.", params={"y": "down."}, attributes={"x": "across."}),
        ),
        (
            """Summary.

            Note: this line is prose, not a section.

            Raises:
                ValueError: never.
            """,
            Docstring(description="Summary.\n\nNote: this line is prose, not a section."),
        ),
    ],
)
def test_parse_docstring(doc: str | None, parsed: Docstring) -> None:
    """The parser splits prose from parameter and attribute entries in all three styles."""
    assert parse_docstring(doc) == parsed


# --- tools given as JSON Schema dicts ----------------------------------------------------------


def _dict_tool(schema: Any) -> Tool:
    def check(x: Any = None) -> Any:
        return x

    return Tool.from_dict(
        {
            "function_schema": {
                "name": "check",
                "parameters": {"type": "object", "properties": {"x": schema}},
            },
            "func": check,
        }
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "unevaluatedProperties": False},
            "Tool 'check': parameters.properties.x: the JSON Schema keyword "
            "'unevaluatedProperties' is not supported: unevaluatedProperties (use "
            "additionalProperties)",
        ),
        (
            {"$dynamicRef": "#node"},
            "Tool 'check': parameters.properties.x: the JSON Schema keyword '$dynamicRef' is "
            "not supported: $dynamicRef",
        ),
        (
            {"$anchor": "x", "type": "string"},
            "Tool 'check': parameters.properties.x: the JSON Schema keyword '$anchor' is not "
            "supported: $anchor (use a '#/$defs/...' reference)",
        ),
        (
            {"$ref": "https://example.com/x.json"},
            "Tool 'check': parameters.properties.x: only local references ('#/...') are "
            "supported, got 'https://example.com/x.json'",
        ),
    ],
)
def test_dict_schemas_with_unsupported_keywords_are_refused(schema: Any, message: str) -> None:
    """A keyword the validator does not enforce is refused when the tool is built."""
    with pytest.raises(ToolDefinitionError) as info:
        _dict_tool(schema)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("schema", "value", "problem"),
    [
        ({"type": "number", "multipleOf": 0.01}, 1.005, "'x' must be a multiple of 0.01"),
        (
            {"type": "array", "uniqueItems": True},
            [1, 1.0],
            "'x' must not repeat items: items 0 and 1 are equal",
        ),
        ({"not": {"type": "string"}}, "a", "'x' must not match the schema under 'not'"),
        (
            {"if": {"minimum": 10}, "then": {"multipleOf": 10}, "else": {"maximum": 5}},
            7,
            "'x' must be <= 5",
        ),
        (
            {"type": "object", "dependentRequired": {"card": ["cvc"]}},
            {"card": "4242"},
            "missing required argument 'x.cvc' (needed with 'card')",
        ),
        (
            {"type": "object", "patternProperties": {"^s_": {"type": "string"}}},
            {"s_name": 1},
            "'x.s_name' must be string, got integer",
        ),
        (
            {"type": "object", "propertyNames": {"maxLength": 3}},
            {"long": 1},
            "'x' has a property name not allowed: 'long'",
        ),
        (
            {"type": "array", "contains": {"type": "integer"}, "minContains": 2},
            [1, "a"],
            "'x' must contain at least 2 item(s) matching 'contains', got 1",
        ),
        ({"type": "object", "minProperties": 1}, {}, "'x' must have at least 1 properties, got 0"),
    ],
)
def test_dict_schemas_use_every_supported_keyword(schema: Any, value: Any, problem: str) -> None:
    """The 2020-12 keywords beyond the common ones are enforced, with messages."""
    with pytest.raises(ToolArgumentError) as info:
        _dict_tool(schema).prepare({"x": value})
    assert str(info.value) == f"Invalid arguments for tool 'check': {problem}"


async def test_each_call_knows_its_own_call_id(server: Any, make_agent: Any) -> None:
    """``ToolContext.call_id`` is the id of the call being served, per call of a batch."""
    from agentfsm import tool
    from agentfsm.testing import call, text, tool_calls

    seen: list[tuple[str, str | None]] = []

    @tool
    def charge(amount: int, context: ToolContext) -> str:
        """Charges an amount."""
        seen.append((str(amount), context.call_id))
        return "charged"

    server.add(
        tool_calls(
            call("charge", {"amount": 1}, id="c-1"), call("charge", {"amount": 2}, id="c-2")
        ),
        text("done"),
    )
    await make_agent(tool_registry=[charge], execute_function_concurrently=False).send_message(
        "pay"
    )
    assert seen == [("1", "c-1"), ("2", "c-2")]
