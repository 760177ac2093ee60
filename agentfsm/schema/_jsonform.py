"""The JSON Schema agentfsm sends: pydantic's, tidied for a model to read.

Pydantic writes a correct schema; a model reads a shorter one better. `generate` asks
pydantic for it and `tidy` then drops titles, inlines every definition that is not recursive,
and folds ``anyOf: [X, {"type": "null"}]`` into ``"type": [X, "null"]``.
"""

from __future__ import annotations

import copy
import enum
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from agentfsm.schema._checks import json_kind
from agentfsm.schema._docstrings import parse_docstring
from agentfsm.schema._strict import StrictError, only_value, ordered

__all__ = ["ObjectInfo", "factory_marker", "generate", "tidy"]

# Keys of a schema whose values are schemas, maps of schemas, or lists of schemas.
_SCHEMA_KEYS = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
)
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})


class ObjectInfo:
    """What agentfsm's object builder knows that pydantic's typed-dict schema does not.

    Kept in the core schema's ``metadata`` under ``"agentfsm"``.

    Attributes:
        label: how messages name the object (``"Point"``, ``"the parameters"``).
        description: the class docstring's prose, or None.
        field_docs: JSON name → description from the docstring.
        defaults: JSON name → the field's default (any Python value, or a factory marker).
        defaults_may_be_null: in strict form, an optional field becomes nullable and null
            means its default (tool parameters); otherwise a default must be None.
    """

    def __init__(
        self,
        *,
        label: str,
        description: str | None,
        field_docs: Mapping[str, str],
        defaults: Mapping[str, Any],
        defaults_may_be_null: bool = False,
    ) -> None:
        self.label = label
        self.description = description
        self.field_docs = field_docs
        self.defaults = defaults
        self.defaults_may_be_null = defaults_may_be_null


class _Generator(GenerateJsonSchema):
    """Pydantic's generator with agentfsm's choices for enums, literals and described classes."""

    strict: ClassVar[bool] = False

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def enum_schema(self, schema: core_schema.EnumSchema) -> JsonSchemaValue:
        values = [member.value for member in schema["members"]]
        result = _enum_of(values)
        doc = schema["cls"].__doc__
        if doc and schema["cls"].__dict__.get("__doc__"):
            description = parse_docstring(doc).description
            if description:
                result["description"] = description
        return result

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        values = [getattr(value, "value", value) for value in schema["expected"]]
        return _enum_of(values)

    def typed_dict_schema(self, schema: core_schema.TypedDictSchema) -> JsonSchemaValue:
        result = super().typed_dict_schema(schema)
        info = (schema.get("metadata") or {}).get("agentfsm")
        if isinstance(info, ObjectInfo):
            self._describe(result, info)
        return result

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        result = super().model_schema(schema)
        self._close_and_describe(result, schema["cls"], schema.get("config", {}))
        return result

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        result = super().dataclass_schema(schema)
        self._close_and_describe(result, schema["cls"], schema.get("config", {}))
        return result

    def _describe(self, result: JsonSchemaValue, info: ObjectInfo) -> None:
        target = self.resolve_ref_schema(result) if "$ref" in result else result
        if info.description:
            target["description"] = info.description
        properties = target.get("properties", {})
        for name, prop in properties.items():
            doc = info.field_docs.get(name)
            if doc and "description" not in prop:
                prop["description"] = doc
            if name not in info.defaults:
                continue
            default = info.defaults[name]
            if (
                self.strict
                and default is not None
                and not info.defaults_may_be_null
                and not only_value(prop, default)
            ):
                shown = "a factory" if _is_factory(default) else repr(default)
                raise StrictError(
                    f"{info.label}.{name} has a default ({shown}): OpenAI's strict mode makes "
                    "every field required, so the default would never apply; remove it, or "
                    "type the field 'X | None' with default None"
                )
            shown_default, value = _json_default(default)
            if shown_default:
                prop["default"] = value

    def _close_and_describe(
        self, result: JsonSchemaValue, cls: type, config: Mapping[str, Any]
    ) -> None:
        target = self.resolve_ref_schema(result) if "$ref" in result else result
        if config.get("extra_fields_behavior") != "allow" and "properties" in target:
            target.setdefault("additionalProperties", False)  # extra keys are refused
        doc = cls.__dict__.get("__doc__")
        if not isinstance(doc, str) or doc.startswith(f"{cls.__name__}("):
            target.pop("description", None)  # the signature dataclasses write for themselves
            return
        parsed = parse_docstring(doc)
        if parsed.description:
            target["description"] = parsed.description
        else:
            target.pop("description", None)
        for name, prop in target.get("properties", {}).items():
            entry = parsed.attributes.get(name)
            if entry and "description" not in prop:
                prop["description"] = entry


class _StrictGenerator(_Generator):
    strict = True


def generate(schema: CoreSchema, *, strict: bool) -> dict[str, Any]:
    """Pydantic's validation-mode JSON Schema for a core schema, with agentfsm's choices."""
    generator = (_StrictGenerator if strict else _Generator)(by_alias=True)
    return dict(generator.generate(schema, mode="validation"))


_FACTORY: Any = object()


def factory_marker() -> Any:
    """The stand-in default of a field whose default comes from a factory (shown nowhere)."""
    return _FACTORY


def _is_factory(value: Any) -> bool:
    return value is _FACTORY


def _json_default(value: Any) -> tuple[bool, Any]:
    """(shown, value): defaults appear in the schema only when they are JSON scalars."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and not math.isfinite(value):
        return False, None  # JSON has no infinity or NaN
    if value is None or isinstance(value, (str, int, float, bool)):
        return True, value
    return False, None


_SCALARS = frozenset({"null", "boolean", "integer", "number", "string"})


def _json_type(value: Any) -> str:
    """The JSON type of an enum value when it is a scalar, else "" (no ``type`` then)."""
    kind = json_kind(value)
    return kind if kind in _SCALARS else ""


def _enum_of(values: list[Any]) -> dict[str, Any]:
    kinds = list(dict.fromkeys(_json_type(value) for value in values))
    if "number" in kinds and "integer" in kinds:
        kinds.remove("integer")
    if "" in kinds:
        return {"enum": values}
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": values}


# --- tidy --------------------------------------------------------------------------------------


def tidy(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A shorter, equivalent schema: no titles, non-recursive definitions inlined, nulls folded.

    Args:
        schema: a schema from `generate`.

    Returns:
        A new schema; recursive definitions stay under ``$defs`` at the root.
    """
    root: dict[str, Any] = copy.deepcopy(dict(schema))
    defs: dict[str, Any] = root.pop("$defs", {})
    recursive = _recursive_defs(defs)
    kept: dict[str, Any] = {}

    def visit(node: Any, expanding: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/") :]
            if name in defs and name not in recursive and name not in expanding:
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                inlined = visit(copy.deepcopy(defs[name]), (*expanding, name))
                return ordered(
                    _fold(
                        {
                            **inlined,
                            **{k: visit_value(k, v, expanding) for k, v in siblings.items()},
                        }
                    )
                )
            if name in defs and name not in kept:
                kept[name] = {}
                kept[name] = visit(copy.deepcopy(defs[name]), (*expanding, name))
        out = {key: visit_value(key, value, expanding) for key, value in node.items()}
        out.pop("title", None)
        if isinstance(out.get("discriminator"), dict):  # its mapping names inlined definitions
            out["discriminator"] = {k: v for k, v in out["discriminator"].items() if k != "mapping"}
        return _fold(out)

    def visit_value(key: str, value: Any, expanding: tuple[str, ...]) -> Any:
        if key in _SCHEMA_KEYS:
            return visit(value, expanding)
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            return {name: visit(sub, expanding) for name, sub in value.items()}
        if key in _SCHEMA_LISTS and isinstance(value, list):
            return [visit(sub, expanding) for sub in value]
        return value

    result = visit(root, ())
    if not kept:
        return dict(result)
    ref = result.get("$ref")
    if list(result) == ["$ref"] and isinstance(ref, str) and ref[len("#/$defs/") :] in kept:
        result = dict(kept[ref[len("#/$defs/") :]])  # the root is an object, as OpenAI wants
    result["$defs"] = kept
    return ordered(_rename_defs(result))


def _rename_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """``Tree_140234`` → ``Tree``: pydantic numbers the names of agentfsm's own objects."""
    names = list(schema["$defs"])
    renamed: dict[str, str] = {}
    for name in names:
        short = re.sub(r"_\d+$", "", name)
        if short != name and short not in names and short not in renamed.values():
            renamed[name] = short
    if not renamed:
        return schema
    refs = {f"#/$defs/{old}": f"#/$defs/{new}" for old, new in renamed.items()}

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            out = {key: visit(value) for key, value in node.items()}
            if isinstance(out.get("$ref"), str) and out["$ref"] in refs:
                out["$ref"] = refs[out["$ref"]]
            return out
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    result = visit({key: value for key, value in schema.items() if key != "$defs"})
    result["$defs"] = {
        renamed.get(name, name): visit(body) for name, body in schema["$defs"].items()
    }
    return dict(result)


def _recursive_defs(defs: Mapping[str, Any]) -> frozenset[str]:
    """The definitions that reach themselves through references."""
    edges = {name: set(_refs_in(body)) & set(defs) for name, body in defs.items()}
    recursive = set()
    for start in defs:
        stack, seen = list(edges[start]), set()
        while stack:
            name = stack.pop()
            if name == start:
                recursive.add(start)
                break
            if name not in seen:
                seen.add(name)
                stack.extend(edges.get(name, ()))
    return frozenset(recursive)


def _refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            yield ref[len("#/$defs/") :]
        for value in node.values():
            yield from _refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs_in(item)


def _fold(node: dict[str, Any]) -> dict[str, Any]:
    """Fold ``anyOf`` of plain types, or of one typed schema and null, into a type list."""
    for key in ("items", "additionalProperties"):
        if node.get(key) == {} or node.get(key) is True:
            del node[key]
    members = node.get("anyOf")
    if not isinstance(members, list) or len(members) < 2:
        return node
    outer = {key: value for key, value in node.items() if key != "anyOf"}
    if any(member == {} or member is True for member in members):
        return outer  # Any | None: any value already
    if all(list(m) == ["type"] and isinstance(m["type"], str) for m in members):
        kinds = list(dict.fromkeys(m["type"] for m in members))
        return {"type": kinds[0] if len(kinds) == 1 else kinds, **outer}
    others = [m for m in members if m != {"type": "null"}]
    if len(others) != 1 or len(others) == len(members):
        return node
    (inner,) = others
    if not inner or "type" not in inner or {"anyOf", "oneOf", "allOf", "$ref"} & set(inner):
        return node
    kinds = [inner["type"]] if isinstance(inner["type"], str) else list(inner["type"])
    folded = {**inner, "type": kinds if "null" in kinds else [*kinds, "null"]}
    if "enum" in inner and None not in inner["enum"]:
        folded["enum"] = [*inner["enum"], None]
    if "const" in inner:
        folded["enum"] = [folded.pop("const"), None]
    return {**folded, **outer}
