"""The agent: configuration, plus ``start`` / ``step`` / ``iter`` / ``run`` / ``send_message``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeGuard, overload

import attrs
import openai
from typing_extensions import TypeVar

from agentfsm import machine, recovery
from agentfsm._child import link_of
from agentfsm._log import get_logger
from agentfsm.budget import Budget, PricingLike, pricing_function
from agentfsm.checkpoints import ResultCheckpoints
from agentfsm.composition import agent_tool
from agentfsm.configure import (
    build_params,
    check_arguments,
    fallback_slots,
    make_client,
    require,
)
from agentfsm.context import ContextSettings
from agentfsm.errors import (
    ChatAccessError,
    ConcurrentUpdateError,
    InvalidInputError,
    ModelRequestError,
    RunInProgressError,
    ToolDefinitionError,
)
from agentfsm.executor import Batch, ToolExecutor
from agentfsm.guards import Guard
from agentfsm.hooks import EventSink, Hook, _Emitter, _Hooks
from agentfsm.messages import (
    ContentPart,
    TextPart,
    UserMessage,
    _content_from_openai,
    history_from_openai,
    unanswered_results,
)
from agentfsm.output import FINAL_TOOL, OUTPUT_MODES, OutputPlan
from agentfsm.providers.openai import OpenAIChatModel
from agentfsm.response import AgentResponse
from agentfsm.retry import RetryStrategy
from agentfsm.runtime import Step
from agentfsm.state import ContextWindow, Conversation, Phase, StopReason
from agentfsm.stop import StopSignalFunction, _StopBoard, _StopSignal
from agentfsm.tools import Tool, tools_from_registry
from agentfsm.tools._threads import DEFAULT_TOOL_THREADS, ToolThreads
from agentfsm.tracing import NO_TRACING, Tracer, TracingFactory
from agentfsm.usage import Usage
from agentfsm.wiring import ModelSlot, Wiring, lazy_counter

if TYPE_CHECKING:
    from agentfsm.context.counting import TokenCounter
    from agentfsm.media import Audio, File, Image
    from agentfsm.store import Store

__all__ = ["Agent", "UserInput"]

log = get_logger(__name__)

_AgentT = TypeVar("_AgentT", bound="Agent[Any]")
OutputT = TypeVar("OutputT", default=str)
"""The type of an agent's answers (``output_type=``); ``str`` unless one is given."""
T = TypeVar("T")

_AGENT_OUTPUT: Any = object()  # send_message(output_type=...) not given: the agent's own

UserInput: TypeAlias = (
    "str | Sequence[str | Mapping[str, Any] | ContentPart | Image | Audio | File]"
)
"""A user message: text, or a list of parts (text, ``Image``/``Audio``/``File``, part dicts)."""


class Agent(Generic[OutputT]):
    """An LLM agent over any OpenAI-compatible chat-completions server.

    The agent is configuration and code; the conversation it runs is a separate, serializable
    :class:`~agentfsm.Conversation`. Drive it whole (:meth:`send_message`) or one transition at
    a time (:meth:`start`, :meth:`step`, :meth:`iter`, :meth:`response`).

    Args:
        model: the model name sent with every request (the only required argument).
        agent_name: a name for logs, hooks and the conversation.
        agent_description: what the agent does (for people and for multi-agent setups).
        api_key: the key; falls back to ``OPENAI_API_KEY``. Never shown in a repr or log.
        base_url: the server; falls back to ``OPENAI_BASE_URL``, then OpenAI.
        client: your own ``openai.AsyncOpenAI`` (then ``api_key``/``base_url`` are not used).
        temperature: sampling temperature (0 to 2), or ``None`` to use the server's default.
        max_completion_tokens: cap on each answer's tokens, or ``None``.
        request_params: further chat-completions parameters sent with every request
            (``top_p``, ``seed``, ``reasoning_effort`` …).
        system_prompt: sent verbatim as the first message ("" sends none).
        manual_stop_signal_function: sync or async callable, taking any of ``chat_id`` and
            ``user_id``, returning true to stop the run.
        check_for_stop_signal_time: seconds between polls of that function while a model
            request or tools are running.
        max_turns: model calls allowed per run.
        max_function_calls: tool calls allowed per run (``None``: no limit).
        tool_registry: ``@tool`` functions, ``Tool`` objects, plain functions,
            ``{"name", "function_schema", "func"}`` dicts, or tool servers
            (``agentfsm.mcp.MCPServer``), whose tools are listed when a run starts.
        execute_function_concurrently: run one message's tool calls at the same time.
        guards: checks of your own on the run (``agentfsm.Guard``, ``loop_breaker()``):
            checked after agentfsm's guards, in the order given; one that holds stops the
            run with ``stop_reason="guard"`` (see :mod:`agentfsm.guards`).
        strict_tools: send every tool's schema in OpenAI's strict form (the server then
            guarantees the arguments match); a tool that cannot be strict is refused with
            ``ToolDefinitionError`` saying why. ``@tool(strict=True)`` does it per tool.
        hooks: hook name to a callable (or a list of them) taking the hook's event.
        raise_hook_errors: let an exception in a hook end the run (default: log it).
        context_handling_method, max_context_length, max_token_per_message,
        max_messages_in_context, dropping_strategy, prompt_when_context_overflow,
        prompt_when_message_is_dropped, keep_function_calls_in_context: how the context is
            fitted into the model's window (see :class:`~agentfsm.context.ContextSettings`).
        default_encoding: the tiktoken encoding for models it does not know (``accurate``).
        summary_model: the (cheaper) model that writes ``summary_dropping`` summaries;
            defaults to ``model``.
        retry_strategy: how failed requests are retried (a dict or a ``RetryStrategy``;
            see :class:`~agentfsm.retry.RetryStrategy`). The SDK's own retries are turned off.
        request_timeout: seconds one request attempt may take (``None``: the client's).
        fallback_models: ``[{"model", "base_url"?, "api_key"?, "pricing"?}, ...]`` tried in
            order, each with its own client and retries, when a request fails for good.
        pricing: ``{"input_per_million", "output_per_million", "cached_input_per_million"?}``
            in USD, or a callable ``(model, usage) -> cost``.
        budget_control: ``{"max_budget_for_this_chat", "stop_on_budget_exceeded"?,
            "reserved_budget"?}`` (needs ``pricing``).
        output_type: the type of the final answer: ``str`` (the default: text), an attrs
            class, a dataclass, a TypedDict, a pydantic model, an Enum/Literal, or a container
            of those. ``response.output`` is then the validated value; an answer that does
            not validate is sent back to the model with its errors (``max_output_retries``
            times), then the run stops with ``invalid_output``.
        output_mode: how the answer is asked for: ``"json_schema"`` (``response_format``,
            the server enforces the schema; OpenAI, Azure, vLLM, recent llama.cpp / Ollama)
            or ``"tool"`` (a ``final_result`` tool the model calls; any server with tools).
        max_output_retries: repair messages per run for answers that do not validate.
        store: where conversations live between requests (``agentfsm.store``): with one,
            ``send_message`` loads the chat by ``chat_id``, and the conversation is saved
            after every transition (compare-and-set on its version).
        clock: the time source for transition timestamps (tests inject a fake one).
        sleep: the coroutine that waits between retries (tests inject a fake one).
        tool_threads: how many sync tool calls of this agent may run at once, each in a
            thread of the agent's own pool (``None``: ``min(32, CPUs + 4)``, the standard
            library's default). A stopped call's thread cannot be killed: it finishes on its
            own, outside this count (see the Tools page).
        tracing: spans for runs, transitions, model requests and tool calls:
            ``agentfsm.otel.Tracing()`` (extra ``agentfsm[otel]``); ``None`` records none.

    Raises:
        ConfigurationError: any value that cannot work, named with what is allowed.
    """

    _streaming = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Agent:
        check_arguments(cls, args, kwargs)
        return object.__new__(cls)  # type: ignore[arg-type]  # mypy binds Self to the default

    def __init__(
        self,
        model: str,
        *,
        agent_name: str = "agent",
        agent_description: str = "",
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.AsyncOpenAI | None = None,
        temperature: float | None = None,
        max_completion_tokens: int | None = None,
        request_params: Mapping[str, Any] | None = None,
        system_prompt: str = "",
        manual_stop_signal_function: StopSignalFunction | None = None,
        check_for_stop_signal_time: float = 3,
        max_turns: int = 10,
        max_function_calls: int | None = None,
        tool_registry: Iterable[Tool | Mapping[str, Any] | Callable[..., Any]] | None = None,
        execute_function_concurrently: bool = True,
        strict_tools: bool = False,
        guards: Sequence[Guard] | None = None,
        hooks: Mapping[str, Hook | Sequence[Hook]] | None = None,
        raise_hook_errors: bool = False,
        context_handling_method: str = "accurate",
        max_context_length: int | None = None,
        max_token_per_message: int | None = None,
        max_messages_in_context: int | None = None,
        dropping_strategy: str = "simple",
        prompt_when_context_overflow: str | None = None,
        prompt_when_message_is_dropped: str | None = None,
        keep_function_calls_in_context: bool = True,
        default_encoding: str = "o200k_base",
        summary_model: str | None = None,
        retry_strategy: RetryStrategy | Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
        fallback_models: Sequence[Mapping[str, Any]] | None = None,
        pricing: PricingLike | None = None,
        budget_control: Budget | Mapping[str, Any] | None = None,
        output_type: type[OutputT] | None = None,
        output_mode: str = "json_schema",
        max_output_retries: int = 1,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tool_threads: int | None = None,
        tracing: TracingFactory | None = None,
    ) -> None:
        require(isinstance(model, str) and model.strip() != "", "model must be a non-empty string")
        require(
            isinstance(agent_name, str) and agent_name.strip() != "",
            "agent_name must be a non-empty string",
        )
        require(isinstance(agent_description, str), "agent_description must be a string")
        require(isinstance(system_prompt, str), "system_prompt must be a string")
        require(
            isinstance(max_turns, int) and not isinstance(max_turns, bool) and max_turns >= 1,
            f"max_turns must be an integer >= 1, got {max_turns!r}",
        )
        require(
            max_function_calls is None
            or (
                isinstance(max_function_calls, int)
                and not isinstance(max_function_calls, bool)
                and max_function_calls >= 0
            ),
            f"max_function_calls must be None or an integer >= 0, got {max_function_calls!r}",
        )
        require(
            isinstance(execute_function_concurrently, bool),
            "execute_function_concurrently must be True or False",
        )
        self.name = agent_name
        self.description = agent_description
        self.model = model
        self.system_prompt = system_prompt
        self.context = ContextSettings.from_keywords(
            context_handling_method=context_handling_method,
            max_context_length=max_context_length,
            max_token_per_message=max_token_per_message,
            max_messages_in_context=max_messages_in_context,
            dropping_strategy=dropping_strategy,
            prompt_when_message_is_dropped=prompt_when_message_is_dropped,
            prompt_when_context_overflow=prompt_when_context_overflow,
            keep_function_calls_in_context=keep_function_calls_in_context,
        )
        require(
            isinstance(default_encoding, str) and default_encoding != "",
            "default_encoding must be a tiktoken encoding name such as 'o200k_base'",
        )
        require(isinstance(strict_tools, bool), "strict_tools must be True or False")
        registry, self._tool_sources = _split_sources(tool_registry)
        self.tools: tuple[Tool, ...] = tools_from_registry(registry, strict=strict_tools)
        self._own_tools = self.tools
        self.store = store
        self.lease_owner = recovery.worker_id()  # this worker, in the leases of its runs
        self.retry_strategy = RetryStrategy.from_value(retry_strategy)
        require(
            request_timeout is None
            or (
                isinstance(request_timeout, (int, float))
                and not isinstance(request_timeout, bool)
                and request_timeout > 0
            ),
            f"request_timeout must be a positive number of seconds, got {request_timeout!r}",
        )
        params = build_params(temperature, max_completion_tokens, request_params)
        if request_timeout is not None:
            params["timeout"] = float(request_timeout)
        price = pricing_function(pricing)
        budget = None if budget_control is None else Budget.from_value(budget_control)
        require(
            budget is None or price is not None,
            "budget_control needs pricing=... (USD per million tokens, or a callable): "
            "without prices no cost can be counted against the budget",
        )
        require(
            isinstance(max_output_retries, int)
            and not isinstance(max_output_retries, bool)
            and max_output_retries >= 0,
            f"max_output_retries must be an integer >= 0, got {max_output_retries!r}",
        )
        self.limits = machine.Limits(
            max_turns=max_turns,
            max_function_calls=max_function_calls,
            budget=budget,
            max_output_retries=max_output_retries,
        )
        require(
            output_mode in OUTPUT_MODES,
            f"output_mode must be 'json_schema' or 'tool', got {output_mode!r}",
        )
        self.output_mode = output_mode
        self._plans_by_type: dict[Any, OutputPlan | None] = {}
        self._plans_by_name: dict[str, OutputPlan] = {}
        self._output_plan = self._plan(output_type)
        require(
            output_mode != "tool" or all(t.name != FINAL_TOOL for t in self.tools),
            f"a tool named {FINAL_TOOL!r} clashes with output_mode='tool', which adds its own",
        )
        require(
            summary_model is None or (isinstance(summary_model, str) and summary_model != ""),
            "summary_model must be a non-empty string or None",
        )
        if client is None:
            primary_client = make_client(api_key, base_url)
        else:  # a copy sharing the caller's connection pool, without the SDK's retries
            primary_client = client.with_options(max_retries=0)
        slots = (
            ModelSlot(OpenAIChatModel(primary_client, model, params), price, client is None),
            *fallback_slots(fallback_models, primary_client, params, price),
        )
        self.max_completion_tokens = max_completion_tokens
        tracer = _tracer(tracing, agent_name, agent_description, model, priced=price is not None)
        self.wiring = Wiring(
            name=agent_name,
            model=model,
            system_prompt=system_prompt,
            limits=self.limits,
            context=self.context,
            counter_factory=lazy_counter(self.context.method, model, default_encoding),
            tools=self.tools,
            tool_schemas=tuple(t.to_openai() for t in self.tools),
            executor=ToolExecutor(
                self.tools,
                concurrently=execute_function_concurrently,
                threads=_tool_threads(tool_threads, agent_name),
                tracer=tracer,
            ),
            hooks=_Hooks(hooks, raise_errors=bool(raise_hook_errors)),
            stop_board=_StopBoard(),
            stop_signal=(
                None
                if manual_stop_signal_function is None
                else _StopSignal(manual_stop_signal_function, check_for_stop_signal_time)
            ),
            slots=slots,
            summarizer=OpenAIChatModel(
                primary_client,
                summary_model or model,
                {k: v for k, v in params.items() if k in ("timeout", "temperature")},
            ),
            retry_strategy=self.retry_strategy,
            clock=clock,
            sleep=sleep,
            streaming=self._streaming,
            max_completion_tokens=max_completion_tokens,
            guards=_guards(guards),
            tracer=tracer,
        )

    @property
    def counter(self) -> TokenCounter:
        """The token counter of ``context_handling_method`` (tiktoken loads on first use)."""
        return self.wiring.counter

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(agent_name={self.name!r}, model={self.model!r}, "
            f"base_url={str(self.wiring.slots[0].model.client.base_url)!r}, "
            f"tools={[t.name for t in self.tools]!r})"
        )

    async def aclose(self) -> None:
        """Close the HTTP client the agent created (a client passed as ``client=`` is yours)
        and the tool servers of ``tool_registry`` (MCP sessions and processes)."""
        for source in self._tool_sources:
            await source.aclose()
        for slot in self.wiring.slots:
            if slot.owns_client:
                await slot.model.client.close()
        if self.wiring.executor.threads is not None:
            self.wiring.executor.threads.shutdown()  # idle threads exit, busy ones when done

    async def _load_tools(self) -> None:
        """The tools of the registry's tool servers (MCP), listed (cached by each server) and
        added to the agent's own, before a run starts or steps.

        Raises:
            ToolDefinitionError: a server's tool has the name of another tool.
        """
        if not self._tool_sources:
            return
        listed: list[Tool] = list(self._own_tools)
        for source in self._tool_sources:
            listed.extend(await source.list_tools())
        tools = tuple(listed)
        if tools == self.wiring.tools:
            return
        names = [t.name for t in tools]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ToolDefinitionError(
                twice[0], "two tools of the registry (or its tool servers) share this name"
            )
        self.tools = tools
        self.wiring = attrs.evolve(
            self.wiring,
            tools=tools,
            tool_schemas=tuple(t.to_openai() for t in tools),
            executor=self.wiring.executor.with_tools(tools),
        )

    async def __aenter__(self: _AgentT) -> _AgentT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ driving

    def start(
        self,
        message: UserInput,
        history: Iterable[Mapping[str, Any]] | None = None,
        *,
        user_id: str | None = None,
        chat_id: str | None = None,
        conversation: Conversation | None = None,
        budget_control: Budget | Mapping[str, Any] | None = None,
        output_type: Any = _AGENT_OUTPUT,
    ) -> Conversation:
        """A conversation in ``trimming_context`` with ``message`` as its newest user message.

        Either a new conversation (from ``history`` in OpenAI chat format, if given) or the
        next run of a finished ``conversation``. Fires no hooks and sends nothing.
        ``budget_control`` replaces the agent's budget for this run (it is kept in the state);
        ``output_type`` replaces the agent's output type for this run (its schema is kept).

        Raises:
            InvalidHistoryError: ``history`` is malformed (the error names the path).
            InvalidInputError: ``message`` is empty or of the wrong type, ``history`` is given
                with a ``conversation``, or ids disagree with the conversation's.
            RunInProgressError: ``conversation`` has not finished its run.
            ConfigurationError: the context settings need a tokenizer that cannot be loaded
                (checked here, on first use, before anything is sent).
        """
        user_message = _user_message(message)
        if self.context.trims:
            _ = self.wiring.counter  # loads tiktoken's encoding once: fail before the run
        if isinstance(history, Conversation):
            raise InvalidInputError(
                "history= takes a list of OpenAI chat-format message dicts; to continue a "
                "Conversation pass it as conversation=..."
            )
        plan = self._plan(output_type)
        spec = plan.spec if plan is not None else None
        budget = None if budget_control is None else Budget.from_value(budget_control)
        if budget is not None and not self.wiring.priced:
            raise InvalidInputError("budget_control needs the agent to have pricing=...")
        if user_id is not None and not isinstance(user_id, str):
            raise InvalidInputError(f"user_id must be a string, got {type(user_id).__name__}")
        if chat_id is not None and (not isinstance(chat_id, str) or not chat_id):
            raise InvalidInputError("chat_id must be a non-empty string")
        if conversation is None:
            chat_id = chat_id or uuid.uuid4().hex
            self.wiring.stop_board.clear(chat_id)
            earlier = history_from_openai(history)
            return Conversation(
                chat_id=chat_id,
                user_id=user_id,
                agent_name=self.name,
                messages=(*earlier, user_message),
                run_start=len(earlier),
                budget=budget,
                output_spec=spec,
            )
        if history is not None:
            raise InvalidInputError(
                "pass either history= or conversation=, not both: the conversation already "
                "holds its history"
            )
        for name, given in (("chat_id", chat_id), ("user_id", user_id)):
            held = getattr(conversation, name)
            if given is not None and given != held:
                raise InvalidInputError(
                    f"{name}={given!r} does not match the conversation's {name} {held!r}"
                )
        if not conversation.finished:
            raise RunInProgressError(
                conversation.chat_id,
                f"conversation {conversation.chat_id!r} is still running "
                f"({conversation.phase.value}); finish or stop it before a new message",
            )
        self.wiring.stop_board.clear(conversation.chat_id)
        messages = conversation.messages
        if pending := conversation.pending_tool_calls:  # defensive: a stop always closes them
            messages = (*messages, *unanswered_results({c.id: c.name for c in pending}))
        return machine.begin_run(
            attrs.evolve(conversation, turn=0),
            self.wiring.clock(),
            agent_name=self.name,
            messages=(*messages, user_message),
            run_start=len(messages),
            function_calls=0,
            run_usage=Usage(),
            run_request_start=len(conversation.requests),
            run_cost=Decimal(0),
            budget=budget,
            error=None,
            output_spec=spec,
            output_retries=0,
        )

    async def step(self, conversation: Conversation, *, debug_print: bool = False) -> Conversation:
        """``conversation`` advanced by exactly one transition (one guard or one action).

        With a store, the new state is saved before it is returned.

        Raises:
            ConversationFinishedError: the conversation is ``done`` or ``stopped``.
            ConcurrentUpdateError: another worker saved this chat meanwhile (with a store).
        """
        await self._load_tools()
        with self.wiring.tracer.run(conversation, "step") as trace, recovery.by_hand():
            stepped = await self._step(conversation, debug_print, None)
            trace.finished(stepped)
        return stepped

    def _runtime(
        self,
        conversation: Conversation,
        debug_print: bool,
        sink: EventSink | None,
        checkpoints: ResultCheckpoints | None = None,
    ) -> Step:
        """The runtime of one step of ``conversation``: the wiring, and where events go
        (``checkpoints``: where each finished tool result is saved as it comes)."""
        wiring = self.wiring
        link = link_of(conversation)
        events = _Emitter(
            wiring.hooks,
            wiring.clock,
            self.name,
            conversation,
            debug=debug_print,
            sink=sink,
            parent=None if link is None else link.events,
            parent_chat_id=None if link is None else link.parent_chat_id,
            progress=None if checkpoints is None else checkpoints.add,
        )
        return Step(wiring, conversation, events, self._plan_for(conversation))

    def _plan(self, output_type: Any) -> OutputPlan | None:
        """The output plan of ``output_type`` (built once per type), or the agent's own."""
        if output_type is _AGENT_OUTPUT:
            return self._output_plan
        try:
            return self._plans_by_type[output_type]
        except KeyError:
            pass
        except TypeError:  # an unhashable annotation: built each time
            return OutputPlan.for_type(output_type, self.output_mode)
        plan = OutputPlan.for_type(output_type, self.output_mode)
        self._plans_by_type[output_type] = plan
        if plan is not None:
            self._plans_by_name.setdefault(plan.spec.name, plan)
        return plan

    def _plan_for(self, conversation: Conversation) -> OutputPlan | None:
        """The plan of a conversation's run: from its stored spec, with the Python type when
        this agent knows one that asks for the same thing."""
        spec = conversation.output_spec
        if spec is None:
            return None
        return OutputPlan.resumed(spec, self._plans_by_name.get(spec.name))

    async def _step(
        self, conversation: Conversation, debug_print: bool, sink: EventSink | None
    ) -> Conversation:
        """One transition (``_transition``) in its tracing span."""
        with self.wiring.tracer.transition(conversation) as trace:
            stepped = await self._transition(conversation, debug_print, sink)
            trace.finished(stepped)
        return stepped

    async def _transition(
        self, conversation: Conversation, debug_print: bool, sink: EventSink | None
    ) -> Conversation:
        """One transition, checkpointed with a store.

        A caller cancelled mid-step (a web framework does that when its client disconnects)
        leaves a stored chat stopped (``user_stop``, source ``cancelled``) and continuable:
        the tool results that finished are kept, and a save the cancel caught half-way still
        lands before the run is stopped from what was saved.
        """
        store, owner = self.store, recovery.owner(self)
        checkpoints = None
        if store is not None and conversation.phase is Phase.EXECUTING_TOOLS:

            async def save(partial: Conversation, expected: int) -> None:
                await recovery.save(store, partial, expected, owner)

            checkpoints = ResultCheckpoints(conversation, save)
        runtime = self._runtime(conversation, debug_print, sink, checkpoints)
        try:
            action = machine.step(runtime, conversation)
            stepped = await recovery.renewing(store, conversation.chat_id, owner, action)
        except asyncio.CancelledError as error:
            if store is not None:
                batch = getattr(error, "agentfsm_batch", None)
                base = conversation
                if checkpoints is not None:  # the batch as it began, at the stored version
                    stored = await checkpoints.settle()
                    base = attrs.evolve(conversation, version=stored.version)
                await asyncio.shield(self._abandon(runtime, base, batch))
            raise
        if store is not None:
            previous = conversation
            if checkpoints is not None:  # results were saved one by one: save over them
                previous = await checkpoints.settle()
                stepped = attrs.evolve(stepped, version=previous.version + 1)
            await self._checkpoint(store, runtime, stepped, previous)
        return stepped

    async def _checkpoint(
        self,
        store: Store,
        runtime: Step,
        conversation: Conversation,
        previous: Conversation | None,
    ) -> None:
        """Save ``conversation`` over ``previous`` (compare-and-set on its version).

        The save is shielded: if the caller is cancelled meanwhile it still finishes, and the
        run is then stopped from whichever state it left stored, so no stored chat is left in
        a running phase with no worker running it.
        """
        expected = previous.version if previous is not None else None
        if self.wiring.context.trims:
            # Count the new messages now, so their stored rows carry their token counts (a
            # checkpoint writes each message once; the next trim needs the counts anyway).
            count = self.wiring.counter.count_message
            for message in conversation.messages[len(previous.messages) if previous else 0 :]:
                count(message)
        save = asyncio.ensure_future(
            recovery.save(store, conversation, expected, recovery.owner(self))
        )
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_saved(runtime, save, conversation, previous))
            raise

    async def _stop_saved(
        self,
        runtime: Step,
        save: asyncio.Future[None],
        conversation: Conversation,
        previous: Conversation | None,
    ) -> None:
        """After a cancelled caller's save: stop the run of whatever state the save left."""
        try:
            await save
            saved: Conversation | None = conversation
        except Exception:  # the save failed: the store holds what it held before
            saved = previous
        if saved is not None and not saved.finished:
            await self._abandon(runtime, saved, None)

    async def _abandon(
        self, runtime: Step, conversation: Conversation, batch: Batch | None
    ) -> None:
        """Stop a run whose caller was cancelled mid-step and save it: a tool batch cut short
        keeps its finished results (``batch``), and its started calls are recorded cancelled
        (with their error hooks), as a stop records them."""
        store, expected = self.store, conversation.version
        if store is None:
            return
        try:
            if batch is not None:
                context = runtime.tool_context(conversation)
                await self.wiring.executor.report_cancelled(batch, context, runtime.events)
            stopped = await machine.interrupt(runtime, conversation, "cancelled", batch)
            await recovery.save(store, stopped, expected, recovery.owner(self))
        except Exception as error:  # a lost race or a store error: resume() still works
            log.warning("abandoned_run_not_saved", chat_id=conversation.chat_id, error=str(error))

    def iter(
        self, conversation: Conversation, *, debug_print: bool = False
    ) -> AsyncIterator[Conversation]:
        """Yields the conversation after every transition until its run finishes."""
        return self._iter(conversation, debug_print, None)

    async def _iter(
        self, conversation: Conversation, debug_print: bool, sink: EventSink | None
    ) -> AsyncIterator[Conversation]:
        """The one loop over ``step()``: iter, run, send_message and stream_message use it.

        A sub-agent's run (``as_tool``) charges what each step spent to its caller's batch
        as it goes, so a stop of the caller loses none of it."""
        link = link_of(conversation)
        while not conversation.finished:
            stepped = await self._step(conversation, debug_print, sink)
            if link is not None and (
                stepped.usage != conversation.usage or stepped.cost != conversation.cost
            ):
                link.charge(stepped.usage - conversation.usage, stepped.cost - conversation.cost)
            conversation = stepped
            yield conversation

    async def run(self, conversation: Conversation, *, debug_print: bool = False) -> Conversation:
        """``conversation`` stepped until its run finishes."""
        return await self._run(conversation, debug_print, None)

    async def _run(
        self, conversation: Conversation, debug_print: bool, sink: EventSink | None
    ) -> Conversation:
        last = conversation
        with self.wiring.tracer.run(conversation, "run") as trace:
            async for last in self._iter(conversation, debug_print, sink):  # noqa: B007
                pass
            trace.finished(last)
        return last

    def response(
        self, conversation: Conversation, output_type: Any = _AGENT_OUTPUT
    ) -> AgentResponse[Any]:
        """The :class:`AgentResponse` of a finished run; with an output type, ``output`` is
        its final answer as a value of that type (``None`` if the run ended without a valid
        one), ``output_text`` the answer's raw text."""
        plan = (
            self._plan_for(conversation)
            if output_type is _AGENT_OUTPUT
            else self._plan(output_type)
        )
        if plan is None or conversation.output_spec is None:
            return AgentResponse.from_conversation(conversation)
        return AgentResponse.from_conversation(
            conversation,
            output=plan.value(conversation),
            output_text=plan.answer_text(conversation) or "",
        )

    @overload
    async def send_message(
        self,
        message: UserInput,
        history: Iterable[Mapping[str, Any]] | None = None,
        *,
        user_id: str | None = None,
        chat_id: str | None = None,
        conversation: Conversation | None = None,
        debug_print: bool = False,
        budget_control: Budget | Mapping[str, Any] | None = None,
        raise_on_error: bool = False,
    ) -> AgentResponse[OutputT]: ...

    @overload
    async def send_message(
        self,
        message: UserInput,
        history: Iterable[Mapping[str, Any]] | None = None,
        *,
        user_id: str | None = None,
        chat_id: str | None = None,
        conversation: Conversation | None = None,
        debug_print: bool = False,
        budget_control: Budget | Mapping[str, Any] | None = None,
        raise_on_error: bool = False,
        output_type: type[T],
    ) -> AgentResponse[T]: ...

    async def send_message(
        self,
        message: UserInput,
        history: Iterable[Mapping[str, Any]] | None = None,
        *,
        user_id: str | None = None,
        chat_id: str | None = None,
        conversation: Conversation | None = None,
        debug_print: bool = False,
        budget_control: Budget | Mapping[str, Any] | None = None,
        raise_on_error: bool = False,
        output_type: Any = _AGENT_OUTPUT,
    ) -> AgentResponse[Any]:
        """Run one user message to the end: ``start``, then every step, then ``response``.

        Normal endings (a stop, max turns, a budget, a failed request) are not exceptions:
        read ``response.stop_reason``.

        Args:
            budget_control: replaces the agent's budget for this call (the way a backend
                passes each user's remaining balance).
            raise_on_error: raise :class:`ModelRequestError` (with the conversation attached)
                when a model request fails for good, instead of returning a response with
                ``stop_reason = error``.
            output_type: the type of this run's answer, instead of the agent's own
                (``response.output`` is then a value of it; see ``output_type=`` on the
                agent).
        """
        conv = await self._begin(
            message,
            history,
            user_id=user_id,
            chat_id=chat_id,
            conversation=conversation,
            budget_control=budget_control,
            output_type=output_type,
        )
        conv = await self._run_started(conv, debug_print, None)
        if raise_on_error and conv.stop_reason is StopReason.ERROR and conv.error is not None:
            raise ModelRequestError(conv, conv.error)
        return self.response(conv)

    async def _begin(
        self,
        message: UserInput,
        history: Iterable[Mapping[str, Any]] | None,
        *,
        user_id: str | None,
        chat_id: str | None,
        conversation: Conversation | None,
        budget_control: Budget | Mapping[str, Any] | None,
        output_type: Any = _AGENT_OUTPUT,
    ) -> Conversation:
        """``start``, reading the chat from the store first and saving the new run there.

        The tool servers' tools are listed first. The shared stop signal of the chat is
        cleared only once the run really starts: a message refused because a run is in
        progress leaves that run's stop request alone.
        """
        if chat_id is not None and (not isinstance(chat_id, str) or not chat_id):
            raise InvalidInputError("chat_id must be a non-empty string")
        await self._load_tools()
        if chat_id is None and conversation is not None:
            chat_id = conversation.chat_id
        store, stored = self.store, None
        if store is not None and chat_id is not None:
            stored = await store.load(chat_id)
        if stored is not None:
            if history is not None:
                raise InvalidInputError(
                    f"chat {chat_id!r} is already in the store: it holds the history, do not "
                    "pass history= (one source of truth)"
                )
            _check_owner(stored, user_id)
            if not stored.finished:
                raise RunInProgressError(
                    stored.chat_id,
                    f"chat {stored.chat_id!r} has a run in progress ({stored.phase.value}, "
                    f"version {stored.version}); if its worker died, agent.resume(chat_id) "
                    "finishes it",
                )
            if conversation is not None and stored != conversation:
                raise ConcurrentUpdateError(stored.chat_id, conversation.version, stored.version)
        conv = self.start(
            message,
            history,
            user_id=user_id,
            chat_id=chat_id,
            conversation=stored if stored is not None else conversation,
            budget_control=budget_control,
            output_type=output_type,
        )
        signal = self.wiring.stop_signal
        clear = getattr(signal.func, "clear", None) if signal is not None else None
        if clear is not None and inspect.iscoroutinefunction(clear):
            await clear(conv.chat_id)  # e.g. RedisStopSignal: a stale stop must not end this run
        if store is not None:
            await self._checkpoint(store, self._runtime(conv, False, None), conv, stored)
        return conv

    async def resume(
        self, chat_id: str, *, user_id: str | None = None, debug_print: bool = False
    ) -> Conversation:
        """Finish the run a crashed (or stopped) worker left mid-way, from its last checkpoint.

        Takes over at once, with no lease to wait out: a worker still running the chat loses
        its next save with ``ConcurrentUpdateError``. A run left in ``awaiting_model`` repeats
        the request; one left in ``executing_tools`` runs the calls of its batch that had not
        finished (at-least-once for the tools that were running when the worker died;
        ``ToolContext.attempt`` says so). A finished conversation is returned as it is.

        Raises:
            ChatAccessError: no store, no such chat, or it belongs to another ``user_id``.
        """
        resumed = await self._resume(chat_id, user_id, debug_print, claimed=False)
        assert resumed is not None  # only a claimed chat can be let go
        return resumed

    async def _resume(
        self, chat_id: str, user_id: str | None, debug_print: bool, *, claimed: bool
    ) -> Conversation | None:
        """``resume``; for a chat ``recover()`` ``claimed``, the claim is renewed without
        force first, and ``None`` returned if another worker holds the chat by now (a claim
        can run out before its turn comes: both would run it)."""
        store = self.store
        if store is None:
            raise ChatAccessError(chat_id, "resume() needs an agent built with store=...")
        if claimed and not await recovery.renew(store, chat_id, self.lease_owner):
            log.info("chat_claimed_elsewhere", chat_id=chat_id)
            return None
        stored = await store.load(chat_id)
        if stored is None:
            raise ChatAccessError(chat_id, f"chat {chat_id!r} is not in the store")
        await self._load_tools()
        _check_owner(stored, user_id)
        if not claimed:
            await recovery.take_over(store, chat_id, self.lease_owner)
        if stored.phase is Phase.EXECUTING_TOOLS:
            # The batch is taken up again: its unfinished calls run as a new attempt.
            again = attrs.evolve(
                stored, tool_attempt=stored.tool_attempt + 1, version=stored.version + 1
            )
            await recovery.save(store, again, stored.version, self.lease_owner)
            stored = again
        return await self._run(stored, debug_print, None)

    async def recover(
        self, *, limit: int = 100, on_lost: recovery.OnLost = "resume"
    ) -> list[Conversation]:
        """Resume the chats of the store whose worker died mid-run (see docs/recovery.md).

        The store hands this worker, atomically, up to ``limit`` chats in a running phase
        that no live lease covers; each goes to one caller only, however many workers call
        ``recover()`` at once. Each is resumed as ``resume()`` would (its tool calls run
        again: at-least-once), or, with ``on_lost="stop"``, stopped with stop reason
        ``worker_lost`` for its user to retry. A chat that fails to recover is logged and
        left to a later call (its lease runs out).

        Returns:
            The recovered conversations, as their runs ended.

        Raises:
            ConfigurationError: no store, a store without leases, or a bad ``on_lost``.
        """
        return await recovery.recover(self, limit=limit, on_lost=on_lost)

    def recovering(
        self, every: float = 30.0, *, limit: int = 100, on_lost: recovery.OnLost = "resume"
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with agent.recovering(every=30):`` runs ``recover()`` every ``every``
        seconds while the block runs (a worker's background duty). Leaving the block stops
        the sweeps and waits for the chats being recovered to finish.

        Raises:
            ConfigurationError: no store, a store without leases, or bad settings.
        """
        return recovery.recovering(self, every, limit=limit, on_lost=on_lost)

    async def _run_started(
        self, conv: Conversation, debug_print: bool, sink: EventSink | None
    ) -> Conversation:
        """Announce the ``NEW_RUN`` transition of a continued conversation, then run it."""
        if (record := machine.run_begun(conv)) is not None:
            await self._runtime(conv, debug_print, sink).announce(conv, record)
        return await self._run(conv, debug_print, sink)

    def request_stop(self, chat_id: str) -> None:
        """Stop the run of ``chat_id`` at once: the running request or tools are cancelled.

        Safe to call from any thread. A request made while no run is going applies to the
        next step of that chat; starting a new run clears it.
        """
        self.wiring.stop_board.request(chat_id)

    def as_tool(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        output_type: Any = None,
        input_type: Any = None,
        timeout: float | None = None,
    ) -> Tool:
        """This agent as a tool another agent can call: each call is a run of this agent.

        The run is a child chat, ``f"{caller's chat}/{call id}"``, of the caller's user. A stop
        of the caller stops it at once (with a store, saved stopped); what it spends counts in
        the caller's totals and budget, step by step; its events reach the caller's hooks too,
        with ``parent_chat_id`` and ``depth``; with a store it is saved like any chat, and a
        caller resumed after a crash picks it up where it was instead of starting it again.
        An answer becomes the tool's result; a run that ends without one becomes an error
        result the calling model reads (``SubAgentError``).

        Args:
            name: the tool's name; defaults to the agent's name.
            description: what the agent does, for the calling model; defaults to its
                ``agent_description``, else the first line of its system prompt.
            output_type: the type of the child's answer (see ``output_type=`` on the agent);
                the tool returns it as JSON. ``None``: the agent's own (its text by default).
            input_type: the type of the tool's ``input`` argument (a pydantic model, an attrs
                class, a TypedDict…), sent to the child as JSON; ``None``: a plain string.
            timeout: seconds a call may take.

        Raises:
            ToolDefinitionError: the name is not a valid tool name, or ``input_type`` has no
                JSON Schema.
        """
        return agent_tool(
            self,
            name=self.name if name is None else name,
            description=self._describe() if description is None else description,
            output_type=output_type,
            input_type=input_type,
            timeout=timeout,
        )

    def _describe(self) -> str:
        """What a tool made of this agent says it does."""
        if self.description:
            return self.description
        lines = self.system_prompt.strip().splitlines()
        first = lines[0].strip() if lines else ""
        return first or f"Ask the {self.name} agent."

    # ------------------------------------------------------------------ requests

    def request_messages(self, conversation: Conversation) -> list[dict[str, Any]]:
        """The messages the next request of ``conversation`` sends, system prompt first.

        What ``trimming_context`` decided (``conversation.context``), or every message.
        """
        return self.wiring.request_messages(conversation)

    def fit(self, conversation: Conversation, summary: str | None = None) -> ContextWindow | None:
        """What of ``conversation`` fits the context settings (``None``: all of it, as is)."""
        return self.wiring.fit(conversation, summary)


def _check_owner(conversation: Conversation, user_id: str | None) -> None:
    if user_id is not None and conversation.user_id is not None and user_id != conversation.user_id:
        raise ChatAccessError(
            conversation.chat_id, f"chat {conversation.chat_id!r} belongs to another user"
        )


def _split_sources(
    registry: Iterable[Any] | None,
) -> tuple[list[Any] | None, tuple[Any, ...]]:
    """The registry's tools apart from its tool servers (objects with ``list_tools`` and
    ``aclose``, such as ``agentfsm.mcp.MCPServer``), whose tools are listed at run start."""
    if registry is None or isinstance(registry, (str, bytes, Mapping)):
        return registry, ()  # type: ignore[return-value]  # tools_from_registry refuses it
    items = list(registry)
    sources = tuple(i for i in items if hasattr(i, "list_tools") and hasattr(i, "aclose"))
    return [i for i in items if not any(i is s for s in sources)], sources


def _guards(guards: Sequence[Guard] | None) -> tuple[Guard, ...]:
    """The user's guards, checked: ``Guard`` objects with distinct names.

    Raises:
        ConfigurationError: not a list of ``Guard``, or two with one name.
    """
    if guards is None:
        return ()
    require(
        isinstance(guards, Sequence) and not isinstance(guards, (str, bytes)),
        "guards must be a list of agentfsm.Guard",
    )
    for i, item in enumerate(guards):
        require(
            isinstance(item, Guard),
            f"guards[{i}] must be an agentfsm.Guard (or @guard / loop_breaker()), "
            f"got {type(item).__name__}",
        )
    names = [g.name for g in guards]
    twice = sorted({n for n in names if names.count(n) > 1})
    require(not twice, f"two guards share a name {twice}: a stopped chat records the name")
    return tuple(guards)


def _tool_threads(size: int | None, agent_name: str) -> ToolThreads:
    """The agent's pool for sync tools, of ``size`` threads (``None``: the stdlib default).

    Raises:
        ConfigurationError: ``size`` is not a positive integer.
    """
    require(
        size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 1),
        f"tool_threads must be None or an integer >= 1, got {size!r}",
    )
    return ToolThreads(size or DEFAULT_TOOL_THREADS, name=f"agentfsm-{agent_name}-tool")


def _tracer(
    tracing: TracingFactory | None,
    agent_name: str,
    agent_description: str,
    model: str,
    *,
    priced: bool,
) -> Tracer:
    """The agent's tracer: ``tracing`` bound to the agent, or none.

    Raises:
        ConfigurationError: ``tracing`` is not a tracing factory (``agentfsm.otel.Tracing``).
    """
    if tracing is None:
        return NO_TRACING
    require(
        callable(getattr(tracing, "bind", None)),
        f"tracing must be agentfsm.otel.Tracing(...) or None, got {type(tracing).__name__}",
    )
    return tracing.bind(
        agent_name=agent_name, agent_description=agent_description, model=model, priced=priced
    )


_PART_TYPES = typing.get_args(ContentPart)


def _unicode(text: str, what: str) -> str:
    """``text``, refused if it cannot be sent (a lone surrogate has no UTF-8 form).

    Raises:
        InvalidInputError: saying where the bad character is.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(
            f"{what} is not valid Unicode: a lone surrogate at index {error.start} "
            "(text decoded with errors='surrogateescape'?)"
        ) from None
    return text


def _is_media(part: object) -> TypeGuard[Image | Audio | File]:
    """``part`` is an ``Image``, ``Audio`` or ``File`` (media loads only if one was built)."""
    media = sys.modules.get("agentfsm.media")
    return media is not None and isinstance(part, (media.Image, media.Audio, media.File))


def _user_message(message: UserInput) -> UserMessage:
    if isinstance(message, UserMessage):
        return message
    if isinstance(message, str):
        if not message:
            raise InvalidInputError("the message is empty")
        return UserMessage(_unicode(message, "the message"))
    if isinstance(message, Sequence) and not isinstance(message, (bytes, bytearray)):
        parts: list[ContentPart] = []
        for i, part in enumerate(message):
            if isinstance(part, str):
                parts.append(TextPart(_unicode(part, f"message part {i}")))
            elif isinstance(part, _PART_TYPES):
                parts.append(part)
            elif _is_media(part):
                parts.append(part.to_part())
            elif isinstance(part, Mapping):
                content = _content_from_openai([part], f"$.message[{i}]")
                parts.extend(content)  # type: ignore[arg-type]
            else:
                raise InvalidInputError(
                    f"message part {i} must be a string, an Image, Audio or File, or a "
                    f"content-part dict, got {type(part).__name__}"
                )
        if not parts:
            raise InvalidInputError("the message has no parts")
        return UserMessage(tuple(parts))
    raise InvalidInputError(
        f"message must be a string or a list of content parts, got {type(message).__name__}"
    )
