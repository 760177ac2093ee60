"""Tools given as an explicit JSON Schema: the dict format, and checking it against its function."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

from agentfsm.errors import ToolDefinitionError
from agentfsm.schema._strict import StrictError, make_strict
from agentfsm.schema._validator import TOOL_STYLE, SchemaDefinitionError, compile_schema
from agentfsm.tools._binding import (
    INJECTABLE,
    NOT_INJECTED,
    RESERVED,
    UNANNOTATED,
    Binding,
    ToolContext,
    check_injected_hint,
    injection,
    introspection_target,
    is_async,
    signature,
    skip_positional_only,
)

__all__ = ["bind_declared", "function_schema", "null_means_default", "schema_name"]

_SPEC_KEYS = frozenset({"name", "function_schema", "func", "timeout", "strict"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def schema_name(schema: object) -> Any:
    """The name in a function schema of either shape, if there is one (for error messages)."""
    if not isinstance(schema, Mapping):
        return None
    inner = schema.get("function", schema)
    return inner.get("name") if isinstance(inner, Mapping) else None


def check_spec_keys(name: str, spec: Mapping[str, Any]) -> None:
    """Refuse keys a tool dict does not have."""
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ToolDefinitionError(
            name,
            f"unknown key(s) {unknown} in the tool dict; expected 'name', "
            "'function_schema', 'func' and optionally 'timeout' and 'strict'",
        )


def function_schema(name: str, schema: object) -> Mapping[str, Any]:
    """The bare ``{"name", "description", "parameters", "strict"}`` from any accepted shape."""
    if schema is None:
        raise ToolDefinitionError(name, "the tool dict has no 'function_schema'")
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(
            name, f"'function_schema' must be a mapping, got {type(schema).__name__}"
        )
    if "function" in schema:  # {"type": "function", "function": {...}}
        extra = sorted(set(schema) - {"type", "function"})
        if schema.get("type", "function") != "function" or extra:
            raise ToolDefinitionError(
                name,
                "'function_schema' must be {'type': 'function', 'function': {...}} or "
                "{'name': ..., 'description': ..., 'parameters': ...}",
            )
        schema = typing.cast("Mapping[str, Any]", schema["function"])
        if not isinstance(schema, Mapping):
            raise ToolDefinitionError(name, "'function_schema.function' must be a mapping")
    elif schema.get("type") == "function":  # the flat shape of the Responses API
        schema = {k: v for k, v in schema.items() if k != "type"}
    unknown = sorted(set(schema) - _FUNCTION_KEYS)
    if unknown:
        raise ToolDefinitionError(
            name,
            f"unsupported key(s) {unknown} in the function schema; expected 'name', "
            "'description', 'parameters' and optionally 'strict'",
        )
    strict = schema.get("strict", False)
    if not isinstance(strict, bool):
        raise ToolDefinitionError(name, f"'strict' must be true or false, got {strict!r}")
    return schema


def bind_declared(name: str, parameters: Any, func: Any, *, strict: bool) -> Binding:
    """Check an explicit schema against its function and compile it.

    Raises:
        ToolDefinitionError: the schema is malformed, uses an unsupported keyword, does not
            fit the function, or (with ``strict``) has no strict form.
    """
    if not callable(func):
        raise ToolDefinitionError(name, f"'func' must be callable, got {type(func).__name__}")
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        raise ToolDefinitionError(
            name,
            "parameters must be a JSON Schema object such as "
            "{'type': 'object', 'properties': {...}}, "
            f"got {parameters!r}",
        )
    properties = parameters.get("properties", {})
    if not isinstance(properties, Mapping):
        raise ToolDefinitionError(name, "parameters.properties must be a mapping")
    accepts_any, required, injected = _match_function(name, func, properties)
    checked: Mapping[str, Any] = parameters
    if not accepts_any and parameters.get("additionalProperties") is not False:
        # The function cannot take other arguments: refuse them with a message, not a TypeError.
        checked = {**parameters, "additionalProperties": False}
    sent: Mapping[str, Any] = parameters
    try:
        compile_schema(checked, style=TOOL_STYLE, where="parameters")  # definition errors first
        if strict:
            sent = make_strict(checked, root_optional="nullable")
            checked = make_strict(checked, root_optional="keep")
        validate = compile_schema(
            checked, style=TOOL_STYLE, where="parameters", extra_required=required
        )
        optional = null_means_default(checked, set(required) | set(checked.get("required", ())))
    except SchemaDefinitionError as exc:
        raise ToolDefinitionError(name, str(exc)) from None
    except StrictError as exc:
        raise ToolDefinitionError(name, f"cannot be strict: {exc}") from None
    return Binding(
        sent=sent,
        validate=validate,
        strip=(INJECTABLE | {param for param, _ in injected}) - set(properties),
        null_means_default=optional,
        injected=injected,
        adapter=None,
        is_async=is_async(func),
        from_function=False,
    )


def null_means_default(checked: Mapping[str, Any], required: set[str]) -> tuple[str, ...]:
    """Optional properties that refuse null: a null the model sends for them means "default"."""
    found = []
    for prop, schema in checked.get("properties", {}).items():
        if prop in required:
            continue
        errors: list[str] = []
        check = compile_schema(
            schema, style=TOOL_STYLE, where=f"parameters.properties.{prop}", root=checked
        )
        check(None, prop, errors)
        if errors:
            found.append(prop)
    return tuple(found)


def _match_function(
    name: str, func: Callable[..., Any], properties: Mapping[str, Any]
) -> tuple[bool, tuple[str, ...], tuple[tuple[str, str | None], ...]]:
    """(accepts **kwargs, required parameters, injected parameters), checked against the schema."""
    params = signature(name, func).parameters.values()
    try:
        hints = typing.get_type_hints(
            introspection_target(func), localns={"ToolContext": ToolContext}
        )
    except Exception:  # the schema is explicit: hints only serve to spot a ToolContext
        hints = {}
    accepts_any = False
    accepted: list[str] = []
    required: list[str] = []
    injected: list[tuple[str, str | None]] = []
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            accepts_any = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.POSITIONAL_ONLY:
            skip_positional_only(name, param)
            continue
        hint = hints.get(param.name, param.annotation)
        source = injection(param, hint, properties)
        if source is not NOT_INJECTED:
            check_injected_hint(name, param.name, UNANNOTATED if hint is param.empty else hint)
            injected.append((param.name, source))
            continue
        accepted.append(param.name)
        if param.default is param.empty:
            required.append(param.name)
    injected_names = {param for param, _ in injected}
    for prop in properties:
        if prop in RESERVED or prop in injected_names:
            raise ToolDefinitionError(
                name,
                f"schema property {prop!r} is injected by agentfsm and never taken from the "
                "model; remove it from the schema",
            )
        if not accepts_any and prop not in accepted:
            raise ToolDefinitionError(
                name,
                f"schema property {prop!r} is not a parameter of the function "
                f"(it accepts: {', '.join(accepted) or 'no arguments'})",
            )
    for param_name in required:
        if param_name not in properties:
            raise ToolDefinitionError(
                name,
                f"function parameter {param_name!r} has no default but is missing from the "
                "schema's properties",
            )
    return accepts_any, tuple(required), tuple(injected)
