"""What a tool knows about a call: its context, its checked arguments, and how it binds them."""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from pydantic import TypeAdapter

from agentfsm.budget import to_decimal
from agentfsm.errors import (
    ConfigurationError,
    InvalidInputError,
    ToolArgumentError,
    ToolDefinitionError,
)
from agentfsm.usage import Usage

if TYPE_CHECKING:
    from agentfsm.hooks import Emitter
from agentfsm.schema._validator import Validator, json_kind

__all__ = [
    "INJECTABLE",
    "NOT_INJECTED",
    "RESERVED",
    "UNANNOTATED",
    "Binding",
    "Ledger",
    "PreparedCall",
    "ToolContext",
    "check_injected_hint",
    "injection",
    "introspection_target",
    "is_async",
    "parse_arguments",
    "signature",
    "skip_positional_only",
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
        call_id: the id of the tool call this context serves (the one its result answers):
            a key for a tool with side effects to deduplicate on, since a run resumed after a
            crash may run a call again with the same id.
        attempt: 1 the first time this call runs; 2 and up when a run resumed after its
            worker died runs it again (a call that had not finished when the worker died:
            it may have had effects, so deduplicate them on ``call_id``).
        depth: how deep the calling run is in a tree of agents: 0 for a run a caller started,
            1 for an agent run as another agent's tool (``Agent.as_tool``), and so on.
        budget_left: USD the calling chat may still spend under its budget, or ``None`` when
            it has no budget (or no pricing): what a tool that spends money itself (a
            sub-agent, a paid API) should stay within.
    """

    chat_id: str
    user_id: str | None
    agent_name: str
    turn: int
    call_id: str | None = attrs.field(default=None, kw_only=True)
    attempt: int = attrs.field(default=1, kw_only=True)
    depth: int = attrs.field(default=0, kw_only=True)
    budget_left: Decimal | None = attrs.field(default=None, kw_only=True)
    _ledger: Ledger | None = attrs.field(
        default=None, kw_only=True, alias="ledger", repr=False, eq=False
    )

    def charge(self, usage: Usage | None = None, cost: Decimal | float | str = 0) -> None:
        """Count what this call spent in the calling chat's totals and budget: a tool that
        calls a model itself (a sub-agent, a summarizer) reports its tokens and USD here.

        The spend is added to ``conversation.usage`` / ``cost`` (and the run's) when the
        call's batch ends, whatever the call's outcome, so the chat's budget sees it at the
        next check. Outside a run (a context built by hand) it is ignored.

        Raises:
            InvalidInputError: ``usage`` is not a ``Usage``, or ``cost`` is not a
                non-negative finite number.
        """
        if usage is not None and not isinstance(usage, Usage):
            raise InvalidInputError(f"charge() takes a Usage, got {type(usage).__name__}")
        try:
            amount = to_decimal(cost, "charge()'s cost")
        except ConfigurationError as error:
            raise InvalidInputError(str(error)) from None
        if self._ledger is not None:
            self._ledger.add(usage or Usage(), amount)

    @property
    def events(self) -> Emitter | None:
        """Where the calling run's events go (for a child run to forward its own)."""
        return None if self._ledger is None else self._ledger.events


class Ledger:
    """What the calls of one tool batch spent, reported through ``ToolContext.charge``, and
    the run their events belong to."""

    __slots__ = ("cost", "events", "usage")

    def __init__(self, events: Emitter | None = None) -> None:
        self.events = events
        self.usage = Usage()
        self.cost = Decimal(0)

    def add(self, usage: Usage, cost: Decimal) -> None:
        self.usage = self.usage + usage
        self.cost += cost


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


@attrs.frozen
class Binding:
    """Everything `Tool.prepare` and `Tool.invoke` need, worked out once when the tool is built.

    Attributes:
        sent: the parameters schema the model is shown (OpenAI's strict form when strict).
        validate: checks the arguments (JSON) and appends model-readable messages.
        strip: names the model may not send (injected ones); removed and reported.
        null_means_default: optional arguments whose null means "use the default".
        injected: (parameter, ToolContext field, or None for the whole context).
        adapter: converts checked arguments to the annotated types (function tools only).
        is_async: whether the function is a coroutine function.
        from_function: whether the schema was generated from the function's signature.
    """

    sent: Mapping[str, Any]
    validate: Validator
    strip: frozenset[str]
    null_means_default: tuple[str, ...]
    injected: tuple[tuple[str, str | None], ...]
    adapter: TypeAdapter[Any] | None
    is_async: bool
    from_function: bool


UNANNOTATED: Any = inspect.Parameter.empty
NOT_INJECTED: Any = object()
# Names the model may never supply: they are the framework's to fill in.
RESERVED = frozenset({"user_id", "chat_id"})
INJECTABLE = frozenset({"user_id", "chat_id", "context"})


def parse_arguments(
    name: str, arguments: str | Mapping[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """The arguments as a dict, and their JSON text when it can be passed on unchanged."""
    if arguments is None:
        return {}, None
    if isinstance(arguments, str):
        if not arguments or arguments.isspace():
            return {}, None
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
            return parsed, arguments  # fresh from the parser: no copy needed
        if isinstance(parsed, str):  # arguments encoded twice, as some models do
            try:
                reparsed = json.loads(parsed)
            except (json.JSONDecodeError, RecursionError):
                pass
            else:
                if isinstance(reparsed, dict):
                    return reparsed, parsed
    else:
        parsed = arguments
    if parsed is None:
        return {}, None
    if not isinstance(parsed, Mapping):
        raise ToolArgumentError(
            name,
            f"Invalid arguments for tool {name!r}: the arguments must be a JSON object, "
            f"got {json_kind(parsed)}",
        )
    return dict(parsed), None


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` gives a coroutine (async functions and async ``__call__``)."""
    if inspect.iscoroutinefunction(func):
        return True
    if inspect.isroutine(func) or isinstance(func, (type, functools.partial)):
        return False
    return inspect.iscoroutinefunction(type(func).__call__)


def introspection_target(func: Callable[..., Any]) -> Any:
    """The object whose annotations and docstring describe ``func``."""
    if isinstance(func, functools.partial):
        return introspection_target(func.func)
    if inspect.isroutine(func) or isinstance(func, type):
        return func
    return type(func).__call__  # a callable instance


def signature(name: str, func: Callable[..., Any]) -> inspect.Signature:
    """The function's signature, or a ToolDefinitionError saying why there is none."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(name, f"cannot read the function's signature: {exc}") from None


def skip_positional_only(name: str, param: inspect.Parameter) -> None:
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


def check_injected_hint(tool_name: str, name: str, hint: Any) -> None:
    """``user_id`` / ``chat_id`` receive strings (``user_id`` may be None): refuse another
    annotation rather than silently pass a string where the tool expects, say, an int."""
    if name not in RESERVED or hint is UNANNOTATED or hint in _STRING_HINTS:
        return
    shown = getattr(hint, "__name__", None) or repr(hint)
    raise ToolDefinitionError(
        tool_name,
        f"parameter {name!r} is injected by agentfsm with the conversation's {name} (a string"
        f"{', or None' if name == 'user_id' else ''}), but is annotated {shown}; annotate it "
        f"'str{' | None' if name == 'user_id' else ''}', or give the parameter another name if "
        "the model should supply it",
    )


def injection(param: inspect.Parameter, hint: Any, declared: Iterable[str]) -> Any:
    """The ToolContext field a parameter receives, None for the whole context, or NOT_INJECTED."""
    if param.name in RESERVED:
        return param.name
    if _is_tool_context(hint):
        return None
    if param.name == "context" and hint is UNANNOTATED and "context" not in declared:
        return None
    return NOT_INJECTED
