"""The runtime of one step: the agent's collaborators bound to one conversation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from agentfsm import machine
from agentfsm.budget import Budget
from agentfsm.hooks import (
    AfterRequestEvent,
    BeforeRequestEvent,
    BudgetExceededEvent,
    ContextOverflowEvent,
    Event,
    FallbackEvent,
    FinalResponseEvent,
    ManualStopEvent,
    MaxTurnsReachedEvent,
    MessageDroppedEvent,
    RetryEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TransitionEvent,
    _DebugPrinter,
)
from agentfsm.messages import (
    AssistantMessage,
    Message,
    TextPart,
    ToolCall,
    ToolMessage,
)
from agentfsm.providers.openai import (
    REQUEST_ERRORS,
    ModelReply,
    OpenAIChatModel,
    StreamBuffer,
    error_info,
)
from agentfsm.response import AgentResponse
from agentfsm.retry import classify
from agentfsm.state import (
    ContextWindow,
    Conversation,
    ErrorInfo,
    RequestRecord,
    StopReason,
    TransitionRecord,
    Usage,
)
from agentfsm.stop import _Stopped, _StopWatch
from agentfsm.tools import ToolContext

if TYPE_CHECKING:
    from agentfsm.agent import Agent

__all__ = ["EventSink", "ModelSlot", "Step"]

log = structlog.get_logger(__name__)

EventSink = Callable[[Event], Awaitable[None]]
"""Where a streamed run sends its events (the consumer of ``stream_message``)."""


@attrs.frozen
class ModelSlot:
    """A model the agent may ask: the primary, then each fallback."""

    model: OpenAIChatModel
    price: Callable[[str, Usage], Decimal] | None
    owns_client: bool


class Step:
    """The runtime of one ``step()``: the agent's collaborators bound to one conversation."""

    __slots__ = (
        "agent",
        "attempt",
        "buffer",
        "chat_id",
        "debug",
        "limits",
        "sink",
        "slot_index",
        "turn",
        "user_id",
        "watch",
    )

    def __init__(
        self,
        agent: Agent,
        conversation: Conversation,
        debug: bool,
        sink: EventSink | None = None,
    ) -> None:
        self.agent = agent
        self.sink = sink
        self.buffer: StreamBuffer | None = None
        self.slot_index = 0
        self.attempt = 0
        self.limits = agent.limits
        self.chat_id = conversation.chat_id
        self.user_id = conversation.user_id
        self.turn = conversation.turn
        self.debug = _DebugPrinter() if debug else None
        self.watch = _StopWatch(agent._stop_board, agent._stop_signal, self.chat_id, self.user_id)

    # events ------------------------------------------------------------

    def now(self) -> float:
        return self.agent._clock()

    def wants(self, name: str) -> bool:
        return self.debug is not None or self.agent._hooks.wants(name)

    def base(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "user_id": self.user_id,
            "agent_name": self.agent.name,
            "turn": self.turn,
            "at": self.agent._clock(),
        }

    async def emit(self, name: str, event: Event) -> None:
        if self.debug is not None:
            self.debug(name, event)
        await self.agent._hooks.fire(name, event)

    async def on_text(self, delta: str) -> None:
        """A streamed text delta: ``on_token_received`` and the stream's consumer."""
        if self.sink is None and not self.agent._hooks.wants("on_token_received"):
            return
        event = TokenEvent(**self.base(), delta=delta)
        await self.agent._hooks.fire("on_token_received", event)
        if self.sink is not None:
            await self.sink(event)

    async def tool_result(self, message: ToolMessage) -> None:
        """A tool call has its result: tell the stream's consumer (if any)."""
        if self.sink is not None:
            await self.sink(
                ToolResultEvent(
                    **self.base(),
                    call_id=message.tool_call_id,
                    tool_name=message.tool_name or "",
                    content=message.content,
                    is_error=message.is_error,
                )
            )

    # the Runtime protocol ----------------------------------------------

    async def stop_requested(self) -> bool:
        return await self.watch.requested()

    async def fit_context(self, conversation: Conversation) -> Conversation | _Stopped:
        """The ``trimming_context`` action: decide what the next request sends."""
        agent = self.agent
        if not agent._trims:
            return conversation
        window = agent.fit(conversation)
        assert window is not None
        dropped = _left_out(window)
        previous = conversation.context
        sent_before = set(previous.selected) if previous is not None else set()
        newly = [  # sent last time (or new since), left out now
            i for i in dropped if previous is None or i >= previous.size or i in sent_before
        ]
        summary, error = conversation.summary, None
        if agent.context.dropping_strategy == "summary_dropping":
            unsummarized = [i for i in dropped if i >= conversation.summary_upto]
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
                    window = agent.fit(conversation)  # the summary costs tokens too
                    assert window is not None
        if newly and self.wants("on_message_dropped"):
            await self.emit(
                "on_message_dropped",
                MessageDroppedEvent(
                    **self.base(),
                    messages=tuple(conversation.messages[i] for i in newly),
                    tokens=sum(
                        agent.counter.count_message(conversation.messages[i]) for i in newly
                    ),
                    strategy=agent.context.dropping_strategy,
                    summary=summary if error is None else None,
                    error=error,
                ),
            )
        limit = agent.context.max_context_length or 0
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
        if (window.truncated or overflow is not None) and self.wants("on_context_overflow"):
            await self.emit(
                "on_context_overflow",
                ContextOverflowEvent(
                    **self.base(),
                    tokens_needed=window.tokens,
                    limit=limit,
                    truncated=tuple(
                        f"messages[{i}] cut to {kept} tokens"
                        for i, kept in sorted(window.truncated.items())
                    ),
                ),
            )
        return attrs.evolve(conversation, context=window, error=overflow or conversation.error)

    async def _summarize(
        self, conversation: Conversation, indices: Sequence[int]
    ) -> tuple[str, RequestRecord] | ErrorInfo:
        """The running summary with the messages at ``indices`` folded in (a model call)."""
        agent = self.agent
        transcript = "\n".join(_transcript_line(conversation.messages[i]) for i in indices)
        previous = conversation.summary or "(none yet)"
        request = [
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {
                "role": "user",
                "content": f"Summary so far:\n{previous}\n\nMessages to fold in:\n{transcript}",
            },
        ]
        began = agent._clock()
        try:
            reply = await agent._summarizer.complete(request, ())
        except REQUEST_ERRORS as error:
            info = error_info(error, agent._summarizer.model)
            log.warning(
                "summary_failed", chat_id=self.chat_id, error_type=info.type, status=info.status
            )
            return info
        price = agent._slots[0].price
        record = RequestRecord(
            model=reply.model,
            usage=reply.usage,
            cost=price(reply.model, reply.usage) if price is not None else Decimal(0),
            duration=agent._clock() - began,
            at=agent._clock(),
        )
        return (reply.message.content or "").strip() or previous, record

    async def request(self, conversation: Conversation) -> machine.Answer | ErrorInfo | _Stopped:
        agent = self.agent
        budget = agent.limits.budget_of(conversation)
        if budget is not None and budget.exhausted(conversation.cost):
            # the guard stops the run before this when the budget is binding: only warn here
            await self._budget_exceeded(conversation, budget, stopped=False)
        messages = agent.request_messages(conversation)
        if self.wants("on_before_request"):
            await self.emit(
                "on_before_request",
                BeforeRequestEvent(
                    **self.base(),
                    model=agent.model,
                    messages=tuple(messages),
                    tools=tuple(t.name for t in agent.tools),
                ),
            )
        began = agent._clock()
        result = await self.watch.run(self._call_models(messages))
        if isinstance(result, _Stopped) and self.buffer is not None and self.buffer.text:
            # a stop cut the stream: keep the text that arrived, exactly, marked interrupted
            slot = agent._slots[self.slot_index]
            result = self.buffer.reply(slot.model.model, interrupted=True), slot, self.attempt
        if isinstance(result, (ErrorInfo, _Stopped)):
            return result
        reply, slot, attempts = result
        answered = agent._clock()
        duration = answered - began
        usage = reply.usage
        if usage.estimated:  # the server reported none: count it ourselves, flagged
            window = conversation.context
            prompt = (
                window.tokens
                if window is not None and window.size == len(conversation.messages)
                else sum(agent.counter.count_wire(m) for m in messages)
                + agent.counter.count_tools(agent._tool_schemas)
                + agent.counter.reply_overhead
            )
            completion = agent.counter.count_message(reply.message)
            usage = attrs.evolve(
                usage,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
            )
        record = RequestRecord(
            model=reply.model,
            usage=usage,
            cost=slot.price(reply.model, usage) if slot.price is not None else Decimal(0),
            attempts=attempts,
            duration=duration,
            at=answered,
        )
        message = attrs.evolve(reply.message, model=reply.model)
        if self.wants("on_after_request"):
            self.turn = conversation.turn + 1
            await self.emit(
                "on_after_request",
                AfterRequestEvent(
                    **self.base(),
                    model=reply.model,
                    message=message,
                    usage=usage,
                    finish_reason=reply.finish_reason,
                    duration=duration,
                ),
            )
        if self.sink is not None:
            for call in message.tool_calls:
                await self.sink(ToolCallEvent(**self.base(), call=call))
        return machine.Answer(message, record)

    async def _call_models(
        self, messages: list[dict[str, Any]]
    ) -> tuple[ModelReply, ModelSlot, int] | ErrorInfo:
        """The request sent to each model in turn, each with its retries, until one answers."""
        agent = self.agent
        strategy = agent.retry_strategy
        info = ErrorInfo(type="NoModel", message="no model configured")
        for index, slot in enumerate(agent._slots):
            if index:
                log.warning(
                    "model_fallback",
                    chat_id=self.chat_id,
                    from_model=info.model,
                    to_model=slot.model.model,
                )
                if self.wants("on_fallback"):
                    await self.emit(
                        "on_fallback",
                        FallbackEvent(
                            **self.base(),
                            from_model=agent._slots[index - 1].model.model,
                            to_model=slot.model.model,
                            error=info,
                        ),
                    )
            attempt = 0
            retries: dict[str, int] = {}  # each class of failure has its own retry allowance
            while True:
                attempt += 1
                self.slot_index, self.attempt = index, attempt
                try:
                    if not agent._streaming:
                        reply = await slot.model.complete(messages, agent._tool_schemas)
                    else:
                        self.buffer = StreamBuffer()
                        reply = await slot.model.stream(
                            messages, agent._tool_schemas, self.buffer, self.on_text
                        )
                    return reply, slot, attempt
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
                    log.warning(
                        "model_request_retry",
                        chat_id=self.chat_id,
                        model=info.model,
                        attempt=attempt,
                        error_class=error_class,
                        status=info.status,
                        delay=round(delay, 3),
                    )
                    if self.wants("on_retry"):
                        await self.emit(
                            "on_retry",
                            RetryEvent(
                                **self.base(),
                                model=slot.model.model,
                                attempt=attempt,
                                error_class=error_class,
                                error=info,
                                delay=delay,
                            ),
                        )
                    await agent._sleep(delay)
        return info

    async def _budget_exceeded(
        self, conversation: Conversation, budget: Budget, *, stopped: bool
    ) -> None:
        log.warning(
            "budget_exceeded",
            chat_id=self.chat_id,
            spent=str(conversation.cost),
            budget=str(budget.max_budget_for_this_chat),
            stopped=stopped,
        )
        if self.wants("on_budget_exceeded"):
            await self.emit(
                "on_budget_exceeded",
                BudgetExceededEvent(
                    **self.base(),
                    spent=conversation.cost,
                    budget=budget.max_budget_for_this_chat,
                    reserve=budget.reserved_budget,
                    stopped=stopped,
                ),
            )

    async def execute(
        self, conversation: Conversation, calls: Sequence[ToolCall]
    ) -> tuple[Sequence[Message], int, bool]:
        context = ToolContext(
            chat_id=self.chat_id,
            user_id=self.user_id,
            agent_name=self.agent.name,
            turn=conversation.turn,
        )
        return await self.agent._executor.run(self, calls, context)

    async def entered(
        self, conversation: Conversation, record: TransitionRecord, outcome: machine.Outcome
    ) -> None:
        self.turn = conversation.turn
        if outcome.stop_reason is StopReason.USER_STOP:
            self.agent._stop_board.clear(self.chat_id)
        await self.announce(conversation, record)
        budget = self.limits.budget_of(conversation)
        if outcome.stop_reason is StopReason.BUDGET_EXCEEDED and budget is not None:
            await self._budget_exceeded(conversation, budget, stopped=True)
        if outcome.stop_reason is StopReason.MAX_TURNS and self.wants("on_max_turns_reached"):
            await self.emit(
                "on_max_turns_reached",
                MaxTurnsReachedEvent(**self.base(), max_turns=self.limits.max_turns),
            )
        if outcome.stop_reason is StopReason.USER_STOP and self.wants("on_manual_stop"):
            await self.emit(
                "on_manual_stop",
                ManualStopEvent(
                    **self.base(),
                    phase=record.from_phase,
                    source=self.watch.source or "request_stop",
                ),
            )
        if conversation.finished and self.wants("on_final_response"):
            await self.emit(
                "on_final_response",
                FinalResponseEvent(
                    **self.base(), response=AgentResponse.from_conversation(conversation)
                ),
            )

    async def announce(self, conversation: Conversation, record: TransitionRecord) -> None:
        """Fire ``on_transition`` for ``record``, and tell the stream's consumer."""
        if self.wants("on_transition") or self.sink is not None:
            event = TransitionEvent(**self.base(), record=record, conversation=conversation)
            await self.emit("on_transition", event)
            if self.sink is not None:
                await self.sink(event)


# ---------------------------------------------------------------------- construction helpers


SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a conversation whose oldest messages no longer fit in "
    "the model's context. Rewrite the summary so far with the new messages folded in. Keep "
    "every fact, name, number, decision, open question and tool result the conversation may "
    "need later; drop pleasantries. Answer with the summary only."
)
_TRANSCRIPT_CHARS = 4000  # per message: a summary request must not overflow in turn


def _transcript_line(message: Message) -> str:
    if isinstance(message, ToolMessage):
        who, text = f"tool {message.tool_name or ''} result".replace("  ", " "), message.content
    elif isinstance(message, AssistantMessage):
        calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
        who, text = "assistant", (message.content or "") + (f" [calls {calls}]" if calls else "")
    else:
        content = message.content
        who = message.role
        text = (
            content
            if isinstance(content, str)
            else " ".join(
                p.text if isinstance(p, TextPart) else f"[{p.data.get('type', 'part')}]"
                for p in content
            )
        )
    if len(text) > _TRANSCRIPT_CHARS:
        text = text[: _TRANSCRIPT_CHARS // 2] + " […] " + text[-_TRANSCRIPT_CHARS // 2 :]
    return f"{who}: {text}"


def _left_out(window: ContextWindow) -> list[int]:
    """Indices of the messages a window does not send."""
    chosen = set(window.selected)
    return [i for i in range(window.size) if i not in chosen]
