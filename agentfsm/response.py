"""``AgentResponse``: what a finished run hands back to the caller."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from agentfsm.messages import AssistantMessage, UserMessage, messages_to_openai
from agentfsm.state import Conversation, ErrorInfo, RequestRecord, StopReason, Usage

__all__ = ["AgentResponse"]


@attrs.frozen(kw_only=True)
class AgentResponse:
    """The result of one run.

    Attributes:
        output: the final assistant text ("" when the run ended without one).
        stop_reason: why the run ended.
        history: every message of the conversation in OpenAI chat format, tool calls and
            results included, the agent's system prompt excluded; pass it back as
            ``history=`` to continue.
        history_without_function_calls: only the user and assistant text messages.
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

    output: str
    stop_reason: StopReason
    history: list[dict[str, Any]]
    history_without_function_calls: list[dict[str, Any]]
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

    @classmethod
    def from_conversation(cls, conversation: Conversation) -> AgentResponse:
        """The response of ``conversation``'s current run (which must have finished)."""
        if conversation.stop_reason is None:
            raise ValueError(
                f"conversation {conversation.chat_id!r} is in {conversation.phase.value}: "
                "its run has not finished"
            )
        last = conversation.last_assistant
        return cls(
            output=conversation.output,
            stop_reason=conversation.stop_reason,
            history=messages_to_openai(conversation.messages),
            history_without_function_calls=[
                {"role": m.role, "content": m.content}
                if isinstance(m, AssistantMessage)
                else messages_to_openai([m])[0]
                for m in conversation.messages
                if isinstance(m, UserMessage) or (isinstance(m, AssistantMessage) and m.content)
            ],
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
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict of the response (the conversation in its serialized form)."""
        from agentfsm.serde import unstructure  # cattrs loads when something is serialized

        return {
            "output": self.output,
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
            "cost": str(self.cost),
            "requests": unstructure(self.requests),
            "conversation": unstructure(self.conversation),
        }
