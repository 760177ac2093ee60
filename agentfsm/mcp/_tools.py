"""An MCP server's tool listing as agentfsm tools: names, the schema the model sees, injection."""

from __future__ import annotations

import copy
import inspect
import keyword
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import mcp.types as mcp_types

from agentfsm._log import get_logger
from agentfsm.errors import ConfigurationError, ToolDefinitionError
from agentfsm.tools import Tool, ToolContext
from agentfsm.tools._binding import RESERVED, Binding
from agentfsm.tools._declared import bind_declared

__all__ = ["RemoteCall", "ToolFactory", "check_inject"]

log = get_logger(__name__)

RemoteCall = Callable[[str, dict[str, Any]], Awaitable[str]]
"""Calls a tool on the server by its own name, with the arguments; returns the result text."""

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CONTEXT_FIELDS = tuple(field.name for field in attrs.fields(ToolContext))


def check_inject(inject: Mapping[str, str] | None) -> dict[str, str]:
    """``inject`` checked: server argument names mapped to `ToolContext` fields.

    Raises:
        ConfigurationError: not a mapping, an empty name, or an unknown field.
    """
    if inject is None:
        return {}
    if not isinstance(inject, Mapping):
        raise ConfigurationError(
            f"inject must map server argument names to ToolContext fields, got {inject!r}"
        )
    for argument, field in inject.items():
        if not isinstance(argument, str) or not argument:
            raise ConfigurationError(f"inject: {argument!r} is not an argument name")
        if field not in _CONTEXT_FIELDS:
            raise ConfigurationError(
                f"inject[{argument!r}]: {field!r} is not a ToolContext field; use one of "
                f"{', '.join(_CONTEXT_FIELDS)}"
            )
    return dict(inject)


@attrs.frozen
class ToolFactory:
    """How one server's tools are offered to the model.

    Attributes:
        server: the server's name, for logs.
        prefix: prepended to tool names as ``f"{prefix}_{tool}"``, or None.
        inject: server argument name → `ToolContext` field it is filled from.
        call: calls a tool on the server.
    """

    server: str
    prefix: str | None
    inject: Mapping[str, str]
    call: RemoteCall

    def build(self, specs: Iterable[mcp_types.Tool]) -> tuple[Tool, ...]:
        """The tools of a listing, in its order; one that cannot be offered is logged and
        left out, never failing the others."""
        tools: list[Tool] = []
        taken: set[str] = set()
        for spec in specs:
            try:
                built = self._tool(spec, taken)
            except Exception as exc:
                log.warning("mcp_tool_skipped", server=self.server, tool=spec.name, reason=str(exc))
                continue
            taken.add(built.name)
            tools.append(built)
        return tuple(tools)

    def _tool(self, spec: mcp_types.Tool, taken: set[str]) -> Tool:
        name = self._name(spec.name)
        if name in taken:
            raise ToolDefinitionError(name, "another tool of this server has the same name")
        schema, injected = self._schema(spec)
        func = self._func(spec.name, injected, _declared_names(schema))
        try:
            binding = bind_declared(name, schema, func, strict=False)
        except ToolDefinitionError as exc:
            # A keyword our validator refuses: offer the tool anyway, the server validates.
            log.warning(
                "mcp_tool_schema_unchecked", server=self.server, tool=spec.name, reason=str(exc)
            )
            binding = _unchecked_binding(name, schema, func)
        if injected:
            # The model may not send what is injected: dropped, and reported as ignored.
            names = frozenset(argument for argument, _ in injected)
            binding = attrs.evolve(binding, strip=binding.strip | names)
        return Tool(
            name=name,
            description=spec.description or "",
            parameters=binding.sent,
            func=func,
            _binding=binding,
        )

    def _name(self, remote: str) -> str:
        """Prefixed, and cleaned to what chat APIs accept (MCP also allows dots, 128 chars)."""
        name = f"{self.prefix}_{remote}" if self.prefix else remote
        if _NAME_RE.match(name):
            return name
        cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]
        if not cleaned:
            raise ToolDefinitionError(remote, "the tool has an empty name")
        log.warning("mcp_tool_renamed", server=self.server, tool=remote, name=cleaned)
        return cleaned

    def _schema(self, spec: mcp_types.Tool) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
        """The input schema the model sees, and the (argument, ToolContext field) injected.

        Injected arguments, and ``user_id`` / ``chat_id`` not mapped, are taken out of it.
        """
        schema = copy.deepcopy(dict(spec.input_schema))
        schema.setdefault("type", "object")
        if schema["type"] != "object":  # MCP allows any root from 2026-07-28; chat APIs do not
            raise ToolDefinitionError(
                spec.name, f"its input schema is of type {schema['type']!r}, not an object"
            )
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return schema, ()
        injected = tuple(
            (argument, field) for argument, field in self.inject.items() if argument in properties
        )
        dropped = sorted(
            name for name in RESERVED if name in properties and name not in self.inject
        )
        if dropped:
            log.warning(
                "mcp_identity_argument_dropped",
                server=self.server,
                tool=spec.name,
                names=dropped,
                hint="map it with inject={...} to send it",
            )
        hidden = {argument for argument, _ in injected} | set(dropped)
        if hidden:
            schema["properties"] = {k: v for k, v in properties.items() if k not in hidden}
            required = schema.get("required")
            if isinstance(required, list):
                kept = [name for name in required if name not in hidden]
                if kept:
                    schema["required"] = kept
                else:
                    del schema["required"]
        return schema, injected

    def _func(
        self,
        remote: str,
        injected: tuple[tuple[str, str], ...],
        declared: tuple[str, ...] | None,
    ) -> Any:
        """The tool's function: fill the injected arguments, call the tool on the server.

        Its ToolContext parameter is injected by the executor (and may be left out when the
        tool is called directly: then nothing is injected). With ``declared`` names, its
        signature says it takes those alone, so arguments the schema does not declare are
        refused with a message for the model, as for any tool given by a schema (and the
        schema has a strict form); None leaves it open.
        """
        call = self.call

        async def call_mcp_tool(
            agentfsm_tool_context: ToolContext | None = None, **arguments: Any
        ) -> str:
            for argument, field in injected:
                value = getattr(agentfsm_tool_context, field, None)
                if value is None:
                    arguments.pop(argument, None)
                else:
                    arguments[argument] = value
            return await call(remote, arguments)

        call_mcp_tool.__qualname__ = call_mcp_tool.__name__ = f"mcp_{self.server}_{remote}"
        if declared is not None:
            context = inspect.Parameter(
                "agentfsm_tool_context", _KEYWORD, default=None, annotation=ToolContext
            )
            optional = [inspect.Parameter(n, _KEYWORD, default=_UNSET) for n in declared]
            call_mcp_tool.__signature__ = inspect.Signature([context, *optional])  # type: ignore[attr-defined]
        return call_mcp_tool


_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_UNSET: Any = object()  # a default in the signature only: the schema says what is required


def _declared_names(schema: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The argument names of a closed schema, or None when it lets other names through
    (``additionalProperties`` other than false, ``patternProperties``), or declares a name
    Python cannot take as a keyword parameter."""
    properties = schema.get("properties", {})
    if (
        schema.get("additionalProperties", False) is not False
        or "patternProperties" in schema
        or not isinstance(properties, Mapping)
    ):
        return None
    names = tuple(properties)
    valid = all(isinstance(n, str) and n.isidentifier() and not keyword.iskeyword(n) for n in names)
    return names if valid and "agentfsm_tool_context" not in names else None


def _unchecked_binding(name: str, schema: Mapping[str, Any], func: Any) -> Binding:
    """A binding that shows the model ``schema`` but checks only that the arguments are an
    object: the server validates them."""
    properties = schema.get("properties")
    names: Iterable[str] = properties if isinstance(properties, Mapping) else ()
    lax = {"type": "object", "properties": {key: {} for key in names}}
    return attrs.evolve(bind_declared(name, lax, func, strict=False), sent=schema)
