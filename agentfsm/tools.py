"""Tools the model may call: their schemas, argument checks, identity injection and execution."""

from __future__ import annotations

import asyncio
import collections.abc as abc
import copy
import dataclasses
import datetime as dt
import enum
import functools
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, overload

import attrs

from agentfsm.errors import ToolArgumentError, ToolDefinitionError

__all__ = [
    "PreparedCall",
    "Tool",
    "ToolContext",
    "format_result",
    "tool",
    "tools_from_registry",
]


@attrs.frozen
class ToolContext:
    """What a tool may know about the call it serves; agentfsm injects it, the model never sees it.

    A tool receives it through a parameter annotated ``ToolContext`` (conventionally named
    ``context``). Parameters named ``user_id`` and ``chat_id`` receive the matching field alone.

    Attributes:
        chat_id: the conversation's id.
        user_id: the user the conversation belongs to, if the caller gave one.
        agent_name: the name of the agent running the tool.
        turn: the number of model calls made so far in the current run.
    """

    chat_id: str
    user_id: str | None
    agent_name: str
    turn: int


@attrs.frozen
class PreparedCall:
    """A tool call whose arguments passed validation, ready for `Tool.invoke`.

    Attributes:
        arguments: the JSON arguments the model sent, minus the injected names it had no right
            to send (for hooks and logs).
        kwargs: the validated keyword arguments for the function, converted to the annotated
            Python types for tools built from a function; injected ones are added by `invoke`.
        ignored: injected names (``user_id``, ``chat_id``, ``context``…) the model sent anyway
            and that were removed; the caller should log a warning.
    """

    arguments: Mapping[str, Any]
    kwargs: Mapping[str, Any]
    ignored: tuple[str, ...] = ()


# A compiled JSON-Schema check: (value, path, errors) -> None, appending model-readable messages.
_Validator = Callable[[Any, str, list[str]], None]
_Converter = Callable[[Any], Any]

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Names the model may never supply: they are the framework's to fill in.
_RESERVED = frozenset({"user_id", "chat_id"})
_INJECTABLE = frozenset({"user_id", "chat_id", "context"})


class _SchemaError(Exception):
    """A definition fault found deep in a schema or type; the caller adds the tool name."""


@attrs.frozen
class _Binding:
    """Everything `prepare` and `invoke` need, worked out once when the tool is built."""

    validate: _Validator
    strip: frozenset[str]
    null_means_default: tuple[str, ...]
    injected: tuple[tuple[str, str | None], ...]  # (parameter, ToolContext field or None: all)
    converters: tuple[tuple[str, _Converter], ...]
    is_async: bool


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
            parameters are never in it).
        func: the function, sync or async. Sync functions run in a worker thread.
        timeout: seconds a call may take before it fails with `TimeoutError`, or None.
    """

    name: str = attrs.field(validator=_check_name)
    description: str = attrs.field(validator=_check_description)
    parameters: Mapping[str, Any] = attrs.field(hash=False)
    func: Callable[..., Any]
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    _binding: _Binding = attrs.field(kw_only=True, alias="_binding", repr=False, eq=False)

    @_binding.default
    def _bind_declared_schema(self) -> _Binding:
        return _bind_declared(self.name, self.parameters, self.func)

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> Tool:
        """Build a tool from a function, generating the schema from its signature.

        Type hints give the JSON types, the docstring gives the descriptions (its prose before
        the first section for the tool, its ``Args:`` section for the parameters), parameters
        with a default are optional. Parameters named ``user_id`` / ``chat_id``, annotated
        ``ToolContext``, or named ``context`` without annotation are injected and left out.
        Unannotated parameters accept any JSON value.

        Args:
            func: the function, sync or async; its parameters must be passable by name.
            name: the tool name; defaults to the function's ``__name__``.
            description: the tool description; defaults to the docstring's prose.
            timeout: seconds a call may take, or None.

        Returns:
            The tool. Given a `Tool`, returns a copy with the overrides applied.

        Raises:
            ToolDefinitionError: ``*args`` / ``**kwargs``, a type with no JSON Schema, an
                unresolvable type hint or an invalid name.
        """
        if isinstance(func, Tool):
            changes: dict[str, Any] = {
                "name": name,
                "description": description,
                "timeout": timeout,
            }
            return attrs.evolve(func, **{k: v for k, v in changes.items() if v is not None})
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
        parameters, doc_description, binding = _generate(tool_name, func)
        return cls(
            name=tool_name,
            description=doc_description if description is None else description,
            parameters=parameters,
            func=func,
            timeout=timeout,
            _binding=binding,
        )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Tool:
        """Build a tool from an explicit schema (the format tools are often written in elsewhere).

        ``spec`` has ``function_schema`` (OpenAI's ``{"type": "function", "function": {...}}``,
        or the bare ``{"name", "description", "parameters"}``), ``func``, and optionally
        ``name`` (must match the schema's if both are given) and ``timeout``. The function
        receives the JSON values as they are.

        Args:
            spec: the tool dict.

        Returns:
            The tool.

        Raises:
            ToolDefinitionError: the dict is malformed, the name invalid, the schema not a
                JSON Schema object, a schema property the function does not accept, a required
                function parameter missing from the schema, or an injected name in the schema.
        """
        if not isinstance(spec, Mapping):
            raise ToolDefinitionError(
                "<unnamed>", f"a tool dict must be a mapping, got {type(spec).__name__}"
            )
        given_name = spec.get("name")
        guess = str(given_name or _schema_name(spec.get("function_schema")) or "<unnamed>")
        unknown = sorted(set(spec) - {"name", "function_schema", "func", "timeout"})
        if unknown:
            raise ToolDefinitionError(
                guess,
                f"unknown key(s) {unknown} in the tool dict; expected 'name', "
                "'function_schema', 'func' and optionally 'timeout'",
            )
        schema = _function_schema(guess, spec.get("function_schema"))
        schema_name = schema.get("name")
        if given_name is not None and schema_name is not None and given_name != schema_name:
            raise ToolDefinitionError(
                guess, f"'name' {given_name!r} does not match the schema's name {schema_name!r}"
            )
        tool_name = given_name if given_name is not None else schema_name
        if tool_name is None:
            raise ToolDefinitionError(
                guess, "no name: give 'name' or a 'name' in the function schema"
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
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the tool in the chat-completions ``tools`` format.

        Returns:
            ``{"type": "function", "function": {"name", "description", "parameters"}}``,
            without ``description`` when it is empty.
        """
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}

    def prepare(self, arguments: str | Mapping[str, Any] | None) -> PreparedCall:
        """Parse and validate the arguments the model sent.

        Injected names (``user_id``, ``chat_id``, ``context`` and any other injected
        parameter) are removed first and reported in ``ignored``: the model never supplies
        identity. ``null`` for an optional argument that does not accept null means "use the
        default". Tools built from a function get their arguments converted to the annotated
        Python types (enum members, attrs classes, dataclasses, tuples, sets, datetimes).

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
        data = _parse_arguments(self.name, arguments)
        ignored: tuple[str, ...] = ()
        if binding.strip and not binding.strip.isdisjoint(data):
            ignored = tuple(key for key in data if key in binding.strip)
            data = {key: value for key, value in data.items() if key not in binding.strip}
        values = data
        for key in binding.null_means_default:
            if key in values and values[key] is None:
                if values is data:
                    values = dict(data)
                del values[key]
        errors: list[str] = []
        binding.validate(values, "", errors)
        if errors:
            raise ToolArgumentError(
                self.name, f"Invalid arguments for tool {self.name!r}: {'; '.join(errors)}"
            )
        kwargs = values
        if binding.converters:
            kwargs = dict(values)
            for key, converter in binding.converters:
                if key in kwargs:
                    try:
                        kwargs[key] = converter(kwargs[key])
                    except (TypeError, ValueError) as exc:
                        raise ToolArgumentError(
                            self.name,
                            f"Invalid arguments for tool {self.name!r}: '{key}' is invalid: "
                            f"{_reason(exc)}",
                        ) from exc
        return PreparedCall(arguments=data, kwargs=kwargs, ignored=ignored)

    async def invoke(self, call: PreparedCall, context: ToolContext) -> Any:
        """Run the tool: inject identity, run the function, apply the timeout.

        Async functions run on the event loop, sync functions in a worker thread (a sync
        function that returns an awaitable has it awaited). On timeout the call is cancelled;
        a sync function's thread cannot be stopped and runs on in the background.

        Args:
            call: the prepared call from `prepare`.
            context: the call's context; ``user_id``, ``chat_id`` and ``ToolContext``
                parameters are filled from it, overriding anything else.

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
        awaitable = self.func(**kwargs) if binding.is_async else _run_in_thread(self.func, kwargs)
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


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a `Tool`; use as ``@tool`` or ``@tool(name=..., timeout=...)``.

    The result is still callable like the function. See `Tool.from_function` for how the
    schema is generated.

    Args:
        func: the function (when used as a bare decorator).
        name: the tool name; defaults to the function's name.
        description: the description; defaults to the docstring's prose.
        timeout: seconds a call may take, or None.

    Returns:
        The tool, or a decorator making one.
    """

    def decorate(function: Callable[..., Any]) -> Tool:
        return Tool.from_function(function, name=name, description=description, timeout=timeout)

    if func is None:
        return decorate
    return decorate(func)


def tools_from_registry(
    registry: Iterable[Tool | Mapping[str, Any] | Callable[..., Any]] | None,
) -> tuple[Tool, ...]:
    """Normalize a list of tools given in any accepted form.

    Args:
        registry: `Tool` objects, tool dicts (`Tool.from_dict`) and plain functions
            (`Tool.from_function`), or None for no tools.

    Returns:
        The tools, in order.

    Raises:
        ToolDefinitionError: an item of another kind (naming its index), a faulty tool, or
            two tools with the same name.
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
            built = item
        elif isinstance(item, Mapping):
            built = Tool.from_dict(item)
        elif callable(item) and not isinstance(item, type):
            built = Tool.from_function(item)
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


def _reason(exc: Exception) -> str:
    # attrs validators raise ValueError(message, attribute, ...): the message is what counts.
    if len(exc.args) > 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


# --- execution --------------------------------------------------------------------------------


async def _run_in_thread(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    result = await asyncio.to_thread(func, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    if inspect.isroutine(func) or isinstance(func, (type, functools.partial)):
        return False
    return inspect.iscoroutinefunction(type(func).__call__)


def _parse_arguments(name: str, arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        if not arguments or arguments.isspace():
            return {}
        try:
            parsed = json.loads(arguments)
        except RecursionError:
            raise ToolArgumentError(
                name,
                f"Invalid arguments for tool {name!r}: nested too deeply to read; send a "
                "flatter JSON object",
            ) from None
        except json.JSONDecodeError as exc:
            raise ToolArgumentError(
                name,
                f"Invalid arguments for tool {name!r}: not valid JSON ({exc.msg} at line "
                f"{exc.lineno} column {exc.colno}); send the arguments as a JSON object",
            ) from None
        if type(parsed) is dict:
            return parsed  # fresh from the parser: no copy needed
        if isinstance(parsed, str):  # arguments encoded twice, as some models do
            try:
                reparsed = json.loads(parsed)
            except (json.JSONDecodeError, RecursionError):
                pass
            else:
                if isinstance(reparsed, dict):
                    parsed = reparsed
    else:
        parsed = arguments
    if parsed is None:
        return {}
    if not isinstance(parsed, Mapping):
        raise ToolArgumentError(
            name,
            f"Invalid arguments for tool {name!r}: the arguments must be a JSON object, "
            f"got {_kind(parsed)}",
        )
    return dict(parsed)


# --- binding a function to a schema ----------------------------------------------------------

_UNANNOTATED: Any = inspect.Parameter.empty
_NOT_INJECTED: Any = object()


def _introspection_target(func: Callable[..., Any]) -> Any:
    """The object whose annotations and docstring describe ``func``."""
    if isinstance(func, functools.partial):
        return _introspection_target(func.func)
    if inspect.isroutine(func) or isinstance(func, type):
        return func
    return type(func).__call__  # a callable instance


def _own_doc(func: Callable[..., Any], target: Any) -> str | None:
    doc = getattr(target, "__doc__", None)
    if not doc and not inspect.isroutine(func) and not isinstance(func, functools.partial):
        doc = type(func).__doc__  # a callable object described by its class
    return doc if isinstance(doc, str) else None


def _signature(name: str, func: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(name, f"cannot read the function's signature: {exc}") from None


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


def _generate(tool_name: str, func: Callable[..., Any]) -> tuple[dict[str, Any], str, _Binding]:
    """The generated parameters schema, the docstring's description, and the binding."""
    target = _introspection_target(func)
    signature = _signature(tool_name, func)
    hints = _type_hints(tool_name, target)
    doc_description, arg_docs, _ = _parse_docstring(_own_doc(func, target))

    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: list[tuple[str, _Converter]] = []
    injected: list[tuple[str, str | None]] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ToolDefinitionError(
                tool_name,
                f"cannot build a schema for {stars}{param.name}; declare each argument as a "
                "named parameter, or use Tool.from_dict with an explicit schema",
            )
        if param.kind is param.POSITIONAL_ONLY:
            _skip_positional_only(tool_name, param)
            continue
        hint = hints.get(param.name, _UNANNOTATED)
        source = _injection(param, hint, declared=())
        if source is not _NOT_INJECTED:
            _check_injected_hint(tool_name, param.name, hint)
            injected.append((param.name, source))
            continue
        try:
            schema, converter = _shape(hint, ())
        except _SchemaError as exc:
            raise ToolDefinitionError(tool_name, f"parameter {param.name!r}: {exc}") from None
        described = _annotated_description(hint) or arg_docs.get(param.name)
        if described:
            schema = {**schema, "description": described}
        if param.default is param.empty:
            required.append(param.name)
        else:
            schema = _with_default(schema, param.default)
        properties[param.name] = schema
        if converter is not None:
            converters.append((param.name, converter))

    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    parameters["additionalProperties"] = False
    binding = _make_binding(
        tool_name,
        parameters,
        properties=properties,
        extra_required=(),
        injected=tuple(injected),
        converters=tuple(converters),
        func=func,
    )
    return parameters, doc_description, binding


def _skip_positional_only(name: str, param: inspect.Parameter) -> None:
    """A positional-only parameter keeps its default; without one the tool cannot work."""
    if param.default is param.empty:
        raise ToolDefinitionError(
            name, f"parameter {param.name!r} is positional-only, so it cannot be passed by name"
        )


def _is_tool_context(hint: Any) -> bool:
    if hint is ToolContext:
        return True
    if isinstance(hint, str):  # an annotation that could not be resolved
        return hint.rsplit(".", 1)[-1] == "ToolContext"
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _is_tool_context(typing.get_args(hint)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        return len(members) == 1 and _is_tool_context(members[0])
    return False


_STRING_HINTS = (str, typing.Optional[str], str | None, Any, object)  # noqa: UP045 - both spellings


def _check_injected_hint(tool_name: str, name: str, hint: Any) -> None:
    """``user_id`` / ``chat_id`` receive strings (``user_id`` may be None): refuse another
    annotation rather than silently pass a string where the tool expects, say, an int."""
    if name not in _RESERVED or hint is _UNANNOTATED or hint in _STRING_HINTS:
        return
    shown = getattr(hint, "__name__", None) or repr(hint)
    raise ToolDefinitionError(
        tool_name,
        f"parameter {name!r} is injected by agentfsm with the conversation's {name} (a string"
        f"{', or None' if name == 'user_id' else ''}), but is annotated {shown}; annotate it "
        f"'str{' | None' if name == 'user_id' else ''}', or give the parameter another name if "
        "the model should supply it",
    )


def _injection(param: inspect.Parameter, hint: Any, declared: Iterable[str]) -> Any:
    """The ToolContext field a parameter receives, None for the whole context, or _NOT_INJECTED."""
    if param.name in _RESERVED:
        return param.name
    if _is_tool_context(hint):
        return None
    if param.name == "context" and hint is _UNANNOTATED and "context" not in declared:
        return None
    return _NOT_INJECTED


def _schema_name(schema: object) -> Any:
    """The name in a function schema of either shape, if there is one (for error messages)."""
    if not isinstance(schema, Mapping):
        return None
    inner = schema.get("function", schema)
    return inner.get("name") if isinstance(inner, Mapping) else None


def _function_schema(name: str, schema: object) -> Mapping[str, Any]:
    """The bare ``{"name", "description", "parameters"}`` from either accepted shape."""
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
    unknown = sorted(set(schema) - {"name", "description", "parameters"})
    if unknown:
        raise ToolDefinitionError(
            name,
            f"unsupported key(s) {unknown} in the function schema; expected 'name', "
            "'description' and 'parameters' (agentfsm validates arguments itself, "
            "so 'strict' is not needed)",
        )
    return schema


def _bind_declared(name: str, parameters: Any, func: Any) -> _Binding:
    """Check an explicit schema against its function and compile it."""
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
    signature = _signature(name, func)
    try:
        hints = typing.get_type_hints(
            _introspection_target(func), localns={"ToolContext": ToolContext}
        )
    except Exception:  # the schema is explicit: hints only serve to spot a ToolContext
        hints = {}
    accepts_any = False
    accepted: list[str] = []
    required: list[str] = []
    injected: list[tuple[str, str | None]] = []
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            accepts_any = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.POSITIONAL_ONLY:
            _skip_positional_only(name, param)
            continue
        hint = hints.get(param.name, param.annotation)
        source = _injection(param, hint, properties)
        if source is not _NOT_INJECTED:
            _check_injected_hint(name, param.name, _UNANNOTATED if hint is param.empty else hint)
            injected.append((param.name, source))
            continue
        accepted.append(param.name)
        if param.default is param.empty:
            required.append(param.name)
    injected_names = {param for param, _ in injected}
    for prop in properties:
        if prop in _RESERVED or prop in injected_names:
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
    if not accepts_any and parameters.get("additionalProperties") is not False:
        # The function cannot take other arguments: refuse them with a message, not a TypeError.
        parameters = {**parameters, "additionalProperties": False}
    return _make_binding(
        name,
        parameters,
        properties=properties,
        extra_required=tuple(required),  # the model gets a clear error, not a TypeError
        injected=tuple(injected),
        converters=(),
        func=func,
    )


def _make_binding(
    name: str,
    parameters: Mapping[str, Any],
    *,
    properties: Mapping[str, Any],
    extra_required: tuple[str, ...],
    injected: tuple[tuple[str, str | None], ...],
    converters: tuple[tuple[str, _Converter], ...],
    func: Callable[..., Any],
) -> _Binding:
    compiler = _Compiler(parameters)
    try:
        validate = compiler.compile(parameters, "parameters", extra_required)
        required = set(extra_required) | set(parameters.get("required", ()))
        null_means_default = []
        for prop, schema in properties.items():
            if prop not in required:
                errors: list[str] = []
                compiler.compile(schema, f"parameters.properties.{prop}")(None, prop, errors)
                if errors:
                    null_means_default.append(prop)
    except _SchemaError as exc:
        raise ToolDefinitionError(name, str(exc)) from None
    return _Binding(
        validate=validate,
        strip=(_INJECTABLE | {param for param, _ in injected}) - set(properties),
        null_means_default=tuple(null_means_default),
        injected=injected,
        converters=converters,
        is_async=_is_async(func),
    )


# --- docstrings ------------------------------------------------------------------------------

_ARG_SECTIONS = frozenset(
    {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
)
_OTHER_SECTIONS = frozenset(
    {
        "attributes",
        "returns",
        "return",
        "yields",
        "yield",
        "raises",
        "example",
        "examples",
        "note",
        "notes",
        "warning",
        "warnings",
        "see also",
        "todo",
        "references",
        "methods",
    }
)
_SECTION_RE = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_ENTRY_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """Split a Google-style docstring into (prose, Args entries, Attributes entries)."""
    if not doc:
        return "", {}, {}
    prose: list[str] = []
    sections: dict[str, dict[str, str]] = {"args": {}, "attributes": {}}
    current: dict[str, str] | None = None
    in_sections = False
    entry_indent: int | None = None
    last: str | None = None
    for line in inspect.cleandoc(doc).splitlines():
        header = _SECTION_RE.match(line)
        if header:
            title = header.group(1).strip().lower()
            if title in _ARG_SECTIONS or title in _OTHER_SECTIONS:
                in_sections = True
                key = "args" if title in _ARG_SECTIONS else title
                current = sections.get(key)
                entry_indent, last = None, None
                continue
        if not in_sections:
            prose.append(line)
            continue
        if current is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if entry_indent is None:
            entry_indent = indent
        if indent <= entry_indent:
            entry = _ENTRY_RE.match(line.strip())
            last = entry.group(1) if entry else None
            if entry:
                current[last] = entry.group(2).strip()  # type: ignore[index]
        elif last is not None:
            current[last] = f"{current[last]} {line.strip()}".strip()
    return "\n".join(prose).strip(), sections["args"], sections["attributes"]


# --- JSON Schema from type hints -------------------------------------------------------------

_NONE_TYPE = type(None)


def _typing_forms(name: str) -> tuple[Any, ...]:
    """``typing.<name>`` and ``typing_extensions.<name>`` (the latter on Python 3.10)."""
    forms = [getattr(typing, name, None)]
    try:
        import typing_extensions
    except ImportError:  # pragma: no cover - typing_extensions comes with openai
        pass
    else:
        forms.append(getattr(typing_extensions, name, None))
    return tuple(dict.fromkeys(form for form in forms if form is not None))


_REQUIRED = _typing_forms("Required")
_REQUIRED_WRAPPERS = _REQUIRED + _typing_forms("NotRequired")
_ARRAY_ORIGINS: dict[Any, Callable[[Iterable[Any]], Any]] = {
    list: list,
    abc.Sequence: list,
    abc.MutableSequence: list,
    abc.Iterable: list,
    abc.Collection: list,
    set: set,
    abc.Set: set,
    abc.MutableSet: set,
    frozenset: frozenset,
}
_BARE_TUPLE: Any = typing.Tuple  # noqa: UP006  (its args are (), like tuple[()]'s)
_MAPPING_ORIGINS = (dict, abc.Mapping, abc.MutableMapping)
_SUPPORTED = (
    "str, int, float, bool, None, datetime, date, Enum, Literal, list, tuple, set, frozenset, "
    "dict[str, X], unions, attrs classes, dataclasses and TypedDicts"
)


def _split_annotated(hint: Any) -> tuple[Any, str | None]:
    if typing.get_origin(hint) is typing.Annotated:
        description = next((m for m in hint.__metadata__ if isinstance(m, str)), None)
        return typing.get_args(hint)[0], description
    return hint, None


def _annotated_description(hint: Any) -> str | None:
    """The description ``Annotated[X, "..."]`` gives, also inside ``Optional``/``Required``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in typing.get_args(hint) if arg is not _NONE_TYPE]
        return _annotated_description(members[0]) if len(members) == 1 else None
    if origin is not None and origin in _REQUIRED_WRAPPERS:
        return _annotated_description(typing.get_args(hint)[0])
    return _split_annotated(hint)[1]


def _shape(hint: Any, stack: tuple[type, ...]) -> tuple[dict[str, Any], _Converter | None]:
    """The JSON Schema of a type hint, and how to turn a valid JSON value into that type.

    The converter is None when the JSON value already is the right Python value.
    """
    if hint is _UNANNOTATED or hint is Any or hint is object:
        return {}, None
    if hint is None or hint is _NONE_TYPE:
        return {"type": "null"}, None
    if hint is str:
        return {"type": "string"}, None
    if hint is bool:
        return {"type": "boolean"}, None
    if hint is int:
        return {"type": "integer"}, None
    if hint is float:
        return {"type": "number"}, float
    if hint is dt.datetime:
        return {"type": "string", "format": "date-time"}, _parse_datetime
    if hint is dt.date:
        return {"type": "string", "format": "date"}, dt.date.fromisoformat
    if hint is ToolContext:
        raise _SchemaError("ToolContext can only be injected as a parameter of the tool itself")
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _shape(supertype, stack)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        inner, description = _split_annotated(hint)
        schema, converter = _shape(inner, stack)
        return ({**schema, "description": description} if description else schema), converter
    if origin is typing.Union or origin is types.UnionType:
        return _union_shape(args, stack)
    if origin is Literal:
        return _literal_shape(args)
    if origin is not None and origin in _REQUIRED_WRAPPERS:
        return _shape(args[0], stack)
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return _enum_shape(hint)
        if attrs.has(hint) or dataclasses.is_dataclass(hint) or typing.is_typeddict(hint):
            return _object_shape(hint, stack)
    container = origin if origin is not None else hint
    if container is tuple:
        return _tuple_shape(args, origin is not None and hint is not _BARE_TUPLE, stack)
    build = _ARRAY_ORIGINS.get(container) if isinstance(container, type) else None
    if build is not None:
        if not args:
            return {"type": "array"}, (None if build is list else build)
        items, item_converter = _shape(args[0], stack)
        return {"type": "array", "items": items}, _sequence_converter(build, item_converter)
    if isinstance(container, type) and container in _MAPPING_ORIGINS:
        if not args:
            return {"type": "object"}, None
        if args[0] is not str and args[0] is not Any:
            raise _SchemaError(
                f"dict keys must be str (JSON object keys are strings), got {args[0]}"
            )
        values, value_converter = _shape(args[1], stack)
        schema = {"type": "object", "additionalProperties": values}
        if value_converter is None:
            return schema, None
        convert = value_converter
        return schema, lambda value: {key: convert(item) for key, item in value.items()}
    raise _SchemaError(f"unsupported type {_type_name(hint)}; supported: {_SUPPORTED}")


def _type_name(hint: Any) -> str:
    return hint.__qualname__ if isinstance(hint, type) else repr(hint)


def _parse_datetime(value: str) -> dt.datetime:
    if value.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read "Z"
        value = value[:-1] + "+00:00"
    return dt.datetime.fromisoformat(value)


def _sequence_converter(
    build: Callable[[Iterable[Any]], Any], item_converter: _Converter | None
) -> _Converter | None:
    if item_converter is None:
        return None if build is list else build
    convert = item_converter
    if build is list:
        return lambda value: [convert(item) for item in value]
    return lambda value: build(convert(item) for item in value)


def _tuple_shape(
    args: tuple[Any, ...], parametrized: bool, stack: tuple[type, ...]
) -> tuple[dict[str, Any], _Converter | None]:
    if not parametrized:
        return {"type": "array"}, tuple
    if len(args) == 2 and args[1] is Ellipsis:
        items, item_converter = _shape(args[0], stack)
        convert = _sequence_converter(tuple, item_converter)
        return {"type": "array", "items": items}, convert
    if args == ((),):  # tuple[()] on older Pythons
        args = ()
    shapes = [_shape(arg, stack) for arg in args]
    schema: dict[str, Any] = {"type": "array"}
    if shapes:
        schema["prefixItems"] = [item for item, _ in shapes]
    schema["minItems"] = schema["maxItems"] = len(shapes)
    converters = tuple(converter for _, converter in shapes)
    if all(converter is None for converter in converters):
        return schema, tuple

    def convert_fixed(value: Any) -> tuple[Any, ...]:
        return tuple(c(item) if c else item for c, item in zip(converters, value, strict=True))

    return schema, convert_fixed


def _json_type(value: Any) -> str:
    """The JSON type of an enum value (a scalar) for a generated schema."""
    if value is None:
        return "null"
    kind = _kind(value)
    if kind not in ("boolean", "integer", "number", "string"):
        raise _SchemaError(f"value {value!r} has no JSON type")
    return kind


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    types_ = list(dict.fromkeys(_json_type(value) for value in values))
    if "number" in types_ and "integer" in types_:
        types_.remove("integer")
    return {"type": types_[0] if len(types_) == 1 else types_, "enum": values}


def _enum_shape(cls: type[enum.Enum]) -> tuple[dict[str, Any], _Converter | None]:
    values = [member.value for member in cls]
    if not values:
        raise _SchemaError(f"enum {cls.__qualname__} has no members")
    try:
        return _enum_schema(values), cls
    except _SchemaError as exc:
        raise _SchemaError(f"enum {cls.__qualname__}: {exc}") from None


def _literal_shape(args: tuple[Any, ...]) -> tuple[dict[str, Any], _Converter | None]:
    values = [arg.value if isinstance(arg, enum.Enum) else arg for arg in args]
    schema = _enum_schema(values)
    members = {
        _enum_key(v): arg for v, arg in zip(values, args, strict=True) if isinstance(arg, enum.Enum)
    }
    if not members:
        return schema, None
    return schema, lambda value: members.get(_enum_key(value), value)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema:
        return schema  # Any already admits null
    kind = schema.get("type")
    if kind is not None and not {"anyOf", "oneOf", "allOf", "$ref"} & set(schema):
        kinds = [kind] if isinstance(kind, str) else list(kind)
        out = {**schema, "type": kinds if "null" in kinds else [*kinds, "null"]}
        if "enum" in schema and None not in schema["enum"]:
            out["enum"] = [*schema["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def _union_shape(
    args: tuple[Any, ...], stack: tuple[type, ...]
) -> tuple[dict[str, Any], _Converter | None]:
    members = [arg for arg in args if arg is not _NONE_TYPE]
    nullable = len(members) < len(args)
    shapes = [_shape(member, stack) for member in members]
    if len(shapes) == 1:
        schema, converter = shapes[0]
        if converter is None:
            return _nullable(schema), None
        convert_one = converter
        return _nullable(schema), lambda value: None if value is None else convert_one(value)
    schemas = [schema for schema, _ in shapes]
    if all(list(s) == ["type"] and isinstance(s["type"], str) for s in schemas):
        kinds = list(dict.fromkeys(s["type"] for s in schemas))
        schema = {"type": [*kinds, "null"] if nullable else kinds}
    else:
        schema = {"anyOf": [*schemas, {"type": "null"}] if nullable else schemas}
    if all(converter is None for _, converter in shapes):
        return schema, None
    # The first member whose schema accepts the value decides the conversion.
    branches = tuple((_Compiler(s).compile(s, "union member"), c) for s, c in shapes)

    def convert(value: Any) -> Any:
        if value is None:
            return None
        for check, converter in branches:
            errors: list[str] = []
            check(value, "", errors)
            if not errors:
                return value if converter is None else converter(value)
        return value

    return schema, convert


def _with_default(schema: dict[str, Any], default: Any) -> dict[str, Any]:
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, float) and not math.isfinite(default):
        return schema  # JSON has no infinity or NaN
    if default is None or isinstance(default, (str, int, float, bool)):
        return {**schema, "default": default}
    return schema


def _class_fields(cls: type, hints: Mapping[str, Any]) -> list[tuple[str, Any, bool, Any]]:
    """(JSON name, hint, required, default) for each field the class's constructor takes."""
    if attrs.has(cls):
        return [
            (
                field.alias,
                hints.get(field.name, field.type if field.type is not None else Any),
                field.default is attrs.NOTHING,
                field.default,
            )
            for field in attrs.fields(cls)
            if field.init
        ]
    if dataclasses.is_dataclass(cls):
        missing = dataclasses.MISSING
        return [
            (
                field.name,
                hints.get(field.name, Any),
                field.default is missing and field.default_factory is missing,
                field.default,
            )
            for field in dataclasses.fields(cls)
            if field.init
        ]
    # A TypedDict: __required_keys__ misses NotRequired written in string annotations.
    required_keys = getattr(cls, "__required_keys__", frozenset(hints))
    fields = []
    for key, hint in hints.items():
        wrapper = typing.get_origin(hint)
        if wrapper is not None and wrapper in _REQUIRED_WRAPPERS:
            is_required = wrapper in _REQUIRED
        else:
            is_required = key in required_keys
        fields.append((key, hint, is_required, attrs.NOTHING))
    return fields


def _object_shape(cls: type, stack: tuple[type, ...]) -> tuple[dict[str, Any], _Converter | None]:
    if cls in stack:
        raise _SchemaError(f"recursive type {cls.__qualname__} is not supported")
    stack = (*stack, cls)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise _SchemaError(
            f"cannot resolve the type hints of {cls.__qualname__} ({type(exc).__name__}: {exc})"
        ) from None
    doc = cls.__dict__.get("__doc__")
    if isinstance(doc, str) and doc.startswith(f"{cls.__name__}("):
        doc = None  # the signature dataclasses write when there is no docstring
    description, _, field_docs = _parse_docstring(doc)
    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: dict[str, _Converter] = {}
    for name, hint, is_required, default in _class_fields(cls, hints):
        schema, converter = _shape(hint, stack)
        described = (
            _annotated_description(hint) or field_docs.get(name) or field_docs.get(f"_{name}")
        )
        if described:
            schema = {**schema, "description": described}
        if is_required:
            required.append(name)
        elif default is not attrs.NOTHING and default is not dataclasses.MISSING:
            schema = _with_default(schema, default)  # keeps only JSON scalars, not factories
        properties[name] = schema
        if converter is not None:
            converters[name] = converter
    schema = {"type": "object"}
    if description:
        schema["description"] = description
    schema["properties"] = properties
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if typing.is_typeddict(cls):
        if not converters:
            return schema, None
        return schema, lambda value: {
            key: converters[key](item) if key in converters else item for key, item in value.items()
        }
    build: Callable[..., Any] = cls
    return schema, lambda value: build(
        **{key: converters[key](item) if key in converters else item for key, item in value.items()}
    )


# --- a validator for the JSON Schema subset --------------------------------------------------

_KINDS: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    _NONE_TYPE: "null",
    list: "array",
    tuple: "array",
    dict: "object",
}
_JSON_TYPES = frozenset(_KINDS.values())
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


def _kind(value: Any) -> str:
    """The JSON type of a value (``integer`` for ints, ``number`` for floats)."""
    kind = _KINDS.get(type(value))
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


def _enum_key(value: Any) -> Any:
    """A key equal for JSON-equal values only (``true`` is not ``1``); None if unhashable."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if value is None or isinstance(value, str):
        return ("s", value)
    return None


def _json_equal(a: Any, b: Any) -> bool:
    if _kind(a) in ("integer", "number") and _kind(b) in ("integer", "number"):
        return bool(a == b)
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _label(path: str) -> str:
    return f"'{path}'" if path else "the arguments"


def _accept(value: Any, path: str, errors: list[str]) -> None:
    return None


def _reject(value: Any, path: str, errors: list[str]) -> None:
    errors.append(f"{_label(path)} is not allowed")


class _Compiler:
    """Compiles a JSON Schema (the subset tools use) into nested closures, once."""

    def __init__(self, root: Any) -> None:
        self._root = root
        self._refs: dict[str, list[_Validator]] = {}

    def compile(self, schema: Any, where: str, extra_required: Iterable[str] = ()) -> _Validator:
        if schema is True:
            return _accept
        if schema is False:
            return _reject
        if not isinstance(schema, Mapping):
            raise _SchemaError(
                f"{where} must be a JSON Schema (a mapping or a boolean), "
                f"got {type(schema).__name__}"
            )
        allowed: frozenset[str] | None = None
        label = ""
        if "type" in schema:
            allowed, label = self._types(schema["type"], where)
        checks: list[_Validator] = []
        if "$ref" in schema:
            checks.append(self._ref(schema["$ref"], where))
        if "enum" in schema:
            checks.append(self._enum(schema["enum"], where))
        if "const" in schema:
            checks.append(self._const(schema["const"]))
        checks.extend(self._bounds(schema, where))
        if "pattern" in schema:
            checks.append(self._pattern(schema["pattern"], where))
        if {"properties", "required", "additionalProperties"} & set(schema) or extra_required:
            checks.append(self._object(schema, where, tuple(extra_required)))
        if {"items", "prefixItems", "minItems", "maxItems"} & set(schema):
            checks.append(self._array(schema, where))
        for keyword in ("anyOf", "oneOf", "allOf"):
            if keyword in schema:
                checks.append(self._combination(keyword, schema[keyword], where))
        return _combine(allowed, label, tuple(checks))

    def _types(self, declared: Any, where: str) -> tuple[frozenset[str], str]:
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list) or not names:
            raise _SchemaError(
                f"{where}.type must be a type name or a list of them, got {declared!r}"
            )
        for name in names:
            if name not in _JSON_TYPES:
                typo = _TYPE_TYPOS.get(str(name).lower())
                hint = f" (did you mean {typo!r}?)" if typo else ""
                raise _SchemaError(
                    f"{where}.type: unknown JSON Schema type {name!r}{hint}; "
                    f"use one of {sorted(_JSON_TYPES)}"
                )
        allowed = set(names)
        if "number" in allowed:
            allowed.add("integer")
        return frozenset(allowed), " or ".join(names)

    def _ref(self, ref: Any, where: str) -> _Validator:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise _SchemaError(
                f"{where}: only local references ('#/...') are supported, got {ref!r}"
            )
        cell = self._refs.get(ref)
        if cell is None:
            cell = self._refs[ref] = []
            target: Any = self._root
            for part in ref[1:].split("/")[1:]:
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, Mapping) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    raise _SchemaError(f"{where}: reference {ref!r} does not resolve")
            cell.append(self.compile(target, ref))
        resolved = cell  # filled in before any validation runs, even for recursive references

        def check_ref(value: Any, path: str, errors: list[str]) -> None:
            resolved[0](value, path, errors)

        return check_ref

    def _enum(self, values: Any, where: str) -> _Validator:
        if not isinstance(values, list) or not values:
            raise _SchemaError(f"{where}.enum must be a non-empty list")
        keys = {key for key in map(_enum_key, values) if key is not None}
        others = [value for value in values if _enum_key(value) is None]
        message = f"must be one of {values!r}"

        def check_enum(value: Any, path: str, errors: list[str]) -> None:
            key = _enum_key(value)
            if key is not None and key in keys:
                return
            if not any(_json_equal(value, other) for other in others):
                errors.append(f"{_label(path)} {message}")

        return check_enum

    def _const(self, const: Any) -> _Validator:
        def check_const(value: Any, path: str, errors: list[str]) -> None:
            if not _json_equal(value, const):
                errors.append(f"{_label(path)} must be {const!r}")

        return check_const

    def _bounds(self, schema: Mapping[str, Any], where: str) -> list[_Validator]:
        checks: list[_Validator] = []
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
                raise _SchemaError(f"{where}.{keyword} must be a number, got {limit!r}")
            if keyword.endswith("Length"):
                kinds: tuple[str, ...] = ("string",)
                message = f"must be {text} {limit} characters long"
            else:
                kinds = numeric
                message = f"must be {text} {limit}"
            checks.append(_bound_check(kinds, fails, limit, message))
        return checks

    def _pattern(self, pattern: Any, where: str) -> _Validator:
        try:
            compiled = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise _SchemaError(
                f"{where}.pattern is not a valid regular expression: {exc}"
            ) from None

        def check_pattern(value: Any, path: str, errors: list[str]) -> None:
            if isinstance(value, str) and not compiled.search(value):
                errors.append(f"{_label(path)} must match the pattern {pattern!r}")

        return check_pattern

    def _object(
        self, schema: Mapping[str, Any], where: str, extra_required: tuple[str, ...]
    ) -> _Validator:
        raw_properties = schema.get("properties", {})
        if not isinstance(raw_properties, Mapping):
            raise _SchemaError(f"{where}.properties must be a mapping of names to schemas")
        properties = {
            name: self.compile(sub, f"{where}.properties.{name}")
            for name, sub in raw_properties.items()
        }
        declared_required = schema.get("required", [])
        if not isinstance(declared_required, list) or not all(
            isinstance(name, str) for name in declared_required
        ):
            raise _SchemaError(f"{where}.required must be a list of property names")
        if "properties" in schema:
            for name in declared_required:
                if name not in properties:
                    raise _SchemaError(
                        f"{where}.required lists {name!r}, which is not in properties"
                    )
        required = tuple(dict.fromkeys([*declared_required, *extra_required]))
        additional_schema = schema.get("additionalProperties", True)
        closed = additional_schema is False
        additional = (
            None if closed else self.compile(additional_schema, f"{where}.additionalProperties")
        )
        if additional is _accept:
            additional = None
        accepted = ", ".join(f"'{name}'" for name in properties)
        hint = f"accepted: {accepted}" if accepted else "no arguments are accepted"

        def check_object(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, Mapping):
                return
            prefix = f"{path}." if path else ""
            for name in required:
                if name not in value:
                    errors.append(f"missing required argument '{prefix}{name}'")
            for key, item in value.items():
                check = properties.get(key)
                if check is not None:
                    check(item, f"{prefix}{key}", errors)
                elif closed:
                    errors.append(f"unexpected argument '{prefix}{key}' ({hint})")
                elif additional is not None:
                    additional(item, f"{prefix}{key}", errors)

        return check_object

    def _array(self, schema: Mapping[str, Any], where: str) -> _Validator:
        raw_items = schema.get("items", True)
        raw_prefix = schema.get("prefixItems", [])
        if isinstance(raw_items, list):  # the draft-4 tuple form
            raw_prefix, raw_items = raw_items, schema.get("additionalItems", True)
        if not isinstance(raw_prefix, list):
            raise _SchemaError(f"{where}.prefixItems must be a list of schemas")
        prefix = tuple(
            self.compile(sub, f"{where}.prefixItems[{i}]") for i, sub in enumerate(raw_prefix)
        )
        items = self.compile(raw_items, f"{where}.items")
        min_items = schema.get("minItems")
        max_items = schema.get("maxItems")
        for keyword, limit in (("minItems", min_items), ("maxItems", max_items)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
                raise _SchemaError(f"{where}.{keyword} must be an integer, got {limit!r}")

        def check_array(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, (list, tuple)):
                return
            count = len(value)
            if min_items is not None and count < min_items:
                errors.append(f"{_label(path)} must have at least {min_items} item(s), got {count}")
            if max_items is not None and count > max_items:
                errors.append(f"{_label(path)} must have at most {max_items} item(s), got {count}")
            for index, item in enumerate(value):
                check = prefix[index] if index < len(prefix) else items
                if check is not _accept:
                    check(item, f"{path}[{index}]", errors)

        return check_array

    def _combination(self, keyword: str, raw: Any, where: str) -> _Validator:
        if not isinstance(raw, list) or not raw:
            raise _SchemaError(f"{where}.{keyword} must be a non-empty list of schemas")
        branches = tuple(self.compile(sub, f"{where}.{keyword}[{i}]") for i, sub in enumerate(raw))
        if keyword == "allOf":

            def check_all(value: Any, path: str, errors: list[str]) -> None:
                for branch in branches:
                    branch(value, path, errors)

            return check_all
        kinds = tuple(self._declared_kinds(sub) for sub in raw)
        exactly_one = keyword == "oneOf"

        def check_some(value: Any, path: str, errors: list[str]) -> None:
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
                errors.append(f"{_label(path)} matches more than one of the allowed forms")
                return
            errors.append(_explain_mismatch(value, path, kinds, failures))

        return check_some

    @staticmethod
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
) -> str:
    """One message for a value no branch of anyOf / oneOf accepts, naming the likely fix."""
    kind = _kind(value)
    plausible = [
        i
        for i, declared in enumerate(kinds)
        if declared is None or kind in declared or (kind == "integer" and "number" in declared)
    ]
    if len(plausible) == 1:
        return "; ".join(failures[plausible[0]])
    if not plausible and all(declared is not None for declared in kinds):
        names = list(dict.fromkeys(name for declared in kinds for name in declared or ()))
        return f"{_label(path)} must be {' or '.join(names)}, got {kind}"
    details = " | ".join("; ".join(failures[i]) for i in plausible or range(len(failures)))
    return f"{_label(path)} does not match any of the allowed forms ({details})"


def _bound_check(
    kinds: tuple[str, ...], fails: Callable[[Any, Any], bool], limit: Any, message: str
) -> _Validator:
    def check_bound(value: Any, path: str, errors: list[str]) -> None:
        if _kind(value) in kinds and fails(value, limit):
            errors.append(f"{_label(path)} {message}")

    return check_bound


def _combine(
    allowed: frozenset[str] | None, label: str, checks: tuple[_Validator, ...]
) -> _Validator:
    if allowed is None:
        if not checks:
            return _accept
        if len(checks) == 1:
            return checks[0]

        def check_each(value: Any, path: str, errors: list[str]) -> None:
            for check in checks:
                check(value, path, errors)

        return check_each

    def check_typed(value: Any, path: str, errors: list[str]) -> None:
        kind = _KINDS.get(type(value)) or _kind(value)
        if kind not in allowed:
            errors.append(f"{_label(path)} must be {label}, got {kind}")
            return  # further checks would only repeat the type error
        for check in checks:
            check(value, path, errors)

    return check_typed


# --- results ---------------------------------------------------------------------------------

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
