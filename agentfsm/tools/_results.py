"""The text of a tool message: what a tool returned, as the model reads it."""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["format_result"]


def format_result(value: Any) -> str:
    """Turn what a tool returned into the text of its tool message.

    A ``str`` is used verbatim and ``None`` becomes ``"null"``. Anything else becomes JSON
    (non-ASCII kept as is): attrs classes and dataclasses as objects, enums as their value,
    datetimes, dates and times in ISO 8601, sets, frozensets and tuples as arrays, objects
    with ``model_dump`` (pydantic) through it. Values JSON cannot hold become ``str(value)``,
    at the top level or nested (as a JSON string).

    Args:
        value: the tool's return value.

    Returns:
        The tool message content.
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return value if type(value) is str else str(value)
    if value is None:
        return "null"
    if not isinstance(value, (dict, list, tuple, int, float)):
        known = _jsonable(value)
        if known is _UNKNOWN:
            return str(value)
        if isinstance(known, str):  # a datetime or date reads best bare, like a str result
            return known
        value = known
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):  # non-string keys json refuses, cycles
        return str(value)


_UNKNOWN: Any = object()


def _jsonable(value: Any) -> Any:
    """A JSON-encodable stand-in for a known non-JSON type, or _UNKNOWN."""
    if isinstance(value, enum.Enum):
        return value.value
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, abc.Sequence) and not isinstance(value, (bytes, bytearray)):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return _UNKNOWN


def _json_default(value: Any) -> Any:
    known = _jsonable(value)
    return str(value) if known is _UNKNOWN else known


_ENCODER = json.JSONEncoder(default=_json_default, ensure_ascii=False)
