"""OpenTelemetry spans for agents (the extra ``agentfsm[otel]``): ``Agent(tracing=Tracing())``.

Needs ``opentelemetry-api`` (``pip install 'agentfsm[otel]'``); ``import agentfsm`` never
imports this module. Spans follow the OpenTelemetry GenAI semantic conventions where they
name the thing (``invoke_agent``, ``chat``, ``execute_tool`` and their ``gen_ai.*``
attributes); what is agentfsm's own carries an ``agentfsm.*`` name::

    invoke_agent weather               one run (or one public ``step()`` call)
      trimming_context                 one transition: the phase it leaves
      awaiting_model
        chat gpt-4o-mini               one attempt at a model request
      executing_tools
        execute_tool get_weather       one tool call; the tool runs inside it

Every span is started in the context current where the work runs, so a run nests under
the caller's span (a web request's, say), and anything a tool starts — its own spans, a
sub-agent's run — nests under that tool call. Message text and tool arguments are never
recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
    raise ImportError(
        "agentfsm.otel needs the 'opentelemetry-api' package: pip install 'agentfsm[otel]'"
    ) from exc

from agentfsm.state import Phase, StopReason

if TYPE_CHECKING:
    from types import TracebackType

    from agentfsm.messages import ToolCall
    from agentfsm.providers.openai import ModelReply, OpenAIChatModel
    from agentfsm.state import Conversation
    from agentfsm.tools import Tool, ToolContext

__all__ = ["Tracing"]

_PROVIDER: Final = "openai"  # the wire format and client used (any OpenAI-compatible server)


class Tracing:
    """OpenTelemetry spans for an agent's runs, transitions, model requests and tool calls.

    Pass it to an agent: ``Agent(..., tracing=Tracing())``. One ``Tracing`` may serve any
    number of agents.

    Args:
        tracer_provider: where the spans go; by default the global provider
            (``opentelemetry.trace.set_tracer_provider``), looked up when a span starts,
            so it may be set after the agent is built.

    A run that stops with ``stop_reason="error"`` (a model request that failed after its
    retries) and a request or tool call that raised are marked ``ERROR``; a stop
    (``request_stop``, a stop signal, a cancelled caller) is not a failure: its spans end
    with ``agentfsm.cancelled=true`` and the run's ``agentfsm.stop_reason`` says why.
    """

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        from agentfsm import __version__

        self._tracer = trace.get_tracer("agentfsm", __version__, tracer_provider=tracer_provider)

    def __repr__(self) -> str:
        return "Tracing()"

    def bind(
        self, *, agent_name: str, agent_description: str, model: str, priced: bool
    ) -> _AgentSpans:
        """The spans of one agent (``Agent`` calls this when it is built)."""
        return _AgentSpans(self._tracer, agent_name, agent_description, model, priced)


class _AgentSpans:
    """The :class:`~agentfsm.tracing.Tracer` of one agent."""

    __slots__ = ("_agent", "_description", "_model", "_priced", "_tracer")

    def __init__(
        self, tracer: trace.Tracer, agent: str, description: str, model: str, priced: bool
    ) -> None:
        self._tracer = tracer
        self._agent = agent
        self._description = description
        self._model = model
        self._priced = priced

    def run(self, conversation: Conversation, operation: str) -> _RunSpan:
        attributes = _identity(conversation.chat_id, conversation.user_id)
        attributes.update(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": _PROVIDER,
                "gen_ai.agent.name": self._agent,
                "gen_ai.request.model": self._model,
                "agentfsm.operation": operation,
            }
        )
        if self._description:
            attributes["gen_ai.agent.description"] = self._description
        name = f"invoke_agent {self._agent}"
        return _RunSpan(self._tracer, name, SpanKind.INTERNAL, attributes, self, operation)

    def transition(self, conversation: Conversation) -> _TransitionSpan:
        attributes = _identity(conversation.chat_id, conversation.user_id)
        attributes["gen_ai.agent.name"] = self._agent
        attributes["agentfsm.phase.from"] = conversation.phase.value
        name = conversation.phase.value
        return _TransitionSpan(self._tracer, name, SpanKind.INTERNAL, attributes)

    def request(self, model: OpenAIChatModel, chat_id: str, user_id: str | None) -> _RequestSpan:
        attributes = _identity(chat_id, user_id)
        attributes.update(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": _PROVIDER,
                "gen_ai.request.model": model.model,
                "gen_ai.agent.name": self._agent,
            }
        )
        url = model.client.base_url
        if url.host:
            attributes["server.address"] = url.host
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        for param, key in _REQUEST_PARAMS.items():
            value = model.params.get(param)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[key] = value
        name = f"chat {model.model}"
        return _RequestSpan(self._tracer, name, SpanKind.CLIENT, attributes, self._priced)

    def tool_call(self, call: ToolCall, tool: Tool, context: ToolContext) -> _Span:
        attributes = _identity(context.chat_id, context.user_id)
        attributes.update(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id,
                "gen_ai.tool.type": "function",
                "gen_ai.agent.name": self._agent,
            }
        )
        if tool.description:
            attributes["gen_ai.tool.description"] = tool.description
        return _Span(self._tracer, f"execute_tool {call.name}", SpanKind.INTERNAL, attributes)


_REQUEST_PARAMS: Final = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}


class _Span:
    """A span, current in the context while its block runs; ended when the block ends.

    An exception leaving the block marks it ``ERROR`` (with ``error.type`` and the
    exception recorded); a cancellation — a stop — only sets ``agentfsm.cancelled``.
    """

    __slots__ = ("_attributes", "_kind", "_name", "_token", "_tracer", "span")

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self.span: trace.Span = trace.INVALID_SPAN
        self._token: object = None

    def __enter__(self) -> Any:
        self.span = self._tracer.start_span(
            self._name, kind=self._kind, attributes=self._attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                _ended_by(self.span, exc)
        finally:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self.span.end()


class _RunSpan(_Span):
    """A run's span (or a ``step()`` call's)."""

    __slots__ = ("_operation", "_owner")

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        owner: _AgentSpans,
        operation: str,
    ) -> None:
        super().__init__(tracer, name, kind, attributes)
        self._owner = owner
        self._operation = operation

    def finished(self, conversation: Conversation) -> None:
        span = self.span
        span.set_attribute("agentfsm.phase", conversation.phase.value)
        span.set_attribute("agentfsm.turns", conversation.turn)
        if self._operation == "run":
            usage = conversation.run_usage
            if usage.requests and not usage.estimated:
                span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            if self._owner._priced:
                span.set_attribute("agentfsm.cost", float(conversation.run_cost))
        _stopped(span, conversation)


class _TransitionSpan(_Span):
    """One transition's span: named after the phase it leaves."""

    __slots__ = ()

    def finished(self, conversation: Conversation) -> None:
        span = self.span
        if conversation.transitions:
            record = conversation.transitions[-1]
            span.set_attribute("agentfsm.phase.to", record.to_phase.value)
            span.set_attribute("agentfsm.transition.reason", record.reason)
            span.set_attribute("agentfsm.turn", record.turn)
            if record.guard is not None:
                span.set_attribute("agentfsm.guard", record.guard)
        if conversation.phase is Phase.STOPPED:
            _stopped(span, conversation)


class _RequestSpan(_Span):
    """One attempt at a model request."""

    __slots__ = ("_priced",)

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        priced: bool,
    ) -> None:
        super().__init__(tracer, name, kind, attributes)
        self._priced = priced

    def answered(self, reply: ModelReply, cost: Callable[[], Decimal]) -> None:
        span = self.span
        span.set_attribute("gen_ai.response.model", reply.model)
        if reply.finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", (reply.finish_reason,))
        usage = reply.usage
        if not usage.estimated:  # the server reported it
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            if usage.cached_tokens:
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
            if usage.reasoning_tokens:
                span.set_attribute("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens)
            if self._priced:
                span.set_attribute("agentfsm.cost", float(cost()))
        if reply.message.interrupted:
            span.set_attribute("agentfsm.interrupted", True)


def _identity(chat_id: str, user_id: str | None) -> dict[str, Any]:
    """The attributes naming the conversation (``user_id`` only when there is one)."""
    attributes: dict[str, Any] = {"gen_ai.conversation.id": chat_id, "agentfsm.chat_id": chat_id}
    if user_id is not None:
        attributes["agentfsm.user_id"] = user_id
    return attributes


def _stopped(span: trace.Span, conversation: Conversation) -> None:
    """A finished run's ending on ``span``: ``ERROR`` only for a failed request."""
    reason = conversation.stop_reason
    if reason is None:
        return
    span.set_attribute("agentfsm.stop_reason", reason.value)
    if reason is StopReason.ERROR:
        error = conversation.error
        kind = "_OTHER" if error is None else str(error.status or error.type)
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, None if error is None else error.message))


def _ended_by(span: trace.Span, exc: BaseException) -> None:
    """``span`` left by ``exc``: a cancellation is a stop, anything else a failure."""
    if isinstance(exc, GeneratorExit):
        return
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute("agentfsm.cancelled", True)
        return
    span.record_exception(exc)
    status = getattr(exc, "status_code", None)  # an HTTP error from the server
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    span.set_attribute("error.type", str(status) if isinstance(status, int) else name)
    span.set_status(Status(StatusCode.ERROR, f"{cls.__name__}: {exc}"))
