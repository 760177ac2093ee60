"""The Tool: a function the model may call, with its schema, argument checks and execution."""

from __future__ import annotations

import asyncio
import copy
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import attrs

from agentfsm.errors import SchemaValidationError, ToolArgumentError, ToolDefinitionError
from agentfsm.schema._engine import convert
from agentfsm.schema._validator import TOOL_STYLE
from agentfsm.tools._binding import Binding, PreparedCall, ToolContext, parse_arguments
from agentfsm.tools._declared import bind_declared, check_spec_keys, function_schema, schema_name
from agentfsm.tools._functions import bind_function
from agentfsm.tools._threads import ToolThreads, shared_threads

__all__ = ["Tool", "tool", "tools_from_registry"]

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _validate_name(value: Any) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ToolDefinitionError(
            str(value),
            "invalid tool name: it must match ^[a-zA-Z0-9_-]{1,64}$ "
            "(letters, digits, '_' and '-', at most 64 characters)",
        )


def _check_name(instance: Tool, attribute: attrs.Attribute[str], value: str) -> None:
    _validate_name(value)


def _check_description(instance: Tool, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise ToolDefinitionError(
            instance.name, f"description must be a string, got {type(value).__name__}"
        )


def _check_timeout(instance: Tool, attribute: attrs.Attribute[float | None], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ToolDefinitionError(
            instance.name, f"timeout must be a positive number of seconds or None, got {value!r}"
        )


def _check_strict(instance: Tool, attribute: attrs.Attribute[bool], value: Any) -> None:
    if not isinstance(value, bool):
        raise ToolDefinitionError(instance.name, f"strict must be True or False, got {value!r}")


@attrs.frozen
class Tool:
    """A function the model may call, with the JSON Schema of its arguments.

    Build one with `tool` / `Tool.from_function` (schema generated from the signature) or
    `Tool.from_dict` (an explicit schema). Calling the ``Tool`` calls the function directly.
    Everything `prepare` and `invoke` need is worked out when the tool is built; change a tool
    by building it again (``attrs.evolve`` is safe only for ``name``, ``description`` and
    ``timeout``).

    Attributes:
        name: the name the model calls the tool by (``^[a-zA-Z0-9_-]{1,64}$``).
        description: what the tool does, for the model; may be empty.
        parameters: the JSON Schema object of the arguments the model supplies (injected
            parameters are never in it); with ``strict``, in OpenAI's strict form.
        func: the function, sync or async. Sync functions run in a worker thread.
        timeout: seconds a call may take before it fails with `TimeoutError`, or None.
        strict: whether the tool is sent in OpenAI's strict form (``"strict": true``: the model
            is held to the schema exactly).
    """

    name: str = attrs.field(validator=_check_name)
    description: str = attrs.field(validator=_check_description)
    parameters: Mapping[str, Any] = attrs.field(hash=False)
    func: Callable[..., Any]
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    strict: bool = attrs.field(default=False, kw_only=True, validator=_check_strict)
    _binding: Binding = attrs.field(kw_only=True, alias="_binding", repr=False, eq=False)

    @_binding.default
    def _bind_declared_schema(self) -> Binding:
        return bind_declared(self.name, self.parameters, self.func, strict=self.strict)

    def __attrs_post_init__(self) -> None:
        if self.parameters is not self._binding.sent:
            # With strict, the schema sent is the strict form of the one given.
            object.__setattr__(self, "parameters", self._binding.sent)

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        strict: bool | None = None,
    ) -> Tool:
        """Build a tool from a function, generating the schema from its signature.

        Type hints give the JSON types (see `agentfsm.schema.type_schema` for the supported
        types), the docstring gives the descriptions (its prose before the first section for
        the tool, its ``Args:`` / ``Parameters`` / ``:param x:`` entries for the parameters),
        parameters with a default are optional. Parameters named ``user_id`` / ``chat_id``,
        annotated ``ToolContext``, or named ``context`` without annotation are injected and
        left out. Unannotated parameters accept any JSON value.

        Args:
            func: the function, sync or async; its parameters must be passable by name.
            name: the tool name; defaults to the function's ``__name__``.
            description: the tool description; defaults to the docstring's prose.
            timeout: seconds a call may take, or None.
            strict: send the tool in OpenAI's strict form: every parameter required, optional
                ones nullable (null means the default), closed objects. Given a `Tool`,
                None keeps its setting.

        Returns:
            The tool. Given a `Tool`, returns a copy with the overrides applied.

        Raises:
            ToolDefinitionError: ``*args`` / ``**kwargs``, a type with no JSON Schema (or,
                with ``strict``, no strict form: the message says why), an unresolvable type
                hint or an invalid name.
        """
        if isinstance(func, Tool):
            changes: dict[str, Any] = {
                "name": name,
                "description": description,
                "timeout": timeout,
            }
            changed = attrs.evolve(func, **{k: v for k, v in changes.items() if v is not None})
            return changed if strict is None else _with_strict(changed, strict)
        if not callable(func):
            hint = f"; to name a tool write @tool(name={func!r})" if isinstance(func, str) else ""
            raise ToolDefinitionError(
                str(name or func), f"expected a function, got {type(func).__name__}{hint}"
            )
        tool_name = name if name is not None else getattr(func, "__name__", None)
        if tool_name is None:
            raise ToolDefinitionError(
                "<unnamed>", f"the callable {func!r} has no __name__; pass name=..."
            )
        _validate_name(tool_name)
        parameters, doc_description, binding = bind_function(tool_name, func, strict=bool(strict))
        return cls(
            name=tool_name,
            description=doc_description if description is None else description,
            parameters=parameters,
            func=func,
            timeout=timeout,
            strict=bool(strict),
            _binding=binding,
        )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Tool:
        """Build a tool from an explicit schema (the format tools are often written in elsewhere).

        ``spec`` has ``function_schema`` (OpenAI's ``{"type": "function", "function": {...}}``,
        or the bare ``{"name", "description", "parameters"}``, either with an optional
        ``"strict"``), ``func``, and optionally ``name`` (must match the schema's if both are
        given), ``timeout`` and ``strict``. The function receives the JSON values as they are.
        The schema may use the JSON Schema (2020-12) keywords the argument validator supports
        (listed in the tools guide); a schema using another is refused.

        Args:
            spec: the tool dict.

        Returns:
            The tool.

        Raises:
            ToolDefinitionError: the dict is malformed, the name invalid, the schema not a
                JSON Schema object or using an unsupported keyword, a schema property the
                function does not accept, a required function parameter missing from the
                schema, an injected name in the schema, or, with ``strict``, a schema with
                no strict form.
        """
        if not isinstance(spec, Mapping):
            raise ToolDefinitionError(
                "<unnamed>", f"a tool dict must be a mapping, got {type(spec).__name__}"
            )
        given_name = spec.get("name")
        guess = str(given_name or schema_name(spec.get("function_schema")) or "<unnamed>")
        check_spec_keys(guess, spec)
        schema = function_schema(guess, spec.get("function_schema"))
        schema_tool_name = schema.get("name")
        if (
            given_name is not None
            and schema_tool_name is not None
            and given_name != schema_tool_name
        ):
            raise ToolDefinitionError(
                guess,
                f"'name' {given_name!r} does not match the schema's name {schema_tool_name!r}",
            )
        tool_name = given_name if given_name is not None else schema_tool_name
        if tool_name is None:
            raise ToolDefinitionError(
                guess, "no name: give 'name' or a 'name' in the function schema"
            )
        strict = spec.get("strict", schema.get("strict", False))
        if "strict" in spec and "strict" in schema and spec["strict"] != schema["strict"]:
            raise ToolDefinitionError(
                str(tool_name), "'strict' in the tool dict and in its function schema disagree"
            )
        parameters = schema.get("parameters", {"type": "object", "properties": {}})
        if "func" not in spec:
            raise ToolDefinitionError(str(tool_name), "the tool dict has no 'func'")
        return cls(
            name=tool_name,
            description=schema.get("description", ""),
            parameters=copy.deepcopy(parameters),
            func=spec["func"],
            timeout=spec.get("timeout"),
            strict=strict,
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the tool in the chat-completions ``tools`` format.

        Returns:
            ``{"type": "function", "function": {"name", "description", "parameters"}}``,
            without ``description`` when it is empty, with ``"strict": true`` when strict.
        """
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}

    def prepare(self, arguments: str | Mapping[str, Any] | None) -> PreparedCall:
        """Parse and validate the arguments the model sent.

        Injected names (``user_id``, ``chat_id``, ``context`` and any other injected
        parameter) are removed first and reported in ``ignored``: the model never supplies
        identity. ``null`` for an optional argument that does not accept null means "use the
        default". Tools built from a function get their arguments converted to the annotated
        Python types (enum members, attrs classes, dataclasses, pydantic models, tuples, sets,
        datetimes, UUIDs, decimals).

        Args:
            arguments: the JSON text of the arguments, an already parsed mapping, or None.
                None, an empty string and JSON ``null`` mean no arguments.

        Returns:
            The prepared call.

        Raises:
            ToolArgumentError: the arguments are not a JSON object or do not fit the schema;
                its message is written for the model to read and fix.
        """
        binding = self._binding
        data, text = parse_arguments(self.name, arguments)
        ignored: tuple[str, ...] = ()
        if binding.strip and not binding.strip.isdisjoint(data):
            ignored = tuple(key for key in data if key in binding.strip)
            data = {key: value for key, value in data.items() if key not in binding.strip}
            text = None
        values = data
        for key in binding.null_means_default:
            if key in values and values[key] is None:
                if values is data:
                    values = dict(data)
                    text = None
                del values[key]
        errors: list[str] = []
        binding.validate(values, "", errors)
        if errors:
            raise ToolArgumentError(
                self.name, f"Invalid arguments for tool {self.name!r}: {'; '.join(errors)}"
            )
        kwargs = values
        if binding.adapter is not None:
            try:
                kwargs = convert(binding.adapter, values, text, TOOL_STYLE, self.name)
            except SchemaValidationError as exc:
                raise ToolArgumentError(
                    self.name, f"Invalid arguments for tool {self.name!r}: {'; '.join(exc.errors)}"
                ) from None
        return PreparedCall(arguments=data, kwargs=kwargs, ignored=ignored)

    async def invoke(
        self, call: PreparedCall, context: ToolContext, *, threads: ToolThreads | None = None
    ) -> Any:
        """Run the tool: inject identity, run the function, apply the timeout.

        Async functions run on the event loop, sync functions in a thread of ``threads``
        (a sync function that returns an awaitable has it awaited). On timeout the call is
        cancelled; a sync function's thread cannot be stopped and runs on in the background,
        outside the pool's count.

        Args:
            call: the prepared call from `prepare`.
            context: the call's context; ``user_id``, ``chat_id`` and ``ToolContext``
                parameters are filled from it, overriding anything else.
            threads: where a sync function runs (an agent passes its own pool); by default
                a pool shared by calls made outside an agent, never the event loop's.

        Returns:
            What the function returned (see `format_result` to turn it into a tool message).

        Raises:
            TimeoutError: the call took longer than ``timeout`` seconds.
            Exception: whatever the function raised, unchanged.
        """
        binding = self._binding
        kwargs = call.kwargs
        if binding.injected:
            kwargs = dict(kwargs)
            for param, field in binding.injected:
                kwargs[param] = context if field is None else getattr(context, field)
        awaitable = (
            self.func(**kwargs) if binding.is_async else _run_in_thread(threads, self.func, kwargs)
        )
        if self.timeout is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except asyncio.TimeoutError as exc:
            # wait_for's own timeout is caused by the cancellation it made; a TimeoutError the
            # tool raised itself is not, and propagates unchanged.
            if not isinstance(exc.__cause__, asyncio.CancelledError):
                raise
            raise TimeoutError(f"Tool {self.name!r} timed out after {self.timeout:g} s") from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, so a decorated function stays usable as a function."""
        return self.func(*args, **kwargs)


async def _run_in_thread(
    threads: ToolThreads | None, func: Callable[..., Any], kwargs: Mapping[str, Any]
) -> Any:
    result = await (threads if threads is not None else shared_threads()).run(func, kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _unset_strict(spec: Mapping[str, Any], strict: bool) -> bool:
    """Whether the registry's ``strict`` applies to a tool dict that does not say."""
    if not strict or "strict" in spec:
        return False
    schema = spec.get("function_schema")
    inner = schema.get("function", schema) if isinstance(schema, Mapping) else None
    return not (isinstance(inner, Mapping) and "strict" in inner)


def _with_strict(built: Tool, strict: bool) -> Tool:
    """The same tool sent in strict form (or not): its schema built again for that."""
    if built.strict == strict:
        return built
    if built._binding.from_function:
        return Tool.from_function(
            built.func,
            name=built.name,
            description=built.description,
            timeout=built.timeout,
            strict=strict,
        )
    if strict:
        return attrs.evolve(
            built,
            strict=True,
            _binding=bind_declared(built.name, built.parameters, built.func, strict=True),
        )
    raise ToolDefinitionError(
        built.name, "a tool given in strict form cannot be turned back; build it again"
    )


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    strict: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    strict: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a `Tool`; use as ``@tool`` or ``@tool(name=..., strict=True)``.

    The result is still callable like the function. See `Tool.from_function` for how the
    schema is generated.

    Args:
        func: the function (when used as a bare decorator).
        name: the tool name; defaults to the function's name.
        description: the description; defaults to the docstring's prose.
        timeout: seconds a call may take, or None.
        strict: send the tool in OpenAI's strict form (see `Tool.from_function`).

    Returns:
        The tool, or a decorator making one.
    """

    def decorate(function: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            function, name=name, description=description, timeout=timeout, strict=strict
        )

    if func is None:
        return decorate
    return decorate(func)


def tools_from_registry(
    registry: Iterable[Tool | Mapping[str, Any] | Callable[..., Any]] | None,
    *,
    strict: bool = False,
) -> tuple[Tool, ...]:
    """Normalize a list of tools given in any accepted form.

    Args:
        registry: `Tool` objects, tool dicts (`Tool.from_dict`) and plain functions
            (`Tool.from_function`), or None for no tools.
        strict: send every tool in OpenAI's strict form (a tool built with ``strict=True``
            is strict either way).

    Returns:
        The tools, in order.

    Raises:
        ToolDefinitionError: an item of another kind (naming its index), a faulty tool, two
            tools with the same name, or, with ``strict``, a tool with no strict form.
    """
    if registry is None:
        return ()
    if isinstance(registry, (str, bytes, Mapping, Tool)) or not isinstance(registry, Iterable):
        raise ToolDefinitionError(
            "tools",
            f"expected a list of tools, got a single {type(registry).__name__}; wrap it in a list",
        )
    tools: list[Tool] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(registry):
        if isinstance(item, Tool):
            built = _with_strict(item, True) if strict else item
        elif isinstance(item, Mapping):
            built = Tool.from_dict(
                {**item, "strict": True} if _unset_strict(item, strict) else item
            )
        elif callable(item) and not isinstance(item, type):
            built = Tool.from_function(item, strict=strict)
        else:
            raise ToolDefinitionError(
                f"tools[{index}]",
                f"tools[{index}] is a {type(item).__name__}; expected a Tool, a tool dict "
                "or a function",
            )
        if built.name in seen:
            raise ToolDefinitionError(
                built.name,
                f"tools[{seen[built.name]}] and tools[{index}] have the same name; "
                "tool names must be unique",
            )
        seen[built.name] = index
        tools.append(built)
    return tuple(tools)
