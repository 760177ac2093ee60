"""A JSON Schema (draft 2020-12) validator whose messages a model can read and act on.

It compiles a schema once into nested closures. The keywords in `SUPPORTED_KEYWORDS` are
enforced (the official JSON-Schema-Test-Suite checks them in ``tests/test_schema_suite.py``),
those in `ANNOTATIONS` are accepted and ignored, as 2020-12 says, and the rest of the JSON
Schema vocabulary (``$dynamicRef``, ``unevaluatedProperties``, remote references, …) is refused
with a `SchemaDefinitionError` when the schema is compiled, never ignored silently.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

from agentfsm.schema._checks import (
    JSON_TYPES,
    KINDS,
    PATH_STYLE,
    TOOL_STYLE,
    SchemaDefinitionError,
    Style,
    Validator,
    accept,
    child,
    is_integral,
    json_key,
    json_kind,
    regex,
)
from agentfsm.schema._containers import ContainerKeywords

__all__ = [
    "ANNOTATIONS",
    "PATH_STYLE",
    "SUPPORTED_KEYWORDS",
    "TOOL_STYLE",
    "SchemaDefinitionError",
    "Style",
    "Validator",
    "child",
    "compile_schema",
    "json_key",
    "json_kind",
]


SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "prefixItems",
        "items",
        "maxItems",
        "minItems",
        "uniqueItems",
        "contains",
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "properties",
        "patternProperties",
        "additionalProperties",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "$ref",
    }
)
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "discriminator",  # OpenAPI's, as pydantic writes it next to oneOf
        "additionalItems",  # only read next to the draft-4 array form of items
    }
)
_REFUSED = {
    "$id": "a nested $id (only the root may name itself; references must be local '#...')",
    "$anchor": "$anchor (use a '#/$defs/...' reference)",
    "$dynamicRef": "$dynamicRef",
    "$dynamicAnchor": "$dynamicAnchor",
    "$recursiveRef": "$recursiveRef",
    "$recursiveAnchor": "$recursiveAnchor",
    "$vocabulary": "$vocabulary",
    "unevaluatedItems": "unevaluatedItems",
    "unevaluatedProperties": "unevaluatedProperties (use additionalProperties)",
    "dependencies": "dependencies (draft 7; use dependentRequired or dependentSchemas)",
}


# The standard meta-schemas; a custom one may switch vocabularies off, which is not supported.
_KNOWN_DIALECTS = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema",
        "http://json-schema.org/draft-06/schema",
        "http://json-schema.org/draft-04/schema",
    }
)


def compile_schema(
    schema: Any,
    *,
    style: Style,
    where: str = "schema",
    extra_required: Iterable[str] = (),
    lint: bool = True,
    root: Any = None,
) -> Validator:
    """Compile a JSON Schema into a validator, once.

    Args:
        schema: the schema (a mapping or a boolean).
        style: how messages name places (`TOOL_STYLE` or `PATH_STYLE`).
        where: how definition errors name the schema (``"parameters"``).
        extra_required: names the root object requires besides its ``required``.
        lint: also refuse a ``required`` name missing from ``properties`` (legal JSON Schema,
            but in a tool schema always a typo).
        root: the document references resolve in, when ``schema`` is a part of it.

    Returns:
        ``validator(value, path, errors)``: appends a message per fault to ``errors``;
        call it with ``path=style.root``.

    Raises:
        SchemaDefinitionError: the schema is malformed or uses an unsupported keyword.
    """
    document = schema if root is None else root
    compiler = _Compiler(document, style, lint)
    return compiler.compile(schema, where, tuple(extra_required), root=root is None)


_TYPE_TYPOS = {
    "int": "integer",
    "long": "integer",
    "float": "number",
    "double": "number",
    "decimal": "number",
    "str": "string",
    "bool": "boolean",
    "dict": "object",
    "map": "object",
    "list": "array",
    "none": "null",
}


class _Compiler(ContainerKeywords):
    """Compiles the schema into nested closures, once; `$ref`s are resolved lazily by cell."""

    def __init__(self, root: Any, style: Style, lint: bool) -> None:
        self._root = root
        self._style = style
        self._lint = lint
        self._refs: dict[str, list[Validator]] = {}

    def compile(
        self,
        schema: Any,
        where: str,
        extra_required: tuple[str, ...] = (),
        *,
        root: bool = False,
    ) -> Validator:
        style = self._style
        if schema is True:
            return accept
        if schema is False:

            def reject(value: Any, path: str, errors: list[str]) -> None:
                errors.append(f"{style.subject(path)} is not allowed")

            return reject
        if not isinstance(schema, Mapping):
            raise SchemaDefinitionError(
                f"{where} must be a JSON Schema (a mapping or a boolean), "
                f"got {type(schema).__name__}"
            )
        dialect = schema.get("$schema")
        if dialect is not None and str(dialect).rstrip("#") not in _KNOWN_DIALECTS:
            raise SchemaDefinitionError(
                f"{where}: the meta-schema {dialect!r} is not supported; use "
                "'https://json-schema.org/draft/2020-12/schema' or leave '$schema' out"
            )
        for keyword in schema:
            if keyword in _REFUSED and not (keyword == "$id" and root):
                raise SchemaDefinitionError(
                    f"{where}: the JSON Schema keyword {keyword!r} is not supported: "
                    f"{_REFUSED[keyword]}"
                )
        allowed: frozenset[str] | None = None
        label = ""
        if "type" in schema:
            allowed, label = self._types(schema["type"], where)
        checks: list[Validator] = []
        if "$ref" in schema:
            checks.append(self._ref(schema["$ref"], where))
        if "enum" in schema:
            checks.append(self._enum(schema["enum"], where))
        if "const" in schema:
            checks.append(self._const(schema["const"]))
        checks.extend(self._bounds(schema, where))
        if "multipleOf" in schema:
            checks.append(self._multiple_of(schema["multipleOf"], where))
        if "pattern" in schema:
            checks.append(self._pattern(schema["pattern"], where))
        object_keywords = {
            "properties",
            "required",
            "additionalProperties",
            "patternProperties",
            "dependentRequired",
        }
        if object_keywords & set(schema) or extra_required:
            checks.append(self._object(schema, where, extra_required))
        if {"minProperties", "maxProperties"} & set(schema):
            checks.append(self._property_count(schema, where))
        if "propertyNames" in schema:
            checks.append(self._property_names(schema["propertyNames"], where))
        if "dependentSchemas" in schema:
            checks.append(self._dependent_schemas(schema["dependentSchemas"], where))
        if {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"} & set(schema):
            checks.append(self._array(schema, where))
        if "contains" in schema:
            checks.append(self._contains(schema, where))
        for keyword in ("anyOf", "oneOf", "allOf"):
            if keyword in schema:
                checks.append(self._combination(keyword, schema[keyword], where))
        if "not" in schema:
            checks.append(self._not(schema["not"], where))
        if "if" in schema:
            checks.append(self._condition(schema, where))
        return _combine(allowed, label, tuple(checks), style)

    # --- scalars -------------------------------------------------------------------------------

    def _types(self, declared: Any, where: str) -> tuple[frozenset[str], str]:
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list) or not names:
            raise SchemaDefinitionError(
                f"{where}.type must be a type name or a list of them, got {declared!r}"
            )
        for name in names:
            if name not in JSON_TYPES:
                typo = _TYPE_TYPOS.get(str(name).lower())
                hint = f" (did you mean {typo!r}?)" if typo else ""
                raise SchemaDefinitionError(
                    f"{where}.type: unknown JSON Schema type {name!r}{hint}; "
                    f"use one of {sorted(JSON_TYPES)}"
                )
        allowed = set(names)
        if "number" in allowed:
            allowed.add("integer")
        return frozenset(allowed), " or ".join(names)

    def _ref(self, ref: Any, where: str) -> Validator:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaDefinitionError(
                f"{where}: only local references ('#/...') are supported, got {ref!r}"
            )
        cell = self._refs.get(ref)
        if cell is None:
            cell = self._refs[ref] = []
            target: Any = self._root
            pointer = urllib.parse.unquote(ref[1:])
            if pointer and not pointer.startswith("/"):
                raise SchemaDefinitionError(
                    f"{where}: reference {ref!r} is an anchor; use a JSON pointer ('#/$defs/...')"
                )
            for part in pointer.split("/")[1:]:
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, Mapping) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    raise SchemaDefinitionError(f"{where}: reference {ref!r} does not resolve")
            cell.append(self.compile(target, ref))
        resolved = cell  # filled in before any validation runs, even for recursive references

        def check_ref(value: Any, path: str, errors: list[str]) -> None:
            resolved[0](value, path, errors)

        return check_ref

    def _enum(self, values: Any, where: str) -> Validator:
        if not isinstance(values, list) or (self._lint and not values):
            raise SchemaDefinitionError(f"{where}.enum must be a non-empty list")
        keys = frozenset(json_key(value) for value in values)
        style = self._style
        message = f"must be one of {values!r}"

        def check_enum(value: Any, path: str, errors: list[str]) -> None:
            if json_key(value) not in keys:
                errors.append(f"{style.subject(path)} {message}")

        return check_enum

    def _const(self, const: Any) -> Validator:
        key = json_key(const)
        style = self._style

        def check_const(value: Any, path: str, errors: list[str]) -> None:
            if json_key(value) != key:
                errors.append(f"{style.subject(path)} must be {const!r}")

        return check_const

    def _bounds(self, schema: Mapping[str, Any], where: str) -> list[Validator]:
        checks: list[Validator] = []
        numeric = ("integer", "number")
        for keyword, text, fails in (
            ("minimum", ">=", lambda v, n: v < n),
            ("maximum", "<=", lambda v, n: v > n),
            ("exclusiveMinimum", ">", lambda v, n: v <= n),
            ("exclusiveMaximum", "<", lambda v, n: v >= n),
            ("minLength", "at least", lambda v, n: len(v) < n),
            ("maxLength", "at most", lambda v, n: len(v) > n),
        ):
            if keyword not in schema:
                continue
            limit = schema[keyword]
            if isinstance(limit, bool) and keyword.startswith("exclusive"):
                continue  # a draft-4 flag; not enforced
            if isinstance(limit, bool) or not isinstance(limit, (int, float)):
                raise SchemaDefinitionError(f"{where}.{keyword} must be a number, got {limit!r}")
            if keyword.endswith("Length"):
                kinds: tuple[str, ...] = ("string",)
                message = f"must be {text} {_number(limit)} characters long"
                show = False
            else:
                kinds = numeric
                message = f"must be {text} {_number(limit)}"
                show = True
            checks.append(_bound_check(kinds, fails, limit, message, self._style, show))
        return checks

    def _multiple_of(self, factor: Any, where: str) -> Validator:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
            raise SchemaDefinitionError(f"{where}.multipleOf must be a number > 0, got {factor!r}")
        exact = _fraction(factor)
        style = self._style

        def check_multiple(value: Any, path: str, errors: list[str]) -> None:
            if json_kind(value) not in ("integer", "number"):
                return
            if not math.isfinite(value) or (_fraction(value) / exact).denominator != 1:
                errors.append(
                    f"{style.subject(path)} must be a multiple of {_number(factor)}"
                    f"{style.got(value)}"
                )

        return check_multiple

    def _pattern(self, pattern: Any, where: str) -> Validator:
        compiled = regex(pattern, f"{where}.pattern")
        style = self._style

        def check_pattern(value: Any, path: str, errors: list[str]) -> None:
            if isinstance(value, str) and not compiled.search(value):
                errors.append(f"{style.subject(path)} must match the pattern {pattern!r}")

        return check_pattern

    # --- combinations --------------------------------------------------------------------------

    def _combination(self, keyword: str, raw: Any, where: str) -> Validator:
        if not isinstance(raw, list) or not raw:
            raise SchemaDefinitionError(f"{where}.{keyword} must be a non-empty list of schemas")
        branches = tuple(self.compile(sub, f"{where}.{keyword}[{i}]") for i, sub in enumerate(raw))
        if keyword == "allOf":

            def check_all(value: Any, path: str, errors: list[str]) -> None:
                for branch in branches:
                    branch(value, path, errors)

            return check_all
        kinds = tuple(_declared_kinds(sub) for sub in raw)
        exactly_one = keyword == "oneOf"
        style = self._style
        tag, tags = _tags(raw)

        def check_some(value: Any, path: str, errors: list[str]) -> None:
            if tag is not None and isinstance(value, Mapping) and tag in value:
                # A tagged union: the branch the tag names explains the failure best.
                chosen = tags.get(_safe_key(value[tag]))
                if chosen is not None:
                    tagged: list[str] = []
                    branches[chosen](value, path, tagged)
                    if tagged:
                        errors.extend(tagged)
                        return
            failures: list[list[str]] = []
            for branch in branches:
                branch_errors: list[str] = []
                branch(value, path, branch_errors)
                failures.append(branch_errors)
                if not branch_errors and not exactly_one:
                    return
            matches = sum(1 for branch_errors in failures if not branch_errors)
            if matches == 1:
                return
            if matches > 1:
                errors.append(f"{style.subject(path)} matches more than one of the allowed forms")
                return
            errors.append(_explain_mismatch(value, path, kinds, failures, style))

        return check_some

    def _not(self, raw: Any, where: str) -> Validator:
        check_inner = self.compile(raw, f"{where}.not")
        style = self._style

        def check_not(value: Any, path: str, errors: list[str]) -> None:
            found: list[str] = []
            check_inner(value, path, found)
            if not found:
                errors.append(f"{style.subject(path)} must not match the schema under 'not'")

        return check_not

    def _condition(self, schema: Mapping[str, Any], where: str) -> Validator:
        check_if = self.compile(schema["if"], f"{where}.if")
        then = self.compile(schema.get("then", True), f"{where}.then")
        otherwise = self.compile(schema.get("else", True), f"{where}.else")

        def check_condition(value: Any, path: str, errors: list[str]) -> None:
            found: list[str] = []
            check_if(value, path, found)
            (otherwise if found else then)(value, path, errors)

        return check_condition


def _tags(branches: list[Any]) -> tuple[str | None, dict[Any, int]]:
    """(property, tag value → branch) when every branch fixes one property to its own value."""
    if len(branches) < 2 or not all(isinstance(b, Mapping) for b in branches):
        return None, {}
    candidates = set.intersection(
        *(
            set(b.get("properties", {})) if isinstance(b.get("properties"), Mapping) else set()
            for b in branches
        )
    )
    for name in sorted(candidates):
        tags: dict[Any, int] = {}
        for index, branch in enumerate(branches):
            prop = branch["properties"][name]
            values = (
                [prop["const"]]
                if isinstance(prop, Mapping) and "const" in prop
                else prop.get("enum")
                if isinstance(prop, Mapping)
                else None
            )
            if not isinstance(values, list) or len(values) != 1:
                break
            key = _safe_key(values[0])
            if key is None or key in tags:
                break
            tags[key] = index
        else:
            return name, tags
    return None, {}


def _safe_key(value: Any) -> Any:
    try:
        key = json_key(value)
        hash(key)
    except TypeError:
        return None
    return key


def _declared_kinds(schema: Any) -> tuple[str, ...] | None:
    if isinstance(schema, Mapping) and "type" in schema:
        declared = schema["type"]
        return (declared,) if isinstance(declared, str) else tuple(declared)
    return None


def _explain_mismatch(
    value: Any,
    path: str,
    kinds: tuple[tuple[str, ...] | None, ...],
    failures: list[list[str]],
    style: Style,
) -> str:
    """One message for a value no branch of anyOf / oneOf accepts, naming the likely fix."""
    kind = json_kind(value)
    if kind == "number" and is_integral(value):
        kind = "integer"
    plausible = [
        i
        for i, declared in enumerate(kinds)
        if declared is None or kind in declared or (kind == "integer" and "number" in declared)
    ]
    if len(plausible) == 1:
        return "; ".join(failures[plausible[0]])
    if not plausible and all(declared is not None for declared in kinds):
        names = list(dict.fromkeys(name for declared in kinds for name in declared or ()))
        return f"{style.subject(path)} must be {' or '.join(names)}, got {json_kind(value)}"
    details = " | ".join("; ".join(failures[i]) for i in plausible or range(len(failures)))
    return f"{style.subject(path)} does not match any of the allowed forms ({details})"


def _bound_check(
    kinds: tuple[str, ...],
    fails: Callable[[Any, Any], bool],
    limit: Any,
    message: str,
    style: Style,
    show: bool,
) -> Validator:
    def check_bound(value: Any, path: str, errors: list[str]) -> None:
        if json_kind(value) in kinds and fails(value, limit):
            got = style.got(value) if show else ""
            errors.append(f"{style.subject(path)} {message}{got}")

    return check_bound


def _combine(
    allowed: frozenset[str] | None, label: str, checks: tuple[Validator, ...], style: Style
) -> Validator:
    if allowed is None:
        if not checks:
            return accept
        if len(checks) == 1:
            return checks[0]

        def check_each(value: Any, path: str, errors: list[str]) -> None:
            for check in checks:
                check(value, path, errors)

        return check_each
    integral_ok = "integer" in allowed

    def check_typed(value: Any, path: str, errors: list[str]) -> None:
        kind = KINDS.get(type(value)) or json_kind(value)
        if kind not in allowed and not (integral_ok and kind == "number" and is_integral(value)):
            errors.append(f"{style.subject(path)} must be {label}, got {kind}")
            return  # further checks would only repeat the type error
        for check in checks:
            check(value, path, errors)

    return check_typed


def _number(value: int | float) -> str:
    return repr(value)


def _fraction(value: int | float) -> Fraction:
    """The exact decimal value of a JSON number (0.1 is 1/10, not the nearest binary float)."""
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))
