"""Hook events (one frozen class per hook name) and their dispatch."""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import attrs

from agentfsm._log import get_logger
from agentfsm.budget import Budget
from agentfsm.errors import ConfigurationError, HookError, UnknownHookError
from agentfsm.messages import AssistantMessage, Message, ToolCall, ToolMessage
from agentfsm.state import Conversation, ErrorInfo, Phase, TransitionRecord, Usage

if TYPE_CHECKING:
    from agentfsm.response import AgentResponse

__all__ = [
    "HOOK_EVENTS",
    "AfterRequestEvent",
    "BeforeRequestEvent",
    "BudgetExceededEvent",
    "ContextOverflowEvent",
    "Emitter",
    "Event",
    "FallbackEvent",
    "FinalResponseEvent",
    "FunctionCallEndEvent",
    "FunctionCallErrorEvent",
    "FunctionCallStartEvent",
    "GuardTrippedEvent",
    "Hook",
    "InvalidOutputEvent",
    "ManualStopEvent",
    "MaxTurnsReachedEvent",
    "MessageDroppedEvent",
    "RetryEvent",
    "StopFacts",
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "TransitionEvent",
]

log = get_logger(__name__)


@attrs.frozen(kw_only=True)
class Event:
    """What every hook event carries.

    Attributes:
        chat_id: the conversation.
        user_id: its owner.
        agent_name: the agent running it.
        turn: model calls made in the current run.
        at: Unix time in seconds.
        parent_chat_id: for a run of an agent used as another agent's tool
            (``Agent.as_tool``), the chat of the run that called it; ``None`` otherwise.
        depth: 0 for a run a caller started, 1 for its sub-agents' runs, and so on.
    """

    chat_id: str
    user_id: str | None
    agent_name: str
    turn: int
    at: float
    parent_chat_id: str | None = None
    depth: int = 0


@attrs.frozen(kw_only=True)
class StopFacts:
    """What the runtime knows when a guard trips (or warns): what a stop event is built from.

    Attributes:
        conversation: the conversation after the transition (before it, for a warning).
        phase: the phase the run was in when the guard held.
        stopped: the run stops (a guard that does not bind only warns).
        source: who asked for a stop: ``"request_stop"``, ``"stop_signal_function"`` or
            ``"cancelled"`` (the caller's task was cancelled).
        max_turns: the agent's ``max_turns``.
        budget: the run's budget, if any.
        errors: what was wrong with an answer that did not match the output type.
    """

    conversation: Conversation
    phase: Phase
    stopped: bool = True
    source: str = "request_stop"
    max_turns: int = 0
    budget: Budget | None = None
    errors: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class TransitionEvent(Event):
    """``on_transition``: the conversation changed phase.

    Attributes:
        record: the transition (from, to, reason, turn, time), as logged in the state.
        conversation: the conversation after the transition (the new state).
    """

    record: TransitionRecord
    conversation: Conversation

    @property
    def from_phase(self) -> Phase:
        """The phase left."""
        return self.record.from_phase

    @property
    def to_phase(self) -> Phase:
        """The phase entered."""
        return self.record.to_phase

    @property
    def reason(self) -> str:
        """Why (``tool_calls_requested``, ``max_turns`` …)."""
        return self.record.reason


@attrs.frozen(kw_only=True)
class BeforeRequestEvent(Event):
    """``on_before_request``: a model request is about to be sent.

    Attributes:
        model: the primary model asked (a fallback reports through ``on_fallback``).
        messages: the request's messages exactly as sent, system prompt first.
        tools: the names of the tools offered.
    """

    model: str
    messages: tuple[Mapping[str, Any], ...]
    tools: tuple[str, ...]


@attrs.frozen(kw_only=True)
class AfterRequestEvent(Event):
    """``on_after_request``: a model request answered.

    Attributes:
        model: the model that answered (a fallback's, if the primary failed).
        message: the answer, as it enters the conversation.
        usage: its tokens (``usage.estimated`` when the server reported none).
        finish_reason: why the model stopped (``"length"``: cut by the token limit).
        duration: seconds from the first attempt to the answer, backoff included.
    """

    model: str
    message: AssistantMessage
    usage: Usage
    finish_reason: str | None
    duration: float


@attrs.frozen(kw_only=True)
class TokenEvent(Event):
    """``on_token_received``: a text delta arrived from a streaming model.

    Attributes:
        delta: the new text, as the server sent it.
    """

    delta: str


@attrs.frozen(kw_only=True)
class ToolCallEvent(Event):
    """A stream event: the model asked for this tool call.

    Attributes:
        call: the call, its arguments whole (the JSON string the model sent).
    """

    call: ToolCall


@attrs.frozen(kw_only=True)
class ToolResultEvent(Event):
    """A stream event: a tool call has its result.

    Attributes:
        call_id: the call answered.
        tool_name: the tool that ran.
        content: the result as sent to the model.
        is_error: the result reports a failure or a cancellation.
    """

    call_id: str
    tool_name: str
    content: str
    is_error: bool


@attrs.frozen(kw_only=True)
class FunctionCallStartEvent(Event):
    """``on_function_call_start``: a tool call is about to run.

    Attributes:
        tool_name: the tool.
        call_id: the call's id.
        arguments: the validated arguments (injected ones not included).
    """

    tool_name: str
    call_id: str
    arguments: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class FunctionCallEndEvent(Event):
    """``on_function_call_end``: a tool call returned.

    Attributes:
        result: what the function returned.
        content: the result as sent to the model.
        duration: seconds the call took.
    """

    tool_name: str
    call_id: str
    arguments: Mapping[str, Any]
    result: Any
    content: str
    duration: float


@attrs.frozen(kw_only=True)
class FunctionCallErrorEvent(Event):
    """``on_function_call_error``: a tool call failed, could not run, or was cancelled.

    Attributes:
        error: the exception (a ``ToolArgumentError`` for an unknown tool or bad arguments,
            ``asyncio.CancelledError`` for a call cancelled by a stop).
        content: the error result as sent to the model.
    """

    tool_name: str
    call_id: str
    arguments: Mapping[str, Any]
    error: BaseException
    content: str
    duration: float


@attrs.frozen(kw_only=True)
class ContextOverflowEvent(Event):
    """``on_context_overflow``: the context had to be cut short to fit, or could not fit.

    Attributes:
        tokens_needed: tokens the request needs as decided (over ``limit`` if it cannot fit).
        limit: ``max_context_length``.
        truncated: what was cut short, e.g. ``"messages[3] cut to 200 tokens"``.
    """

    tokens_needed: int
    limit: int
    truncated: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class MessageDroppedEvent(Event):
    """``on_message_dropped``: messages were left out of what is sent to the model.

    They stay in the conversation and in ``response.history``; only the request leaves them
    out.

    Attributes:
        messages: the messages newly left out.
        tokens: what they would have cost.
        strategy: ``"simple"`` or ``"summary_dropping"``.
        summary: the running summary they were folded into (``summary_dropping``).
        error: the failure of the summary request, when it failed (then this turn fell back
            to simple dropping; the messages are summarized on a later turn).
    """

    messages: tuple[Message, ...]
    tokens: int
    strategy: str
    summary: str | None = None
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class MaxTurnsReachedEvent(Event):
    """``on_max_turns_reached``: the run stopped because it used ``max_turns`` model calls.

    Attributes:
        max_turns: the agent's limit.
    """

    max_turns: int

    @classmethod
    def from_stop(cls, fields: Mapping[str, Any], facts: StopFacts) -> MaxTurnsReachedEvent:
        """The event of the ``max_turns`` guard."""
        return cls(**fields, max_turns=facts.max_turns)


@attrs.frozen(kw_only=True)
class ManualStopEvent(Event):
    """``on_manual_stop``: a stop signal stopped the run.

    Attributes:
        phase: the phase the run was in.
        source: ``"request_stop"``, ``"stop_signal_function"``, or ``"cancelled"`` when the
            task running the chat was cancelled (a web framework does that when the client
            disconnects).
    """

    phase: Phase
    source: str

    @classmethod
    def from_stop(cls, fields: Mapping[str, Any], facts: StopFacts) -> ManualStopEvent:
        """The event of a stop (the ``stop_requested`` guard, or an action cut short)."""
        return cls(**fields, phase=facts.phase, source=facts.source)


@attrs.frozen(kw_only=True)
class RetryEvent(Event):
    """``on_retry``: a failed model request is retried after ``delay`` seconds.

    Attributes:
        model: the model the request went to.
        attempt: the number of the attempt that failed (1 for the first).
        error_class: ``rate_limit``, ``server_error``, ``timeout`` or ``connection_error``.
        error: the failure (``type``, ``status``, ``message``).
        delay: seconds waited before the next attempt.
    """

    model: str
    attempt: int
    error_class: str
    error: ErrorInfo
    delay: float


@attrs.frozen(kw_only=True)
class FallbackEvent(Event):
    """``on_fallback``: a model failed for good; the request goes to the next one.

    Attributes:
        from_model: the model that failed.
        to_model: the model asked next.
        error: the last failure of ``from_model``.
    """

    from_model: str
    to_model: str
    error: ErrorInfo


@attrs.frozen(kw_only=True)
class BudgetExceededEvent(Event):
    """``on_budget_exceeded``: spent + reserve reached the chat's budget.

    Attributes:
        spent: USD the chat has spent.
        budget: the chat's budget.
        reserve: USD kept back.
        stopped: the run stopped (``stop_on_budget_exceeded``), or goes on.
    """

    spent: Decimal
    budget: Decimal
    reserve: Decimal
    stopped: bool

    @classmethod
    def from_stop(cls, fields: Mapping[str, Any], facts: StopFacts) -> BudgetExceededEvent:
        """The event of the ``budget_exhausted`` guard (``stopped=False`` when it warns)."""
        budget = facts.budget
        return cls(
            **fields,
            spent=facts.conversation.cost,
            budget=budget.max_budget_for_this_chat if budget is not None else Decimal(0),
            reserve=budget.reserved_budget if budget is not None else Decimal(0),
            stopped=facts.stopped,
        )


@attrs.frozen(kw_only=True)
class InvalidOutputEvent(Event):
    """``on_invalid_output``: a final answer did not match the run's output type.

    Attributes:
        errors: what was wrong, one ``"path: message"`` each (what the model is told).
        attempt: repairs already sent in this run before this answer.
        stopped: the run stopped with ``invalid_output`` (no repair left); otherwise the
            errors went back to the model and it answers again.
        text: the answer as the model wrote it (the final-answer tool's arguments in tool
            mode).
    """

    errors: tuple[str, ...]
    attempt: int
    stopped: bool
    text: str

    @classmethod
    def from_stop(cls, fields: Mapping[str, Any], facts: StopFacts) -> InvalidOutputEvent:
        """The event of an answer rejected by the output type (repaired, or the run stops)."""
        conversation = facts.conversation
        answer = _last_answer(conversation)
        return cls(
            **fields,
            errors=facts.errors,
            attempt=conversation.output_retries - (0 if facts.stopped else 1),
            stopped=facts.stopped,
            text=answer,
        )


def _last_answer(conversation: Conversation) -> str:
    """The newest assistant answer's text, or its final-answer tool arguments."""
    for message in reversed(conversation.messages):
        if isinstance(message, AssistantMessage):
            if message.tool_calls:
                return message.tool_calls[-1].arguments
            return message.content or ""
    return ""


@attrs.frozen(kw_only=True)
class GuardTrippedEvent(Event):
    """``on_guard_tripped``: a guard of yours (``guards=[...]``) stopped the run.

    Attributes:
        name: the guard's name.
        message: what it said, if anything.
        phase: the phase the run was in.
    """

    name: str
    message: str | None
    phase: Phase

    @classmethod
    def from_stop(cls, fields: Mapping[str, Any], facts: StopFacts) -> GuardTrippedEvent:
        """The event of a user guard that stopped the run."""
        trip = facts.conversation.guard
        return cls(
            **fields,
            name=trip.name if trip is not None else "",
            message=trip.message if trip is not None else None,
            phase=facts.phase,
        )


@attrs.frozen(kw_only=True)
class FinalResponseEvent(Event):
    """``on_final_response``: a run finished (``done`` or ``stopped``).

    Attributes:
        response: the run's response, the same ``send_message`` returns.
    """

    response: AgentResponse


HOOK_EVENTS: Mapping[str, type[Event]] = {
    "on_transition": TransitionEvent,
    "on_before_request": BeforeRequestEvent,
    "on_after_request": AfterRequestEvent,
    "on_token_received": TokenEvent,
    "on_function_call_start": FunctionCallStartEvent,
    "on_function_call_end": FunctionCallEndEvent,
    "on_function_call_error": FunctionCallErrorEvent,
    "on_context_overflow": ContextOverflowEvent,
    "on_message_dropped": MessageDroppedEvent,
    "on_max_turns_reached": MaxTurnsReachedEvent,
    "on_manual_stop": ManualStopEvent,
    "on_final_response": FinalResponseEvent,
    "on_retry": RetryEvent,
    "on_fallback": FallbackEvent,
    "on_budget_exceeded": BudgetExceededEvent,
    "on_invalid_output": InvalidOutputEvent,
    "on_guard_tripped": GuardTrippedEvent,
}

Hook = Callable[[Any], Any]
"""A hook: any callable taking the one event object, sync or async."""


class _Hooks:
    """The hooks of one agent, validated once; ``fire`` awaits each in order."""

    __slots__ = ("_hooks", "_raise")

    def __init__(
        self, hooks: Mapping[str, Hook | Sequence[Hook]] | None, *, raise_errors: bool
    ) -> None:
        self._raise = raise_errors
        self._hooks: dict[str, tuple[Hook, ...]] = {}
        if hooks is None:
            return
        if not isinstance(hooks, Mapping):
            raise ConfigurationError("hooks must be a dict of hook name to callable")
        valid = tuple(HOOK_EVENTS)
        for name, value in hooks.items():
            if name not in HOOK_EVENTS:
                close = difflib.get_close_matches(str(name), valid, n=1)
                raise UnknownHookError(str(name), valid, close[0] if close else None)
            funcs = tuple(value) if isinstance(value, Sequence) else (value,)
            for func in funcs:
                if not callable(func):
                    raise ConfigurationError(
                        f"hook {name!r} must be a callable (or a list of them), "
                        f"got {type(func).__name__}"
                    )
            if funcs:
                self._hooks[name] = funcs

    def wants(self, name: str) -> bool:
        """True if at least one hook listens to ``name`` (so the event is worth building)."""
        return name in self._hooks

    async def fire(self, name: str, event: Event) -> None:
        """Call every hook of ``name`` with ``event``, in order, awaiting async ones."""
        for func in self._hooks.get(name, ()):
            try:
                result = func(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                if self._raise:
                    raise HookError(name, error) from error
                log.error(
                    "hook_failed",
                    hook=name,
                    chat_id=event.chat_id,
                    error_type=type(error).__name__,
                    error=str(error),
                )


class Emitter(Protocol):
    """Where the runtime and the tool executor send events: the hooks, the stream's consumer
    and the ``debug_print`` trace. What an event says never depends on who listens."""

    depth: int
    """0 for a run a caller started; a sub-agent's run is one deeper than its caller's."""

    def wants(self, name: str) -> bool:
        """True if anyone listens to hook ``name`` (so its event is worth building)."""
        ...

    def fields(self, turn: int) -> dict[str, Any]:
        """The fields every event carries (chat, user, agent, ``turn``, time)."""
        ...

    async def emit(self, name: str, event: Event) -> None:
        """Fire hook ``name`` with ``event`` (and print it with ``debug_print``)."""
        ...

    async def stream(self, event: Event) -> None:
        """Hand ``event`` to the stream's consumer, if there is one."""
        ...

    async def tool_result(self, message: ToolMessage, turn: int, *, finished: bool = True) -> None:
        """A tool call has its result: tell the stream's consumer, if there is one, and (for
        a call that ran to an end, ``finished``) checkpoint it."""
        ...


EventSink = Callable[[Event], Awaitable[None]]
"""Where a streamed run sends its events (the consumer of ``stream_message``)."""

ResultSink = Callable[[ToolMessage], Awaitable[None]]
"""Where a finished tool result goes as soon as it exists (a per-call checkpoint)."""


class _Emitter:
    """The :class:`Emitter` of one step: one chat's identity bound to the agent's hooks."""

    __slots__ = (
        "_agent_name",
        "_chat_id",
        "_clock",
        "_debug",
        "_hooks",
        "_parent",
        "_parent_chat_id",
        "_sink",
        "_user_id",
        "depth",
        "progress",
    )

    def __init__(
        self,
        hooks: _Hooks,
        clock: Callable[[], float],
        agent_name: str,
        conversation: Conversation,
        *,
        debug: bool = False,
        sink: EventSink | None = None,
        parent: Emitter | None = None,
        parent_chat_id: str | None = None,
        progress: ResultSink | None = None,
    ) -> None:
        self._hooks = hooks
        self._clock = clock
        self._agent_name = agent_name
        self._chat_id = conversation.chat_id
        self._user_id = conversation.user_id
        self._debug = _DebugPrinter() if debug else None
        self._sink = sink
        # A sub-agent's run (Agent.as_tool): its events also reach the calling run's hooks.
        self._parent = parent
        self._parent_chat_id = parent_chat_id
        self.depth = 0 if parent is None else parent.depth + 1
        # With a store: each finished tool result is checkpointed as it comes.
        self.progress = progress

    @property
    def streaming(self) -> bool:
        """A consumer reads this run's events as they happen (``stream_message``)."""
        return self._sink is not None

    def wants(self, name: str) -> bool:
        return (
            self._debug is not None
            or self._hooks.wants(name)
            or (self._parent is not None and self._parent.wants(name))
        )

    def fields(self, turn: int) -> dict[str, Any]:
        fields = {
            "chat_id": self._chat_id,
            "user_id": self._user_id,
            "agent_name": self._agent_name,
            "turn": turn,
            "at": self._clock(),
        }
        if self._parent is not None:
            fields["parent_chat_id"] = self._parent_chat_id
            fields["depth"] = self.depth
        return fields

    async def emit(self, name: str, event: Event) -> None:
        if self._debug is not None:
            self._debug(name, event)
        await self._hooks.fire(name, event)
        if self._parent is not None:
            await self._parent.emit(name, event)

    async def stream(self, event: Event) -> None:
        if self._sink is not None:
            await self._sink(event)

    async def tool_result(self, message: ToolMessage, turn: int, *, finished: bool = True) -> None:
        if finished and self.progress is not None:
            await self.progress(message)
        if self._sink is not None:
            await self._sink(
                ToolResultEvent(
                    **self.fields(turn),
                    call_id=message.tool_call_id,
                    tool_name=message.tool_name or "",
                    content=message.content,
                    is_error=message.is_error,
                )
            )


class _DebugPrinter:
    """The readable trace of ``debug_print=True``: one line per event, through structlog."""

    def __init__(self, file: TextIO | None = None) -> None:
        import structlog  # loads with the first debug trace

        self._log = structlog.wrap_logger(
            structlog.PrintLogger(file or sys.stdout),
            processors=[
                structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
                structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0),
            ],
        )

    def __call__(self, name: str, event: Event) -> None:
        fields: dict[str, Any] = {"chat_id": event.chat_id, "turn": event.turn}
        if isinstance(event, TransitionEvent):
            fields.update(
                {"from": str(event.from_phase), "to": str(event.to_phase), "reason": event.reason}
            )
        elif isinstance(event, BeforeRequestEvent):
            fields.update(
                {"model": event.model, "messages": len(event.messages), "tools": event.tools}
            )
        elif isinstance(event, AfterRequestEvent):
            calls = [c.name for c in event.message.tool_calls]
            fields.update(
                {
                    "finish_reason": event.finish_reason,
                    "tool_calls": calls or None,
                    "tokens": event.usage.total_tokens,
                    "seconds": round(event.duration, 3),
                    "content": _clip(event.message.content),
                }
            )
        elif isinstance(event, FunctionCallStartEvent):
            fields.update({"tool": event.tool_name, "arguments": dict(event.arguments)})
        elif isinstance(event, FunctionCallEndEvent):
            fields.update(
                {
                    "tool": event.tool_name,
                    "result": _clip(event.content),
                    "seconds": round(event.duration, 3),
                }
            )
        elif isinstance(event, FunctionCallErrorEvent):
            fields.update({"tool": event.tool_name, "error": _clip(event.content)})
        elif isinstance(event, FinalResponseEvent):
            fields.update(
                {
                    "stop_reason": str(event.response.stop_reason),
                    "output": _clip(event.response.output),
                }
            )
        elif isinstance(event, RetryEvent):
            fields.update(
                {
                    "model": event.model,
                    "attempt": event.attempt,
                    "error_class": event.error_class,
                    "status": event.error.status,
                    "delay": round(event.delay, 3),
                }
            )
        elif isinstance(event, FallbackEvent):
            fields.update({"from": event.from_model, "to": event.to_model})
        elif isinstance(event, BudgetExceededEvent):
            fields.update(
                {"spent": str(event.spent), "budget": str(event.budget), "stopped": event.stopped}
            )
        elif isinstance(event, TokenEvent):
            return
        self._log.info(name.removeprefix("on_"), **fields)


def _clip(text: str | None, limit: int = 120) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
