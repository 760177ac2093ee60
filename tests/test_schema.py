"""Tests for agentfsm.schema: every supported type's schema and round trip, errors, strict form."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import typing
import uuid
from typing import Annotated, Any, Literal, Optional, Union

import attrs
import pydantic
import pytest
import typing_extensions

from agentfsm.errors import (
    AgentFSMError,
    ConfigurationError,
    SchemaValidationError,
    UnsupportedTypeError,
)
from agentfsm.schema import TypeSchema, type_schema

# --- types (module level, so string annotations resolve) -------------------------------------


class Unit(enum.Enum):
    C = "c"
    F = "f"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Weather(pydantic.BaseModel):
    """The weather in a city.

    Attributes:
        city: the city's name.
    """

    city: str
    days: Annotated[int, pydantic.Field(ge=1, le=10, description="Days ahead.")]
    unit: Unit
    note: Optional[str] = None  # noqa: UP045 - the old spelling must work too


@attrs.frozen
class Point:
    """A point.

    Attributes:
        x: across.
    """

    x: int
    y: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))


@dataclasses.dataclass
class Reading:
    when: dt.datetime
    point: Point


class Filters(typing.TypedDict):
    country: str
    since: typing_extensions.NotRequired[dt.date]


class ExtFilters(typing_extensions.TypedDict):
    """Filters written with typing_extensions (typing.is_typeddict is False for them)."""

    country: str
    tags: typing_extensions.NotRequired[list[str]]


@attrs.frozen
class Tree:
    value: int
    children: list[Tree]


@dataclasses.dataclass
class Chain:
    value: int
    next: Chain | None = None


class Cat(pydantic.BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int


class Dog(pydantic.BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool


class Pet(pydantic.BaseModel):
    pet: Annotated[Union[Cat, Dog], pydantic.Field(discriminator="kind")]  # noqa: UP007


class Unsupported:
    pass


@dataclasses.dataclass
class Holder:
    thing: Unsupported


UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
WEATHER = {
    "type": "object",
    "description": "The weather in a city.",
    "properties": {
        "city": {"type": "string", "description": "the city's name."},
        "days": {"type": "integer", "description": "Days ahead.", "minimum": 1, "maximum": 10},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "note": {"type": ["string", "null"], "default": None},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
READING: dict[str, Any] = {}  # filled in below, once POINT exists
POINT = {
    "type": "object",
    "description": "A point.",
    "properties": {
        "x": {"type": "integer", "description": "across."},
        "y": {"type": "number", "default": 0.0},
    },
    "required": ["x"],
    "additionalProperties": False,
}

# (type, schema, JSON value, Python value): the schema, and a round trip both ways.
READING.update(
    {
        "type": "object",
        "properties": {"when": {"type": "string", "format": "date-time"}, "point": POINT},
        "required": ["when", "point"],
        "additionalProperties": False,
    }
)

CASES: list[tuple[Any, dict[str, Any], Any, Any]] = [
    (str, {"type": "string"}, "hi", "hi"),
    (int, {"type": "integer"}, 3, 3),
    (float, {"type": "number"}, 2.5, 2.5),
    (bool, {"type": "boolean"}, True, True),
    (None, {"type": "null"}, None, None),
    (Optional[int], {"type": ["integer", "null"]}, None, None),  # noqa: UP045
    (int | str, {"type": ["integer", "string"]}, "x", "x"),
    (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}, "b", "b"),
    (Literal["x", 1], {"type": ["string", "integer"], "enum": ["x", 1]}, 1, 1),
    (Unit, {"type": "string", "enum": ["c", "f"]}, "f", Unit.F),
    (Level, {"type": "integer", "enum": [1, 2]}, 2, Level.HIGH),
    (Unit | None, {"type": ["string", "null"], "enum": ["c", "f", None]}, "c", Unit.C),
    (list[int], {"type": "array", "items": {"type": "integer"}}, [1, 2], [1, 2]),
    (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}, [1], (1,)),
    (
        tuple[int, str],
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        [1, "a"],
        (1, "a"),
    ),
    (
        set[int],
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        [3],
        {3},
    ),
    (
        frozenset[Unit],
        {"type": "array", "items": {"type": "string", "enum": ["c", "f"]}, "uniqueItems": True},
        ["c"],
        frozenset({Unit.C}),
    ),
    (
        dict[str, int],
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"a": 1},
        {"a": 1},
    ),
    (
        dt.datetime,
        {"type": "string", "format": "date-time"},
        "2024-05-06T07:08:09Z",
        dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    ),
    (dt.date, {"type": "string", "format": "date"}, "2024-05-06", dt.date(2024, 5, 6)),
    (dt.time, {"type": "string", "format": "time"}, "07:08:09", dt.time(7, 8, 9)),
    (dt.timedelta, {"type": "string", "format": "duration"}, "PT1M", dt.timedelta(minutes=1)),
    (uuid.UUID, {"type": "string", "format": "uuid"}, str(UUID), UUID),
    (decimal.Decimal, {"type": ["number", "string"]}, "1.10", decimal.Decimal("1.10")),
    (
        Weather,
        WEATHER,
        {"city": "Oslo", "days": 3, "unit": "c", "note": None},
        Weather(city="Oslo", days=3, unit=Unit.C),
    ),
    (Point, POINT, {"x": 1, "y": 2.5}, Point(x=1, y=2.5)),
    (
        Reading,
        READING,
        {"when": "2024-01-02T03:04:05", "point": {"x": 1, "y": 0.0}},
        Reading(dt.datetime(2024, 1, 2, 3, 4, 5), Point(x=1)),
    ),
    (
        Filters,
        {
            "type": "object",
            "properties": {
                "country": {"type": "string"},
                "since": {"type": "string", "format": "date"},
            },
            "required": ["country"],
            "additionalProperties": False,
        },
        {"country": "NO", "since": "2024-01-01"},
        {"country": "NO", "since": dt.date(2024, 1, 1)},
    ),
    (
        ExtFilters,
        {
            "type": "object",
            "description": (
                "Filters written with typing_extensions (typing.is_typeddict is False for them)."
            ),
            "properties": {
                "country": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["country"],
            "additionalProperties": False,
        },
        {"country": "NO", "tags": ["a"]},
        {"country": "NO", "tags": ["a"]},
    ),
    (
        Tree,
        {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
            },
            "required": ["value", "children"],
            "additionalProperties": False,
            "$defs": {
                "Tree": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "integer"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
                    },
                    "required": ["value", "children"],
                    "additionalProperties": False,
                }
            },
        },
        {"value": 1, "children": [{"value": 2, "children": []}]},
        Tree(1, [Tree(2, [])]),
    ),
    (
        Chain,
        {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "next": {"anyOf": [{"$ref": "#/$defs/Chain"}, {"type": "null"}], "default": None},
            },
            "required": ["value"],
            "additionalProperties": False,
            "$defs": {
                "Chain": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "integer"},
                        "next": {
                            "anyOf": [{"$ref": "#/$defs/Chain"}, {"type": "null"}],
                            "default": None,
                        },
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                }
            },
        },
        {"value": 1, "next": {"value": 2, "next": None}},
        Chain(1, Chain(2)),
    ),
    (
        Annotated[int, pydantic.Field(ge=1, le=10, description="How many.")],
        {"type": "integer", "description": "How many.", "minimum": 1, "maximum": 10},
        10,
        10,
    ),
    (
        list[Annotated[str, "One tag."]],
        {"type": "array", "items": {"type": "string", "description": "One tag."}},
        ["a"],
        ["a"],
    ),
    (Point | Reading, {"anyOf": [POINT, READING]}, {"x": 5, "y": 0.0}, Point(x=5)),
]


def _id(case: tuple[Any, ...]) -> str:
    return type_schema(case[0]).name


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_schema_of_each_supported_type(case: tuple[Any, dict[str, Any], Any, Any]) -> None:
    """Each supported type has its JSON Schema: tidy, titles dropped, null folded in."""
    tp, schema, _, _ = case
    assert type_schema(tp).json_schema == schema


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_round_trip_of_each_supported_type(case: tuple[Any, dict[str, Any], Any, Any]) -> None:
    """JSON validates into the Python value, and the value turns back into the same JSON."""
    tp, _, data, value = case
    schema = type_schema(tp)
    assert schema.validate_json(json.dumps(data)) == value
    assert schema.validate_python(data) == value
    assert schema.to_jsonable(value) == data
    assert schema.validate_python(schema.to_jsonable(value)) == value


def test_validated_values_have_the_annotated_types() -> None:
    """Classes, enums, tuples and sets come back as themselves, nested ones too."""
    reading = type_schema(Reading).validate_json(
        '{"when": "2024-01-02T03:04:05", "point": {"x": 1}}'
    )
    assert type(reading) is Reading
    assert type(reading.point) is Point
    assert type(reading.point.y) is float


# --- errors ------------------------------------------------------------------------------------


def _errors(tp: Any, text: str) -> tuple[str, ...]:
    with pytest.raises(SchemaValidationError) as info:
        type_schema(tp).validate_json(text)
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ('{"city": "Oslo", "days": 50, "unit": "c"}', ("$.days: must be <= 10, got 50",)),
        ('{"city": "Oslo", "days": "3", "unit": "c"}', ("$.days: must be integer, got string",)),
        ('{"city": "Oslo", "days": 3.5, "unit": "c"}', ("$.days: must be integer, got number",)),
        (
            '{"city": "Oslo", "days": 3, "unit": "k"}',
            ("$.unit: must be one of ['c', 'f']",),
        ),
        (
            '{"city": "Oslo", "days": 3, "unit": "c", "wind": 1}',
            ("$: unexpected property 'wind' (accepted: 'city', 'days', 'unit', 'note')",),
        ),
        (
            '{"days": true}',
            (
                "$: missing required property 'city'",
                "$: missing required property 'unit'",
                "$.days: must be integer, got boolean",
            ),
        ),
        ("[1]", ("$: must be object, got array",)),
        ('{"city": ', ("$: not valid JSON (Expecting value at line 1 column 10)",)),
    ],
)
def test_errors_name_the_path_and_what_to_fix(text: str, errors: tuple[str, ...]) -> None:
    """Each fault is one "path: message" line a model can act on."""
    assert _errors(Weather, text) == errors


def test_integral_float_is_an_integer() -> None:
    """3.0 is a valid integer (JSON Schema 2020-12) and becomes 3."""
    value = type_schema(Weather).validate_json('{"city": "a", "days": 3.0, "unit": "c"}')
    assert (value.days, type(value.days)) == (3, int)


@pytest.mark.parametrize(
    ("tp", "text", "errors"),
    [
        (Point, '{"x": 1, "y": -1}', ("$: is invalid: 'y' must be >= 0: -1.0",)),
        (dt.date, '"yesterday"', ("$: must be a valid date or datetime, input is too short",)),
        (
            list[Reading],
            '[{"when": "noon", "point": {"x": 1}}]',
            ("$[0].when: must be a valid datetime or date, input is too short",),
        ),
        (
            Pet,
            '{"pet": {"kind": "dog", "lives": 3}}',
            (
                "$.pet: missing required property 'good'",
                "$.pet: unexpected property 'lives' (accepted: 'kind', 'good')",
            ),
        ),
    ],
)
def test_python_side_refusals_are_messages_too(tp: Any, text: str, errors: tuple[str, ...]) -> None:
    """What only Python checks (validators, date formats) reads like a schema error."""
    assert _errors(tp, text) == errors


def test_schema_validation_error_carries_errors_and_name() -> None:
    """SchemaValidationError is a ValueError with the errors and the schema's name."""
    with pytest.raises(SchemaValidationError) as info:
        type_schema(Weather).validate_python({"city": 1, "days": 1, "unit": "c"})
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, AgentFSMError)
    assert (error.errors, error.name) == (("$.city: must be string, got integer",), "Weather")
    assert str(error) == "Invalid Weather: $.city: must be string, got integer"


# --- names, cache, unsupported types ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "name"),
    [
        (Weather, "Weather"),
        (list[Weather], "list_Weather"),
        (dict[str, int], "dict_str_int"),
        (Weather | None, "Weather_or_None"),
        (Annotated[int, "n"], "int"),
        (Literal["a"], "Literal"),
        (tuple[int, ...], "tuple_int"),
    ],
)
def test_names_are_valid_openai_names(tp: Any, name: str) -> None:
    """The schema name is readable and fits ^[a-zA-Z0-9_-]{1,64}$."""
    assert type_schema(tp).name == name


def test_long_names_are_cut_to_64_characters() -> None:
    """A name longer than OpenAI allows is cut."""
    long = enum.Enum("Quarterly" * 8, {"A": "a"})  # type: ignore[misc]
    assert type_schema(list[long]).name == ("list_" + "Quarterly" * 8)[:64]


def test_type_schemas_are_cached() -> None:
    """Asking twice for a type's schema gives the same object."""
    assert type_schema(Weather) is type_schema(Weather)
    assert type_schema(Weather, strict=True) is not type_schema(Weather)


def test_type_schema_is_a_frozen_value() -> None:
    """A TypeSchema is immutable and compares by name, schema and strictness."""
    schema = type_schema(Point)
    assert isinstance(schema, TypeSchema)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        schema.name = "Other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (Unsupported, "unsupported type Unsupported; supported: "),
        (Holder, "field Holder.thing: unsupported type Unsupported; supported: "),
        (dict[int, str], "dict keys must be str (JSON object keys are strings), got <class 'int'>"),
    ],
)
def test_unsupported_types_are_refused_naming_them(tp: Any, message: str) -> None:
    """A type with no JSON Schema is an UnsupportedTypeError (a ConfigurationError) naming it."""
    with pytest.raises(UnsupportedTypeError) as info:
        type_schema(tp)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ConfigurationError)
    assert info.value.type is tp


# --- strict form -------------------------------------------------------------------------------


class Forecast(pydantic.BaseModel):
    """A forecast."""

    city: str
    rain: float | None = None
    tags: set[str]
    pet: Annotated[Union[Cat, Dog], pydantic.Field(discriminator="kind")]  # noqa: UP007


def test_strict_form_requires_everything_and_closes_every_object() -> None:
    """Optional fields stay nullable and become required; sets lose uniqueItems; a tagged
    union becomes anyOf; Literal defaults that can only be themselves are kept required."""
    cat = {
        "type": "object",
        "properties": {"kind": {"type": "string", "enum": ["cat"]}, "lives": {"type": "integer"}},
        "required": ["kind", "lives"],
        "additionalProperties": False,
    }
    dog = {
        "type": "object",
        "properties": {"kind": {"type": "string", "enum": ["dog"]}, "good": {"type": "boolean"}},
        "required": ["kind", "good"],
        "additionalProperties": False,
    }
    assert type_schema(Forecast, strict=True).json_schema == {
        "type": "object",
        "description": "A forecast.",
        "properties": {
            "city": {"type": "string"},
            "rain": {"type": ["number", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "pet": {"anyOf": [cat, dog]},
        },
        "required": ["city", "rain", "tags", "pet"],
        "additionalProperties": False,
    }


def test_strict_form_of_a_recursive_type_keeps_the_root_an_object() -> None:
    """A recursive type's strict schema has an object at its root, with $defs beside it."""
    schema = type_schema(Tree, strict=True).json_schema
    assert (schema["type"], schema["required"], list(schema["$defs"])) == (
        "object",
        ["value", "children"],
        ["Tree"],
    )


def test_strict_validation_requires_every_property() -> None:
    """In strict form an optional field must be sent (null for none)."""
    schema = type_schema(Forecast, strict=True)
    data = {"city": "a", "tags": [], "pet": {"kind": "cat", "lives": 9}}
    assert _strict_errors(schema, data) == ("$: missing required property 'rain'",)
    assert schema.validate_python({**data, "rain": None}).rain is None


def _strict_errors(schema: TypeSchema, data: Any) -> tuple[str, ...]:
    with pytest.raises(SchemaValidationError) as info:
        schema.validate_python(data)
    return info.value.errors


class WithDefault(pydantic.BaseModel):
    days: int = 1


class WithMap(pydantic.BaseModel):
    scores: dict[str, int]


class WithLength(pydantic.BaseModel):
    name: Annotated[str, pydantic.Field(min_length=1)]


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (
            WithDefault,
            "WithDefault cannot be strict: $.days: an optional field (default 1) has no strict "
            "form: strict mode makes every field required; make it required, or type it "
            "'X | None' with default None",
        ),
        (
            Point,
            "Point cannot be strict: Point.y has a default (0.0): OpenAI's strict mode makes "
            "every field required, so the default would never apply; remove it, or type the "
            "field 'X | None' with default None",
        ),
        (
            WithMap,
            "WithMap cannot be strict: $.scores: an open map (dict[str, X], or an object "
            "without declared properties) has no strict form: strict mode needs every key "
            "declared; use a class with named fields, or a list of key/value objects",
        ),
        (
            WithLength,
            "WithLength cannot be strict: $.name: minLength is not accepted by OpenAI's "
            "strict mode",
        ),
        (
            tuple[int, str],
            "tuple_int_str cannot be strict: $: a fixed-length tuple (prefixItems) has no "
            "strict form; use a class with named fields, or tuple[X, ...]",
        ),
        (
            Any,
            "Any cannot be strict: $: accepts any JSON value (Any, object or no annotation); "
            "strict mode needs a declared type",
        ),
    ],
)
def test_what_cannot_be_strict_is_refused_saying_why(tp: Any, message: str) -> None:
    """Open maps, defaults other than None and keywords strict mode refuses are refused."""
    with pytest.raises(UnsupportedTypeError) as info:
        type_schema(tp, strict=True)
    assert str(info.value) == message


def test_strict_schema_uses_only_keywords_strict_mode_accepts() -> None:
    """Every keyword in a strict schema is one OpenAI's strict mode accepts."""
    accepted = {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "description",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
    containers = {"properties", "$defs"}

    def keywords(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            for key, value in node.items():
                found.add(key)
                if key in containers:
                    for sub in value.values():
                        found |= keywords(sub)
                elif key in ("items", "additionalProperties"):
                    found |= keywords(value)
                elif key == "anyOf":
                    for sub in value:
                        found |= keywords(sub)
        return found

    for tp in (Forecast, Tree, Chain, Weather | None, list[Forecast], Pet):
        assert keywords(type_schema(tp, strict=True).json_schema) <= accepted
