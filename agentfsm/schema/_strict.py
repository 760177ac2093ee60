"""OpenAI's strict form of a JSON Schema, or why a schema has none."""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["StrictError", "make_strict", "only_value", "ordered"]


class StrictError(Exception):
    """A schema with no strict form; ``str()`` says where and why."""


_ORDER = {
    key: index
    for index, key in enumerate(
        (
            "$ref",
            "type",
            "description",
            "enum",
            "const",
            "format",
            "pattern",
            "minimum",
            "exclusiveMinimum",
            "maximum",
            "exclusiveMaximum",
            "multipleOf",
            "minLength",
            "maxLength",
            "items",
            "prefixItems",
            "minItems",
            "maxItems",
            "uniqueItems",
            "properties",
            "required",
            "additionalProperties",
            "anyOf",
            "oneOf",
            "allOf",
            "default",
        )
    )
}


def ordered(node: dict[str, Any]) -> dict[str, Any]:
    """The keywords in the order people write them: type, description, …, $defs last."""
    return dict(
        sorted(
            node.items(), key=lambda item: _ORDER.get(item[0], 100 if item[0] != "$defs" else 101)
        )
    )


# What OpenAI's strict mode accepts (its structured-outputs guide), besides annotations.
_STRICT_KEYWORDS = frozenset(
    {
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
)
_STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
# Dropped without loss: annotations, and uniqueItems (a set merges repeated items anyway).
_STRICT_DROPPED = frozenset(
    {
        "title",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
        "$schema",
        "discriminator",
        "uniqueItems",
        "contentEncoding",
        "contentMediaType",
    }
)
_WHY = {
    "prefixItems": "a fixed-length tuple (prefixItems) has no strict form; use a class with "
    "named fields, or tuple[X, ...]",
    "minLength": "minLength is not accepted by OpenAI's strict mode",
    "maxLength": "maxLength is not accepted by OpenAI's strict mode",
    "patternProperties": "patternProperties is not accepted by OpenAI's strict mode",
    "propertyNames": "constrained keys (propertyNames) are not accepted by OpenAI's strict mode",
    "minProperties": "minProperties is not accepted by OpenAI's strict mode",
    "maxProperties": "maxProperties is not accepted by OpenAI's strict mode",
}


def make_strict(schema: Mapping[str, Any], *, root_optional: str = "refuse") -> dict[str, Any]:
    """OpenAI's strict form of a tidied schema.

    Every object lists all its properties in ``required`` and has ``additionalProperties:
    false``; only keywords strict mode accepts remain.

    Args:
        schema: a tidied schema.
        root_optional: what happens to the root object's optional properties: ``"refuse"``
            (like any other object: they must accept null and default to None),
            ``"nullable"`` (they become nullable and null means the default: tool
            parameters, as sent) or ``"keep"`` (left optional: tool parameters, as checked).

    Returns:
        A new schema.

    Raises:
        StrictError: the schema has no strict form; the message says where and why.
    """
    root: dict[str, Any] = copy.deepcopy(dict(schema))
    defs = root.pop("$defs", None)
    result = _strict(root, "$", root_optional)
    if defs:
        result["$defs"] = {
            name: _strict(body, f"$defs.{name}", "refuse") for name, body in defs.items()
        }
    return result


def _strict(node: Any, path: str, optional: str) -> dict[str, Any]:
    return ordered(_strict_node(node, path, optional))


def _strict_node(node: Any, path: str, optional: str) -> dict[str, Any]:
    if not isinstance(node, dict) or not (
        {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"} & set(node)
    ):
        raise StrictError(
            f"{path}: accepts any JSON value (Any, object or no annotation); strict mode needs "
            "a declared type"
        )
    if "$ref" in node:
        return {"$ref": node["$ref"]}  # strict mode takes no keyword next to a reference
    node = dict(node)
    if "oneOf" in node:
        if "discriminator" not in node:
            raise StrictError(f"{path}: oneOf is not accepted by OpenAI's strict mode; use anyOf")
        node["anyOf"] = node.pop("oneOf")  # a discriminated union: its branches never overlap
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise StrictError(f"{path}: allOf is not accepted by OpenAI's strict mode")
        node = {**parts[0], **node}
    if node.get("format") not in _STRICT_FORMATS:
        node.pop("format", None)  # an annotation: dropping it changes no validation
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _STRICT_DROPPED:
            continue
        if key not in _STRICT_KEYWORDS:
            why = _WHY.get(key, f"the keyword {key!r} is not accepted by OpenAI's strict mode")
            raise StrictError(f"{path}: {why}")
        out[key] = value
    kinds = out.get("type")
    kind_list = [kinds] if isinstance(kinds, str) else list(kinds or ())
    if "anyOf" in out:
        out["anyOf"] = [_strict(member, path, "refuse") for member in out["anyOf"]]
    if isinstance(out.get("items"), list):  # the draft-4 tuple form
        raise StrictError(f"{path}: {_WHY['prefixItems']}")
    if "items" in out:
        out["items"] = _strict(out["items"], f"{path}[]", "refuse")
    if "object" in kind_list or "properties" in out:
        out = _strict_object(out, path, optional)
        if len(kind_list) > 1:  # ["object", "null"]: strict mode reads objects from anyOf
            rest = [kind for kind in kind_list if kind != "object"]
            obj = {**out, "type": "object"}
            description = obj.pop("description", None)
            out = {"anyOf": [obj, {"type": rest[0] if len(rest) == 1 else rest}]}
            if description is not None:
                out["description"] = description
    return out


def _strict_object(node: dict[str, Any], path: str, optional: str) -> dict[str, Any]:
    additional = node.get("additionalProperties", True)
    properties: dict[str, Any] = node.get("properties", {})
    if additional is not False and (additional is not True or not properties):
        raise StrictError(
            f"{path}: an open map (dict[str, X], or an object without declared properties) has "
            "no strict form: strict mode needs every key declared; use a class with named "
            "fields, or a list of key/value objects"
        )
    required = set(node.get("required", ()))
    out_properties: dict[str, Any] = {}
    for name, prop in properties.items():
        where = f"{path}.{name}"
        if name in required or optional == "keep":
            out_properties[name] = _strict(prop, where, "refuse")
            continue
        if optional == "nullable":
            out_properties[name] = _nullable(_strict(prop, where, "refuse"))
            continue
        default = prop.get("default") if isinstance(prop, dict) else None
        if only_value(prop, default):
            out_properties[name] = _strict(prop, where, "refuse")  # Literal["x"] = "x"
            continue
        if not _admits_null(prop) or default is not None:
            shown = f" (default {default!r})" if default is not None else ""
            raise StrictError(
                f"{where}: an optional field{shown} has no strict form: strict mode makes every "
                "field required; make it required, or type it 'X | None' with default None"
            )
        out_properties[name] = _strict(prop, where, "refuse")
    node = {**node, "properties": out_properties, "additionalProperties": False}
    node["required"] = (
        list(out_properties)
        if optional != "keep"
        else [name for name in out_properties if name in required]
    )
    if not node["required"] and optional == "keep":
        del node["required"]
    return node


def only_value(schema: Any, value: Any) -> bool:
    """Whether a schema admits ``value`` alone (``Literal["cat"] = "cat"``): such a default
    never needs to apply."""
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(schema, dict) or value is None:
        return False
    if "const" in schema:
        return bool(schema["const"] == value)
    allowed = schema.get("enum")
    return isinstance(allowed, list) and len(allowed) == 1 and allowed[0] == value


def _admits_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return schema is True
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(_admits_null(member) for member in schema.get("anyOf", ()))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if _admits_null(schema):
        return schema
    kinds = schema.get("type")
    kind_list = [kinds] if isinstance(kinds, str) else list(kinds or ())
    if kind_list and "object" not in kind_list and not {"anyOf", "$ref"} & set(schema):
        out = {**schema, "type": [*kind_list, "null"]}
        if "enum" in schema:
            out["enum"] = [*schema["enum"], None]
        if "const" in out:
            out["enum"] = [out.pop("const"), None]
        return ordered(out)
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    description = schema.get("description")
    out = {"anyOf": [{k: v for k, v in schema.items() if k != "description"}, {"type": "null"}]}
    if description is not None:
        out["description"] = description
    return out
