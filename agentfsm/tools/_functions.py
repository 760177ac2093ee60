"""Tools built from a function: the schema of its signature, through the schema engine."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from agentfsm.errors import ToolDefinitionError
from agentfsm.schema._docstrings import parse_docstring
from agentfsm.schema._engine import object_schema
from agentfsm.schema._lowering import NO_DEFAULT, Field, UnsupportedError
from agentfsm.schema._validator import TOOL_STYLE, compile_schema
from agentfsm.tools._binding import (
    INJECTABLE,
    NOT_INJECTED,
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
from agentfsm.tools._declared import null_means_default

__all__ = ["bind_function"]

_REFUSED = {ToolContext: "ToolContext can only be injected as a parameter of the tool itself"}


def bind_function(
    tool_name: str, func: Callable[..., Any], *, strict: bool
) -> tuple[dict[str, Any], str, Binding]:
    """The generated parameters schema, the docstring's description, and the binding.

    Raises:
        ToolDefinitionError: ``*args``/``**kwargs``, a positional-only parameter without
            default, an unresolvable hint, a type with no JSON Schema (or, with ``strict``,
            no strict form), or an injected parameter with the wrong annotation.
    """
    target = introspection_target(func)
    hints = _type_hints(tool_name, target)
    doc = parse_docstring(_own_doc(func, target))
    fields: list[Field] = []
    injected: list[tuple[str, str | None]] = []
    for param in signature(tool_name, func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ToolDefinitionError(
                tool_name,
                f"cannot build a schema for {stars}{param.name}; declare each argument as a "
                "named parameter, or use Tool.from_dict with an explicit schema",
            )
        if param.kind is param.POSITIONAL_ONLY:
            skip_positional_only(tool_name, param)
            continue
        hint = hints.get(param.name, UNANNOTATED)
        source = injection(param, hint, declared=())
        if source is not NOT_INJECTED:
            check_injected_hint(tool_name, param.name, hint)
            injected.append((param.name, source))
            continue
        required = param.default is param.empty
        fields.append(
            Field(
                name=param.name,
                hint=hint,
                required=required,
                default=NO_DEFAULT if required else param.default,
                description=doc.params.get(param.name),
            )
        )
    try:
        built = object_schema(
            fields,
            name=tool_name,
            strict=strict,
            refuse=_REFUSED,
            where=lambda name: f"parameter {name!r}",
        )
    except UnsupportedError as exc:
        raise ToolDefinitionError(tool_name, str(exc)) from None
    checked = built.checked
    binding = Binding(
        sent=built.sent,
        validate=compile_schema(checked, style=TOOL_STYLE, where="parameters", lint=False),
        strip=(INJECTABLE | {param for param, _ in injected}) - {f.name for f in fields},
        null_means_default=null_means_default(checked, {f.name for f in fields if f.required}),
        injected=tuple(injected),
        adapter=built.adapter,
        is_async=is_async(func),
        from_function=True,
    )
    return built.sent, doc.description, binding


def _own_doc(func: Callable[..., Any], target: Any) -> str | None:
    doc = getattr(target, "__doc__", None)
    if not doc and not inspect.isroutine(func) and not isinstance(func, functools.partial):
        doc = type(func).__doc__  # a callable object described by its class
    return doc if isinstance(doc, str) else None


def _type_hints(name: str, target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(
            target, localns={"ToolContext": ToolContext}, include_extras=True
        )
    except Exception as exc:  # NameError for undefined names, TypeError, SyntaxError…
        raise ToolDefinitionError(
            name,
            f"cannot resolve the type hints ({type(exc).__name__}: {exc}); types used in "
            "annotations must be importable from the function's module",
        ) from None
