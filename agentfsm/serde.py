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
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.strategies import configure_tagged_union
from cattrs.v import format_exception

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
from agentfsm.state import SCHEMA_VERSION, Conversation, Phase, StopReason

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


def _tagged(union: Any, tag: str, tags: Mapping[type, str]) -> None:
    """Messages and content parts carry their kind under ``tag``; a payload whose tag is
    missing or unknown is refused saying which tags there are."""
    configure_tagged_union(union, _converter, tag_generator=tags.__getitem__, tag_name=tag)
    by_tag = {name: cls for cls, name in tags.items()}
    known = ", ".join(by_tag)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _ValueRefusedError(f"expected an object, got {_kind(value)}")
        name = value.get(tag)
        cls = by_tag.get(name) if isinstance(name, str) else None
        if cls is None:
            raise _ValueRefusedError(f"{tag} must be one of {known}, got {_kind(name)}")
        return _converter.structure({k: v for k, v in value.items() if k != tag}, cls)

    _converter.register_structure_hook(union, structure)


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
_tagged(Message, "role", _ROLE_TAGS)  # after the content hook: UserMessage's fields need it


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


# One pure function per schema bump: payload of version N -> payload of version N + 1.
_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


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
        return json.dumps(data, ensure_ascii=False, indent=indent, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise SerializationError(f"conversation {conversation.chat_id!r}: {error}") from error


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


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
        data = json.loads(payload, parse_constant=_refuse_constant)
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
    data = _parse(payload)
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
        conversation: Conversation = _converter.structure(data, Conversation)
    except Exception as error:
        details = "; ".join(_describe(error)) or str(error)
        raise SerializationError(f"not a valid conversation: {details}") from error
    problem = _inconsistency(conversation)
    if problem is not None:
        reason, path = problem
        raise SerializationError(f"not a consistent conversation: {reason} @ {path}")
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
    for k, index in enumerate(window.selected):
        if not previous < index < window.size:
            return (
                f"{index} is not a message index above {previous} and below {window.size}",
                f"$.context.selected[{k}]",
            )
        previous = index
    chosen = set(window.selected)
    for index, tokens in window.truncated.items():
        if index not in chosen or tokens < 0:
            return f"{index}: {tokens} is not a cut of a selected message", "$.context.truncated"
    return None


def _tool_result_problem(conv: Conversation) -> tuple[str, str] | None:
    """Every tool result answers a call of the assistant message opening its group, once."""
    open_calls: Counter[str] = Counter()
    for i, message in enumerate(conv.messages):
        if isinstance(message, ToolMessage):
            if open_calls[message.tool_call_id] <= 0:
                return (
                    f"{message.tool_call_id!r} answers no call of the assistant message that "
                    "opens its group (or answers it again)",
                    f"$.messages[{i}].tool_call_id",
                )
            open_calls[message.tool_call_id] -= 1
        elif isinstance(message, AssistantMessage):
            open_calls = Counter(call.id for call in message.tool_calls)
        else:
            open_calls = Counter()
    return None
