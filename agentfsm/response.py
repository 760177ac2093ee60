"""``AgentResponse``: what a finished run hands back to the caller."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Generic

import attrs
from typing_extensions import TypeVar

from agentfsm.errors import InvalidInputError
from agentfsm.messages import (
    AssistantMessage,
    UserMessage,
    message_to_openai,
    messages_to_openai,
)
from agentfsm.state import Conversation, ErrorInfo, GuardTrip, RequestRecord, StopReason, Usage

__all__ = ["AgentResponse"]

OutputT = TypeVar("OutputT", default=str)

_TEXT: Any = object()  # from_conversation(output=...) not given: the text


@attrs.frozen(kw_only=True)
class AgentResponse(Generic[OutputT]):
    """The result of one run; generic in the type of its output (``str`` by default).

    Attributes:
        output: the final answer: its text ("" when the run ended without one), or with an
            ``output_type`` the validated value of that type (``None`` when the run ended
            without a valid one: read ``stop_reason``).
        guard: the guard of yours that stopped the run (``stop_reason`` ``guard``): its name
            and message.
        output_text: the final answer's raw text, always (with ``output_mode="tool"``, the
            final-answer tool's JSON arguments).
        stop_reason: why the run ended.
        history: every message of the conversation in OpenAI chat format, tool calls and
            results included, the agent's system prompt excluded; pass it back as
            ``history=`` to continue. Built from ``conversation`` when first read (then
            kept), so a run whose caller never reads it does not convert the whole history.
        history_without_function_calls: only the user and assistant text messages (built
            when first read, like ``history``).
        usage: tokens of all requests of this run.
        turns: model calls made in this run.
        error: what failed, when ``stop_reason`` is ``error``.
        interrupted: a stop cut the model's streamed answer short; ``output`` is the text
            that had arrived, exactly as received.
        cost: USD spent by this run (0 without pricing).
        requests: this run's answered requests: model, usage, cost, attempts.
        conversation: the full state, to step on, dump or store.
        finish_reason: why the model stopped writing its last answer of this run, as the
            server said; ``"length"`` means ``max_completion_tokens`` cut it short (a cut
            answer, not a full one). ``None`` when no answer came or the server did not say.
    """

    output: OutputT
    stop_reason: StopReason
    usage: Usage
    agent_name: str
    chat_id: str
    user_id: str | None
    turns: int
    error: ErrorInfo | None
    interrupted: bool
    cost: Decimal
    requests: tuple[RequestRecord, ...]
    conversation: Conversation
    finish_reason: str | None = None
    output_text: str = ""
    guard: GuardTrip | None = None
    # The views of the history, given (``history=``, ``history_without_function_calls=``)
    # or built from ``conversation`` on first read: not compared or shown, being derived.
    _history: list[dict[str, Any]] | None = attrs.field(default=None, eq=False, repr=False)
    _history_without_function_calls: list[dict[str, Any]] | None = attrs.field(
        default=None, eq=False, repr=False
    )

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every message of the conversation in OpenAI chat format (see the class)."""
        history = self._history
        if history is None:
            history = messages_to_openai(self.conversation.messages)
            object.__setattr__(self, "_history", history)
        return history

    @property
    def history_without_function_calls(self) -> list[dict[str, Any]]:
        """Only the user and assistant text messages, in OpenAI chat format."""
        texts = self._history_without_function_calls
        if texts is None:
            texts = [
                {"role": m.role, "content": m.content}
                if isinstance(m, AssistantMessage)
                else message_to_openai(m)
                for m in self.conversation.messages
                if isinstance(m, UserMessage) or (isinstance(m, AssistantMessage) and m.content)
            ]
            object.__setattr__(self, "_history_without_function_calls", texts)
        return texts

    @classmethod
    def from_conversation(
        cls, conversation: Conversation, *, output: Any = _TEXT, output_text: str | None = None
    ) -> AgentResponse[Any]:
        """The response of ``conversation``'s current run (which must have finished).

        ``output`` / ``output_text`` are the typed answer and its raw text when the run had
        an output type; without them, both are the final assistant text.
        """
        if conversation.stop_reason is None:
            raise InvalidInputError(
                f"conversation {conversation.chat_id!r} is in {conversation.phase.value}: "
                "its run has not finished"
            )
        last = conversation.last_assistant
        text = conversation.output
        build: Any = cls  # the output's type is the caller's to state
        return build(  # type: ignore[no-any-return]
            output=text if output is _TEXT else output,
            output_text=text if output_text is None else output_text,
            stop_reason=conversation.stop_reason,
            usage=conversation.run_usage,
            agent_name=conversation.agent_name,
            chat_id=conversation.chat_id,
            user_id=conversation.user_id,
            turns=conversation.turn,
            error=conversation.error,
            interrupted=last is not None and last.interrupted,
            cost=conversation.run_cost,
            requests=conversation.run_requests,
            conversation=conversation,
            finish_reason=last.finish_reason if last is not None else None,
            guard=conversation.guard,
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict of the response (the conversation in its serialized form)."""
        from agentfsm.serde import unstructure  # cattrs loads when something is serialized

        return {
            "output": _jsonable(self.output),
            "output_text": self.output_text,
            "stop_reason": self.stop_reason.value,
            "history": self.history,
            "history_without_function_calls": self.history_without_function_calls,
            "usage": unstructure(self.usage),
            "agent_name": self.agent_name,
            "chat_id": self.chat_id,
            "user_id": self.user_id,
            "turns": self.turns,
            "error": unstructure(self.error) if self.error is not None else None,
            "interrupted": self.interrupted,
            "finish_reason": self.finish_reason,
            "guard": None if self.guard is None else attrs.asdict(self.guard),
            "cost": str(self.cost),
            "requests": unstructure(self.requests),
            "conversation": unstructure(self.conversation),
        }


def _jsonable(value: Any) -> Any:
    """A typed output as JSON-ready data (attrs classes, dataclasses, pydantic models, enums,
    datetimes…)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if attrs.has(type(value)):
        value = attrs.asdict(value, recurse=True)
    from pydantic_core import to_jsonable_python  # comes with pydantic, which openai needs

    return to_jsonable_python(value, fallback=str)
