"""Serialization of conversations: the one cattrs converter, ``dumps`` / ``loads``, migrations.

``loads`` reads what a store holds, which may have been written by an older agentfsm, edited
by hand, or corrupted: whatever the payload, it returns a conversation that ``step`` can run
or raises `SerializationError` naming the path of the first fault. Values are read strictly
(``null`` is not the string ``"None"``, ``"false"`` is not ``True``), and the conversation
must be consistent, not only well typed: its phase is where its transition log ends, tool
results follow their calls, and its indices point into its messages and requests.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.strategies import configure_tagged_union
from cattrs.v import format_exception

from agentfsm._indices import Indices
from agentfsm.context.counting import _STORED_COUNTS, _pack_counts
from agentfsm.errors import InvalidHistoryError, SerializationError
from agentfsm.messages import (
    AssistantMessage,
    AudioPart,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    RawPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    part_from_openai,
)
from agentfsm.state import (
    SCHEMA_VERSION,
    Conversation,
    Phase,
    RequestRecord,
    StopReason,
    TransitionRecord,
)

__all__ = ["dumps", "loads", "structure", "unstructure"]

_converter = cattrs.Converter(forbid_extra_keys=True)  # defaults written out: a stored
# payload must not change meaning if a default changes one day.


# --------------------------------------------------------------------------- strict values


class _ValueRefusedError(ValueError):
    """A value the converter does not take; the message says why."""


def _kind(value: object) -> str:
    """What a JSON value is, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}" if abs(value) < 10**40 else "a number of over 40 digits"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


_INT_LIMIT = 2**63  # ids, counters and versions fit a signed 64-bit column
_DECIMAL_EXPONENT_LIMIT = 1_000  # far beyond money, far within decimal's default context


def _member(value: Any, cls: type[enum.Enum]) -> Any:
    try:
        return cls(value)
    except ValueError:
        names = ", ".join(str(m.value) for m in cls)
        raise _ValueRefusedError(f"expected one of {names}, got {_kind(value)}") from None


def _str(value: Any, cls: type) -> str:
    if issubclass(cls, enum.Enum):  # Phase, StopReason: the hook of str takes str enums too
        member: str = _member(value, cls)
        return member
    if isinstance(value, str):
        return value
    raise _ValueRefusedError(f"expected a string, got {_kind(value)}")


def _bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise _ValueRefusedError(f"expected true or false, got {_kind(value)}")


def _int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if -_INT_LIMIT <= value < _INT_LIMIT:
            return value
        raise _ValueRefusedError(f"expected an integer within 64 bits, got {_kind(value)}")
    raise _ValueRefusedError(f"expected an integer, got {_kind(value)}")


def _float(value: Any, _: type) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            pass
        else:
            if math.isfinite(number):
                return number
    raise _ValueRefusedError(f"expected a finite number, got {_kind(value)}")


def _decimal(value: Any, _: type) -> Decimal:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            pass
        else:
            if number.is_finite() and abs(number.adjusted()) <= _DECIMAL_EXPONENT_LIMIT:
                return number
    raise _ValueRefusedError(f"expected a finite decimal number, got {_kind(value)}")


_INDEX = re.compile(r"[0-9]{1,18}")


def _indices(value: Any, _: type) -> dict[int, int]:
    """``Mapping[int, int]`` by message index: JSON writes the keys as strings."""
    if not isinstance(value, Mapping):
        raise _ValueRefusedError(f"expected an object, got {_kind(value)}")
    indices: dict[int, int] = {}
    for key, item in value.items():
        if isinstance(key, str) and _INDEX.fullmatch(key):
            key = int(key)
        indices[_int(key, int)] = _int(item, int)
    return indices


_converter.register_unstructure_hook(Decimal, str)
_converter.register_structure_hook(str, _str)
_converter.register_structure_hook(bool, _bool)
_converter.register_structure_hook(int, _int)
_converter.register_structure_hook(float, _float)
_converter.register_structure_hook(Decimal, _decimal)
_converter.register_structure_hook_func(lambda cls: cls == Mapping[int, int], _indices)


def _is_sequence(cls: Any) -> bool:
    args = get_args(cls)
    return get_origin(cls) is tuple and len(args) == 2 and args[1] is Ellipsis


def _sequence_hook(cls: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
    """``tuple[T, ...]`` from a JSON list only (not from a string's characters or an
    object's keys), each item's fault reported at its index."""
    item_type = get_args(cls)[0]

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise _ValueRefusedError(f"expected a list, got {_kind(value)}")
        items, errors = [], []
        for i, item in enumerate(value):
            try:
                items.append(_converter.structure(item, item_type))
            except Exception as error:
                note = IterableValidationNote(f"Structuring {cls} @ index {i}", i, item_type)
                # Python 3.10 has no add_note(); cattrs reads __notes__ for the path.
                error.__notes__ = [*getattr(error, "__notes__", []), note]  # type: ignore[attr-defined]
                errors.append(error)
        if errors:
            raise IterableValidationError(f"While structuring {cls!r}", errors, cls)
        return tuple(items)

    return structure


def _object_hook(cls: type) -> Callable[[Any, Any], Any]:
    """An attrs class from a JSON object only."""
    structure_fields: Callable[[Any, Any], Any] = _converter.gen_structure_attrs_fromdict(cls)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _ValueRefusedError(f"expected an object, got {_kind(value)}")
        return structure_fields(value, cls)

    return structure


_converter.register_structure_hook_factory(_is_sequence, _sequence_hook)
_converter.register_structure_hook_factory(attrs.has, _object_hook)


# --------------------------------------------------------------------------- tagged unions


def _tagged(union: Any, tag: str, tags: Mapping[type, str], *, counted: bool = False) -> None:
    """Messages and content parts carry their kind under ``tag``; a payload whose tag is
    missing or unknown is refused saying which tags there are. ``counted``: the objects may
    carry their token counts under ``"tokens"`` (messages)."""
    configure_tagged_union(union, _converter, tag_generator=tags.__getitem__, tag_name=tag)
    by_tag = {name: cls for cls, name in tags.items()}
    known = ", ".join(by_tag)
    skipped = {tag, _TOKENS} if counted else {tag}

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _ValueRefusedError(f"expected an object, got {_kind(value)}")
        name = value.get(tag)
        cls = by_tag.get(name) if isinstance(name, str) else None
        if cls is None:
            raise _ValueRefusedError(f"{tag} must be one of {known}, got {_kind(name)}")
        made: Any = _converter.structure({k: v for k, v in value.items() if k not in skipped}, cls)
        if counted and _TOKENS in value:
            object.__setattr__(made, "_tokens", _tokens_in(value[_TOKENS]))
        return made

    _converter.register_structure_hook(union, structure)


# --------------------------------------------------------------------------- token counts

_TOKENS = "tokens"


def _tokens_in(value: Any) -> str:
    """A message's stored token counts, ``"o200k_base:57:50"`` (encoding, total, content;
    several joined by ``;``), kept as they are until a counter reads them (see
    agentfsm.messages). A counter with another encoding ignores them."""
    if value.__class__ is str and _STORED_COUNTS.fullmatch(value):
        text: str = value
        return text
    raise _ValueRefusedError(f"tokens must be counts as encoding:total:content, got {_kind(value)}")


_tokens_out = _pack_counts


# --------------------------------------------------------------------------- selected indices


def _selected(value: Any, _: Any) -> Indices:
    """A window's selected indices: a list of indices and ``[start, stop]`` runs (what
    ``range(start, stop)`` holds). Kept item for item, so that the consistency check can
    name the item at fault; `loads` merges them once checked."""
    if not isinstance(value, (list, tuple)):
        raise _ValueRefusedError(f"expected a list, got {_kind(value)}")
    runs: list[tuple[int, int]] = []
    errors: list[Exception] = []
    for i, item in enumerate(value):
        try:
            if isinstance(item, (list, tuple)):
                if len(item) != 2:
                    raise _ValueRefusedError(
                        f"expected an index or a [start, stop] pair, got a list of {len(item)}"
                    )
                runs.append((_int(item[0], int), _int(item[1], int)))
            else:
                index = _int(item, int)
                runs.append((index, index + 1))
        except _ValueRefusedError as error:
            note = IterableValidationNote(f"Structuring selected @ index {i}", i, int)
            error.__notes__ = [note]  # type: ignore[attr-defined]
            errors.append(error)
    if errors:
        raise IterableValidationError("While structuring selected", errors, Indices)
    return Indices._unmerged(tuple(runs))


def _selected_out(indices: Indices) -> list[Any]:
    return [a if b == a + 1 else [a, b] for a, b in indices.runs]


_converter.register_structure_hook(Indices, _selected)
_converter.register_unstructure_hook(Indices, _selected_out)


_PART_TAGS: Mapping[type, str] = {
    TextPart: "text",
    ImagePart: "image",
    AudioPart: "audio",
    FilePart: "file",
    RawPart: "raw",
}
_tagged(ContentPart, "type", _PART_TAGS)


def _content(value: Any, _: Any) -> str | tuple[ContentPart, ...]:
    if isinstance(value, str):
        return value
    if not isinstance(value, (list, tuple)):
        raise _ValueRefusedError(
            f"expected a string or a list of content parts, got {_kind(value)}"
        )
    parts: tuple[ContentPart, ...] = _converter.structure(value, tuple[ContentPart, ...])
    return parts


_converter.register_structure_hook(str | tuple[ContentPart, ...], _content)
_converter.register_unstructure_hook(
    str | tuple[ContentPart, ...],
    lambda value: (
        value if isinstance(value, str) else _converter.unstructure(value, tuple[ContentPart, ...])
    ),
)
_ROLE_TAGS: Mapping[type, str] = {
    SystemMessage: "system",
    UserMessage: "user",
    AssistantMessage: "assistant",
    ToolMessage: "tool",
}
_tagged(Message, "role", _ROLE_TAGS, counted=True)  # after the content hook: UserMessage's
# fields need it


# --------------------------------------------------------------------------- fast paths
#
# The converter above reports every fault with its path, which costs: each value goes through
# a hook. What a store holds is nearly always well formed, so a conversation is first read
# by straight-line functions generated from the classes' fields, which check each value's
# exact JSON type and give up (`_SlowPathError`) at anything unusual; the converter then
# reads the payload again and says what is wrong, or accepts what the fast path was too
# strict for. The fast path never accepts what the converter refuses: it takes only exact
# types, every field present, no other key. Writing is generated the same way (as the
# converter writes: fields in order, defaults written out).


class _SlowPathError(Exception):
    """The fast path does not take this payload: the converter decides."""


_ABSENT = object()


def _fast_decimal(value: Any) -> Decimal:
    try:
        return _decimal(value, Decimal)
    except _ValueRefusedError:
        raise _SlowPathError from None


def _fast_parts(value: Any) -> tuple[ContentPart, ...]:
    """Content parts (multimodal messages are few): through JSON and the converter."""
    if value.__class__ is not list:
        raise _SlowPathError
    data = json.loads(json.dumps(value, allow_nan=False))  # a copy that is JSON data
    parts: tuple[ContentPart, ...] = _converter.structure(data, tuple[ContentPart, ...])
    return parts


_PHASES = {member.value: member for member in Phase}
_STOP_REASONS = {member.value: member for member in StopReason}


def _check(kind: Any, var: str, helpers: dict[str, Any]) -> list[str]:
    """Lines that check (and convert) ``var`` of type ``kind`` in a generated function."""
    optional = False
    args = get_args(kind)
    if type(None) in args and len(args) == 2:
        optional, kind = True, next(a for a in args if a is not type(None))
    lines: list[str]
    if kind is str:
        lines = [f"if {var}.__class__ is not str: raise _SlowPathError"]
    elif kind is bool:
        lines = [f"if {var} is not True and {var} is not False: raise _SlowPathError"]
    elif kind is int:
        lines = [
            f"if {var}.__class__ is not int or not -_LIMIT <= {var} < _LIMIT: raise _SlowPathError"
        ]
    elif kind is float:  # NaN and infinities give NaN; ints go the converter's way
        lines = [f"if {var}.__class__ is not float or {var} - {var} != 0.0: raise _SlowPathError"]
    elif kind is Decimal:
        lines = [f"{var} = _fast_decimal({var})"]
    elif kind in (Phase, StopReason):
        table = "_PHASES" if kind is Phase else "_STOP_REASONS"
        lines = [
            f"{var} = {table}.get({var}) if {var}.__class__ is str else None",
            f"if {var} is None: raise _SlowPathError",
        ]
    elif kind == str | tuple[ContentPart, ...]:
        lines = [f"if {var}.__class__ is not str: {var} = _fast_parts({var})"]
    elif kind == tuple[Message, ...]:
        lines = [
            f"if {var}.__class__ is not list: raise _SlowPathError",
            f"{var} = tuple(map(_read_message, {var}))",
        ]
    elif kind == tuple[str, ...]:
        lines = [
            f"if {var}.__class__ is not list: raise _SlowPathError",
            f"for x in {var}:",
            "    if x.__class__ is not str: raise _SlowPathError",
            f"{var} = tuple({var})",
        ]
    elif kind == Mapping[str, Any]:  # JSON data (the caller's dict went through JSON)
        lines = [f"if {var}.__class__ is not dict: raise _SlowPathError"]
    elif kind == Mapping[int, int]:
        lines = [f"{var} = _indices({var}, None)"]
    elif kind is Indices:
        lines = [f"{var} = _selected({var}, None)"]
    elif _is_sequence(kind) and attrs.has(get_args(kind)[0]):
        item = _fast_structure_fn(get_args(kind)[0], helpers)
        lines = [
            f"if {var}.__class__ is not list: raise _SlowPathError",
            f"{var} = tuple(map({item}, {var})) if {var} else ()",
        ]
    elif attrs.has(kind):
        lines = [f"{var} = {_fast_structure_fn(kind, helpers)}({var})"]
    else:  # a new field type: teach the fast path, or the converter reads it (slowly)
        raise TypeError(f"no fast structuring of {kind!r}")
    if optional:
        return [f"if {var} is not None:", *(f"    {line}" for line in lines)]
    return lines


def _plain(cls: type) -> bool:
    """``cls`` is a slotted attrs class whose ``__init__`` only stores its arguments (no
    validators, converters or init hooks), so it can be built slot by slot."""
    return (
        "__slots__" in cls.__dict__
        and not any(hasattr(cls, hook) for hook in ("__attrs_pre_init__", "__attrs_post_init__"))
        and all(
            f.validator is None
            and f.converter is None
            and (f.init or not isinstance(f.default, attrs.Factory))  # type: ignore[arg-type]
            and f.name in cls.__dict__
            for f in attrs.fields(cls)
        )
    )


def _fast_structure_fn(
    cls: type,
    helpers: dict[str, Any],
    tag: str | None = None,
    optional: tuple[str, str, str] | None = None,
) -> str:
    """The name of a generated function reading ``cls`` from a dict (put in ``helpers``).

    The dict must hold every field (as `dumps` writes them; a payload that leaves defaults
    out goes the converter's way) and nothing else but ``tag`` (a message's role, which its
    class implies) and, optionally, ``optional``: ``(key, field, reader)``, a key whose
    value ``reader`` (a name in ``helpers``) turns into a field that ``__init__`` does not
    take (a message's token counts).

    A plain class (see `_plain`) is built slot by slot, which costs half of its
    ``__init__``; it is frozen only against ``setattr``, which this does not use.
    """
    name = f"_fast_{cls.__name__}"
    if name in helpers:
        return name
    helpers[name] = None  # taken (a class that holds itself)
    hints = attrs.resolve_types(cls)
    plain = _plain(cls)
    body, call, slots = [], [], []
    count = 0 if tag is None else 1
    for i, field in enumerate(attrs.fields(hints)):
        var = f"v{i}"
        if optional is not None and field.name == optional[1]:
            value = f"None if {var} is _ABSENT else {optional[2]}({var})"
            body.append(f"    {var} = d.get({optional[0]!r}, _ABSENT)")
            slots.append((field.name, value))
            continue
        if not field.init or field.name == tag:  # the tag (role) is its class's default
            default = f"_default_{name}_{i}"
            helpers[default] = field.default
            slots.append((field.name, default))
            continue
        count += 1
        body.append(f"    {var} = d[{field.name!r}]")
        body += [f"    {line}" for line in _check(field.type, var, helpers)]
        call.append(f"{field.name}={var}")
        slots.append((field.name, var))
    size = f"len(d) != {count}"
    if optional is not None:
        size = f"({size} and (len(d) != {count + 1} or {optional[0]!r} not in d))"
    lines = [f"def {name}(d):", f"    if d.__class__ is not dict or {size}: raise _SlowPathError"]
    lines += body
    if plain:
        lines.append(f"    o = _new(_cls_{name})")
        for slot, value in slots:
            setter = f"_set_{name}_{slot}"
            helpers[setter] = cls.__dict__[slot].__set__
            lines.append(f"    {setter}(o, {value})")
        lines.append("    return o")
    else:
        assert optional is None, "an optional key needs a plain class"
        lines.append(f"    return _cls_{name}({', '.join(call)})")
    helpers[f"_cls_{name}"] = cls
    exec("\n".join(lines), helpers)  # code built from our own classes' fields
    return name


def _fast_unstructure_fn(
    cls: type, helpers: dict[str, Any], tag: tuple[str, str] | None = None
) -> str:
    """The name of a generated function writing ``cls`` as a dict, as the converter does
    (fields in order, defaults written out); a message's token counts under ``"tokens"``.
    A field of a type not written here directly goes through the converter's own hook."""
    name = f"_out_{cls.__name__}"
    if name in helpers:
        return name
    helpers[name] = None
    hints = attrs.resolve_types(cls)
    items = []
    for i, field in enumerate(attrs.fields(hints)):
        if not field.init:
            continue
        value = f"o.{field.name}"
        kind = field.type
        args = get_args(kind)
        optional = type(None) in args and len(args) == 2
        inner = next((a for a in args if a is not type(None)), None) if optional else kind
        if tag is not None and field.name == tag[0]:
            value = repr(tag[1])
        elif kind in (str, int, float, bool, str | None, int | None, float | None):
            pass
        elif inner in (Phase, StopReason):
            value = f"None if {value} is None else {value}.value" if optional else f"{value}.value"
        elif kind is Decimal:
            value = f"str({value})"
        elif kind == str | tuple[ContentPart, ...]:
            value = f"{value} if {value}.__class__ is str else _unstructure_parts({value})"
        elif kind == tuple[Message, ...]:
            value = f"list(map(_write_message, {value}))"
        elif kind == tuple[str, ...]:
            value = f"list({value})"
        elif kind is Indices:
            value = f"_selected_out({value})"
        elif _is_sequence(kind) and attrs.has(args[0]):
            item = _fast_unstructure_fn(args[0], helpers)
            value = f"list(map({item}, {value})) if {value} else []"
        elif inner is not None and attrs.has(inner):
            write = _fast_unstructure_fn(inner, helpers)
            value = (
                f"None if {value} is None else {write}({value})"
                if optional
                else f"{write}({value})"
            )
        else:  # metadata and the like: as the converter writes them
            hook = f"_hook_{name}_{i}"
            helpers[hook] = _converter.get_unstructure_hook(kind)
            value = f"{hook}({value})"
        items.append(f"{field.name!r}: {value}")
    lines = [f"def {name}(o):", f"    d = {{{', '.join(items)}}}"]
    if tag is not None and tag[0] == "role":  # a message: its counts too
        lines += ["    t = o._tokens", "    if t is not None: d['tokens'] = _tokens_out(t)"]
    lines.append("    return d")
    exec("\n".join(lines), helpers)  # code built from our own classes' fields
    return name


def _read_tokens(value: Any, _match: Callable[[str], Any] = _STORED_COUNTS.fullmatch) -> str:
    if value.__class__ is str and _match(value):
        text: str = value
        return text
    raise _SlowPathError


def _unstructure_parts(parts: tuple[ContentPart, ...]) -> Any:
    return _converter.unstructure(parts, tuple[ContentPart, ...])


_FAST: dict[str, Any] = {
    "_SlowPathError": _SlowPathError,
    "_ABSENT": _ABSENT,
    "_LIMIT": _INT_LIMIT,
    "_fast_decimal": _fast_decimal,
    "_fast_parts": _fast_parts,
    "_PHASES": _PHASES,
    "_STOP_REASONS": _STOP_REASONS,
    "_tokens_out": _tokens_out,
    "_unstructure_parts": _unstructure_parts,
    "_indices": _indices,
    "_selected": _selected,
    "_read_tokens": _read_tokens,
    "_new": object.__new__,
}
_READ_MESSAGE = {
    tag: _FAST[_fast_structure_fn(cls, _FAST, "role", (_TOKENS, "_tokens", "_read_tokens"))]
    for cls, tag in _ROLE_TAGS.items()
}
_WRITE_MESSAGE = {
    cls: _FAST[_fast_unstructure_fn(cls, _FAST, ("role", tag))] for cls, tag in _ROLE_TAGS.items()
}
_read_request = _FAST[_fast_structure_fn(RequestRecord, _FAST)]
_read_transition = _FAST[_fast_structure_fn(TransitionRecord, _FAST)]
_write_request = _FAST[_fast_unstructure_fn(RequestRecord, _FAST)]
_write_transition = _FAST[_fast_unstructure_fn(TransitionRecord, _FAST)]


def _read_message(data: Any) -> Message:
    if data.__class__ is not dict:
        raise _SlowPathError
    role = data.get("role")
    read = _READ_MESSAGE.get(role) if role.__class__ is str else None
    if read is None:
        raise _SlowPathError
    message: Message = read(data)
    return message


def _write_message(message: Message) -> dict[str, Any]:
    written: dict[str, Any] = _WRITE_MESSAGE[message.__class__](message)
    return written


_converter.register_unstructure_hook(Message, _write_message)
for _cls in _ROLE_TAGS:
    _converter.register_unstructure_hook(_cls, _FAST[f"_out_{_cls.__name__}"])
_converter.register_unstructure_hook(RequestRecord, _write_request)
_converter.register_unstructure_hook(TransitionRecord, _write_transition)
_converter.register_unstructure_hook_func(
    lambda cls: cls == tuple[Message, ...], lambda messages: [_write_message(m) for m in messages]
)
_converter.register_unstructure_hook_func(
    lambda cls: cls == tuple[RequestRecord, ...],
    lambda records: [_write_request(r) for r in records],
)
_converter.register_unstructure_hook_func(
    lambda cls: cls == tuple[TransitionRecord, ...],
    lambda records: [_write_transition(r) for r in records],
)

_FAST.update(_read_message=_read_message, _write_message=_write_message)
_FAST["_selected_out"] = _selected_out
_read_conversation = _FAST[_fast_structure_fn(Conversation, _FAST)]
_write_conversation = _FAST[_fast_unstructure_fn(Conversation, _FAST)]
_converter.register_unstructure_hook(Conversation, _write_conversation)
_LONG = frozenset({"messages", "requests", "transitions"})


def _fast_conversation(data: dict[str, Any], *, json_data: bool) -> Conversation:
    """The conversation of ``data`` by the fast path, or `_SlowPathError`.

    ``json_data``: ``data`` came from ``json.loads`` (only JSON types in it); otherwise its
    header, which may hold anything a caller put there (``metadata``), is taken through JSON
    first, as the converter's path takes all of it: what loads is what a store could hold.
    """
    try:
        if not json_data:
            header = {key: value for key, value in data.items() if key not in _LONG}
            data = {**data, **json.loads(json.dumps(header, allow_nan=False))}
        conversation: Conversation = _read_conversation(data)
    except _SlowPathError:
        raise
    except Exception as error:  # anything at all: the converter's path says what
        raise _SlowPathError from error
    return conversation


# --------------------------------------------------------------------------- migrations


def _v2_part(part: Any) -> Any:
    """A v1 content part in the v2 layout: a raw image, audio or file part becomes typed."""
    if not isinstance(part, dict) or part.get("type") != "raw" or part.keys() != {"data", "type"}:
        return part
    try:
        typed = part_from_openai(part["data"])
    except InvalidHistoryError:
        return part
    if isinstance(typed, ImagePart):
        return {
            "url": typed.url,
            "detail": typed.detail,
            "mime": typed.mime,
            "width": typed.width,
            "height": typed.height,
            "type": "image",
        }
    if isinstance(typed, AudioPart):
        return {"data": typed.data, "format": typed.format, "type": "audio"}
    if isinstance(typed, FilePart):
        return {
            "filename": typed.filename,
            "file_data": typed.file_data,
            "file_id": typed.file_id,
            "mime": typed.mime,
            "type": "file",
        }
    return part


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 types image, audio and file parts, which schema 1 kept as raw parts.

    They are read by the wire format's own parser, so a part with fields the typed parts
    do not model stays raw. Anything malformed is left for the converter to report.
    """
    messages = data.get("messages")
    if not isinstance(messages, list):
        return data
    migrated = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message = {**message, "content": [_v2_part(p) for p in message["content"]]}
        migrated.append(message)
    return {**data, "messages": migrated}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 lets a message carry its token counts (``"tokens"``) and a context window's
    ``selected`` hold ``[start, stop]`` runs besides indices: a version 2 payload, which has
    neither, reads as it is."""
    return data


# One pure function per schema bump: payload of version N -> payload of version N + 1.
_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
}


# --------------------------------------------------------------------------- dumps / loads


def unstructure(value: Any) -> Any:
    """``value`` (any agentfsm attrs class) as plain JSON-ready data."""
    return _converter.unstructure(value)


def structure(data: Any, cls: type[Any]) -> Any:
    """``data`` (plain JSON-ready data) as an instance of ``cls``."""
    return _converter.structure(data, cls)


def dumps(conversation: Conversation, *, indent: int | None = None) -> str:
    """``conversation`` as a JSON string that :func:`loads` turns back into an equal value.

    Raises:
        SerializationError: ``metadata`` holds something JSON cannot (an object, ``NaN``).
    """
    data = _converter.unstructure(conversation)
    data["schema_version"] = conversation.schema_version
    try:
        if indent is None:
            return _ENCODER.encode(data)
        return json.dumps(data, ensure_ascii=False, indent=indent, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise SerializationError(f"conversation {conversation.chat_id!r}: {error}") from error


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # made once, not per call


def _parse(payload: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of ``payload``; a dict is taken through JSON too, so that what loads
    is exactly what a store could hold."""
    if not isinstance(payload, (str, bytes, bytearray, Mapping)):
        raise SerializationError(
            f"a serialized conversation is a JSON string or a dict, not {type(payload).__name__}"
        )
    try:
        if isinstance(payload, Mapping):
            payload = json.dumps(dict(payload), allow_nan=False)
        if isinstance(payload, (bytes, bytearray)):  # as json.loads reads bytes
            payload = payload.decode(json.detect_encoding(payload), "surrogatepass")
        data = _DECODER.decode(payload)
    except (ValueError, TypeError) as error:  # UnicodeDecodeError is a ValueError
        raise SerializationError(f"not a JSON conversation: {error}") from error
    except RecursionError as error:
        raise SerializationError("not a JSON conversation: nested too deeply") from error
    if not isinstance(data, dict):
        raise SerializationError("a serialized conversation must be a JSON object")
    return data


def loads(payload: str | bytes | Mapping[str, Any]) -> Conversation:
    """The conversation of a :func:`dumps` payload (a JSON string or the parsed dict).

    Older schema versions are migrated; a newer one is refused. The conversation is checked
    for consistency (see the module's docstring), so what loads can be stepped.

    Raises:
        SerializationError: the payload is not a conversation this version can read; the
            message names the path of the fault (``$.messages[3].role``).
    """
    conversation: Conversation | None = None
    if isinstance(payload, dict) and payload.__class__ is dict:
        try:  # a store's assembled dict: read as it is, not taken through JSON first
            if payload.get("schema_version") == SCHEMA_VERSION:
                conversation = _fast_conversation(payload, json_data=False)
        except _SlowPathError:
            pass
    if conversation is None:
        conversation = _structure(_parse(payload))
    problem = _inconsistency(conversation)
    if problem is not None:
        reason, path = problem
        raise SerializationError(f"not a consistent conversation: {reason} @ {path}")
    window = conversation.context
    if window is not None:
        merged = Indices(window.selected.runs)  # the stored items, as runs
        if len(merged.runs) != len(window.selected.runs):
            conversation = attrs.evolve(conversation, context=attrs.evolve(window, selected=merged))
    return conversation


def _structure(data: dict[str, Any]) -> Conversation:
    """The conversation of JSON ``data`` of any schema version, not yet checked for
    consistency."""
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SerializationError(f"invalid schema_version {version!r} @ $.schema_version")
    if version > SCHEMA_VERSION:
        raise SerializationError(
            f"this conversation was written with schema_version {version}, newer than "
            f"{SCHEMA_VERSION} which this version of agentfsm reads: upgrade agentfsm"
        )
    while version < SCHEMA_VERSION:
        data = _MIGRATIONS[version](data)
        version += 1
        data["schema_version"] = version
    try:
        return _fast_conversation(data, json_data=True)
    except _SlowPathError:
        pass
    try:
        conversation: Conversation = _converter.structure(data, Conversation)
    except Exception as error:
        details = "; ".join(_describe(error)) or str(error)
        raise SerializationError(f"not a valid conversation: {details}") from error
    return conversation


def _format(error: BaseException, cls: type | None) -> str:
    return str(error) if isinstance(error, _ValueRefusedError) else format_exception(error, cls)


def _describe(error: BaseException) -> list[str]:
    if isinstance(error, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        return cattrs.transform_error(error, format_exception=_format)
    if isinstance(error, _ValueRefusedError):
        return [f"{error} @ $"]
    return []


# --------------------------------------------------------------------------- consistency


def _inconsistency(conv: Conversation) -> tuple[str, str] | None:
    """The first way ``conv`` contradicts itself, as (reason, path), or None."""
    return (
        _log_problem(conv)
        or _index_problem(conv)
        or _context_problem(conv)
        or _tool_result_problem(conv)
    )


def _log_problem(conv: Conversation) -> tuple[str, str] | None:
    """Every transition leaves the phase the one before entered, the last enters ``phase``,
    and each bumped ``version`` once (a store may bump it more, never less)."""
    log = conv.transitions
    for i in range(1, len(log)):
        if log[i].from_phase is not log[i - 1].to_phase:
            return (
                f"leaves {log[i].from_phase.value} but the transition before entered "
                f"{log[i - 1].to_phase.value}",
                f"$.transitions[{i}].from_phase",
            )
    if log and conv.phase is not log[-1].to_phase:
        return (
            f"phase {conv.phase.value} is not {log[-1].to_phase.value}, where the last "
            "transition went",
            "$.phase",
        )
    if conv.version < len(log):
        return (
            f"version {conv.version} is below the {len(log)} transitions that each raised it",
            "$.version",
        )
    if conv.phase.terminal and conv.stop_reason is None:
        return f"a {conv.phase.value} run needs a stop_reason", "$.stop_reason"
    if not conv.phase.terminal and conv.stop_reason is not None:
        return (
            f"a running conversation ({conv.phase.value}) has no stop_reason yet, got "
            f"{conv.stop_reason.value}",
            "$.stop_reason",
        )
    if conv.phase is Phase.DONE and conv.stop_reason is not StopReason.RESPONSE:
        return f"a done run ends with stop_reason response, not {conv.stop_reason}", "$.stop_reason"
    return None


def _index_problem(conv: Conversation) -> tuple[str, str] | None:
    """``run_start`` is the current run's user message; the other indices are in range."""
    count = len(conv.messages)
    if count == 0:
        if conv.run_start != 0:
            return f"run_start {conv.run_start} with no messages", "$.run_start"
    elif not 0 <= conv.run_start < count:
        return f"run_start {conv.run_start} is not an index of {count} messages", "$.run_start"
    elif not isinstance(conv.messages[conv.run_start], UserMessage):
        return (
            f"messages[{conv.run_start}], where the run starts, is not a user message",
            "$.run_start",
        )
    if not 0 <= conv.summary_upto <= count:
        return f"summary_upto {conv.summary_upto} is beyond {count} messages", "$.summary_upto"
    requests = len(conv.requests)
    if not 0 <= conv.run_request_start <= requests:
        return (
            f"run_request_start {conv.run_request_start} is beyond {requests} requests",
            "$.run_request_start",
        )
    return None


def _context_problem(conv: Conversation) -> tuple[str, str] | None:
    """The window was decided over at most the messages there are, and picks some of them,
    each once, in order."""
    window = conv.context
    if window is None:
        return None
    if not 0 <= window.size <= len(conv.messages):
        return (
            f"size {window.size} is not a count of the {len(conv.messages)} messages",
            "$.context.size",
        )
    previous = -1
    for k, (start, stop) in enumerate(window.selected.runs):  # one run per stored item
        if stop == start + 1:
            if not previous < start < window.size:
                return (
                    f"{start} is not a message index above {previous} and below {window.size}",
                    f"$.context.selected[{k}]",
                )
        elif not previous < start < stop <= window.size:
            return (
                f"[{start}, {stop}] is not a run of message indices above {previous} and "
                f"up to {window.size}",
                f"$.context.selected[{k}]",
            )
        previous = stop - 1
    chosen = window.selected
    for index, tokens in window.truncated.items():
        if index not in chosen or tokens < 0:
            return f"{index}: {tokens} is not a cut of a selected message", "$.context.truncated"
    return None


def _tool_result_problem(conv: Conversation) -> tuple[str, str] | None:
    """Every tool result answers a call of the assistant message opening its group, once."""
    none: dict[str, int] = {}  # never written to: a result finds no call in it
    open_calls = none
    for i, message in enumerate(conv.messages):
        if isinstance(message, ToolMessage):
            left = open_calls.get(message.tool_call_id, 0)
            if left <= 0:
                return (
                    f"{message.tool_call_id!r} answers no call of the assistant message that "
                    "opens its group (or answers it again)",
                    f"$.messages[{i}].tool_call_id",
                )
            open_calls[message.tool_call_id] = left - 1
        elif isinstance(message, AssistantMessage) and message.tool_calls:
            open_calls = {}
            for call in message.tool_calls:
                open_calls[call.id] = open_calls.get(call.id, 0) + 1
        else:
            open_calls = none
    return None
