"""Tests for agentfsm.tools: schemas, validation, conversion, injection, execution, results."""

# Annotations stay strings here, as in user code that uses the future import.
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import functools
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NewType, Optional, TypedDict, Union

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfsm import tools as tools_module
from agentfsm.errors import ToolArgumentError, ToolDefinitionError
from agentfsm.tools import (
    PreparedCall,
    Tool,
    ToolContext,
    format_result,
    tool,
    tools_from_registry,
)

try:  # Python 3.11+
    from typing import NotRequired
except ImportError:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired

CONTEXT = ToolContext(chat_id="chat-1", user_id="user-1", agent_name="helper", turn=2)


# --- types used in annotations (module level, so the string annotations resolve) -------------


class Unit(enum.Enum):
    C = "c"
    F = "f"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Point:
    """A point on the map.

    Attributes:
        x: the horizontal position.
        y: the vertical position.
    """

    x: int
    y: float = 0.0


@attrs.frozen
class Secret:
    _token: str
    kind: str = attrs.field(default="api", validator=attrs.validators.in_(["api", "oauth"]))


@dataclasses.dataclass
class Box:
    corner: Point
    tags: set[str] = dataclasses.field(default_factory=set)
    label: str = "box"


@attrs.frozen
class Line:
    start: Point
    end: Point


class Filters(TypedDict):
    """Search filters."""

    country: str
    since: NotRequired[dt.date]


@attrs.frozen
class Tree:
    children: list[Tree]


UserName = NewType("UserName", str)


class Unsupported:
    pass


def parameters_of(func: Any) -> dict[str, Any]:
    """The generated parameters schema of a function."""
    return dict(Tool.from_function(func).parameters)


def prepare_error(target: Tool, arguments: Any) -> str:
    """The message prepare raises for these arguments."""
    with pytest.raises(ToolArgumentError) as info:
        target.prepare(arguments)
    assert info.value.tool == target.name
    return str(info.value)


def definition_error(build: Any) -> str:
    """The message of the ToolDefinitionError a tool definition raises."""
    with pytest.raises(ToolDefinitionError) as info:
        build()
    return str(info.value)


# --- schema generation -----------------------------------------------------------------------


def test_primitive_types_map_to_json_types() -> None:
    """str, int, float and bool become string, integer, number and boolean, all required."""

    def f(s: str, i: int, x: float, b: bool) -> None: ...

    assert parameters_of(f) == {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
        },
        "required": ["s", "i", "x", "b"],
        "additionalProperties": False,
    }


def test_containers_map_to_arrays_and_objects() -> None:
    """Lists, tuples, sets and dicts become arrays and objects with their item schemas; sets
    and frozensets say their items are unique."""

    def f(
        a: list[int],
        b: tuple[str, ...],
        c: set[str],
        d: frozenset[int],
        e: dict[str, float],
        f: list,  # type: ignore[type-arg]
        g: dict,  # type: ignore[type-arg]
        h: tuple[int, str],
        i: Sequence[bool],
        j: Mapping[str, list[str]],
    ) -> None: ...

    assert parameters_of(f)["properties"] == {
        "a": {"type": "array", "items": {"type": "integer"}},
        "b": {"type": "array", "items": {"type": "string"}},
        "c": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "d": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        "e": {"type": "object", "additionalProperties": {"type": "number"}},
        "f": {"type": "array"},
        "g": {"type": "object"},
        "h": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        "i": {"type": "array", "items": {"type": "boolean"}},
        "j": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    }


def test_literal_maps_to_enum_with_its_type() -> None:
    """Literal values become an enum whose type is the JSON type of the values."""

    def f(
        a: Literal["c", "f"],
        b: Literal[1, 2],
        c: Literal["x", 1],
        d: Literal[True],
        e: Literal[1, 2.5],
    ) -> None: ...

    assert parameters_of(f)["properties"] == {
        "a": {"type": "string", "enum": ["c", "f"]},
        "b": {"type": "integer", "enum": [1, 2]},
        "c": {"type": ["string", "integer"], "enum": ["x", 1]},
        "d": {"type": "boolean", "enum": [True]},
        "e": {"type": "number", "enum": [1, 2.5]},
    }


def test_enum_classes_map_to_enum_of_values() -> None:
    """Enum subclasses become an enum of their member values."""

    def f(unit: Unit, level: Level) -> None: ...

    assert parameters_of(f)["properties"] == {
        "unit": {"type": "string", "enum": ["c", "f"]},
        "level": {"type": "integer", "enum": [1, 2]},
    }


def test_optional_and_unions_admit_null_or_several_types() -> None:
    """Optional adds null to a type list (or anyOf); unions become type lists or anyOf."""

    def f(
        a: int | None,
        b: Optional[str],  # noqa: UP045 - the old spelling must work too
        c: Unit | None,
        d: Literal["x", "y"] | None,
        e: Union[int, str],  # noqa: UP007
        f: int | str | None,
        g: Point | Line,
        h: list[int] | None,
        i: Any | None,
    ) -> None: ...

    line = {
        "type": "object",
        "properties": {"start": _point_schema(), "end": _point_schema()},
        "required": ["start", "end"],
        "additionalProperties": False,
    }
    assert parameters_of(f)["properties"] == {
        "a": {"type": ["integer", "null"]},
        "b": {"type": ["string", "null"]},
        "c": {"type": ["string", "null"], "enum": ["c", "f", None]},
        "d": {"type": ["string", "null"], "enum": ["x", "y", None]},
        "e": {"type": ["integer", "string"]},
        "f": {"type": ["integer", "string", "null"]},
        "g": {"anyOf": [_point_schema(), line]},
        "h": {"type": ["array", "null"], "items": {"type": "integer"}},
        "i": {},
    }


def _point_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A point on the map.",
        "properties": {
            "x": {"type": "integer", "description": "the horizontal position."},
            "y": {"type": "number", "description": "the vertical position.", "default": 0.0},
        },
        "required": ["x"],
        "additionalProperties": False,
    }


def test_attrs_classes_and_dataclasses_become_nested_objects() -> None:
    """attrs classes and dataclasses become objects with properties, required and defaults."""

    def f(point: Point, box: Box, secret: Secret) -> None: ...

    assert parameters_of(f)["properties"] == {
        "point": _point_schema(),
        "box": {
            "type": "object",
            "properties": {
                "corner": _point_schema(),
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "label": {"type": "string", "default": "box"},
            },
            "required": ["corner"],
            "additionalProperties": False,
        },
        "secret": {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "kind": {"type": "string", "default": "api"},
            },
            "required": ["token"],
            "additionalProperties": False,
        },
    }


def test_typeddict_becomes_object_with_its_required_keys() -> None:
    """A TypedDict becomes an object; NotRequired keys are optional."""

    def f(filters: Filters) -> None: ...

    assert parameters_of(f)["properties"] == {
        "filters": {
            "type": "object",
            "description": "Search filters.",
            "properties": {
                "country": {"type": "string"},
                "since": {"type": "string", "format": "date"},
            },
            "required": ["country"],
            "additionalProperties": False,
        }
    }


def test_dates_newtypes_and_any() -> None:
    """datetime/date become formatted strings, NewType its base, Any and no annotation anything."""

    def f(
        when: dt.datetime, day: dt.date, name: UserName, anything: Any, free, obj: object
    ) -> None: ...  # type: ignore[no-untyped-def]

    assert parameters_of(f)["properties"] == {
        "when": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "name": {"type": "string"},
        "anything": {},
        "free": {},
        "obj": {},
    }


def test_parameters_with_defaults_are_optional_and_show_the_default() -> None:
    """A parameter with a default is not required; JSON-scalar defaults appear in the schema."""

    def f(
        city: str,
        days: int = 3,
        unit: Unit = Unit.F,
        note: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> None: ...

    assert parameters_of(f) == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "default": 3},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "f"},
            "note": {"type": ["string", "null"], "default": None},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_function_without_parameters_has_an_empty_object_schema() -> None:
    """A function without parameters takes an empty, closed object."""

    def now() -> str:
        return "noon"

    assert parameters_of(now) == {"type": "object", "properties": {}, "additionalProperties": False}


def test_docstring_gives_tool_and_parameter_descriptions() -> None:
    """The prose before the first section describes the tool; Args entries the parameters."""

    def get_weather(city: str, days: int = 1, unit: str = "c") -> str:
        """Get the weather forecast for a city.

        Use it for questions about rain,
        sun and temperature.

        Args:
            city: The city name,
                for example "Paris".
            days (int): How many days ahead.

        Returns:
            The forecast.
        """
        return ""

    built = Tool.from_function(get_weather)
    assert built.description == (
        "Get the weather forecast for a city.\n\nUse it for questions about rain,\n"
        "sun and temperature."
    )
    assert built.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'The city name, for example "Paris".'},
            "days": {"type": "integer", "description": "How many days ahead.", "default": 1},
            "unit": {"type": "string", "default": "c"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_function_without_docstring_has_empty_description() -> None:
    """No docstring means an empty description."""

    def f(x: int) -> None: ...

    assert Tool.from_function(f).description == ""


def test_annotated_string_gives_a_description_before_the_docstring() -> None:
    """Annotated[X, "text"] describes a parameter and wins over the docstring."""

    def f(
        city: Annotated[str, "The city."],
        days: Annotated[int, "Days ahead."] | None = None,
        tags: list[Annotated[str, "One tag."]] | None = None,
    ) -> None:
        """Do it.

        Args:
            city: Not this one.
        """

    assert parameters_of(f)["properties"] == {
        "city": {"type": "string", "description": "The city."},
        "days": {"type": ["integer", "null"], "description": "Days ahead.", "default": None},
        "tags": {
            "type": ["array", "null"],
            "items": {"type": "string", "description": "One tag."},
            "default": None,
        },
    }


def test_injected_parameters_are_left_out_of_the_schema() -> None:
    """user_id, chat_id, ToolContext parameters and an unannotated `context` are not in it."""

    def f(city: str, user_id: str, chat_id: str, context: ToolContext) -> None: ...

    def g(city: str, ctx: ToolContext | None = None) -> None: ...

    def h(city: str, context) -> None: ...  # type: ignore[no-untyped-def]

    expected = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    assert [parameters_of(f), parameters_of(g), parameters_of(h)] == [expected] * 3


def test_parameter_named_context_with_another_type_is_a_model_argument() -> None:
    """`context: str` is an ordinary argument the model supplies."""

    def f(context: str) -> None: ...

    assert parameters_of(f)["properties"] == {"context": {"type": "string"}}


def test_string_annotations_resolve_with_future_import() -> None:
    """Annotations written as strings (the future import) are resolved to their types."""

    def f(point: Point, unit: Unit) -> None: ...

    assert f.__annotations__ == {"point": "Point", "unit": "Unit", "return": "None"}
    assert parameters_of(f)["properties"]["unit"] == {"type": "string", "enum": ["c", "f"]}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def f(*items: str) -> None: ...",
            "Tool 'f': cannot build a schema for *items; declare each argument as a named "
            "parameter, or use Tool.from_dict with an explicit schema",
        ),
        (
            "def f(**options: str) -> None: ...",
            "Tool 'f': cannot build a schema for **options; declare each argument as a named "
            "parameter, or use Tool.from_dict with an explicit schema",
        ),
        (
            "def f(x: int, /) -> None: ...",
            "Tool 'f': parameter 'x' is positional-only, so it cannot be passed by name",
        ),
    ],
)
def test_signatures_that_cannot_take_named_arguments_are_refused(source: str, message: str) -> None:
    """*args, **kwargs and positional-only parameters without default are refused."""
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    assert definition_error(lambda: Tool.from_function(namespace["f"])) == message


def test_unsupported_type_is_refused_naming_the_parameter() -> None:
    """A type with no JSON Schema is a ToolDefinitionError naming the parameter."""

    def f(thing: Unsupported) -> None: ...

    assert definition_error(lambda: Tool.from_function(f)) == (
        "Tool 'f': parameter 'thing': unsupported type Unsupported; supported: str, int, "
        "float, bool, None, Any, Literal, Enum, unions, list, tuple, set, frozenset, "
        "dict[str, X], datetime, date, time, timedelta, UUID, Decimal, pydantic models, attrs "
        "classes, dataclasses and TypedDicts (recursive ones too)"
    )


def test_recursive_type_is_referenced_through_defs() -> None:
    """A class that contains itself stays one definition under $defs, converted at any depth."""

    @tool
    def f(tree: Tree) -> Tree:
        return tree

    assert f.parameters == {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/Tree"}},
        "required": ["tree"],
        "additionalProperties": False,
        "$defs": {
            "Tree": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}},
                "required": ["children"],
                "additionalProperties": False,
            }
        },
    }
    call = f.prepare('{"tree": {"children": [{"children": []}]}}')
    assert call.kwargs == {"tree": Tree(children=[Tree(children=[])])}
    assert prepare_error(f, '{"tree": {"children": [{"children": [1]}]}}') == (
        "Invalid arguments for tool 'f': 'tree.children[0].children[0]' must be object, got integer"
    )


def test_dict_with_non_string_keys_is_refused() -> None:
    """dict keys must be str, since JSON object keys are strings."""

    def f(counts: dict[int, int]) -> None: ...

    assert definition_error(lambda: Tool.from_function(f)) == (
        "Tool 'f': parameter 'counts': dict keys must be str (JSON object keys are strings), "
        "got <class 'int'>"
    )


def test_unresolvable_annotation_is_refused() -> None:
    """A string annotation naming nothing importable is a clear ToolDefinitionError."""

    def f(x: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    assert definition_error(lambda: Tool.from_function(f)) == (
        "Tool 'f': cannot resolve the type hints (NameError: name 'Missing' is not defined); "
        "types used in annotations must be importable from the function's module"
    )


def test_tool_context_nested_in_a_type_is_refused() -> None:
    """ToolContext is injected only as a parameter of its own, never inside a type."""

    def f(contexts: list[ToolContext]) -> None: ...

    assert definition_error(lambda: Tool.from_function(f)) == (
        "Tool 'f': parameter 'contexts': ToolContext can only be injected as a parameter of the "
        "tool itself"
    )


@pytest.mark.parametrize("name", ["<lambda>", "a" * 65, "has space", "dotted.name", ""])
def test_invalid_tool_name_is_refused(name: str) -> None:
    """Names must match ^[a-zA-Z0-9_-]{1,64}$."""

    def f() -> None: ...

    assert definition_error(lambda: Tool.from_function(f, name=name)) == (
        f"Tool {name!r}: invalid tool name: it must match ^[a-zA-Z0-9_-]{{1,64}}$ "
        "(letters, digits, '_' and '-', at most 64 characters)"
    )


@pytest.mark.parametrize("timeout", [0, -1, "5", True, float("nan")])
def test_invalid_timeout_is_refused(timeout: Any) -> None:
    """A timeout must be a positive number of seconds or None."""

    def f() -> None: ...

    assert definition_error(lambda: Tool.from_function(f, timeout=timeout)) == (
        f"Tool 'f': timeout must be a positive number of seconds or None, got {timeout!r}"
    )


def test_bound_methods_partials_and_callable_objects_become_tools() -> None:
    """Bound methods drop self, partials drop bound arguments, callable objects use __call__."""

    class Service:
        def lookup(self, key: str) -> str:
            """Look a key up."""
            return key

    class Greeter:
        def __call__(self, name: str) -> str:
            """Greet someone."""
            return f"hi {name}"

    def scale(value: float, factor: int) -> float:
        return value * factor

    from_method = Tool.from_function(Service().lookup)
    from_partial = Tool.from_function(functools.partial(scale, factor=2), name="double")
    from_object = Tool.from_function(Greeter(), name="greet")
    assert (from_method.name, from_method.description) == ("lookup", "Look a key up.")
    assert from_method.parameters["properties"] == {"key": {"type": "string"}}
    assert from_partial.description == ""
    assert from_partial.parameters["properties"] == {
        "value": {"type": "number"},
        "factor": {"type": "integer", "default": 2},
    }
    assert from_object.parameters["required"] == ["name"]
    assert from_object.description == "Greet someone."


def test_callable_without_name_needs_one() -> None:
    """A partial has no __name__, so name= is required."""
    unnamed = functools.partial(print)
    assert definition_error(lambda: Tool.from_function(unnamed)) == (
        f"Tool '<unnamed>': the callable {unnamed!r} has no __name__; pass name=..."
    )


# --- the decorator, __call__ and to_openai ---------------------------------------------------


def test_bare_decorator_builds_a_tool_named_after_the_function() -> None:
    """@tool returns a Tool named after the function, described by its docstring."""

    @tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    assert isinstance(add, Tool)
    assert (add.name, add.description, add.timeout) == ("add", "Add two numbers.", None)


def test_decorator_with_arguments_overrides_name_description_and_timeout() -> None:
    """@tool(name=..., description=..., timeout=...) sets those fields."""

    @tool(name="plus", description="Sum.", timeout=2.5)
    def add(a: int) -> int:
        """Add."""
        return a

    assert (add.name, add.description, add.timeout) == ("plus", "Sum.", 2.5)


def test_decorated_function_is_still_callable_directly() -> None:
    """Calling the Tool calls the function with the same arguments and returns its result."""

    @tool
    def add(a: int, b: int = 1) -> int:
        return a + b

    assert (add(2), add(2, b=5)) == (3, 7)


def test_from_function_on_a_tool_applies_the_overrides() -> None:
    """Building a tool from a tool keeps it and applies name/description/timeout overrides."""

    @tool
    def add(a: int) -> int:
        """Add."""
        return a

    renamed = Tool.from_function(add, name="plus", timeout=1)
    assert (renamed.name, renamed.description, renamed.timeout) == ("plus", "Add.", 1)
    assert renamed.parameters == add.parameters
    assert renamed.prepare('{"a": 1}').kwargs == {"a": 1}


def test_decorating_a_string_explains_the_name_keyword() -> None:
    """@tool("name") is a mistake with a hint to use name=."""
    assert definition_error(lambda: tool("search")) == (
        "Tool 'search': expected a function, got str; to name a tool write @tool(name='search')"
    )


def test_to_openai_gives_the_chat_completions_tool_format() -> None:
    """to_openai wraps name, description and parameters in a function tool."""

    @tool
    def ping(host: str) -> str:
        """Ping a host."""
        return host

    assert ping.to_openai() == {
        "type": "function",
        "function": {
            "name": "ping",
            "description": "Ping a host.",
            "parameters": {
                "type": "object",
                "properties": {"host": {"type": "string"}},
                "required": ["host"],
                "additionalProperties": False,
            },
        },
    }


def test_to_openai_omits_an_empty_description() -> None:
    """Without a description the function has only name and parameters."""

    @tool
    def ping() -> str:
        return "pong"

    assert ping.to_openai() == {
        "type": "function",
        "function": {
            "name": "ping",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    }


def test_tools_compare_and_hash_by_their_fields() -> None:
    """Two tools built the same way are equal and hash alike."""

    def f(x: int) -> int:
        return x

    assert Tool.from_function(f) == Tool.from_function(f)
    assert hash(Tool.from_function(f)) == hash(Tool.from_function(f))


# --- from_dict -------------------------------------------------------------------------------

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city."},
        "days": {"type": "integer"},
    },
    "required": ["city"],
}


def weather(city: str, days: int = 1, user_id: str | None = None) -> str:
    return f"{city}:{days}:{user_id}"


def test_from_dict_reads_the_openai_shape() -> None:
    """{"type": "function", "function": {...}} gives name, description and parameters."""
    built = Tool.from_dict(
        {
            "function_schema": {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather.",
                    "parameters": WEATHER_PARAMETERS,
                },
            },
            "func": weather,
            "timeout": 5,
        }
    )
    assert built == Tool(
        name="weather",
        description="Weather.",
        parameters=WEATHER_PARAMETERS,
        func=weather,
        timeout=5,
    )


def test_from_dict_reads_the_bare_shape() -> None:
    """{"name", "description", "parameters"} works too, with the name given outside."""
    built = Tool.from_dict(
        {
            "name": "weather",
            "function_schema": {"name": "weather", "parameters": WEATHER_PARAMETERS},
            "func": weather,
        }
    )
    assert (built.name, built.description, built.parameters, built.timeout) == (
        "weather",
        "",
        WEATHER_PARAMETERS,
        None,
    )


def test_from_dict_reads_the_flat_responses_shape() -> None:
    """{"type": "function", "name", "parameters"} (the Responses API shape) is accepted."""
    built = Tool.from_dict(
        {
            "function_schema": {
                "type": "function",
                "name": "weather",
                "parameters": WEATHER_PARAMETERS,
            },
            "func": weather,
        }
    )
    assert built.to_openai() == {
        "type": "function",
        "function": {"name": "weather", "parameters": WEATHER_PARAMETERS},
    }


def test_from_dict_without_parameters_takes_no_arguments() -> None:
    """A function schema without parameters is a tool without arguments."""

    def now() -> str:
        return "noon"

    built = Tool.from_dict({"function_schema": {"name": "now"}, "func": now})
    assert built.parameters == {"type": "object", "properties": {}}
    assert built.prepare("").kwargs == {}


def test_from_dict_copies_the_schema() -> None:
    """Changing the caller's schema afterwards does not change the tool."""
    parameters = json.loads(json.dumps(WEATHER_PARAMETERS))
    built = Tool.from_dict(
        {"function_schema": {"name": "weather", "parameters": parameters}, "func": weather}
    )
    parameters["properties"]["days"]["type"] = "string"
    assert built.parameters == WEATHER_PARAMETERS


def test_from_dict_tools_receive_json_values_as_they_are() -> None:
    """A dict tool's kwargs are the JSON values, with no conversion."""

    def plot(points: Any, scale: Any = 1) -> None: ...

    built = Tool.from_dict(
        {
            "function_schema": {
                "name": "plot",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "points": {"type": "array", "items": {"type": "array"}},
                        "scale": {"type": "number"},
                    },
                },
            },
            "func": plot,
        }
    )
    call = built.prepare('{"points": [[1, 2]], "scale": 2}')
    assert call.kwargs == {"points": [[1, 2]], "scale": 2}
    assert type(call.kwargs["scale"]) is int


def test_from_dict_with_var_keyword_function_accepts_any_property() -> None:
    """A function taking **kwargs accepts every schema property."""

    def handler(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    built = Tool.from_dict(
        {
            "function_schema": {
                "name": "handler",
                "parameters": {"type": "object", "properties": {"a": {}, "b": {}}},
            },
            "func": handler,
        }
    )
    assert built.prepare('{"a": 1}').kwargs == {"a": 1}


def test_from_dict_requires_the_functions_required_parameters() -> None:
    """A function parameter without default is required even if the schema forgot it."""
    built = Tool.from_dict(
        {
            "function_schema": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            "func": weather,
        }
    )
    assert prepare_error(built, "{}") == (
        "Invalid arguments for tool 'weather': missing required argument 'city'"
    )


def test_from_dict_refuses_arguments_the_function_cannot_take() -> None:
    """Without **kwargs, arguments outside the schema are unexpected even if the schema is open."""
    built = Tool.from_dict({"function_schema": _schema(WEATHER_PARAMETERS), "func": weather})
    assert "additionalProperties" not in built.parameters
    assert prepare_error(built, '{"city": "Oslo", "country": "NO"}') == (
        "Invalid arguments for tool 'weather': unexpected argument 'country' "
        "(accepted: 'city', 'days')"
    )


def test_from_dict_context_declared_in_schema_is_a_model_argument() -> None:
    """An unannotated `context` the schema declares is the model's, not injected."""

    def search(query: str, context=None) -> Any:  # type: ignore[no-untyped-def]
        return context

    built = Tool.from_dict(
        {
            "function_schema": {
                "name": "search",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "context": {"type": "string"}},
                },
            },
            "func": search,
        }
    )
    call = built.prepare('{"query": "q", "context": "recent"}')
    assert (call.kwargs, call.ignored) == ({"query": "q", "context": "recent"}, ())


def _schema(parameters: Any, name: str = "weather") -> dict[str, Any]:
    return {"name": name, "parameters": parameters}


def _positional_only(city: str, /) -> None: ...


def _with_context(city: str, context: ToolContext) -> None: ...


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "other", "function_schema": _schema(WEATHER_PARAMETERS), "func": weather},
            "Tool 'other': 'name' 'other' does not match the schema's name 'weather'",
        ),
        (
            {"function_schema": {"parameters": WEATHER_PARAMETERS}, "func": weather},
            "Tool '<unnamed>': no name: give 'name' or a 'name' in the function schema",
        ),
        (
            {"function_schema": _schema(WEATHER_PARAMETERS, "bad name"), "func": weather},
            "Tool 'bad name': invalid tool name: it must match ^[a-zA-Z0-9_-]{1,64}$ "
            "(letters, digits, '_' and '-', at most 64 characters)",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {}, "country": {}}}
                ),
                "func": weather,
            },
            "Tool 'weather': schema property 'country' is not a parameter of the function "
            "(it accepts: city, days)",
        ),
        (
            {
                "function_schema": _schema({"type": "object", "properties": {"days": {}}}),
                "func": weather,
            },
            "Tool 'weather': function parameter 'city' has no default but is missing from the "
            "schema's properties",
        ),
        (
            {"function_schema": _schema({"city": {"type": "string"}}), "func": weather},
            "Tool 'weather': parameters must be a JSON Schema object such as "
            "{'type': 'object', 'properties': {...}}, got {'city': {'type': 'string'}}",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {"type": "str"}}}
                ),
                "func": weather,
            },
            "Tool 'weather': parameters.properties.city.type: unknown JSON Schema type 'str' "
            "(did you mean 'string'?); use one of ['array', 'boolean', 'integer', 'null', "
            "'number', 'object', 'string']",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {}, "user_id": {}}}
                ),
                "func": weather,
            },
            "Tool 'weather': schema property 'user_id' is injected by agentfsm and never taken "
            "from the model; remove it from the schema",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {}, "context": {}}}, "ctx"
                ),
                "func": _with_context,
            },
            "Tool 'ctx': schema property 'context' is injected by agentfsm and never taken "
            "from the model; remove it from the schema",
        ),
        (
            {"function_schema": _schema(WEATHER_PARAMETERS), "func": "weather"},
            "Tool 'weather': 'func' must be callable, got str",
        ),
        (
            {"function_schema": _schema(WEATHER_PARAMETERS)},
            "Tool 'weather': the tool dict has no 'func'",
        ),
        (
            {"name": "weather", "func": weather},
            "Tool 'weather': the tool dict has no 'function_schema'",
        ),
        (
            {"name": "weather", "function_schema": [], "func": weather},
            "Tool 'weather': 'function_schema' must be a mapping, got list",
        ),
        (
            {"function_schema": _schema(WEATHER_PARAMETERS), "func": weather, "desc": "x"},
            "Tool 'weather': unknown key(s) ['desc'] in the tool dict; expected 'name', "
            "'function_schema', 'func' and optionally 'timeout' and 'strict'",
        ),
        (
            {"function_schema": {**_schema(WEATHER_PARAMETERS), "strict": "yes"}, "func": weather},
            "Tool 'weather': 'strict' must be true or false, got 'yes'",
        ),
        (
            {"function_schema": {**_schema(WEATHER_PARAMETERS), "examples": []}, "func": weather},
            "Tool 'weather': unsupported key(s) ['examples'] in the function schema; expected "
            "'name', 'description', 'parameters' and optionally 'strict'",
        ),
        (
            {
                "function_schema": {"type": "tool", "function": _schema(WEATHER_PARAMETERS)},
                "func": weather,
            },
            "Tool 'weather': 'function_schema' must be {'type': 'function', 'function': "
            "{...}} or {'name': ..., 'description': ..., 'parameters': ...}",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {"$ref": "other.json#/A"}}}
                ),
                "func": weather,
            },
            "Tool 'weather': parameters.properties.city: only local references ('#/...') are "
            "supported, got 'other.json#/A'",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {"$ref": "#/$defs/City"}}}
                ),
                "func": weather,
            },
            "Tool 'weather': parameters.properties.city: reference '#/$defs/City' does not resolve",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {}}, "required": ["town"]}
                ),
                "func": weather,
            },
            "Tool 'weather': parameters.required lists 'town', which is not in properties",
        ),
        (
            {
                "function_schema": _schema(
                    {"type": "object", "properties": {"city": {"type": "string", "minLength": "3"}}}
                ),
                "func": weather,
            },
            "Tool 'weather': parameters.properties.city.minLength must be a number, got '3'",
        ),
        (
            {
                "function_schema": _schema({"type": "object", "properties": {"city": {}}}, "p"),
                "func": _positional_only,
            },
            "Tool 'p': parameter 'city' is positional-only, so it cannot be passed by name",
        ),
        (
            {
                "function_schema": _schema({"type": "object", "properties": {"city": 3}}),
                "func": weather,
            },
            "Tool 'weather': parameters.properties.city must be a JSON Schema (a mapping or a "
            "boolean), got int",
        ),
    ],
)
def test_from_dict_definition_errors(spec: dict[str, Any], message: str) -> None:
    """Each fault of a tool dict is a ToolDefinitionError saying what and where."""
    assert definition_error(lambda: Tool.from_dict(spec)) == message


def test_from_dict_refuses_a_non_mapping() -> None:
    """The spec itself must be a mapping."""
    assert definition_error(lambda: Tool.from_dict([("name", "x")])) == (  # type: ignore[arg-type]
        "Tool '<unnamed>': a tool dict must be a mapping, got list"
    )


# --- prepare: parsing and validation ---------------------------------------------------------


@tool
def get_weather(
    city: str,
    days: int = 1,
    unit: Literal["c", "f"] = "c",
    ratio: float = 1.0,
    origin: Point | None = None,
    tags: list[str] | None = None,
    scores: dict[str, float] | None = None,
    user_id: str | None = None,
) -> str:
    """Get the weather."""
    return f"{city} {days} {unit} {user_id}"


@pytest.mark.parametrize("arguments", [None, "", "  \n", "null", {}])
def test_prepare_reads_no_arguments_as_an_empty_object(arguments: Any) -> None:
    """None, an empty string and JSON null mean no arguments."""

    @tool
    def now() -> str:
        return "noon"

    assert now.prepare(arguments) == PreparedCall(arguments={}, kwargs={}, ignored=())


def test_prepare_parses_json_text_and_mappings() -> None:
    """JSON text and an already parsed mapping give the same prepared call."""
    expected = PreparedCall(arguments={"city": "Oslo"}, kwargs={"city": "Oslo"}, ignored=())
    assert get_weather.prepare('{"city": "Oslo"}') == expected
    assert get_weather.prepare({"city": "Oslo"}) == expected


def test_prepare_reads_doubly_encoded_json() -> None:
    """A JSON string holding a JSON object (a common model slip) is read as that object."""
    assert get_weather.prepare(json.dumps('{"city": "Oslo"}')).kwargs == {"city": "Oslo"}


def test_prepare_invalid_json_says_where() -> None:
    """Invalid JSON gives the parser's reason and position."""
    assert prepare_error(get_weather, '{"city": "Oslo"') == (
        "Invalid arguments for tool 'get_weather': not valid JSON (Expecting ',' delimiter at "
        "line 1 column 16); send the arguments as a JSON object"
    )


@pytest.mark.parametrize(
    ("arguments", "kind"), [("[1]", "array"), ("3", "integer"), ("true", "boolean")]
)
def test_prepare_non_object_arguments_are_refused(arguments: str, kind: str) -> None:
    """Arguments must be a JSON object."""
    assert prepare_error(get_weather, arguments) == (
        f"Invalid arguments for tool 'get_weather': the arguments must be a JSON object, got {kind}"
    )


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "missing required argument 'city'"),
        ({"city": "Oslo", "days": "3"}, "'days' must be integer, got string"),
        ({"city": "Oslo", "days": True}, "'days' must be integer, got boolean"),
        ({"city": "Oslo", "days": 3.5}, "'days' must be integer, got number"),
        ({"city": 7}, "'city' must be string, got integer"),
        ({"city": "Oslo", "ratio": "1"}, "'ratio' must be number, got string"),
        (
            {"city": "Oslo", "foo": 1},
            "unexpected argument 'foo' (accepted: 'city', 'days', 'unit', 'ratio', 'origin', "
            "'tags', 'scores')",
        ),
        ({"city": "Oslo", "unit": "k"}, "'unit' must be one of ['c', 'f']"),
        ({"city": "Oslo", "origin": {}}, "missing required argument 'origin.x'"),
        ({"city": "Oslo", "origin": {"x": "1"}}, "'origin.x' must be integer, got string"),
        (
            {"city": "Oslo", "origin": {"x": 1, "z": 0}},
            "unexpected argument 'origin.z' (accepted: 'x', 'y')",
        ),
        ({"city": "Oslo", "origin": [1, 2]}, "'origin' must be object or null, got array"),
        ({"city": "Oslo", "tags": ["a", 2]}, "'tags[1]' must be string, got integer"),
        ({"city": "Oslo", "scores": {"a": "high"}}, "'scores.a' must be number, got string"),
        (
            {"days": "x", "unit": "k"},
            "missing required argument 'city'; 'days' must be integer, got string; "
            "'unit' must be one of ['c', 'f']",
        ),
    ],
)
def test_prepare_messages_tell_the_model_what_to_fix(arguments: Any, problem: str) -> None:
    """Each validation failure has a precise message; several are joined with '; '."""
    assert prepare_error(get_weather, json.dumps(arguments)) == (
        f"Invalid arguments for tool 'get_weather': {problem}"
    )


def test_prepare_accepts_integral_floats_for_integers() -> None:
    """3.0 is an integer (JSON Schema 2020-12): an int parameter receives 3."""
    call = get_weather.prepare('{"city": "a", "days": 3.0}')
    assert call.kwargs == {"city": "a", "days": 3}
    assert type(call.kwargs["days"]) is int


def test_prepare_accepts_integers_and_floats_for_numbers() -> None:
    """3 and 2.5 are numbers; a float parameter receives a float."""
    assert get_weather.prepare('{"city": "a", "ratio": 3}').kwargs == {"city": "a", "ratio": 3.0}
    assert type(get_weather.prepare('{"city": "a", "ratio": 3}').kwargs["ratio"]) is float
    assert get_weather.prepare('{"city": "a", "ratio": 2.5}').kwargs["ratio"] == 2.5


def test_prepare_null_for_an_optional_argument_means_its_default() -> None:
    """null for an optional argument that does not admit null is dropped (the default applies)."""
    call = get_weather.prepare('{"city": "a", "days": null, "origin": null}')
    assert call == PreparedCall(
        arguments={"city": "a", "days": None, "origin": None},
        kwargs={"city": "a", "origin": None},
        ignored=(),
    )


def test_prepare_null_for_a_required_argument_is_refused() -> None:
    """null is no way around a required argument."""
    assert prepare_error(get_weather, '{"city": null}') == (
        "Invalid arguments for tool 'get_weather': 'city' must be string, got null"
    )


def _schema_tool(schema: dict[str, Any]) -> Tool:
    """A dict tool with one argument `x` of the given schema."""

    def check(x: Any = None) -> Any:
        return x

    return Tool.from_dict(
        {
            "function_schema": {
                "name": "check",
                "parameters": {
                    "type": "object",
                    "properties": {"x": schema},
                    "required": ["x"],
                    "$defs": {
                        "node": {
                            "type": "object",
                            "properties": {
                                "value": {"type": "integer"},
                                "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
                            },
                            "required": ["value"],
                        }
                    },
                },
            },
            "func": check,
        }
    )


@pytest.mark.parametrize(
    ("schema", "value", "problem"),
    [
        ({"type": ["integer", "null"]}, None, None),
        ({"type": ["integer", "null"]}, "1", "'x' must be integer or null, got string"),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, "a", None),
        (
            {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            [],
            "'x' must be integer or string, got array",
        ),
        (
            {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]},
            "b",
            "'x' must be one of ['a']",
        ),
        (
            {
                "anyOf": [
                    {"type": "object", "required": ["a"]},
                    {"type": "object", "required": ["b"]},
                ]
            },
            {},
            "'x' does not match any of the allowed forms (missing required argument 'x.a' | "
            "missing required argument 'x.b')",
        ),
        ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 1, None),
        (
            {"oneOf": [{"type": "number"}, {"type": "integer"}]},
            1,
            "'x' matches more than one of the allowed forms",
        ),
        (
            {"allOf": [{"type": "integer"}, {"minimum": 2}]},
            1,
            "'x' must be >= 2",
        ),
        ({"type": "integer", "minimum": 1, "maximum": 3}, 4, "'x' must be <= 3"),
        ({"type": "number", "exclusiveMinimum": 0}, 0, "'x' must be > 0"),
        ({"type": "number", "exclusiveMaximum": 1}, 1, "'x' must be < 1"),
        ({"type": "string", "minLength": 2}, "a", "'x' must be at least 2 characters long"),
        ({"type": "string", "maxLength": 1}, "ab", "'x' must be at most 1 characters long"),
        (
            {"type": "string", "pattern": "^[A-Z]{3}$"},
            "eur",
            "'x' must match the pattern '^[A-Z]{3}$'",
        ),
        ({"type": "array", "minItems": 1}, [], "'x' must have at least 1 item(s), got 0"),
        ({"type": "array", "maxItems": 1}, [1, 2], "'x' must have at most 1 item(s), got 2"),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            [1, 2],
            "'x[1]' must be string, got integer",
        ),
        ({"const": "on"}, "off", "'x' must be 'on'"),
        ({"enum": [1, 2]}, True, "'x' must be one of [1, 2]"),
        ({"enum": [1, 2]}, 1.0, None),
        ({"enum": [[1], {"a": 1}]}, {"a": 1}, None),
        ({"enum": [[1], {"a": 1}]}, [True], "'x' must be one of [[1], {'a': 1}]"),
        (False, 1, "'x' is not allowed"),
        (True, {"any": "thing"}, None),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"a": "1"},
            "'x.a' must be integer, got string",
        ),
        ({"$ref": "#/$defs/node"}, {"value": 1, "next": {"value": 2, "next": None}}, None),
        (
            {"$ref": "#/$defs/node"},
            {"value": 1, "next": {"value": "2"}},
            "'x.next.value' must be integer, got string",
        ),
        ({"type": "integer", "format": "whatever", "title": "ignored"}, 1, None),
    ],
)
def test_validator_covers_the_json_schema_subset(
    schema: Any, value: Any, problem: str | None
) -> None:
    """type lists, anyOf/oneOf/allOf, bounds, enum, const, items, $ref: accepted or explained."""
    target = _schema_tool(schema)
    arguments = json.dumps({"x": value})
    if problem is None:
        assert target.prepare(arguments).kwargs == {"x": value}
    else:
        assert prepare_error(target, arguments) == f"Invalid arguments for tool 'check': {problem}"


# --- prepare: conversion to the annotated types ----------------------------------------------


@tool
def convert_all(
    unit: Unit,
    level: Level,
    point: Point,
    box: Box,
    pair: tuple[int, str],
    many: tuple[Unit, ...],
    labels: set[str],
    frozen: frozenset[Unit],
    when: dt.datetime,
    day: dt.date,
    ratio: float,
    points: list[Point],
    by_name: dict[str, Unit],
    filters: Filters,
    secret: Secret,
    shape: Point | Line,
    maybe: Unit | None = None,
    mode: Literal[Unit.C] | None = None,
) -> None: ...


def test_prepare_converts_to_the_annotated_types() -> None:
    """Enums, attrs classes, dataclasses, tuples, sets, datetimes, floats and unions convert."""
    call = convert_all.prepare(
        {
            "unit": "f",
            "level": 2,
            "point": {"x": 1},
            "box": {"corner": {"x": 2, "y": 3}, "tags": ["a", "b"]},
            "pair": [1, "b"],
            "many": ["c", "f"],
            "labels": ["x", "y"],
            "frozen": ["c"],
            "when": "2024-05-06T07:08:09Z",
            "day": "2024-05-06",
            "ratio": 2,
            "points": [{"x": 1, "y": 2.5}],
            "by_name": {"a": "c"},
            "filters": {"country": "NO", "since": "2024-01-01"},
            "secret": {"token": "t"},
            "shape": {"start": {"x": 0}, "end": {"x": 1}},
            "maybe": "c",
            "mode": "c",
        }
    )
    assert call.kwargs == {
        "unit": Unit.F,
        "level": Level.HIGH,
        "point": Point(x=1, y=0.0),
        "box": Box(corner=Point(x=2, y=3.0), tags={"a", "b"}),
        "pair": (1, "b"),
        "many": (Unit.C, Unit.F),
        "labels": {"x", "y"},
        "frozen": frozenset({Unit.C}),
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 5, 6),
        "ratio": 2.0,
        "points": [Point(x=1, y=2.5)],
        "by_name": {"a": Unit.C},
        "filters": {"country": "NO", "since": dt.date(2024, 1, 1)},
        "secret": Secret(token="t"),
        "shape": Line(start=Point(x=0), end=Point(x=1)),
        "maybe": Unit.C,
        "mode": Unit.C,
    }
    assert type(call.kwargs["ratio"]) is float
    assert type(call.kwargs["box"].corner.y) is float
    assert call.arguments["unit"] == "f"


def test_union_conversion_picks_the_first_member_that_fits() -> None:
    """For Point | Line the value's shape decides the class."""
    call = convert_all.prepare(
        {
            **_minimal_convert_all_arguments(),
            "shape": {"x": 5},
        }
    )
    assert call.kwargs["shape"] == Point(x=5)


def _minimal_convert_all_arguments() -> dict[str, Any]:
    return {
        "unit": "c",
        "level": 1,
        "point": {"x": 1},
        "box": {"corner": {"x": 1}},
        "pair": [1, "a"],
        "many": [],
        "labels": [],
        "frozen": [],
        "when": "2024-01-01T00:00:00",
        "day": "2024-01-01",
        "ratio": 1.5,
        "points": [],
        "by_name": {},
        "filters": {"country": "NO"},
        "secret": {"token": "t"},
        "shape": {"x": 1},
    }


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"secret": {"token": "t", "kind": "basic"}},
            "'secret' is invalid: 'kind' must be in ['api', 'oauth'] (got 'basic')",
        ),
        ({"day": "yesterday"}, "'day' must be a valid date or datetime, input is too short"),
        (
            {"labels": ["x", "x"]},
            "'labels' must not repeat items: items 0 and 1 are equal",
        ),
    ],
)
def test_conversion_failures_are_argument_errors(change: dict[str, Any], problem: str) -> None:
    """A value the type's constructor refuses is reported to the model."""
    arguments = {**_minimal_convert_all_arguments(), **change}
    assert prepare_error(convert_all, arguments) == (
        f"Invalid arguments for tool 'convert_all': {problem}"
    )


# --- prepare: injected names the model sends -------------------------------------------------


def test_prepare_strips_injected_names_the_model_sent() -> None:
    """user_id, chat_id and context from the model are removed and listed in `ignored`."""
    call = get_weather.prepare(
        '{"user_id": "admin", "city": "Oslo", "chat_id": "other", "context": {"x": 1}}'
    )
    assert call == PreparedCall(
        arguments={"city": "Oslo"},
        kwargs={"city": "Oslo"},
        ignored=("user_id", "chat_id", "context"),
    )


def test_prepare_strips_every_tool_context_parameter_name() -> None:
    """A ToolContext parameter under another name cannot be supplied by the model either."""

    @tool
    def f(city: str, ctx: ToolContext) -> str:
        return city

    call = f.prepare('{"city": "a", "ctx": "forged"}')
    assert (call.kwargs, call.ignored) == ({"city": "a"}, ("ctx",))


def test_prepare_keeps_a_context_argument_that_is_a_real_parameter() -> None:
    """`context: str` is the model's to send, so it is not stripped."""

    @tool
    def f(context: str) -> str:
        return context

    assert f.prepare('{"context": "recent"}') == PreparedCall(
        arguments={"context": "recent"}, kwargs={"context": "recent"}, ignored=()
    )


# --- invoke ----------------------------------------------------------------------------------


async def test_invoke_runs_a_sync_function_in_a_worker_thread() -> None:
    """Sync functions run off the event loop's thread."""

    @tool
    def where() -> int:
        return threading.get_ident()

    assert await where.invoke(where.prepare(None), CONTEXT) != threading.get_ident()


async def test_invoke_runs_an_async_function_on_the_loop() -> None:
    """Async functions are awaited on the event loop's thread."""

    @tool
    async def where() -> int:
        return threading.get_ident()

    assert await where.invoke(where.prepare(None), CONTEXT) == threading.get_ident()


async def test_invoke_injects_identity_over_what_the_model_sent() -> None:
    """user_id, chat_id and the ToolContext come from the context, never from the model."""

    @tool
    async def whoami(
        label: str, user_id: str | None, chat_id: str, context: ToolContext
    ) -> dict[str, Any]:
        return {"label": label, "user_id": user_id, "chat_id": chat_id, "context": context}

    call = whoami.prepare('{"label": "x", "user_id": "admin", "chat_id": "c9", "context": 1}')
    assert await whoami.invoke(call, CONTEXT) == {
        "label": "x",
        "user_id": "user-1",
        "chat_id": "chat-1",
        "context": CONTEXT,
    }


async def test_invoke_injects_into_sync_functions_and_dict_tools() -> None:
    """Injection works the same for sync functions registered from a dict."""

    built = Tool.from_dict({"function_schema": _schema(WEATHER_PARAMETERS), "func": weather})
    call = built.prepare('{"city": "Oslo", "user_id": "admin"}')
    assert call.ignored == ("user_id",)
    assert await built.invoke(call, CONTEXT) == "Oslo:1:user-1"


async def test_invoke_detects_async_callable_objects() -> None:
    """An object with an async __call__ is awaited on the loop."""

    class Fetch:
        async def __call__(self, url: str) -> tuple[str, int]:
            return url, threading.get_ident()

    built = Tool.from_function(Fetch(), name="fetch")
    assert await built.invoke(built.prepare('{"url": "u"}'), CONTEXT) == (
        "u",
        threading.get_ident(),
    )


async def test_invoke_awaits_an_awaitable_a_sync_function_returns() -> None:
    """A sync wrapper that returns a coroutine has it awaited."""

    async def inner(x: int) -> int:
        return x * 2

    def wrapper(x: int) -> Any:
        return inner(x)

    built = Tool.from_function(wrapper)
    assert await built.invoke(built.prepare('{"x": 4}'), CONTEXT) == 8


async def test_invoke_times_out_async_functions() -> None:
    """An async tool slower than its timeout raises TimeoutError naming the tool."""

    @tool(timeout=0.01)
    async def stuck() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError) as info:
        await stuck.invoke(stuck.prepare(None), CONTEXT)
    assert str(info.value) == "Tool 'stuck' timed out after 0.01 s"


async def test_invoke_times_out_sync_functions() -> None:
    """A sync tool slower than its timeout raises TimeoutError; its thread is left to finish."""
    release = threading.Event()

    @tool(timeout=0.01)
    def stuck() -> None:
        release.wait(5)

    try:
        with pytest.raises(TimeoutError) as info:
            await stuck.invoke(stuck.prepare(None), CONTEXT)
    finally:
        release.set()
    assert str(info.value) == "Tool 'stuck' timed out after 0.01 s"


async def test_invoke_propagates_the_tools_own_timeout_error_unchanged() -> None:
    """A TimeoutError the tool raises itself is not mistaken for the tool's timeout."""

    @tool(timeout=5)
    async def remote() -> None:
        raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError, match=r"^upstream timed out$"):
        await remote.invoke(remote.prepare(None), CONTEXT)


async def test_invoke_propagates_tool_exceptions_unchanged() -> None:
    """Exceptions from the function reach the caller as they are."""
    error = LookupError("no such city")

    @tool
    def fail() -> None:
        raise error

    with pytest.raises(LookupError) as info:
        await fail.invoke(fail.prepare(None), CONTEXT)
    assert info.value is error


async def test_invoke_passes_converted_arguments() -> None:
    """The function receives the converted kwargs from prepare."""

    @tool
    async def move(point: Point, unit: Unit = Unit.C) -> tuple[Point, Unit]:
        return point, unit

    call = move.prepare('{"point": {"x": 3}, "unit": "f"}')
    assert await move.invoke(call, CONTEXT) == (Point(x=3), Unit.F)


# --- format_result ---------------------------------------------------------------------------


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


@dataclasses.dataclass
class Reading:
    city: str
    unit: Unit


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        ("", ""),
        (None, "null"),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        ({"a": [1, None]}, '{"a": [1, null]}'),
        ([1, "x"], '[1, "x"]'),
        ((1, 2), "[1, 2]"),
        ({3, 1, 2}, "[1, 2, 3]"),
        (frozenset({"b", "a"}), '["a", "b"]'),
        (Point(x=1), '{"x": 1, "y": 0.0}'),
        (Reading("Oslo", Unit.F), '{"city": "Oslo", "unit": "f"}'),
        (Unit.C, "c"),
        (Level.HIGH, "2"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        ({"when": dt.date(2024, 1, 2), "tags": {"x"}}, '{"when": "2024-01-02", "tags": ["x"]}'),
        ({"city": "Zürich"}, '{"city": "Zürich"}'),
        (Opaque(), "opaque!"),
        ({"thing": Opaque()}, '{"thing": "opaque!"}'),
        ({Unit.C: 1}, "{<Unit.C: 'c'>: 1}"),
        (b"raw", "b'raw'"),
    ],
)
def test_format_result(value: Any, text: str) -> None:
    """str verbatim, None as null, the rest as JSON, str() for what JSON cannot hold."""
    assert format_result(value) == text


# --- tools_from_registry ---------------------------------------------------------------------


def test_registry_none_is_no_tools() -> None:
    """None gives an empty tuple."""
    assert tools_from_registry(None) == ()


def test_registry_normalizes_tools_dicts_and_functions() -> None:
    """Tools stay, dicts go through from_dict, functions through from_function, in order."""

    def ping(host: str) -> str:
        return host

    spec = {"function_schema": _schema(WEATHER_PARAMETERS), "func": weather}
    assert tools_from_registry([get_weather, spec, ping]) == (
        get_weather,
        Tool.from_dict(spec),
        Tool.from_function(ping),
    )


def test_registry_refuses_duplicate_names() -> None:
    """Two tools with one name are a ToolDefinitionError naming both positions."""

    def get_weather(city: str) -> str:
        return city

    assert definition_error(
        lambda: tools_from_registry([tools_module.tool(get_weather), get_weather])
    ) == ("Tool 'get_weather': tools[0] and tools[1] have the same name; tool names must be unique")


@pytest.mark.parametrize(("item", "kind"), [(3, "int"), ("ping", "str"), (Point, "type")])
def test_registry_refuses_other_items_naming_index_and_type(item: Any, kind: str) -> None:
    """Anything not a Tool, dict or function is refused with its index and type."""
    assert definition_error(lambda: tools_from_registry([get_weather, item])) == (
        f"Tool 'tools[1]': tools[1] is a {kind}; expected a Tool, a tool dict or a function"
    )


@pytest.mark.parametrize(("registry", "kind"), [(get_weather, "Tool"), ({"a": 1}, "dict")])
def test_registry_refuses_a_single_tool(registry: Any, kind: str) -> None:
    """A single tool instead of a list gets a hint to wrap it."""
    assert definition_error(lambda: tools_from_registry(registry)) == (
        f"Tool 'tools': expected a list of tools, got a single {kind}; wrap it in a list"
    )


def test_module_exports() -> None:
    """The module's public names are pinned."""
    assert sorted(tools_module.__all__) == [
        "PreparedCall",
        "Tool",
        "ToolContext",
        "format_result",
        "tool",
        "tools_from_registry",
    ]


# --- property: whatever passes prepare can be called -----------------------------------------


def _expect(value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise TypeError(f"{value!r} is not {kind}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


@tool
def _scalars(
    name: str,
    count: int = 1,
    ratio: float = 0.5,
    flag: bool = False,
    unit: Unit = Unit.C,
    mode: Literal["a", "b"] | None = None,
    anything: Any = None,
) -> None:
    _expect(name, str)
    _expect(count, int)
    _expect(ratio, float)
    _expect(flag, bool)
    _expect(unit, Unit)
    if mode is not None and mode not in ("a", "b"):
        raise TypeError(mode)


@tool
def _containers(
    tags: list[str],
    pair: tuple[int, str] | None = None,
    labels: frozenset[str] = frozenset(),
    scores: dict[str, float] | None = None,
    levels: set[Level] | None = None,
) -> None:
    for tag in tags:
        _expect(tag, str)
    if pair is not None:
        _expect(pair, tuple)
        _expect(pair[0], int)
        _expect(pair[1], str)
    _expect(labels, frozenset)
    for value in (scores or {}).values():
        _expect(value, float)
    for level in levels or set():
        _expect(level, Level)


@tool
async def _nested(
    origin: Point,
    user_id: str | None,
    boxes: list[Box] | None = None,
    when: dt.date | None = None,
    shape: Point | Line | None = None,
    choice: int | str = 0,
) -> None:
    _expect(origin, Point)
    _expect(origin.x, int)
    _expect(origin.y, float)
    for box in boxes or []:
        _expect(box, Box)
        _expect(box.tags, set)
    if when is not None:
        _expect(when, dt.date)
    if shape is not None:
        _expect(shape, (Point, Line))
    _expect(choice, (int, str))
    _expect(user_id, str)


_words = st.sampled_from(["c", "f", "a", "b", "x", "2024-01-02", "name", ""])
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | _words
    | st.sampled_from([1, 2]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["x", "y", "corner", "tags", "start", "end", "label"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def _values_for(schema: Any) -> st.SearchStrategy[Any]:
    """Values that mostly fit a generated schema (the property needs many that pass)."""
    if "anyOf" in schema:
        return st.one_of([_values_for(branch) for branch in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type")
    if kinds is None:
        return _json_values
    if isinstance(kinds, list):
        return st.one_of([_values_for({**schema, "type": kind}) for kind in kinds])
    if kinds == "string" and schema.get("format") == "date":
        return st.dates().map(dt.date.isoformat)
    if kinds == "array" and "prefixItems" in schema:
        return st.tuples(*map(_values_for, schema["prefixItems"])).map(list)
    if kinds == "array":
        return st.lists(_values_for(schema.get("items", {})), max_size=3)
    if kinds == "object" and "properties" in schema:
        properties = {name: _values_for(sub) for name, sub in schema["properties"].items()}
        required = schema.get("required", [])
        return st.fixed_dictionaries(
            {name: properties[name] for name in required},
            optional={name: value for name, value in properties.items() if name not in required},
        )
    if kinds == "object":
        return st.dictionaries(
            _words, _values_for(schema.get("additionalProperties", {})), max_size=3
        )
    scalars: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(max_size=3),
        "integer": st.integers(),
        "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    return scalars[kinds]


@pytest.mark.parametrize("target", [_scalars, _containers, _nested], ids=lambda t: t.name)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_anything_prepare_accepts_calls_the_function_without_type_error(
    target: Tool, data: st.DataObject
) -> None:
    """Any JSON object that passes prepare calls the function with arguments of its types."""
    arguments = data.draw(_values_for(target.parameters))
    arguments.update(
        data.draw(st.dictionaries(st.sampled_from(["user_id", "context"]), _json_values))
    )
    if data.draw(st.booleans()):  # spoil one argument, or add an unknown one
        arguments[data.draw(st.sampled_from([*target.parameters["properties"], "extra"]))] = (
            data.draw(_json_values)
        )
    try:
        call = target.prepare(json.dumps(arguments))
    except ToolArgumentError:
        return
    asyncio.run(target.invoke(call, CONTEXT))
