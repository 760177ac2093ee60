"""The conversation state: phases, stop reasons, usage, the transition log, ``Conversation``."""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from agentfsm._indices import Indices, as_indices
from agentfsm.budget import Budget
from agentfsm.messages import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage
from agentfsm.usage import Usage

__all__ = [
    "SCHEMA_VERSION",
    "ContextWindow",
    "Conversation",
    "ErrorInfo",
    "GuardTrip",
    "OutputSpec",
    "Phase",
    "RequestRecord",
    "StopReason",
    "TransitionRecord",
    "Usage",
]

SCHEMA_VERSION = 3

# Shared values for what most conversations hold nothing in (they are immutable, so one
# object serves every conversation): thousands of idle chats in a process do not each keep
# an empty dict, a zero Decimal and zero Usage of their own.
_NO_COST = Decimal(0)
_NO_USAGE = Usage()
_EMPTY: Mapping[Any, Any] = types.MappingProxyType({})
_NO_COST_DIGITS = _NO_COST.as_tuple()


def _plus(a: Decimal, b: Decimal) -> Decimal:
    """``a + b``, the shared zero when the sum is exactly ``Decimal(0)`` (same digits and
    exponent, so it prints, compares and serializes the same)."""
    total = a + b
    return _NO_COST if not total and total.as_tuple() == _NO_COST_DIGITS else total


def _shared_if_empty(value: Mapping[int, int]) -> Mapping[int, int]:
    """``value``, or the shared empty mapping when it holds nothing."""
    return value if value else _EMPTY


class Phase(str, enum.Enum):
    """Where a conversation is in its state machine."""

    TRIMMING_CONTEXT = "trimming_context"
    AWAITING_MODEL = "awaiting_model"
    EXECUTING_TOOLS = "executing_tools"
    STOPPED = "stopped"
    DONE = "done"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        """True for ``done`` and ``stopped``: the run is over."""
        return self in (Phase.DONE, Phase.STOPPED)


class StopReason(str, enum.Enum):
    """Why a run ended."""

    RESPONSE = "response"
    USER_STOP = "user_stop"
    BUDGET_EXCEEDED = "budget_exceeded"
    MAX_TURNS = "max_turns"
    MAX_FUNCTION_CALLS = "max_function_calls"
    CONTEXT_OVERFLOW = "context_overflow"
    ERROR = "error"
    INVALID_OUTPUT = "invalid_output"
    GUARD = "guard"
    WORKER_LOST = "worker_lost"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ErrorInfo:
    """A failure that ended a run, as data (no live exception object).

    Attributes:
        type: the exception class name, e.g. ``"RateLimitError"``.
        message: the error message (the server's, for HTTP errors).
        status: the HTTP status, when there was one.
        model: the model the failed request was sent to.
    """

    type: str
    message: str
    status: int | None = None
    model: str | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class RequestRecord:
    """One answered model request.

    Attributes:
        model: the model that answered (a fallback's, if the primary failed).
        usage: its tokens.
        cost: its cost in USD (0 without pricing).
        attempts: attempts it took, the answered one included (retries + 1).
        duration: seconds from the first attempt to the answer, backoff included.
        at: Unix time of the answer.
        finish_reason: why the model stopped writing (``"length"``: the answer was cut by
            ``max_completion_tokens``); ``None`` when the server did not say.
    """

    model: str
    usage: Usage
    cost: Decimal = _NO_COST
    attempts: int = 1
    duration: float = 0.0
    at: float = 0.0
    finish_reason: str | None = None


@attrs.frozen(kw_only=True)
class ContextWindow:
    """What the ``trimming_context`` phase decided to send with the next request.

    Attributes:
        selected: indices into ``Conversation.messages`` of the messages sent, in order: a
            sequence of ints (`Indices`) that equals their tuple and is kept as runs of
            consecutive indices, so it stays small however long the conversation grows.
            Any iterable of ints is taken.
        truncated: index -> tokens of content kept, for messages sent cut short.
        notes: system notes sent after the summary (dropped / overflow prompts).
        tokens: tokens the request costs as counted (an upper bound when something is cut).
        fits: False when even after dropping and cutting the request is over the limit.
        dropped: how many messages are left out of the request.
        size: how many messages the conversation had when this was decided.
    """

    selected: Indices = attrs.field(converter=as_indices)
    truncated: Mapping[int, int] = attrs.field(default=_EMPTY, converter=_shared_if_empty)
    notes: tuple[str, ...] = ()
    tokens: int = 0
    fits: bool = True
    dropped: int = 0
    size: int = 0


@attrs.frozen(kw_only=True)
class OutputSpec:
    """What a run's final answer must be (``output_type=``), as data: stored with the
    conversation so a resumed run asks for the same thing (the Python class is not stored;
    the agent that resumes supplies it).

    Attributes:
        name: the type's name as sent to the model (``Weather``, ``list_Weather``).
        json_schema: the JSON Schema the answer must match (the root object sent).
        mode: ``"json_schema"`` (``response_format``) or ``"tool"`` (a final-answer tool).
        strict: the schema is in OpenAI's strict form (the server enforces it).
        wrapped: the type is not an object: the answer is ``{"result": <value>}``.
    """

    name: str
    json_schema: Mapping[str, Any]
    mode: str = "json_schema"
    strict: bool = False
    wrapped: bool = False


@attrs.frozen(weakref_slot=False)
class TransitionRecord:
    """One phase change.

    Attributes:
        from_phase: the phase left.
        to_phase: the phase entered.
        reason: why, as a short snake_case word (``tool_calls_requested``, ``max_turns`` …).
        turn: model calls made in the run when the transition happened.
        at: Unix time in seconds.
        guard: the name of the user guard that caused it (``reason`` is ``guard``).
    """

    from_phase: Phase
    to_phase: Phase
    reason: str
    turn: int
    at: float
    guard: str | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(kw_only=True)
class GuardTrip:
    """A user guard that stopped a run: its name (stored, so a resumed chat needs no code)
    and the message it gave, if any."""

    name: str
    message: str | None = None


@attrs.frozen(kw_only=True)
class Conversation:
    """Everything needed to continue a conversation; plain data that round-trips through JSON.

    Build one with ``agent.start(...)``; advance it with ``agent.step(...)``; every change
    is a new value (``attrs.evolve``), so a conversation held by a caller never moves under it.

    Attributes:
        chat_id: the conversation's id.
        user_id: who it belongs to.
        agent_name: the agent that runs it.
        phase: where it is in the machine.
        messages: every message, in full (the agent's system prompt is not stored).
        summary: the running summary of messages dropped from the context, if any.
        summary_upto: messages before this index are covered by ``summary``.
        context: what the next request sends, as the last ``trimming_context`` decided
            (``None``: every message, as is).
        run_start: index in ``messages`` of the user message that started the current run.
        turn: model calls in the current run.
        function_calls: tool calls executed in the current run.
        usage: tokens used over the conversation's lifetime.
        run_usage: tokens used by the current run.
        requests: every answered model request, in order.
        run_request_start: index in ``requests`` of the current run's first request.
        cost: USD spent over the conversation's lifetime (0 without pricing).
        run_cost: USD spent by the current run.
        budget: the budget of the current run when given to ``send_message`` /
            ``start`` (``None``: the agent's own, if any).
        stop_reason: why the last run ended (``None`` while running).
        error: what failed, when ``stop_reason`` is ``error``.
        transitions: the log of every phase change.
        version: bumped on every transition (optimistic concurrency for stores).
        schema_version: the layout of this data, for migrations.
        metadata: the caller's own JSON-ready data, carried along untouched.
        output_spec: what the current run's final answer must be (``None``: any text).
        output_retries: repair messages sent in the current run for answers that did not
            match ``output_spec`` (or that an output guard corrected).
        guard: the user guard that stopped the last run (``stop_reason`` ``guard``).
        tool_attempt: how many times the current tool batch was taken up again after its
            worker died (``resume``, ``recover``); its calls run with
            ``ToolContext.attempt = tool_attempt + 1``.
    """

    chat_id: str
    user_id: str | None = None
    agent_name: str = "agent"
    phase: Phase = Phase.TRIMMING_CONTEXT
    messages: tuple[Message, ...] = ()
    summary: str | None = None
    summary_upto: int = 0
    context: ContextWindow | None = None
    run_start: int = 0
    turn: int = 0
    function_calls: int = 0
    usage: Usage = _NO_USAGE
    run_usage: Usage = _NO_USAGE
    requests: tuple[RequestRecord, ...] = ()
    run_request_start: int = 0
    cost: Decimal = _NO_COST
    run_cost: Decimal = _NO_COST
    budget: Budget | None = None
    stop_reason: StopReason | None = None
    error: ErrorInfo | None = None
    transitions: tuple[TransitionRecord, ...] = ()
    version: int = 0
    schema_version: int = SCHEMA_VERSION
    metadata: Mapping[str, Any] = _EMPTY
    output_spec: OutputSpec | None = None
    output_retries: int = 0
    guard: GuardTrip | None = None
    tool_attempt: int = 0

    @property
    def finished(self) -> bool:
        """True when the run is over (``done`` or ``stopped``)."""
        return self.phase.terminal

    @property
    def run_messages(self) -> tuple[Message, ...]:
        """The messages of the current (or last) run, starting with its user message."""
        return self.messages[self.run_start :]

    def with_request(self, record: RequestRecord) -> Conversation:
        """This conversation with one more answered request counted: its record, usage and
        cost added to the run's and the lifetime totals."""
        return attrs.evolve(
            self, requests=(*self.requests, record), **self._spent(record.usage, record.cost)
        )

    def with_spend(self, usage: Usage, cost: Decimal) -> Conversation:
        """This conversation with what its tools reported spending (sub-agents run as tools)
        added to the run's and the lifetime totals; no request record is added."""
        return attrs.evolve(self, **self._spent(usage, cost))

    def _spent(self, usage: Usage, cost: Decimal) -> dict[str, Any]:
        """The four totals with ``usage`` and ``cost`` added; a run total that is the same
        object as the lifetime one (a first run) stays shared with it."""
        total_usage, total_cost = self.usage + usage, _plus(self.cost, cost)
        run_usage = total_usage if self.run_usage is self.usage else self.run_usage + usage
        run_cost = total_cost if self.run_cost is self.cost else _plus(self.run_cost, cost)
        return {
            "usage": total_usage,
            "run_usage": run_usage,
            "cost": total_cost,
            "run_cost": run_cost,
        }

    @property
    def run_requests(self) -> tuple[RequestRecord, ...]:
        """The answered requests of the current (or last) run."""
        return self.requests[self.run_request_start :]

    @property
    def last_assistant(self) -> AssistantMessage | None:
        """The newest assistant message of the current run, if any."""
        for message in reversed(self.run_messages):
            if isinstance(message, AssistantMessage):
                return message
        return None

    @property
    def output(self) -> str:
        """The text of the newest assistant message of the current run ("" if none)."""
        last = self.last_assistant
        return (last.content or "") if last is not None else ""

    @property
    def pending_tool_calls(self) -> tuple[ToolCall, ...]:
        """Tool calls of the newest assistant message that have no result yet."""
        answered: set[str] = set()
        for message in reversed(self.messages):
            if isinstance(message, ToolMessage):
                answered.add(message.tool_call_id)
            elif isinstance(message, AssistantMessage):
                return tuple(c for c in message.tool_calls if c.id not in answered)
            else:
                return ()
        return ()

    @property
    def last_user_message(self) -> UserMessage | None:
        """The newest user message."""
        for message in reversed(self.messages):
            if isinstance(message, UserMessage):
                return message
        return None
