"""``Wiring``: an agent's collaborators, built once when the agent is built, frozen."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from agentfsm.context import ContextSettings
from agentfsm.errors import ConfigurationError
from agentfsm.executor import ToolExecutor
from agentfsm.guards import Guard
from agentfsm.hooks import _Hooks
from agentfsm.machine import Limits
from agentfsm.messages import messages_to_openai
from agentfsm.providers.openai import OpenAIChatModel
from agentfsm.retry import RetryStrategy
from agentfsm.state import ContextWindow, Conversation
from agentfsm.stop import _StopBoard, _StopSignal
from agentfsm.tools import Tool
from agentfsm.tracing import NO_TRACING, Tracer
from agentfsm.usage import Usage

if TYPE_CHECKING:
    from agentfsm.context.counting import TokenCounter

__all__ = ["ModelSlot", "Wiring", "lazy_counter"]


_FREE = Decimal(0)  # one zero for every unpriced request


@attrs.frozen
class ModelSlot:
    """A model the agent may ask: the primary, then each fallback.

    Attributes:
        model: the client and model name requests go to.
        price: ``(model, usage) -> USD``, or ``None`` without pricing.
        owns_client: the agent built the client (and closes it).
    """

    model: OpenAIChatModel
    price: Callable[[str, Usage], Decimal] | None
    owns_client: bool

    def cost(self, model: str, usage: Usage) -> Decimal:
        """What ``usage`` of ``model`` costs at this slot's prices (0 without pricing)."""
        return self.price(model, usage) if self.price is not None else _FREE


def lazy_counter(method: str, model: str, default_encoding: str) -> Callable[[], TokenCounter]:
    """The token counter of ``method``, built on first use (tiktoken loads its encoding then,
    not when the agent is built: an agent that never trims never pays for it)."""

    def build() -> TokenCounter:
        from agentfsm.context.counting import make_counter

        return make_counter(method, model, default_encoding)

    return functools.cache(build)


@attrs.frozen(kw_only=True)
class Wiring:
    """Everything a step runs on: the agent's configuration and collaborators, built once.

    The per-step runtime (``agentfsm.runtime``) receives this and nothing else of the agent:
    it never reaches into an agent, so it can be built and tested alone.

    Attributes:
        name: the agent's name (events, logs, new conversations).
        model: the primary model's name.
        system_prompt: sent first with every request ("" sends none).
        limits: what the guards read (max turns, max function calls, budget).
        context: how the context is fitted into the model's window.
        counter_factory: the token counter, built on first call and then kept.
        tools: the agent's tools.
        tool_schemas: their OpenAI ``tools`` entries, as sent.
        executor: runs one assistant message's tool calls.
        hooks: the user's hooks, validated.
        stop_board: stop requests per chat (``agent.request_stop``).
        stop_signal: the user's polled stop-signal function, if any.
        slots: the models to ask: the primary, then each fallback.
        summarizer: the model that writes ``summary_dropping`` summaries.
        retry_strategy: how failed requests are retried.
        clock: the time source (tests inject a fake one).
        sleep: waits between retries (tests inject a fake one).
        streaming: requests stream their answers.
        max_completion_tokens: the cap on each answer's tokens (counted into the context).
        guards: the user's guards, in the order given.
        tracer: spans for runs, transitions, requests and tool calls (none by default).
    """

    name: str
    model: str
    system_prompt: str
    limits: Limits
    context: ContextSettings
    counter_factory: Callable[[], TokenCounter]
    tools: tuple[Tool, ...]
    tool_schemas: tuple[Mapping[str, Any], ...]
    executor: ToolExecutor
    hooks: _Hooks
    stop_board: _StopBoard
    stop_signal: _StopSignal | None
    slots: tuple[ModelSlot, ...]
    summarizer: OpenAIChatModel
    retry_strategy: RetryStrategy
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    streaming: bool
    max_completion_tokens: int | None
    guards: tuple[Guard, ...] = ()
    tracer: Tracer = NO_TRACING

    @property
    def has_output_guards(self) -> bool:
        """Some guard checks answers about to be final."""
        return any(g.on == "output" for g in self.guards)

    @property
    def counter(self) -> TokenCounter:
        """The token counter (built on first use)."""
        return self.counter_factory()

    @property
    def estimator(self) -> TokenCounter:
        """The counter for estimates (usage a server did not report): the configured one,
        or the simple one when its tokenizer cannot be loaded (an estimate never fails a run)."""
        try:
            return self.counter_factory()
        except ConfigurationError:
            from agentfsm.context.counting import SimpleCounter

            return SimpleCounter()

    @property
    def priced(self) -> bool:
        """The primary model has pricing, so costs are counted (and budgets can apply)."""
        return self.slots[0].price is not None

    def fit(self, conversation: Conversation, summary: str | None = None) -> ContextWindow | None:
        """What of ``conversation`` fits the context settings (``None``: all of it, as is)."""
        return self.window(conversation, summary) if self.context.trims else None

    def window(
        self, conversation: Conversation, summary: str | None = None, reserve: int = 0
    ) -> ContextWindow:
        """The context window of ``conversation`` under the context settings; ``reserve``:
        tokens the request adds besides messages and tools (a response format)."""
        from agentfsm.context import trimming  # loads with the first trim

        fitted = trimming.fit(
            conversation.messages,
            newest_user=conversation.run_start,
            system_prompt=self.system_prompt,
            summary=conversation.summary if summary is None else summary,
            tools=self.tool_schemas,
            settings=self.context,
            counter=self.counter,
            reserve=reserve,
            max_completion_tokens=self.max_completion_tokens,
        )
        return ContextWindow(
            selected=fitted.selected,
            truncated=fitted.truncated,
            notes=fitted.notes,
            tokens=fitted.tokens,
            fits=fitted.fits,
            dropped=len(fitted.dropped),
            size=len(conversation.messages),
        )

    def request_messages(self, conversation: Conversation) -> list[dict[str, Any]]:
        """The messages the next request of ``conversation`` sends, system prompt first.

        What ``trimming_context`` decided (``conversation.context``), or every message; a
        decision taken before messages were added is taken again.
        """
        window = conversation.context
        if window is not None and window.size != len(conversation.messages):
            window = self.fit(conversation)
        if window is None:
            messages = messages_to_openai(conversation.messages)
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return messages
        from agentfsm.context import trimming

        return trimming.render(
            conversation.messages,
            trimming.Fit(selected=window.selected, truncated=window.truncated, notes=window.notes),
            system_prompt=self.system_prompt,
            summary=conversation.summary,
            counter=self.counter,
        )
