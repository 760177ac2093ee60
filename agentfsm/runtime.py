"""The runtime of one step: an agent's wiring bound to one conversation (the machine's effects).

``machine.step`` decides; this module does what its actions ask (fit the context, ask the
models, run the tools) and fires the hooks its transitions call for. It reads the agent only
through its :class:`~agentfsm.wiring.Wiring`, and carries nothing from one call to the next:
partial results (a cut stream, a cancelled batch) travel as return values.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from agentfsm import machine
from agentfsm._indices import Indices
from agentfsm._log import get_logger
from agentfsm.context.summary import summary_request
from agentfsm.executor import Batch
from agentfsm.guards import Correct, Guard, GuardContext, Refuse
from agentfsm.hooks import (
    HOOK_EVENTS,
    AfterRequestEvent,
    BeforeRequestEvent,
    ContextOverflowEvent,
    Event,
    FallbackEvent,
    FinalResponseEvent,
    MessageDroppedEvent,
    RetryEvent,
    StopFacts,
    TokenEvent,
    ToolCallEvent,
    TransitionEvent,
    _Emitter,
)
from agentfsm.messages import AssistantMessage, ToolCall, ToolMessage, UserMessage
from agentfsm.output import OutputPlan
from agentfsm.providers.openai import REQUEST_ERRORS, ModelReply, StreamBuffer, error_info
from agentfsm.response import AgentResponse
from agentfsm.retry import classify
from agentfsm.state import (
    ContextWindow,
    Conversation,
    ErrorInfo,
    GuardTrip,
    Phase,
    RequestRecord,
    StopReason,
    TransitionRecord,
)
from agentfsm.stop import STOPPED, _Stopped, _StopWatch
from agentfsm.tools import ToolContext
from agentfsm.wiring import ModelSlot, Wiring

if TYPE_CHECKING:
    from agentfsm.context.counting import TokenCounter

__all__ = ["Step"]

log = get_logger(__name__)


@attrs.frozen
class _Answered:
    """A request one of the models answered: the reply, who answered, after how many tries."""

    reply: ModelReply
    slot: ModelSlot
    attempts: int


class Step:
    """The runtime of one ``step()``: the machine's :class:`~agentfsm.machine.Runtime`.

    Built per step from the agent's wiring, the conversation's identity and where its events
    go. Its only state is the stop watch (which source said stop, once one has).
    """

    __slots__ = ("chat_id", "events", "limits", "plan", "user_id", "watch", "wiring")

    def __init__(
        self,
        wiring: Wiring,
        conversation: Conversation,
        events: _Emitter,
        plan: OutputPlan | None = None,
    ) -> None:
        self.wiring = wiring
        self.events = events
        self.plan = plan
        self.limits = wiring.limits
        self.chat_id = conversation.chat_id
        self.user_id = conversation.user_id
        self.watch = _StopWatch(wiring.stop_board, wiring.stop_signal, self.chat_id, self.user_id)

    def now(self) -> float:
        """The wiring's clock."""
        return self.wiring.clock()

    async def stop_requested(self) -> bool:
        """Whether a stop was asked for (by ``request_stop`` or the polled function)."""
        return await self.watch.requested()

    # ------------------------------------------------------------------ trimming_context

    async def fit_context(self, conversation: Conversation) -> Conversation | _Stopped:
        """The ``trimming_context`` action: decide what the next request sends.

        Drops (and with ``summary_dropping`` summarizes) what does not fit, fires
        ``on_message_dropped`` for messages newly left out and ``on_context_overflow`` when
        something had to be cut or nothing could make it fit (then ``conversation.error``
        says why, and the ``context_overflow`` guard stops the run before the request).
        """
        wiring = self.wiring
        if not wiring.context.trims:  # every message goes as is
            return conversation
        reserve = self._output_tokens(wiring.counter)
        window = wiring.window(conversation, reserve=reserve)
        dropped = window.selected.complement(window.size)
        newly = _newly_left_out(conversation.context, window, dropped)
        summary, error = conversation.summary, None
        if wiring.context.dropping_strategy == "summary_dropping":
            unsummarized = _from(dropped, conversation.summary_upto)
            if unsummarized:
                result = await self.watch.run(self._summarize(conversation, unsummarized))
                if isinstance(result, _Stopped):
                    return result
                if isinstance(result, ErrorInfo):
                    error = result  # simple dropping this turn; nothing is lost
                else:
                    summary, record = result
                    conversation = attrs.evolve(
                        conversation.with_request(record),
                        summary=summary,
                        summary_upto=max(unsummarized) + 1,
                    )
                    window = wiring.window(conversation, reserve=reserve)  # the summary costs too
        await self._report_fit(conversation, window, newly, summary, error)
        limit = wiring.context.max_context_length or 0
        overflow = (
            None
            if window.fits
            else ErrorInfo(
                type="ContextOverflow",
                message=(
                    f"the request needs {window.tokens} tokens even after dropping and "
                    f"truncating, more than max_context_length={limit}: the system prompt, "
                    "tool schemas and newest message alone do not fit"
                ),
            )
        )
        return attrs.evolve(conversation, context=window, error=overflow or conversation.error)

    async def _report_fit(
        self,
        conversation: Conversation,
        window: ContextWindow,
        newly: Sequence[int],
        summary: str | None,
        error: ErrorInfo | None,
    ) -> None:
        """``on_message_dropped`` for ``newly`` left-out messages, ``on_context_overflow`` for
        a window that cut messages short or does not fit."""
        events, context = self.events, self.wiring.context
        if newly and events.wants("on_message_dropped"):
            counter = self.wiring.counter
            await events.emit(
                "on_message_dropped",
                MessageDroppedEvent(
                    **events.fields(conversation.turn),
                    messages=tuple(conversation.messages[i] for i in newly),
                    tokens=sum(counter.count_message(conversation.messages[i]) for i in newly),
                    strategy=context.dropping_strategy,
                    summary=summary if error is None else None,
                    error=error,
                ),
            )
        if (window.truncated or not window.fits) and events.wants("on_context_overflow"):
            await events.emit(
                "on_context_overflow",
                ContextOverflowEvent(
                    **events.fields(conversation.turn),
                    tokens_needed=window.tokens,
                    limit=context.max_context_length or 0,
                    truncated=tuple(
                        f"messages[{i}] cut to {kept} tokens"
                        for i, kept in sorted(window.truncated.items())
                    ),
                ),
            )

    async def _summarize(
        self, conversation: Conversation, indices: Sequence[int]
    ) -> tuple[str, RequestRecord] | ErrorInfo:
        """The running summary with the messages at ``indices`` folded in (a model call), or
        what failed (the caller then drops without summarizing this turn)."""
        wiring = self.wiring
        request = summary_request(conversation.messages, indices, conversation.summary)
        began = wiring.clock()
        try:
            reply = await wiring.summarizer.complete(request, ())
        except REQUEST_ERRORS as error:
            info = error_info(error, wiring.summarizer.model)
            log.warning(
                "summary_failed", chat_id=self.chat_id, error_type=info.type, status=info.status
            )
            return info
        record = RequestRecord(
            model=reply.model,
            usage=reply.usage,
            cost=wiring.slots[0].cost(reply.model, reply.usage),
            duration=wiring.clock() - began,
            at=wiring.clock(),
        )
        previous = conversation.summary or "(none yet)"
        return (reply.message.content or "").strip() or previous, record

    def _output_tokens(self, counter: TokenCounter) -> int:
        """Tokens the output type adds to a request: its ``response_format``, or the
        final-answer tool next to the agent's own."""
        plan = self.plan
        if plan is None:
            return 0
        tools = self.wiring.tool_schemas
        extra = plan.tools()
        if extra:
            return counter.count_tools([*tools, *extra]) - counter.count_tools(tools)
        return counter.count_response_format(plan.request_params()["response_format"])

    # ------------------------------------------------------------------ awaiting_model

    async def request(self, conversation: Conversation) -> machine.Answer | ErrorInfo | _Stopped:
        """The ``awaiting_model`` action: one request, through retries and fallbacks.

        Returns the answer (with the record of its usage and cost), what failed for good,
        or ``STOPPED``. A stop that cut a stream after text arrived returns that text as an
        answer marked ``interrupted`` (the machine then stops the run and keeps it).
        """
        wiring, events, plan = self.wiring, self.events, self.plan
        messages = wiring.request_messages(conversation)
        tools, params = wiring.tool_schemas, {}
        if plan is not None:  # the output type is asked for by response_format or a tool
            tools, params = (*tools, *plan.tools()), plan.request_params()
        if events.wants("on_before_request"):
            await events.emit(
                "on_before_request",
                BeforeRequestEvent(
                    **events.fields(conversation.turn),
                    model=wiring.model,
                    messages=tuple(messages),
                    tools=tuple(t["function"]["name"] for t in tools if "function" in t),
                ),
            )
        began = wiring.clock()
        result = await self._call_models(messages, conversation.turn, tools, params)
        if isinstance(result, (ErrorInfo, _Stopped)):
            return result
        answered = wiring.clock()
        record = self._record(conversation, messages, result, duration=answered - began)
        message = attrs.evolve(
            result.reply.message,
            model=result.reply.model,
            finish_reason=result.reply.finish_reason,
            tool_calls=_unique_ids(result.reply.message.tool_calls, self.chat_id),
        )
        turn = conversation.turn + 1  # this answer is the run's next model call
        if events.wants("on_after_request"):
            await events.emit(
                "on_after_request",
                AfterRequestEvent(
                    **events.fields(turn),
                    model=result.reply.model,
                    message=message,
                    usage=record.usage,
                    finish_reason=result.reply.finish_reason,
                    duration=record.duration,
                ),
            )
        if events.streaming:
            for call in message.tool_calls:
                await events.stream(ToolCallEvent(**events.fields(turn), call=call))
        answer = machine.Answer(message, record)
        if message.interrupted:  # the machine stops the run and keeps the text as it is
            return answer
        verdict = plan.check(message) if plan is not None else None
        if verdict is not None:
            answer = attrs.evolve(
                answer, rejected=verdict.rejected, repair=verdict.repair, closing=verdict.closing
            )
        if wiring.has_output_guards and answer.rejected is None and _final(answer, plan):
            judged = await self._output_guards(conversation, message)
            if isinstance(judged, _Stopped):
                return judged
            if isinstance(judged, GuardTrip):
                return attrs.evolve(answer, trip=judged)
            if isinstance(judged, str):  # a correction: the answer goes back, like a repair
                return attrs.evolve(
                    answer, rejected=(judged,), repair=(UserMessage(judged),), closing=()
                )
        return answer

    def _record(
        self,
        conversation: Conversation,
        messages: Sequence[dict[str, Any]],
        answered: _Answered,
        *,
        duration: float,
    ) -> RequestRecord:
        """The record of an answered request: usage (counted by the wiring's counter when the
        server reported none, and flagged estimated) and its cost."""
        reply, wiring = answered.reply, self.wiring
        usage = reply.usage
        if usage.estimated:
            counter = wiring.estimator
            window = conversation.context
            prompt = (
                window.tokens
                if window is not None and window.size == len(conversation.messages)
                else sum(counter.count_wire(m) for m in messages)
                + counter.count_tools(wiring.tool_schemas, system=_system_text(messages))
                + self._output_tokens(counter)
                + counter.reply_overhead
            )
            completion = counter.count_message(reply.message)
            usage = attrs.evolve(
                usage,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
            )
        return RequestRecord(
            model=reply.model,
            usage=usage,
            cost=answered.slot.cost(reply.model, usage),
            attempts=answered.attempts,
            duration=duration,
            at=wiring.clock(),
            finish_reason=reply.finish_reason,
        )

    async def _call_models(
        self,
        messages: list[dict[str, Any]],
        turn: int,
        tools: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
    ) -> _Answered | ErrorInfo | _Stopped:
        """The request sent to each model in turn, each with its retries, until one answers.

        Each attempt and each pause between attempts runs under the stop watch. A stop during
        an attempt that had streamed text returns that text (marked ``interrupted``); a stop
        in a pause returns ``STOPPED``: the failed attempt's text is never kept.
        """
        wiring = self.wiring
        strategy = wiring.retry_strategy
        info = ErrorInfo(type="NoModel", message="no model configured")
        for index, slot in enumerate(wiring.slots):
            if index:
                await self._fallback(wiring.slots[index - 1], slot, info, turn)
            attempt = 0
            retries: dict[str, int] = {}  # each class of failure has its own retry allowance
            while True:
                attempt += 1
                buffer = StreamBuffer() if wiring.streaming else None
                try:
                    reply = await self.watch.run(
                        self._attempt(slot, messages, buffer, turn, tools, params)
                    )
                except REQUEST_ERRORS as error:
                    info = error_info(error, slot.model.model)
                    error_class = classify(error)
                    if error_class is not None:
                        retries[error_class] = retries.get(error_class, 0) + 1
                    if (
                        error_class is None
                        or retries[error_class] > strategy.policy(error_class).max_retries
                    ):
                        log.warning(
                            "model_request_failed",
                            chat_id=self.chat_id,
                            model=info.model,
                            attempts=attempt,
                            error_type=info.type,
                            status=info.status,
                            error=info.message,
                        )
                        break
                    delay = strategy.delay(error_class, retries[error_class], error)
                    await self._retrying(slot, attempt, error_class, info, delay, turn)
                    if isinstance(await self.watch.run(wiring.sleep(delay)), _Stopped):
                        return STOPPED
                    continue
                if isinstance(reply, _Stopped):
                    if buffer is None or not buffer.text:
                        return STOPPED
                    reply = buffer.reply(slot.model.model, interrupted=True)
                return _Answered(reply, slot, attempt)
        return info

    async def _attempt(
        self,
        slot: ModelSlot,
        messages: list[dict[str, Any]],
        buffer: StreamBuffer | None,
        turn: int,
        tools: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
    ) -> ModelReply:
        """One attempt at ``slot``'s model, in its tracing span."""
        with self.wiring.tracer.request(slot.model, self.chat_id, self.user_id) as trace:
            reply = await self._send(slot, messages, buffer, turn, tools, params)
            trace.answered(reply, lambda: slot.cost(reply.model, reply.usage))
        return reply

    async def _send(
        self,
        slot: ModelSlot,
        messages: list[dict[str, Any]],
        buffer: StreamBuffer | None,
        turn: int,
        tools: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
    ) -> ModelReply:
        """One attempt at ``slot``'s model: a plain request, or a stream into ``buffer``."""
        if buffer is None:
            return await slot.model.complete(messages, tools, params)
        events = self.events
        wants_tokens = events.streaming or events.wants("on_token_received")

        async def on_text(delta: str) -> None:
            if wants_tokens:
                event = TokenEvent(**events.fields(turn), delta=delta)
                await events.emit("on_token_received", event)
                await events.stream(event)

        return await slot.model.stream(messages, tools, buffer, on_text, params)

    async def _retrying(
        self,
        slot: ModelSlot,
        attempt: int,
        error_class: str,
        info: ErrorInfo,
        delay: float,
        turn: int,
    ) -> None:
        """Log a retry and fire ``on_retry``."""
        log.warning(
            "model_request_retry",
            chat_id=self.chat_id,
            model=info.model,
            attempt=attempt,
            error_class=error_class,
            status=info.status,
            delay=round(delay, 3),
        )
        if self.events.wants("on_retry"):
            await self.events.emit(
                "on_retry",
                RetryEvent(
                    **self.events.fields(turn),
                    model=slot.model.model,
                    attempt=attempt,
                    error_class=error_class,
                    error=info,
                    delay=delay,
                ),
            )

    async def _fallback(
        self, failed: ModelSlot, slot: ModelSlot, info: ErrorInfo, turn: int
    ) -> None:
        """Log a move to the next model and fire ``on_fallback``."""
        log.warning(
            "model_fallback", chat_id=self.chat_id, from_model=info.model, to_model=slot.model.model
        )
        if self.events.wants("on_fallback"):
            await self.events.emit(
                "on_fallback",
                FallbackEvent(
                    **self.events.fields(turn),
                    from_model=failed.model.model,
                    to_model=slot.model.model,
                    error=info,
                ),
            )

    # ------------------------------------------------------------------ executing_tools

    async def execute(self, conversation: Conversation, calls: Sequence[ToolCall]) -> Batch:
        """The ``executing_tools`` action: every call's result, how many calls ran to an end,
        whether a stop cut in, and what the calls spent."""
        return await self.wiring.executor.run(
            calls, self.tool_context(conversation), self.events, self.watch
        )

    def tool_context(self, conversation: Conversation) -> ToolContext:
        """What a tool is told about the run calling it."""
        budget = self.limits.budget_of(conversation)
        left = None
        if budget is not None and self.wiring.priced:
            left = max(budget.max_budget_for_this_chat - conversation.cost, Decimal(0))
        return ToolContext(
            chat_id=self.chat_id,
            user_id=self.user_id,
            agent_name=self.wiring.name,
            turn=conversation.turn,
            attempt=conversation.tool_attempt + 1,
            depth=self.events.depth,
            budget_left=left,
        )

    # ------------------------------------------------------------------ user guards

    async def check_guards(self, conversation: Conversation) -> machine.Checked | _Stopped:
        """The user's guards of this phase, in the order given, after agentfsm's own:
        ``"input"`` and ``"model"`` before a model request, ``"tools"`` before tool calls
        run. The first that says stop stops the run; ``"tools"`` refusals accumulate."""
        guards = self.wiring.guards
        if not guards:
            return _PASSED
        phase = conversation.phase
        if phase is Phase.AWAITING_MODEL:
            first = conversation.turn == 0 and conversation.output_retries == 0
            wanted = ("input", "model") if first else ("model",)
            calls: tuple[ToolCall, ...] = ()
        elif phase is Phase.EXECUTING_TOOLS:
            wanted, calls = ("tools",), conversation.pending_tool_calls
        else:
            return _PASSED
        refusals: dict[str, str] = {}
        for guard in guards:
            if guard.on not in wanted:
                continue
            context = GuardContext(
                conversation=conversation,
                checkpoint=guard.on,
                calls=tuple(c for c in calls if c.id not in refusals),
            )
            verdict = await self._verdict(guard, context)
            if isinstance(verdict, _Stopped):
                return verdict
            if isinstance(verdict, Refuse) and guard.on == "tools":
                refusals.update({k: v for k, v in verdict.calls.items() if k not in refusals})
            elif trip := _trip(guard, verdict):
                return machine.Checked(trip=trip)
        names = {c.id: c.name for c in calls}
        return machine.Checked(
            refusals=tuple(
                ToolMessage(i, f"Refused: {why}", tool_name=names.get(i), is_error=True)
                for i, why in refusals.items()
                if i in names
            )
        )

    async def _verdict(self, guard: Guard, context: GuardContext) -> Any:
        """A guard's verdict; an async check runs under the stop watch (a stop cuts it)."""
        verdict = guard.check(context)
        if inspect.isawaitable(verdict):
            return await self.watch.run(verdict)
        return verdict

    async def _output_guards(
        self, conversation: Conversation, message: AssistantMessage
    ) -> GuardTrip | str | _Stopped | None:
        """The ``"output"`` guards on an answer about to be final: a trip, a correction to
        send back, ``STOPPED``, or ``None`` (the answer stands)."""
        for guard in self.wiring.guards:
            if guard.on != "output":
                continue
            context = GuardContext(conversation=conversation, checkpoint="output", answer=message)
            verdict = await self._verdict(guard, context)
            if isinstance(verdict, _Stopped):
                return verdict
            if isinstance(verdict, Correct):
                return verdict.message
            if trip := _trip(guard, verdict):
                return trip
        return None

    # ------------------------------------------------------------------ transitions

    async def warned(self, conversation: Conversation, guard: machine.Guard) -> None:
        """``guard`` held without binding (a budget that only warns): fire its hook."""
        log.warning(
            "guard_held", guard=guard.name, chat_id=self.chat_id, cost=str(conversation.cost)
        )
        if guard.hook is not None:
            await self._fire_stop_hook(
                guard.hook, conversation, conversation.phase, None, stopped=False
            )

    async def entered(
        self, conversation: Conversation, record: TransitionRecord, outcome: machine.Outcome
    ) -> None:
        """``conversation`` entered its phase by ``record``: ``on_transition`` (and the
        stream), the outcome's own hook (the table's column), and ``on_final_response``."""
        if outcome.stop_reason is StopReason.USER_STOP:
            self.wiring.stop_board.clear(self.chat_id)  # this stop is spent
        await self.announce(conversation, record)
        if outcome.hook is not None:
            source = outcome.source if isinstance(outcome, machine.Interrupted) else None
            await self._fire_stop_hook(
                outcome.hook,
                conversation,
                record.from_phase,
                source,
                stopped=record.to_phase.terminal,
                errors=getattr(outcome, "errors", ()),
            )
        if conversation.finished and self.events.wants("on_final_response"):
            await self.events.emit(
                "on_final_response",
                FinalResponseEvent(
                    **self.events.fields(conversation.turn),
                    response=AgentResponse.from_conversation(conversation),
                ),
            )

    async def announce(self, conversation: Conversation, record: TransitionRecord) -> None:
        """Fire ``on_transition`` for ``record``, and tell the stream's consumer."""
        events = self.events
        if events.wants("on_transition") or events.streaming:
            event = TransitionEvent(
                **events.fields(conversation.turn), record=record, conversation=conversation
            )
            await events.emit("on_transition", event)
            await events.stream(event)

    async def _fire_stop_hook(
        self,
        hook: str,
        conversation: Conversation,
        phase: Phase,
        source: str | None,
        *,
        stopped: bool,
        errors: tuple[str, ...] = (),
    ) -> None:
        """Fire ``hook`` with the event its class builds from the stop's facts."""
        if not self.events.wants(hook):
            return
        facts = StopFacts(
            conversation=conversation,
            phase=phase,
            stopped=stopped,
            source=source or self.watch.source or "request_stop",
            max_turns=self.limits.max_turns,
            budget=self.limits.budget_of(conversation),
            errors=errors,
        )
        event: Event = HOOK_EVENTS[hook].from_stop(  # type: ignore[attr-defined]
            self.events.fields(conversation.turn), facts
        )
        await self.events.emit(hook, event)


_PASSED = machine.Checked()


def _final(answer: machine.Answer, plan: OutputPlan | None) -> bool:
    """The answer ends the run if accepted: no tool calls, or the final-answer tool's."""
    if plan is not None and plan.spec.mode == "tool":
        return bool(answer.closing)
    return not answer.message.tool_calls


def _trip(guard: Guard, verdict: Any) -> GuardTrip | None:
    """The stop a guard's verdict asks for: ``True`` or a message stop, falsy goes on."""
    if not verdict or isinstance(verdict, (Refuse, Correct)):
        return None
    message = verdict if isinstance(verdict, str) else guard.message
    return GuardTrip(name=guard.name, message=message)


def _system_text(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The text of a request's first message when it is a system message (the tool
    definitions join it)."""
    first = messages[0] if messages else None
    if (
        first is not None
        and first.get("role") == "system"
        and isinstance(first.get("content"), str)
    ):
        return str(first["content"])
    return None


def _newly_left_out(
    previous: ContextWindow | None, window: ContextWindow, dropped: Indices
) -> list[int]:
    """The messages ``window`` leaves out that the previous window sent (or that are new
    since): work in the size of the windows, not of the history."""
    if previous is None:
        return list(dropped)
    candidates = itertools.chain(previous.selected, range(previous.size, window.size))
    return [i for i in candidates if i < window.size and i not in window.selected]


def _from(indices: Indices, start: int) -> list[int]:
    """The members of ``indices`` from ``start`` on (walking its runs, not its members)."""
    found: list[int] = []
    for first, stop in indices.runs:
        if stop > start:
            found.extend(range(max(first, start), stop))
    return found


def _unique_ids(calls: tuple[ToolCall, ...], chat_id: str) -> tuple[ToolCall, ...]:
    """``calls`` with every id unique: a server that sent one id twice gets the repeats
    renamed (``<id>_2``…), so each call is answered exactly once and the history stays valid."""
    seen: set[str] = set()
    renamed: list[ToolCall] = []
    for call in calls:
        call_id, n = call.id, 1
        while call_id in seen:
            n += 1
            call_id = f"{call.id}_{n}"
        if call_id != call.id:
            log.warning("duplicate_tool_call_id", chat_id=chat_id, id=call.id, renamed=call_id)
            call = attrs.evolve(call, id=call_id)
        seen.add(call_id)
        renamed.append(call)
    return tuple(renamed)
