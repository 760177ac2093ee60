"""Serialization of conversations: the one cattrs converter, ``dumps`` / ``loads``, migrations."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import cattrs
from cattrs.strategies import configure_tagged_union

from agentfsm.errors import SerializationError
from agentfsm.messages import (
    AssistantMessage,
    RawPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from agentfsm.state import SCHEMA_VERSION, Conversation

__all__ = ["dumps", "loads", "structure", "unstructure"]

_converter = cattrs.Converter(forbid_extra_keys=True)  # defaults written out: a stored
# payload must not change meaning if a default changes one day.
_converter.register_unstructure_hook(Decimal, str)
_converter.register_structure_hook(Decimal, lambda value, _: Decimal(str(value)))

# Messages and content parts are tagged by the field they already carry.
configure_tagged_union(
    TextPart | RawPart,
    _converter,
    tag_name="type",
    tag_generator=lambda cls: "text" if cls is TextPart else "raw",
)
_converter.register_structure_hook(
    str | tuple[TextPart | RawPart, ...],
    lambda value, _: (
        value
        if isinstance(value, str)
        else _converter.structure(value, tuple[TextPart | RawPart, ...])
    ),
)
_converter.register_unstructure_hook(
    str | tuple[TextPart | RawPart, ...],
    lambda value: (
        value
        if isinstance(value, str)
        else _converter.unstructure(value, tuple[TextPart | RawPart, ...])
    ),
)
_ROLES: Mapping[type, str] = {
    SystemMessage: "system",
    UserMessage: "user",
    AssistantMessage: "assistant",
    ToolMessage: "tool",
}
configure_tagged_union(
    SystemMessage | UserMessage | AssistantMessage | ToolMessage,
    _converter,
    tag_name="role",
    tag_generator=_ROLES.__getitem__,
)

# One pure function per schema bump: payload of version N -> payload of version N + 1.
_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def unstructure(value: Any) -> Any:
    """``value`` (any agentfsm attrs class) as plain JSON-ready data."""
    return _converter.unstructure(value)


def structure(data: Any, cls: type[Any]) -> Any:
    """``data`` (plain JSON-ready data) as an instance of ``cls``."""
    return _converter.structure(data, cls)


def dumps(conversation: Conversation, *, indent: int | None = None) -> str:
    """``conversation`` as a JSON string that :func:`loads` turns back into an equal value."""
    data = _converter.unstructure(conversation)
    data["schema_version"] = conversation.schema_version
    return json.dumps(data, ensure_ascii=False, indent=indent)


def loads(payload: str | bytes | Mapping[str, Any]) -> Conversation:
    """The conversation of a :func:`dumps` payload (a JSON string or the parsed dict).

    Older schema versions are migrated; a newer one is refused.

    Raises:
        SerializationError: the payload is not a conversation this version can read; the
            message names the path of the fault (``$.messages[3].role``).
    """
    try:
        data = json.loads(payload) if isinstance(payload, (str, bytes)) else dict(payload)
    except ValueError as error:
        raise SerializationError(f"not a JSON conversation: {error}") from error
    if not isinstance(data, dict):
        raise SerializationError("a serialized conversation must be a JSON object")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise SerializationError(f"invalid schema_version {version!r}")
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
    return conversation


def _describe(error: BaseException) -> list[str]:
    if isinstance(error, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        return cattrs.transform_error(error)
    return []
