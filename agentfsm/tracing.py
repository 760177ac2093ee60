"""The tracing seam: what the agent tells a tracer about runs, transitions, requests and tools.

The agent, the runtime and the tool executor open a span around each run, transition, model
request and tool call through a :class:`Tracer`. The default, :data:`NO_TRACING`, does
nothing and costs a few calls; ``agentfsm.otel.Tracing`` (the extra ``agentfsm[otel]``)
turns them into OpenTelemetry spans. Nothing here imports OpenTelemetry.

Each method returns a context manager entered around the work it describes, in the task
doing it: whatever the work starts (a tool's own spans, a sub-agent's run) nests inside.
An exception leaving the block marks the span failed; a cancellation (a stop) does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agentfsm.messages import ToolCall
    from agentfsm.providers.openai import ModelReply, OpenAIChatModel
    from agentfsm.state import Conversation
    from agentfsm.tools import Tool, ToolContext

__all__ = ["NO_TRACING", "RequestTrace", "RunTrace", "Tracer", "TracingFactory"]


class RunTrace(Protocol):
    """An open run or transition span."""

    def finished(self, conversation: Conversation) -> None:
        """The conversation as the run (or transition) left it."""
        ...


class RequestTrace(Protocol):
    """An open model-request span."""

    def answered(self, reply: ModelReply, cost: Callable[[], Decimal]) -> None:
        """The model answered: what it said about itself (model, usage, finish reason).

        ``cost()`` prices the answer (it calls the agent's pricing function): called only
        by a tracer that records costs, so no tracing never calls pricing twice.
        """
        ...


class Tracer(Protocol):
    """Spans for one agent (built by its ``tracing=`` factory with the agent's identity)."""

    def run(
        self, conversation: Conversation, operation: str
    ) -> contextlib.AbstractContextManager[RunTrace]:
        """Around a run (``operation="run"``: ``send_message``, ``run``, ``resume``, a
        stream) or one public ``step()`` call (``operation="step"``)."""
        ...

    def transition(self, conversation: Conversation) -> contextlib.AbstractContextManager[RunTrace]:
        """Around one transition of ``conversation`` (its guard or action, and the save)."""
        ...

    def request(
        self, model: OpenAIChatModel, chat_id: str, user_id: str | None
    ) -> contextlib.AbstractContextManager[RequestTrace]:
        """Around one attempt at a model request (each retry and fallback has its own)."""
        ...

    def tool_call(
        self, call: ToolCall, tool: Tool, context: ToolContext
    ) -> contextlib.AbstractContextManager[object]:
        """Around one tool call's function, which runs inside it."""
        ...


class TracingFactory(Protocol):
    """What ``Agent(tracing=...)`` takes: builds the agent's :class:`Tracer`."""

    def bind(self, *, agent_name: str, agent_description: str, model: str, priced: bool) -> Tracer:
        """The tracer of one agent (``priced``: it has pricing, so costs mean something)."""
        ...


class _Nothing:
    """A span that records nothing."""

    __slots__ = ()

    def finished(self, conversation: Conversation) -> None:
        pass

    def answered(self, reply: ModelReply, cost: Callable[[], Decimal]) -> None:
        pass


_NOTHING = _Nothing()


class _NoTracing:
    """The default :class:`Tracer`: no spans."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_TRACING"

    def run(self, conversation: Conversation, operation: str) -> _NoSpan:
        return _NO_SPAN

    def transition(self, conversation: Conversation) -> _NoSpan:
        return _NO_SPAN

    def request(self, model: OpenAIChatModel, chat_id: str, user_id: str | None) -> _NoSpan:
        return _NO_SPAN

    def tool_call(self, call: ToolCall, tool: Tool, context: ToolContext) -> _NoSpan:
        return _NO_SPAN


class _NoSpan:
    """A reusable context manager entering :data:`_NOTHING` (no generator per use)."""

    __slots__ = ()

    def __enter__(self) -> _Nothing:
        return _NOTHING

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SPAN = _NoSpan()

NO_TRACING: Tracer = _NoTracing()
"""The tracer of an agent built without ``tracing=``: it records nothing."""
