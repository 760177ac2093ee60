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
from agentfsm.errors import (
    ConversationFinishedError,
    IllegalTransitionError,
    MachineDefinitionError,
)
from agentfsm.executor import Batch
from agentfsm.hooks import HOOK_EVENTS
from agentfsm.messages import AssistantMessage, Message, ToolCall, unanswered_results
from agentfsm.state import (
    Conversation,
    ErrorInfo,
    GuardTrip,
    Phase,
    RequestRecord,
    StopReason,
    TransitionRecord,
)
from agentfsm.stop import _Stopped

__all__ = [
    "ACTIONS",
    "EDGES",
    "GUARDS",
    "NEW_RUN",
    "Answer",
    "Checked",
    "ContextReady",
    "FinalAnswer",
    "Guard",
    "GuardTripped",
    "Interrupted",
    "Limits",
    "NewMessage",
    "Outcome",
    "OutputInvalid",
    "OutputRepair",
    "RequestFailed",
    "Runtime",
    "ToolCallsRequested",
    "ToolsFinished",
    "UserGuardTripped",
    "WorkerLost",
    "begin_run",
    "check_tables",
    "interrupt",
    "run_begun",
    "step",
    "worker_lost",
]


# --------------------------------------------------------------------------- outcomes


@attrs.frozen
class Outcome:
    """What an action (or a guard) concluded; its type picks the edge."""

    reason: ClassVar[str]
    stop_reason: ClassVar[StopReason | None] = None
    hook: ClassVar[str | None] = None
    """The named hook entering its edge fires, besides ``on_transition``."""


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
    """A stop cancelled the running action (``source``: who stopped it, when not the stop
    watch: ``"cancelled"`` for a caller whose task was cancelled)."""

    reason = "user_stop"
    stop_reason = StopReason.USER_STOP
    hook = "on_manual_stop"
    source: str | None = None


@attrs.frozen
class WorkerLost(Outcome):
    """The worker running the chat died mid-run (its lease ran out) and
    ``recover(on_lost="stop")`` stops the chat for its user to retry."""

    reason = "worker_lost"
    stop_reason = StopReason.WORKER_LOST


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

    @property
    def hook(self) -> str | None:  # type: ignore[override]
        return self.guard.hook


@attrs.frozen
class OutputRepair(Outcome):
    """The answer did not match the run's output type: the errors go back to the model in a
    repair message, and the run asks again."""

    reason = "output_repair"
    hook = "on_invalid_output"
    errors: tuple[str, ...] = ()


@attrs.frozen
class OutputInvalid(Outcome):
    """The answer did not match the run's output type, and no repair is left."""

    reason = "invalid_output"
    stop_reason = StopReason.INVALID_OUTPUT
    hook = "on_invalid_output"
    errors: tuple[str, ...] = ()


@attrs.frozen
class UserGuardTripped(Outcome):
    """A guard of the user's (``guards=[...]``) held: the run stops with ``guard``."""

    reason = "guard"
    stop_reason = StopReason.GUARD
    hook = "on_guard_tripped"
    trip: GuardTrip


@attrs.frozen
class NewMessage(Outcome):
    """A new user message starts the next run of a finished conversation (``NEW_RUN``)."""

    reason = "user_message"


# --------------------------------------------------------------------------- guards


@attrs.frozen
class Limits:
    """The agent's configuration that guards read."""

    max_turns: int = 10
    max_function_calls: int | None = None
    budget: Budget | None = None
    max_output_retries: int = 1

    def budget_of(self, conv: Conversation) -> Budget | None:
        """The budget of ``conv``'s run: its own (given per call) or the agent's."""
        return conv.budget if conv.budget is not None else self.budget


def _budget_exhausted(conv: Conversation, limits: Limits, stop: bool) -> bool:
    budget = limits.budget_of(conv)
    return budget is not None and budget.exhausted(conv.cost)


def _budget_binding(conv: Conversation, limits: Limits) -> bool:
    budget = limits.budget_of(conv)
    return budget is not None and budget.stop_on_budget_exceeded


def _always(conv: Conversation, limits: Limits) -> bool:
    return True


@attrs.frozen
class Guard:
    """A predicate checked before the action of each of ``phases``.

    Attributes:
        name: what the guard checks, for logs and diagrams.
        stop_reason: the run's ``stop_reason`` when it trips.
        phases: the phases before whose action it is checked.
        holds: ``(conversation, limits, stop requested) -> bool``; reads, never writes.
        hook: the named hook fired when it holds (besides ``on_transition``); its event
            class builds itself from the stop's facts (``Event.from_stop``).
        binding: ``(conversation, limits) -> bool``: whether holding stops the run. A guard
            that holds without binding only fires its hook, and the action runs (a budget
            with ``stop_on_budget_exceeded=False`` warns).
    """

    name: str
    stop_reason: StopReason
    phases: frozenset[Phase]
    holds: Callable[[Conversation, Limits, bool], bool]
    hook: str | None = None
    binding: Callable[[Conversation, Limits], bool] = _always


_ACTIVE = frozenset({Phase.TRIMMING_CONTEXT, Phase.AWAITING_MODEL, Phase.EXECUTING_TOOLS})

GUARDS: Sequence[Guard] = (  # priority order: the first that holds wins
    Guard(
        "stop_requested",
        StopReason.USER_STOP,
        _ACTIVE,
        lambda c, lim, stop: stop,
        hook="on_manual_stop",
    ),
    Guard(
        "budget_exhausted",
        StopReason.BUDGET_EXCEEDED,
        frozenset({Phase.AWAITING_MODEL}),
        _budget_exhausted,
        hook="on_budget_exceeded",
        binding=_budget_binding,
    ),
    Guard(
        "max_turns",
        StopReason.MAX_TURNS,
        frozenset({Phase.AWAITING_MODEL}),
        lambda c, lim, stop: c.turn >= lim.max_turns,
        hook="on_max_turns_reached",
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

    async def execute(self, conversation: Conversation, calls: Sequence[ToolCall]) -> Batch:
        """Run ``calls``: a result for each, how many ran to an end, whether a stop cut in,
        and what the calls reported spending."""
        ...

    async def check_guards(self, conversation: Conversation) -> Checked | _Stopped:
        """The user's guards of this phase, in order, after agentfsm's own: the first that
        stops the run, the tool calls they refuse, or ``STOPPED`` if a stop cut a check."""
        ...

    async def warned(self, conversation: Conversation, guard: Guard) -> None:
        """``guard`` held but does not bind: fire its hook (the run goes on)."""
        ...

    async def entered(
        self, conversation: Conversation, record: TransitionRecord, outcome: Outcome
    ) -> None:
        """``conversation`` entered its phase by ``record``: fire ``on_transition``, the
        outcome's own hook (``outcome.hook``) and, for a finished run, ``on_final_response``."""
        ...


@attrs.frozen
class Checked:
    """What the user's guards of a phase decided.

    Attributes:
        trip: the guard that stops the run, if one does.
        refusals: results for tool calls a ``"tools"`` guard refused (they are not run).
    """

    trip: GuardTrip | None = None
    refusals: tuple[Message, ...] = ()


@attrs.frozen
class Answer:
    """A model request answered: the message, and the record of the request.

    With an output type (``conversation.output_spec``) the runtime has checked the answer:

    Attributes:
        rejected: why a final answer does not match the output type (``None``: it does, or
            this is not a final answer).
        repair: the messages that send ``rejected`` back to the model.
        closing: the messages that close an accepted answer (the final-answer tool's result).
        trip: an ``"output"`` guard that stops the run on this answer.
    """

    message: AssistantMessage
    record: RequestRecord
    rejected: tuple[str, ...] | None = None
    repair: tuple[Message, ...] = ()
    closing: tuple[Message, ...] = ()
    trip: GuardTrip | None = None


Action = Callable[[Runtime, Conversation], Awaitable[tuple[Conversation, Outcome]]]


async def _fit_context(rt: Runtime, conv: Conversation) -> tuple[Conversation, Outcome]:
    fitted = await rt.fit_context(conv)  # may summarize: a model call a stop can cut
    if isinstance(fitted, _Stopped):
        return conv, Interrupted()
    return fitted, ContextReady()


async def _request_model(rt: Runtime, conv: Conversation) -> tuple[Conversation, Outcome]:
    reply = await rt.request(conv)
    if isinstance(reply, _Stopped):
        return conv, Interrupted()
    if isinstance(reply, ErrorInfo):
        return attrs.evolve(conv, error=reply), RequestFailed()
    conv = attrs.evolve(
        conv.with_request(reply.record),
        messages=(*conv.messages, reply.message),
        turn=conv.turn + 1,
    )
    if reply.message.interrupted:  # a stop cut a streamed answer: its text is kept above
        return conv, Interrupted()
    if reply.trip is not None:  # an output guard stops the run on this answer
        return conv, UserGuardTripped(reply.trip)
    if reply.rejected is not None:  # a final answer that does not match the output type
        if conv.output_retries < rt.limits.max_output_retries:
            conv = attrs.evolve(
                conv,
                messages=(*conv.messages, *reply.repair),
                output_retries=conv.output_retries + 1,
            )
            return conv, OutputRepair(reply.rejected)
        error = ErrorInfo(type="InvalidOutput", message="; ".join(reply.rejected))
        return attrs.evolve(conv, error=error), OutputInvalid(reply.rejected)
    if reply.closing:  # the final-answer tool was called with a valid answer
        return attrs.evolve(conv, messages=(*conv.messages, *reply.closing)), FinalAnswer()
    return conv, ToolCallsRequested() if reply.message.tool_calls else FinalAnswer()


async def _execute_tools(rt: Runtime, conv: Conversation) -> tuple[Conversation, Outcome]:
    batch = await rt.execute(conv, conv.pending_tool_calls)
    return _with_results(conv, batch), Interrupted() if batch.stopped else ToolsFinished()


def _with_results(conv: Conversation, batch: Batch | None) -> Conversation:
    """``conv`` with a batch's tool results added, its executed calls counted and what its
    calls spent (sub-agents) added to the totals."""
    if batch is None:
        return conv
    conv = attrs.evolve(
        conv,
        messages=(*conv.messages, *batch.results),
        function_calls=conv.function_calls + batch.executed,
        tool_attempt=0,
    )
    return conv.with_spend(batch.usage, batch.cost) if batch.usage.requests or batch.cost else conv


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
    (Phase.AWAITING_MODEL, OutputRepair): Phase.TRIMMING_CONTEXT,
    (Phase.AWAITING_MODEL, OutputInvalid): Phase.STOPPED,
    (Phase.AWAITING_MODEL, Interrupted): Phase.STOPPED,
    (Phase.AWAITING_MODEL, GuardTripped): Phase.STOPPED,
    (Phase.AWAITING_MODEL, UserGuardTripped): Phase.STOPPED,
    (Phase.EXECUTING_TOOLS, ToolsFinished): Phase.TRIMMING_CONTEXT,
    (Phase.EXECUTING_TOOLS, Interrupted): Phase.STOPPED,
    (Phase.EXECUTING_TOOLS, GuardTripped): Phase.STOPPED,
    (Phase.EXECUTING_TOOLS, UserGuardTripped): Phase.STOPPED,
    (Phase.TRIMMING_CONTEXT, WorkerLost): Phase.STOPPED,
    (Phase.AWAITING_MODEL, WorkerLost): Phase.STOPPED,
    (Phase.EXECUTING_TOOLS, WorkerLost): Phase.STOPPED,
}
"""``(phase, outcome type) -> next phase``. A missing key is an illegal move."""

NEW_RUN: Mapping[tuple[Phase, type[Outcome]], Phase] = {
    (Phase.DONE, NewMessage): Phase.TRIMMING_CONTEXT,
    (Phase.STOPPED, NewMessage): Phase.TRIMMING_CONTEXT,
}
"""A new user message starts the next run of a finished conversation (``NewMessage``, reason
``user_message``); a new conversation starts in ``trimming_context`` with no transition.
Kept apart from ``EDGES``: ``step()`` never takes these, only ``begin_run`` does."""


def check_tables(
    edges: Mapping[tuple[Phase, type[Outcome]], Phase] = EDGES,
    guards: Sequence[Guard] = GUARDS,
    actions: Mapping[Phase, Action] = ACTIONS,
    new_run: Mapping[tuple[Phase, type[Outcome]], Phase] = NEW_RUN,
) -> None:
    """The machine is well formed: run once at import, so a broken table cannot ship.

    Raises:
        MachineDefinitionError: what is wrong, naming the phase, guard or edge.
    """
    sources = {phase for phase, _ in edges}
    if sources != set(actions):
        raise MachineDefinitionError(
            "every phase with an action has edges, and only those: "
            f"edges leave {sorted(p.value for p in sources)}, actions exist for "
            f"{sorted(p.value for p in actions)}"
        )
    if terminal := sorted(phase.value for phase in sources if phase.terminal):
        raise MachineDefinitionError(f"terminal phases have no edges, but {terminal} do")
    for guard in guards:
        for phase in sorted(guard.phases):
            if (phase, GuardTripped) not in edges:
                raise MachineDefinitionError(f"guard {guard.name!r} has no edge from {phase}")
    hooked = [(f"guard {g.name!r}", g.hook) for g in guards]
    hooked += [(f"outcome {o.__name__}", o.hook) for _, o in edges if o is not GuardTripped]
    for what, hook in hooked:
        if hook is not None and not hasattr(HOOK_EVENTS.get(hook), "from_stop"):
            raise MachineDefinitionError(
                f"{what} fires {hook!r}, which needs an event class in hooks.HOOK_EVENTS "
                "with a from_stop(fields, facts) constructor"
            )
    for (source, _), target in new_run.items():
        if not source.terminal or target.terminal:
            raise MachineDefinitionError(
                f"a new run leaves a finished phase for a running one, not {source} -> {target}"
            )
    reachable, frontier = {Phase.TRIMMING_CONTEXT}, [Phase.TRIMMING_CONTEXT]
    while frontier:
        phase = frontier.pop()
        for (source, _), target in edges.items():
            if source is phase and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    if unreachable := sorted(p.value for p in set(Phase) - reachable):
        raise MachineDefinitionError(f"unreachable phases: {unreachable}")


check_tables()


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
            if guard.binding(conv, rt.limits):
                return await _enter(rt, conv, GuardTripped(guard))
            await rt.warned(conv, guard)
    checked = await rt.check_guards(conv)  # the user's own, after ours
    if isinstance(checked, _Stopped):
        return await _enter(rt, conv, Interrupted())
    if checked.trip is not None:
        return await _enter(rt, conv, UserGuardTripped(checked.trip))
    if checked.refusals:  # refused calls are answered now; the action runs the others
        conv = attrs.evolve(conv, messages=(*conv.messages, *checked.refusals))
    conv, outcome = await ACTIONS[conv.phase](rt, conv)
    return await _enter(rt, conv, outcome)


def begin_run(conv: Conversation, at: float, **changes: Any) -> Conversation:
    """``conv`` (finished) moved to its next run by a new user message: the ``NEW_RUN`` edge,
    recorded like every transition. ``changes`` are the new run's fields (messages, counters).

    Raises:
        IllegalTransitionError: ``conv`` has not finished its run.
    """
    target = _target(NEW_RUN, conv, NewMessage())
    return _record(conv, target, NewMessage.reason, at, stop_reason=None, guard=None, **changes)


def run_begun(conv: Conversation) -> TransitionRecord | None:
    """The ``NEW_RUN`` transition that began ``conv``'s run, while no step has followed it
    (what a caller announces before stepping), else ``None``."""
    if not conv.transitions:
        return None
    last = conv.transitions[-1]
    for (source, outcome), target in NEW_RUN.items():
        if (last.from_phase, last.to_phase, last.reason) == (source, target, outcome.reason):
            return last
    return None


async def worker_lost(rt: Runtime, conv: Conversation) -> Conversation:
    """``conv``, whose worker died mid-run, moved to ``stopped`` / ``worker_lost`` without
    running its phase's action (``recover(on_lost="stop")``); tool calls left without a
    result get one saying they did not run."""
    return await _enter(rt, conv, WorkerLost())


async def interrupt(
    rt: Runtime,
    conv: Conversation,
    source: str,
    batch: Batch | None = None,
) -> Conversation:
    """``conv`` moved to ``stopped`` / ``user_stop`` without finishing its phase's action: for
    a run whose caller was cancelled mid-step (the state before the step is consistent).
    ``batch``: what a tool batch cut by the cancel had done, kept as the action would have
    kept it."""
    return await _enter(rt, _with_results(conv, batch), Interrupted(source))


async def _enter(rt: Runtime, conv: Conversation, outcome: Outcome) -> Conversation:
    """The one place that moves a conversation to its next phase (and fires its hooks)."""
    target = _target(EDGES, conv, outcome)
    messages = conv.messages
    if target is Phase.STOPPED and (pending := conv.pending_tool_calls):
        note = f"Not executed: the run stopped ({outcome.reason}) before this call ran."
        messages = (*messages, *unanswered_results({c.id: c.name for c in pending}, note))
    trip = outcome.trip if isinstance(outcome, UserGuardTripped) else None
    conv = _record(
        conv,
        target,
        outcome.reason,
        rt.now(),
        guard_name=trip.name if trip is not None else None,
        messages=messages,
        stop_reason=outcome.stop_reason if target.terminal else None,
        guard=trip,
    )
    await rt.entered(conv, conv.transitions[-1], outcome)
    return conv


def _target(
    table: Mapping[tuple[Phase, type[Outcome]], Phase], conv: Conversation, outcome: Outcome
) -> Phase:
    """The phase ``outcome`` leads to from ``conv``'s phase in ``table``.

    Raises:
        IllegalTransitionError: the table has no such move.
    """
    try:
        return table[(conv.phase, type(outcome))]
    except KeyError:
        raise IllegalTransitionError(conv.chat_id, conv.phase.value, outcome.reason) from None


def _record(
    conv: Conversation,
    target: Phase,
    reason: str,
    at: float,
    guard_name: str | None = None,
    **changes: Any,
) -> Conversation:
    """Phase, version and transition log, written together (and nowhere else)."""
    record = TransitionRecord(conv.phase, target, reason, conv.turn, at, guard=guard_name)
    return attrs.evolve(
        conv,
        phase=target,
        version=conv.version + 1,
        transitions=(*conv.transitions, record),
        **changes,
    )
