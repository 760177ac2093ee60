"""TypeSchema: one Python type's JSON Schema, and JSON checked and converted into that type."""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Generic, Literal, TypeVar, overload

import attrs
from pydantic import TypeAdapter, ValidationError
from pydantic.errors import (
    PydanticInvalidForJsonSchema,
    PydanticSchemaGenerationError,
    PydanticUserError,
)
from pydantic_core import ErrorDetails

from agentfsm.errors import SchemaValidationError, UnsupportedTypeError
from agentfsm.schema._jsonform import generate, tidy
from agentfsm.schema._lowering import Field, UnsupportedError, explain, lower, lowering, object_type
from agentfsm.schema._strict import StrictError, make_strict
from agentfsm.schema._validator import (
    PATH_STYLE,
    Style,
    Validator,
    child,
    compile_schema,
)

__all__ = ["ObjectSchema", "TypeSchema", "object_schema", "pydantic_messages", "type_schema"]

_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]+")
T = TypeVar("T")


@attrs.frozen
class TypeSchema(Generic[T]):
    """A Python type's JSON Schema, and the checks that turn JSON into a value of the type.

    Build one with `type_schema`; a ``TypeSchema[Weather]`` validates into a ``Weather`` (mypy
    knows it when the type is a class). Validation first checks the JSON against
    ``json_schema`` (so messages speak of what the model was shown: ``"3"`` is not an integer,
    ``3.0`` is, extra keys are refused), then converts it with pydantic into the Python type,
    which runs the type's own checks (attrs validators, pydantic validators, date formats).

    Attributes:
        python_type: the type asked for.
        name: a name for the schema valid as an OpenAI ``response_format`` or tool name
            (``^[a-zA-Z0-9_-]{1,64}$``), e.g. ``"Weather"`` or ``"list_Weather"``.
        json_schema: the JSON Schema; in OpenAI's strict form when ``strict``. Recursive
            types keep their definitions under ``$defs``. Shared: copy it before changing it.
        strict: whether ``json_schema`` is in OpenAI's strict form.
    """

    python_type: Any = attrs.field(hash=False)
    name: str
    json_schema: dict[str, Any] = attrs.field(hash=False)
    strict: bool
    _adapter: TypeAdapter[Any] = attrs.field(alias="_adapter", eq=False, repr=False)
    _check: Validator = attrs.field(alias="_check", eq=False, repr=False)

    def validate_json(self, text: str | bytes) -> T:
        """Parse JSON text and return the validated value of the type.

        Args:
            text: the JSON text.

        Returns:
            The value, of ``python_type``.

        Raises:
            SchemaValidationError: the text is not JSON, or does not fit; ``errors`` say why.
        """
        try:
            data = json.loads(text)
        except RecursionError:
            raise SchemaValidationError(("$: nested too deeply to read",), self.name) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = (
                f"{exc.msg} at line {exc.lineno} column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            raise SchemaValidationError((f"$: not valid JSON ({reason})",), self.name) from None
        return self._validate(data, text)

    def validate_python(self, data: Any) -> T:
        """Validate data already parsed from JSON (dicts, lists, str, numbers, bool, None).

        Args:
            data: the parsed JSON.

        Returns:
            The value, of ``python_type``.

        Raises:
            SchemaValidationError: the data does not fit; ``errors`` say why.
        """
        return self._validate(data, None)

    def to_jsonable(self, value: T) -> Any:
        """Turn a value of the type back into JSON-ready data (dicts, lists, str, numbers…).

        Args:
            value: a value of ``python_type``.

        Returns:
            Data ``json.dumps`` accepts and `validate_python` turns back into the value.
        """
        return self._adapter.dump_python(value, mode="json", warnings=False)

    def _validate(self, data: Any, text: str | bytes | None) -> T:
        errors: list[str] = []
        try:
            self._check(data, "$", errors)
        except RecursionError:
            errors = ["$: nested too deeply to check"]
        if errors:
            raise SchemaValidationError(tuple(errors), self.name)
        value: T = convert(self._adapter, data, text, PATH_STYLE, self.name)
        return value


def convert(
    adapter: TypeAdapter[Any],
    data: Any,
    text: str | bytes | None,
    style: Style,
    name: str | None,
) -> Any:
    """Pydantic's conversion of checked JSON data; its refusals as model-readable messages."""
    try:
        if text is None:
            text = json.dumps(data, ensure_ascii=False, allow_nan=True)
        return adapter.validate_json(text)
    except ValidationError as exc:
        raise SchemaValidationError(pydantic_messages(exc.errors(), data, style), name) from None
    except (TypeError, ValueError, RecursionError) as exc:  # data json cannot write
        raise SchemaValidationError(
            (f"{style.subject(style.root)} is invalid: {exc}",), name
        ) from None


def pydantic_messages(errors: list[ErrorDetails], data: Any, style: Style) -> tuple[str, ...]:
    """Pydantic's errors in agentfsm's words: ``'day' must be a valid date …``."""
    messages: list[str] = []
    for error in errors:
        path = style.root
        node = data
        for part in error["loc"]:
            if isinstance(node, Mapping) and isinstance(part, str) and part in node:
                path, node = child(path, part), node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                path, node = f"{path}[{part}]", node[part]
            # anything else is pydantic's name for a union member: not a place in the data
        message = error["msg"]
        kind = error["type"]
        if kind == "agentfsm_init":
            text = f"is invalid: {message}"
        elif kind in ("value_error", "assertion_error") and ", " in message:
            text = f"is invalid: {message.split(', ', 1)[1]}"
        elif message.startswith("Input should be "):
            text = "must be " + message[len("Input should be ") :]
        else:
            text = f"is invalid: {message[:1].lower()}{message[1:]}"
        line = f"{style.subject(path)} {text}"
        if line not in messages:
            messages.append(line)
    return tuple(messages)


@overload
def type_schema(tp: type[T], *, strict: bool = False) -> TypeSchema[T]: ...


@overload
def type_schema(tp: Any, *, strict: bool = False) -> TypeSchema[Any]: ...


def type_schema(tp: Any, *, strict: bool = False) -> TypeSchema[Any]:
    """The JSON Schema of a Python type, and the validator that turns JSON into the type.

    Supported: str, int, float, bool, None, Any, Literal, Enum, Optional and unions, list,
    tuple, set (``uniqueItems``), frozenset, dict[str, X], datetime, date, time, timedelta,
    UUID, Decimal, pydantic models, attrs classes, dataclasses, TypedDicts (``typing`` and
    ``typing_extensions``), recursive ones through ``$defs``, and ``Annotated`` with
    ``pydantic.Field`` constraints and descriptions or a plain string description.

    Results are cached per type.

    Args:
        tp: the type.
        strict: give the schema in OpenAI's strict form (every property required, optional
            ones nullable with default None, ``additionalProperties: false`` everywhere, only
            the keywords strict mode accepts).

    Returns:
        The type's schema.

    Raises:
        UnsupportedTypeError: the type, or a part of it, has no JSON Schema; or, with
            ``strict``, no strict form (an open ``dict[str, X]``, a default other than None,
            a keyword strict mode refuses): the message says which and why.
    """
    try:
        hash(tp)
    except TypeError:
        return build_type_schema(tp, strict=strict)
    return _cached_type_schema(tp, strict)


@functools.lru_cache(maxsize=512)
def _cached_type_schema(tp: Any, strict: bool) -> TypeSchema[Any]:
    return build_type_schema(tp, strict=strict)


def build_type_schema(tp: Any, *, strict: bool) -> TypeSchema[Any]:
    """`type_schema` without the cache."""
    name = schema_name(tp)
    adapter, tidied = _adapt(tp, name, strict=strict, refuse=None)
    schema = _strict_form(tp, name, tidied) if strict else tidied
    check = compile_schema(schema, style=PATH_STYLE, where=name, lint=False)
    return TypeSchema[Any](
        python_type=tp, name=name, json_schema=schema, strict=strict, _adapter=adapter, _check=check
    )


@attrs.frozen
class ObjectSchema:
    """A tool's parameters as one object: what is sent, what is checked, and the converter.

    Attributes:
        sent: the schema the model is shown (OpenAI's strict form when strict).
        checked: the schema the arguments are checked against (in strict form, optional
            parameters stay optional: null or absent means their default).
        adapter: converts checked arguments into the annotated Python types.
    """

    sent: dict[str, Any]
    checked: dict[str, Any]
    adapter: TypeAdapter[Any] = attrs.field(eq=False, repr=False)


def object_schema(
    fields: list[Field],
    *,
    name: str,
    strict: bool,
    refuse: Mapping[Any, str],
    where: Callable[[str], str],
) -> ObjectSchema:
    """The schema of an object of named fields (a tool's parameters).

    Raises:
        UnsupportedError: a field's type has no JSON Schema (or no strict one); ``str()`` names it.
    """
    tp = object_type(fields, label=name, where=where)
    try:
        adapter, tidied = _adapt(tp, name, strict=strict, refuse=refuse)
        if not strict:
            return ObjectSchema(sent=tidied, checked=tidied, adapter=adapter)
        sent = make_strict(tidied, root_optional="nullable")
        checked = make_strict(tidied, root_optional="keep")
    except StrictError as exc:
        raise UnsupportedError(f"cannot be strict: {exc}") from None
    except UnsupportedTypeError as exc:
        raise UnsupportedError(exc.reason) from None
    return ObjectSchema(sent=sent, checked=checked, adapter=adapter)


def _adapt(
    tp: Any, name: str, *, strict: bool, refuse: Mapping[Any, str] | None
) -> tuple[TypeAdapter[Any], dict[str, Any]]:
    """The pydantic adapter of a type and its tidied (not yet strict) JSON Schema."""
    with lowering(refuse):
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(lower(tp))
            generated = generate(adapter.core_schema, strict=strict)
        except UnsupportedError as exc:
            raise UnsupportedTypeError(tp, str(exc)) from None
        except StrictError as exc:
            raise UnsupportedTypeError(tp, f"{name} cannot be strict: {exc}") from None
        except PydanticInvalidForJsonSchema as exc:
            raise UnsupportedTypeError(tp, f"{name} has no JSON Schema: {exc.message}") from None
        except (PydanticSchemaGenerationError, PydanticUserError):
            raise UnsupportedTypeError(tp, str(explain(tp))) from None
    return adapter, tidy(generated)


def _strict_form(tp: Any, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    try:
        return make_strict(schema)
    except StrictError as exc:
        raise UnsupportedTypeError(tp, f"{name} cannot be strict: {exc}") from None


def schema_name(tp: Any) -> str:
    """A name for a type's schema, valid for OpenAI (``Weather``, ``list_Weather``)."""
    name = _NAME_RE.sub("_", _name_of(tp)).strip("_") or "value"
    return name[:64]


def _name_of(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        return _name_of(args[0])
    if tp is None or tp is type(None):
        return "None"
    if origin is typing.Union or origin is types.UnionType:
        return "_or_".join(_name_of(arg) for arg in args)
    if origin is Literal:
        return "Literal"
    if origin is not None:
        base = getattr(origin, "__name__", None) or str(origin)
        return "_".join([base, *(_name_of(arg) for arg in args if arg is not Ellipsis)])
    return getattr(tp, "__name__", None) or str(tp)
