"""Python types made ready for pydantic: attrs classes, dataclasses and TypedDicts as objects.

Pydantic knows most types but not attrs classes, and a stdlib dataclass or TypedDict may hold
one. `lower` rewrites a type so that every such class goes through one object builder (a
pydantic typed-dict schema that refuses extra keys, then the class's own constructor), and
``Annotated[X, "text"]`` becomes a description. Everything else is left to pydantic.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import contextvars
import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal

import attrs
import typing_extensions
from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from agentfsm.schema._docstrings import parse_docstring
from agentfsm.schema._jsonform import ObjectInfo, factory_marker
from agentfsm.schema._validator import json_key

__all__ = [
    "NO_DEFAULT",
    "SUPPORTED",
    "Field",
    "UnsupportedError",
    "explain",
    "lower",
    "lowering",
    "object_type",
]

SUPPORTED = (
    "str, int, float, bool, None, Any, Literal, Enum, unions, list, tuple, set, frozenset, "
    "dict[str, X], datetime, date, time, timedelta, UUID, Decimal, pydantic models, attrs "
    "classes, dataclasses and TypedDicts (recursive ones too)"
)
_NONE = type(None)
_EMPTY: Any = inspect.Parameter.empty
_UNION_ORIGINS = (typing.Union, types.UnionType)
_REQUIRED = (typing_extensions.Required, getattr(typing, "Required", None))
_NOT_REQUIRED = (typing_extensions.NotRequired, getattr(typing, "NotRequired", None))
_READ_ONLY = (typing_extensions.ReadOnly, getattr(typing, "ReadOnly", None))
_WRAPPERS = tuple(form for form in (*_REQUIRED, *_NOT_REQUIRED, *_READ_ONLY) if form is not None)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
_AS_LIST = (abc.Iterable, abc.Collection)
_AS_SET = (abc.Set, abc.MutableSet)


class UnsupportedError(Exception):
    """A type with no JSON Schema; ``str()`` names where (``parameter 'x': field Box.y``)."""

    def __init__(self, reason: str, context: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.context = context

    def within(self, where: str) -> UnsupportedError:
        """The same fault, one level further out."""
        return UnsupportedError(self.reason, (where, *self.context))

    def __str__(self) -> str:
        return ": ".join((*self.context, self.reason))


@attrs.frozen
class Field:
    """One field of an object agentfsm builds (a class's field, or a tool parameter).

    Attributes:
        name: the JSON name, also the constructor keyword.
        hint: the type.
        required: whether the JSON object must have it.
        default: the default (`factory_marker()` for a factory), or `NO_DEFAULT`.
        description: the field's description from a docstring, if any.
    """

    name: str
    hint: Any
    required: bool
    default: Any  # NO_DEFAULT when there is none
    description: str | None = None


NO_DEFAULT: Any = attrs.NOTHING  # a field without a default (pass it explicitly)

_refused: contextvars.ContextVar[Mapping[Any, str] | None] = contextvars.ContextVar(
    "agentfsm_refused", default=None
)
_building: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "agentfsm_building", default=()
)


@contextlib.contextmanager
def lowering(refuse: Mapping[Any, str] | None = None) -> Iterator[None]:
    """The scope of one type's schema build; ``refuse`` maps types to why they are refused."""
    token = _refused.set(refuse or {})
    try:
        yield
    finally:
        _refused.reset(token)


def lower(hint: Any) -> Any:
    """The type rewritten so pydantic validates it as agentfsm means it.

    Raises:
        UnsupportedError: a type that has no JSON Schema here.
    """
    if hint is _EMPTY or hint is Any or hint is object:
        return Any
    if hint is None or hint is _NONE:
        return None
    with contextlib.suppress(TypeError):  # an unhashable hint is refused by nobody
        reason = (_refused.get() or {}).get(hint)
        if reason is not None:
            raise UnsupportedError(reason)
    if isinstance(hint, (str, typing.ForwardRef)):
        raise UnsupportedError(f"unresolved annotation {hint!r}")
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return lower(supertype)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        metadata = [_Described(m) if isinstance(m, str) else m for m in hint.__metadata__]
        parameters = (lower(args[0]), *metadata)
        return Annotated[parameters]
    if origin in _UNION_ORIGINS:
        return typing.Union[tuple(lower(arg) for arg in args)]  # noqa: UP007 - built from a tuple
    if origin is Literal:
        return _literal(hint, args)
    if origin is not None and origin in _WRAPPERS:
        return lower(args[0])
    if isinstance(hint, type) and origin is None:
        if issubclass(hint, enum.Enum):
            return hint
        if hint in _AS_LIST:
            return list  # pydantic would hand out a one-shot iterator
        if hint in _AS_SET:
            return set
        if attrs.has(hint):
            return Annotated[hint, _ClassObject(hint)]
        if typing_extensions.is_typeddict(hint):
            return Annotated[hint, _ClassObject(hint)]
        if dataclasses.is_dataclass(hint) and not hasattr(hint, "__pydantic_fields__"):
            return Annotated[hint, _ClassObject(hint)]
        return hint
    if origin in _MAPPINGS:
        if args:
            _check_key(args[0])
            return dict[lower(args[0]), lower(args[1])]  # type: ignore[misc]
        return dict
    if origin is tuple:
        if not args or args == ((),):
            return hint
        return tuple[tuple(arg if arg is Ellipsis else lower(arg) for arg in args)]  # type: ignore[misc]
    if origin in _AS_LIST or origin in (list, abc.Sequence, abc.MutableSequence):
        return (list if origin in _AS_LIST else origin)[lower(args[0])] if args else list
    if origin in _AS_SET or origin in (set, frozenset):
        return (set if origin in _AS_SET else origin)[lower(args[0])] if args else set
    return hint


def _check_key(key: Any) -> None:
    base = key
    while True:
        if typing.get_origin(base) is Annotated:
            base = typing.get_args(base)[0]
        elif getattr(base, "__supertype__", None) is not None:
            base = base.__supertype__
        else:
            break
    if base is Any or (isinstance(base, type) and issubclass(base, str)):
        return
    if typing.get_origin(base) is Literal and all(
        isinstance(arg, str) for arg in typing.get_args(base)
    ):
        return
    raise UnsupportedError(f"dict keys must be str (JSON object keys are strings), got {key}")


def _literal(hint: Any, args: tuple[Any, ...]) -> Any:
    """Literal[Color.RED] takes the member's value too, as JSON can only send the value."""
    members = {json_key(arg.value): arg for arg in args if isinstance(arg, enum.Enum)}
    if not members:
        return hint

    def to_member(value: Any) -> Any:
        try:
            return members.get(json_key(value), value)
        except TypeError:
            return value

    return Annotated[hint, BeforeValidator(to_member)]


class _Described:
    """``Annotated[X, "text"]``: the text describes X in the schema."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {**handler(schema), "description": self.text}


class _Object:
    """An object with named fields, validated as a closed typed dict, then built.

    Attributes:
        key: what identifies it while building (recursion turns into a reference).
        ref: the core-schema reference of its definition.
    """

    def __init__(
        self,
        *,
        key: Any,
        ref: str,
        label: str,
        fields: Callable[[], tuple[list[Field], ObjectInfo]],
        build: Callable[..., Any] | None,
        owner: type | None,
        where: Callable[[str], str],
    ) -> None:
        self.key = key
        self.ref = ref
        self.label = label
        self._fields = fields
        self._build = build
        self._owner = owner
        self._where = where

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        if self.key in _building.get():
            return core_schema.definition_reference_schema(self.ref)
        token = _building.set((*_building.get(), self.key))
        try:
            fields, info = self._fields()
            typed = {
                field.name: core_schema.typed_dict_field(
                    self._field_schema(field, handler), required=field.required
                )
                for field in fields
            }
        finally:
            _building.reset(token)
        build = self._build
        if build is None:
            return core_schema.typed_dict_schema(
                typed, extra_behavior="forbid", metadata={"agentfsm": info}, ref=self.ref
            )
        schema = core_schema.typed_dict_schema(
            typed, extra_behavior="forbid", metadata={"agentfsm": info}
        )
        owner = self._owner
        names = [field.name for field in fields]
        attributes = _attribute_names(owner, names) if owner is not None else {}

        def construct(values: dict[str, Any]) -> Any:
            try:
                return build(**values)
            except (TypeError, ValueError) as exc:
                raise PydanticCustomError(
                    "agentfsm_init", "{reason}", {"reason": _reason(exc)}
                ) from None

        def serialize(value: Any, serializer: Any) -> Any:
            if owner is not None and isinstance(value, owner):
                value = {name: getattr(value, attributes[name]) for name in names}
            return serializer(value)

        return core_schema.no_info_after_validator_function(
            construct,
            schema,
            ref=self.ref,
            serialization=core_schema.wrap_serializer_function_ser_schema(serialize, schema=schema),
        )

    def _field_schema(self, field: Field, handler: GetCoreSchemaHandler) -> CoreSchema:
        try:
            return handler.generate_schema(lower(field.hint))
        except UnsupportedError as exc:
            raise exc.within(self._where(field.name)) from None
        except (PydanticSchemaGenerationError, PydanticUserError):
            raise explain(field.hint).within(self._where(field.name)) from None


def _attribute_names(owner: type, names: list[str]) -> dict[str, str]:
    """JSON name → attribute name (an attrs field ``_token`` is passed and shown as ``token``)."""
    if attrs.has(owner):
        by_alias = {field.alias: field.name for field in attrs.fields(owner)}
        return {name: by_alias.get(name, name) for name in names}
    return {name: name for name in names}


def _reason(exc: Exception) -> str:
    # attrs validators raise ValueError(message, attribute, ...): the message is what counts.
    if len(exc.args) > 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


class _ClassObject(_Object):
    """An attrs class, a stdlib dataclass or a TypedDict as an object."""

    def __init__(self, cls: type) -> None:
        is_typeddict = typing_extensions.is_typeddict(cls)
        super().__init__(
            key=cls,
            ref=f"{cls.__module__}.{cls.__qualname__}:{id(cls)}:object",
            label=cls.__qualname__,
            fields=lambda: _class_fields(cls),
            build=None if is_typeddict else cls,
            owner=None if is_typeddict else cls,
            where=lambda name: f"field {cls.__qualname__}.{name}",
        )


def object_type(fields: list[Field], *, label: str, where: Callable[[str], str]) -> Any:
    """A type whose values are dicts of these fields (a tool's parameters).

    In strict form its optional fields become nullable, null standing for their default.
    """
    info = ObjectInfo(
        label=label,
        description=None,
        field_docs={f.name: f.description for f in fields if f.description},
        defaults={f.name: f.default for f in fields if f.default is not NO_DEFAULT},
        defaults_may_be_null=True,
    )
    key = object()
    marker = _Object(
        key=key,
        ref=f"agentfsm.parameters:{id(key)}",
        label=label,
        fields=lambda: (fields, info),
        build=None,
        owner=None,
        where=where,
    )
    return Annotated[dict[str, Any], marker]


def _class_fields(cls: type) -> tuple[list[Field], ObjectInfo]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError for undefined names, TypeError, SyntaxError…
        raise UnsupportedError(
            f"cannot resolve the type hints of {cls.__qualname__} ({type(exc).__name__}: {exc})"
        ) from None
    doc = cls.__dict__.get("__doc__")
    if isinstance(doc, str) and doc.startswith(f"{cls.__name__}("):
        doc = None  # the signature dataclasses write when there is no docstring
    parsed = parse_docstring(doc if isinstance(doc, str) else None)
    fields = [
        attrs.evolve(
            field,
            description=parsed.attributes.get(field.name)
            or parsed.attributes.get(f"_{field.name}"),
        )
        for field in _raw_fields(cls, hints)
    ]
    info = ObjectInfo(
        label=cls.__qualname__,
        description=parsed.description or None,
        field_docs={f.name: f.description for f in fields if f.description},
        defaults={f.name: f.default for f in fields if f.default is not NO_DEFAULT},
    )
    return fields, info


def _raw_fields(cls: type, hints: Mapping[str, Any]) -> list[Field]:
    if attrs.has(cls):
        return [
            Field(
                name=field.alias,
                hint=hints.get(field.name, field.type if field.type is not None else Any),
                required=field.default is attrs.NOTHING,
                default=(
                    factory_marker()
                    if isinstance(field.default, attrs.Factory)  # type: ignore[arg-type]
                    else NO_DEFAULT
                    if field.default is attrs.NOTHING
                    else field.default
                ),
            )
            for field in attrs.fields(cls)
            if field.init
        ]
    if dataclasses.is_dataclass(cls):
        missing = dataclasses.MISSING
        return [
            Field(
                name=field.name,
                hint=hints.get(field.name, Any),
                required=field.default is missing and field.default_factory is missing,
                default=(
                    field.default
                    if field.default is not missing
                    else factory_marker()
                    if field.default_factory is not missing
                    else NO_DEFAULT
                ),
            )
            for field in dataclasses.fields(cls)
            if field.init
        ]
    # A TypedDict: __required_keys__ misses NotRequired written in string annotations.
    required_keys = getattr(cls, "__required_keys__", frozenset(hints))
    fields = []
    for key, hint in hints.items():
        required = key in required_keys
        wrapped = hint
        while typing.get_origin(wrapped) in _WRAPPERS and typing.get_origin(wrapped) is not None:
            origin = typing.get_origin(wrapped)
            if origin in _REQUIRED:
                required = True
            elif origin in _NOT_REQUIRED:
                required = False
            wrapped = typing.get_args(wrapped)[0]
        fields.append(Field(name=key, hint=wrapped, required=required, default=NO_DEFAULT))
    return fields


def explain(hint: Any) -> UnsupportedError:
    """Why pydantic refused a type: the first part of it that has no schema."""
    from pydantic import TypeAdapter

    for leaf in _leaves(hint):
        try:
            TypeAdapter(lower(leaf))
        except (PydanticSchemaGenerationError, PydanticUserError):
            return UnsupportedError(f"unsupported type {_type_name(leaf)}; supported: {SUPPORTED}")
        except Exception:  # a leaf that fails otherwise is not the culprit
            continue
    return UnsupportedError(f"unsupported type {_type_name(hint)}; supported: {SUPPORTED}")


def _leaves(hint: Any) -> Iterator[Any]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Annotated:
        args = args[:1]
    elif typing.get_origin(hint) is Literal:
        args = ()
    for arg in args:
        if arg is not Ellipsis:
            yield from _leaves(arg)
    if not args:
        yield hint


def _type_name(hint: Any) -> str:
    return hint.__qualname__ if isinstance(hint, type) else repr(hint)
