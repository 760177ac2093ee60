"""The conversation state machine: its tables (guards, actions, edges) and ``step()``.

The whole machine is the three tables below. ``step()`` checks the guards of the current
phase in order (the first that holds stops the run), otherwise runs the phase's action, which
returns the new conversation and an *outcome*; the edge ``(phase, outcome type)`` names the
next phase. Only :func:`_enter` writes the phase, version, stop reason and transition log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs

from agentfsm.budget import Budget
from agentfsm.errors import ConversationFinishedError
from agentfsm.messages import AssistantMessage, Message, ToolCall, unanswered_results
from agentfsm.state import (
    Conversation,
    ErrorInfo,
    Phase,
    RequestRecord,
    StopReason,
    TransitionRecord,
)
from agentfsm.stop import STOPPED, _Stopped

__all__ = [
    "ACTIONS",
    "EDGES",
    "GUARDS",
    "NEW_RUN",
    "Answer",
    "ContextReady",
    "FinalAnswer",
    "Guard",
    "GuardTripped",
    "Interrupted",
    "Limits",
    "Outcome",
    "RequestFailed",
    "Runtime",
    "ToolCallsRequested",
    "ToolsFinished",
    "begin_run",
    "interrupt",
    "step",
]


# --------------------------------------------------------------------------- outcomes


@attrs.frozen
class Outcome:
    """What an action (or a guard) concluded; its type picks the edge."""

    reason: ClassVar[str]
    stop_reason: ClassVar[StopReason | None] = None


@attrs.frozen
class ContextReady(Outcome):
    """The context fits: the request can be sent."""

    reason = "context_ready"


@attrs.frozen
class ToolCallsRequested(Outcome):
    """The model asked for tool calls."""

    reason = "tool_calls_requested"


@attrs.frozen
class FinalAnswer(Outcome):
    """The model answered without tool calls."""

    reason = "final_answer"
    stop_reason = StopReason.RESPONSE


@attrs.frozen
class ToolsFinished(Outcome):
    """Every pending tool call has its result."""

    reason = "tools_finished"


@attrs.frozen
class Interrupted(Outcome):
    """A stop signal cancelled the running action."""

    reason = "user_stop"
    stop_reason = StopReason.USER_STOP


@attrs.frozen
class RequestFailed(Outcome):
    """The model request failed for good."""

    reason = "error"
    stop_reason = StopReason.ERROR


@attrs.frozen
class GuardTripped(Outcome):
    """A guard held before the phase's action ran."""

    guard: Guard

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self.guard.stop_reason.value

    @property
    def stop_reason(self) -> StopReason:  # type: ignore[override]
        return self.guard.stop_reason


# --------------------------------------------------------------------------- guards


@attrs.frozen
class Limits:
    """The agent's configuration that guards read."""

    max_turns: int = 10
    max_function_calls: int | None = None
    budget: Budget | None = None

    def budget_of(self, conv: Conversation) -> Budget | None:
        """The budget of ``conv``'s run: its own (given per call) or the agent's."""
        return conv.budget if conv.budget is not None else self.budget


def _budget_exhausted(conv: Conversation, limits: Limits, stop: bool) -> bool:
    budget = limits.budget_of(conv)
    return budget is not None and budget.stop_on_budget_exceeded and budget.exhausted(conv.cost)


@attrs.frozen
class Guard:
    """A predicate checked before the action of each of ``phases``."""

    name: str
    stop_reason: StopReason
    phases: frozenset[Phase]
    holds: Callable[[Conversation, Limits, bool], bool]


_ACTIVE = frozenset({Phase.TRIMMING_CONTEXT, Phase.AWAITING_MODEL, Phase.EXECUTING_TOOLS})

GUARDS: Sequence[Guard] = (  # priority order: the first that holds wins
    Guard("stop_requested", StopReason.USER_STOP, _ACTIVE, lambda c, lim, stop: stop),
    Guard(
        "budget_exhausted",
        StopReason.BUDGET_EXCEEDED,
        frozenset({Phase.AWAITING_MODEL}),
        _budget_exhausted,
    ),
    Guard(
        "max_turns",
        StopReason.MAX_TURNS,
        frozenset({Phase.AWAITING_MODEL}),
        lambda c, lim, stop: c.turn >= lim.max_turns,
    ),
    Guard(
        "context_overflow",
        StopReason.CONTEXT_OVERFLOW,
        frozenset({Phase.AWAITING_MODEL}),
        lambda c, lim, stop: c.context is not None and not c.context.fits,
    ),
    Guard(
        "max_function_calls",
        StopReason.MAX_FUNCTION_CALLS,
        frozenset({Phase.EXECUTING_TOOLS}),
        lambda c, lim, stop: (
            lim.max_function_calls is not None
            and c.function_calls + len(c.pending_tool_calls) > lim.max_function_calls
        ),
    ),
)


# --------------------------------------------------------------------------- actions


class Runtime(Protocol):
    """What the actions need from the agent running them (one per step)."""

    limits: Limits

    def now(self) -> float: ...

    async def stop_requested(self) -> bool: ...

    async def fit_context(self, conversation: Conversation) -> Conversation | _Stopped: ...

    async def request(self, conversation: Conversation) -> Answer | ErrorInfo | _Stopped: ...

    async def execute(
        self, conversation: Conversation, calls: Sequence[ToolCall]
    ) -> tuple[Sequence[Message], int, bool]: ...

    async def entered(
        self, conversation: Conversation, record: TransitionRecord, outcome: Outcome
    ) -> None: ...


@attrs.frozen
class Answer:
    """A model request answered: the message, and the record of the request."""

    message: AssistantMessage
    record: RequestRecord


Action = Callable[[Runtime, Conversation], Awaitable[tuple[Conversation, Outcome]]]


async def _fit_context(rt: Runtime, conv: Conversation) -> tuple[Conversation, Outcome]:
    fitted = await rt.fit_context(conv)  # may summarize: a model call a stop can cut
    if isinstance(fitted, _Stopped):
        return conv, Interrupted()
    return fitted, ContextReady()


async def _request_model(rt: Runtime, conv: Conversation) -> tuple[Conversation, Outcome]:
    reply = await rt.request(conv)
    if reply is STOPPED:
        return conv, Interrupted()
    if isinstance(reply, ErrorInfo):
        return attrs.evolve(conv, error=reply), RequestFailed()
    assert isinstance(reply, Answer)
    conv = attrs.evolve(
        conv.with_request(reply.record),
        messages=(*conv.messages, reply.message),
        turn=conv.turn + 1,
    )
    if reply.message.interrupted:  # a stop cut a streamed answer: its text is kept above
        return conv, Interrupted()
    return conv, ToolCallsRequested() if reply.message.tool_calls else FinalAnswer()


async def _execute_tools(rt: Runtime, conv: Conversation) -> tuple[Conversation, Outcome]:
    results, executed, stopped = await rt.execute(conv, conv.pending_tool_calls)
    conv = attrs.evolve(
        conv,
        messages=(*conv.messages, *results),
        function_calls=conv.function_calls + executed,
    )
    return conv, Interrupted() if stopped else ToolsFinished()


ACTIONS: Mapping[Phase, Action] = {
    Phase.TRIMMING_CONTEXT: _fit_context,
    Phase.AWAITING_MODEL: _request_model,
    Phase.EXECUTING_TOOLS: _execute_tools,
}


# --------------------------------------------------------------------------- edges

EDGES: Mapping[tuple[Phase, type[Outcome]], Phase] = {
    (Phase.TRIMMING_CONTEXT, ContextReady): Phase.AWAITING_MODEL,
    (Phase.TRIMMING_CONTEXT, Interrupted): Phase.STOPPED,
    (Phase.TRIMMING_CONTEXT, GuardTripped): Phase.STOPPED,
    (Phase.AWAITING_MODEL, ToolCallsRequested): Phase.EXECUTING_TOOLS,
    (Phase.AWAITING_MODEL, FinalAnswer): Phase.DONE,
    (Phase.AWAITING_MODEL, RequestFailed): Phase.STOPPED,
    (Phase.AWAITING_MODEL, Interrupted): Phase.STOPPED,
    (Phase.AWAITING_MODEL, GuardTripped): Phase.STOPPED,
    (Phase.EXECUTING_TOOLS, ToolsFinished): Phase.TRIMMING_CONTEXT,
    (Phase.EXECUTING_TOOLS, Interrupted): Phase.STOPPED,
    (Phase.EXECUTING_TOOLS, GuardTripped): Phase.STOPPED,
}
"""``(phase, outcome type) -> next phase``. A missing key is an illegal move."""

NEW_RUN: Mapping[Phase, Phase] = {
    Phase.DONE: Phase.TRIMMING_CONTEXT,
    Phase.STOPPED: Phase.TRIMMING_CONTEXT,
}
"""A new user message starts the next run of a finished conversation (reason
``user_message``); a new conversation starts in ``trimming_context`` with no transition."""


def _check_tables() -> None:
    """The machine is well formed: run once at import, so a broken table cannot ship."""
    sources = {phase for phase, _ in EDGES}
    assert sources == set(ACTIONS), "every phase with an action has edges, and only those"
    assert not any(phase.terminal for phase in sources), "terminal phases have no edges"
    for guard in GUARDS:
        for phase in guard.phases:
            assert (phase, GuardTripped) in EDGES, f"guard {guard.name} has no edge from {phase}"
    reachable, frontier = {Phase.TRIMMING_CONTEXT}, [Phase.TRIMMING_CONTEXT]
    while frontier:
        phase = frontier.pop()
        for (source, _), target in EDGES.items():
            if source is phase and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(Phase), f"unreachable phases: {set(Phase) - reachable}"


_check_tables()


# --------------------------------------------------------------------------- step


async def step(rt: Runtime, conv: Conversation) -> Conversation:
    """Advance ``conv`` by exactly one transition."""
    if conv.finished:
        raise ConversationFinishedError(
            conv.chat_id,
            f"conversation {conv.chat_id!r} is {conv.phase.value}: start a new run with "
            "agent.start(message, conversation=conv)",
        )
    stop = await rt.stop_requested()
    for guard in GUARDS:
        if conv.phase in guard.phases and guard.holds(conv, rt.limits, stop):
            return await _enter(rt, conv, GuardTripped(guard))
    conv, outcome = await ACTIONS[conv.phase](rt, conv)
    return await _enter(rt, conv, outcome)


def begin_run(conv: Conversation, at: float, **changes: Any) -> Conversation:
    """``conv`` (finished) moved to its next run by a new user message: the ``NEW_RUN`` edge,
    recorded like every transition. ``changes`` are the new run's fields (messages, counters).
    """
    target = NEW_RUN[conv.phase]
    return _record(conv, target, "user_message", at, stop_reason=None, **changes)


async def interrupt(rt: Runtime, conv: Conversation) -> Conversation:
    """``conv`` moved to ``stopped`` / ``user_stop`` without running its phase's action: for
    a run whose caller was cancelled mid-step (the state before the step is consistent)."""
    return await _enter(rt, conv, Interrupted())


async def _enter(rt: Runtime, conv: Conversation, outcome: Outcome) -> Conversation:
    """The one place that moves a conversation to its next phase."""
    target = EDGES[(conv.phase, type(outcome))]
    messages = conv.messages
    if target is Phase.STOPPED and (pending := conv.pending_tool_calls):
        note = f"Not executed: the run stopped ({outcome.reason}) before this call ran."
        messages = (*messages, *unanswered_results({c.id: c.name for c in pending}, note))
    conv = _record(
        conv,
        target,
        outcome.reason,
        rt.now(),
        messages=messages,
        stop_reason=outcome.stop_reason if target.terminal else None,
    )
    await rt.entered(conv, conv.transitions[-1], outcome)
    return conv


def _record(
    conv: Conversation, target: Phase, reason: str, at: float, **changes: Any
) -> Conversation:
    """Phase, version and transition log, written together (and nowhere else)."""
    record = TransitionRecord(conv.phase, target, reason, conv.turn, at)
    return attrs.evolve(
        conv,
        phase=target,
        version=conv.version + 1,
        transitions=(*conv.transitions, record),
        **changes,
    )
