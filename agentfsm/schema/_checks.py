"""The validator's building blocks: compiled checks, their messages, and JSON values compared
the way JSON Schema compares them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "JSON_TYPES",
    "KINDS",
    "PATH_STYLE",
    "TOOL_STYLE",
    "SchemaDefinitionError",
    "Style",
    "Validator",
    "accept",
    "child",
    "count",
    "is_integral",
    "json_key",
    "json_kind",
    "regex",
]

# (value, path, errors) -> None, appending one message per fault.
Validator = Callable[[Any, str, list[str]], None]


class SchemaDefinitionError(Exception):
    """A schema that cannot be compiled: malformed, or using a keyword that is not supported."""


class Style:
    """How messages name the place of a fault: tool arguments, or a JSON path.

    Attributes:
        root: the path of the whole value.
        show_got: whether bound messages repeat the value (``must be <= 10, got 50``).
    """

    def __init__(self, *, tool: bool) -> None:
        self.tool = tool
        self.root = "" if tool else "$"
        self.show_got = not tool

    def subject(self, path: str) -> str:
        """The start of a message about the value at ``path``."""
        if self.tool:
            return f"'{path}'" if path else "the arguments"
        return f"{path}:"

    def missing(self, path: str, name: str, why: str = "") -> str:
        """The message for a required key missing from the object at ``path``."""
        if self.tool:
            return f"missing required argument '{child(path, name)}'{why}"
        return f"{path}: missing required property '{name}'{why}"

    def unexpected(self, path: str, name: str, accepted: list[str]) -> str:
        """The message for a key the object at ``path`` does not accept."""
        noun = "argument" if self.tool else "property"
        listed = ", ".join(f"'{key}'" for key in accepted)
        hint = f"accepted: {listed}" if accepted else f"no {noun}s are accepted"
        if self.tool:
            return f"unexpected argument '{child(path, name)}' ({hint})"
        return f"{path}: unexpected property '{name}' ({hint})"

    def got(self, value: Any) -> str:
        """``, got <value>`` when this style repeats values, else nothing."""
        return f", got {value!r}" if self.show_got else ""


TOOL_STYLE = Style(tool=True)
PATH_STYLE = Style(tool=False)


def child(path: str, key: str) -> str:
    """The path of ``key`` inside the object at ``path``."""
    return f"{path}.{key}" if path else key


_NONE = type(None)
KINDS: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    _NONE: "null",
    list: "array",
    tuple: "array",
    dict: "object",
}
JSON_TYPES = frozenset(KINDS.values())


def json_kind(value: Any) -> str:
    """The JSON type of a value (``integer`` for ints, ``number`` for floats)."""
    kind = KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def is_integral(value: Any) -> bool:
    """JSON Schema 2020-12: a number with a zero fractional part is an integer (3.0 is)."""
    return isinstance(value, float) and value.is_integer()


def json_key(value: Any) -> Any:
    """A hashable key equal for JSON-equal values only (``1 == 1.0``, ``true != 1``)."""
    kind = json_kind(value)
    if kind == "boolean":
        return ("b", value)
    if kind in ("integer", "number"):
        return ("n", value)
    if kind == "array":
        return ("a", tuple(json_key(item) for item in value))
    if kind == "object":
        return ("o", frozenset((key, json_key(item)) for key, item in value.items()))
    return (kind, value if kind in ("string", "null") else id(value))


def accept(value: Any, path: str, errors: list[str]) -> None:
    return None


def count(schema: Mapping[str, Any], keyword: str, where: str) -> int | None:
    limit = schema.get(keyword)
    if limit is None:
        return None
    if is_integral(limit):
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise SchemaDefinitionError(f"{where}.{keyword} must be an integer, got {limit!r}")
    return limit


def regex(pattern: Any, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise SchemaDefinitionError(f"{where} is not a valid regular expression: {exc}") from None
