"""The tool executor: runs one assistant message's tool calls and maps results to call ids."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from agentfsm._log import get_logger
from agentfsm.errors import ToolArgumentError
from agentfsm.hooks import (
    Emitter,
    FunctionCallEndEvent,
    FunctionCallErrorEvent,
    FunctionCallStartEvent,
)
from agentfsm.messages import ToolCall, ToolMessage
from agentfsm.stop import _Stopped, _StopWatch
from agentfsm.tools import Tool, ToolContext, format_result
from agentfsm.tools._binding import Ledger
from agentfsm.tools._threads import ToolThreads
from agentfsm.tracing import NO_TRACING, Tracer
from agentfsm.usage import Usage

__all__ = ["CANCELLED_RESULT", "Batch", "ToolExecutor"]

log = get_logger(__name__)

CANCELLED_RESULT = "Cancelled: the run was stopped before this call finished."


@attrs.frozen
class Batch:
    """One message's tool calls, run: one result per call, in call order.

    Attributes:
        results: a result for every call, in call order (cancelled ones say so).
        executed: how many calls ran to an end (a result or an error of their own).
        stopped: a stop cut the batch short.
        unfinished: calls that got the cancelled result (their results are still to stream).
        cancelled: those of them that had started (their error hooks are still to fire).
        usage: tokens the calls reported spending (``ToolContext.charge``: sub-agents).
        cost: USD the calls reported spending.
    """

    results: tuple[ToolMessage, ...]
    executed: int
    stopped: bool
    unfinished: tuple[ToolCall, ...] = ()
    cancelled: tuple[ToolCall, ...] = ()
    usage: Usage = attrs.field(factory=Usage)
    cost: Decimal = Decimal(0)


class ToolExecutor:
    """Runs tool calls concurrently or one by one; every call gets exactly one result."""

    __slots__ = ("concurrently", "threads", "tools", "tracer")

    def __init__(
        self,
        tools: Sequence[Tool],
        *,
        concurrently: bool,
        threads: ToolThreads | None = None,
        tracer: Tracer = NO_TRACING,
    ) -> None:
        self.tools: Mapping[str, Tool] = {t.name: t for t in tools}
        self.concurrently = concurrently
        self.threads = threads  # sync tools run here (None: the pool shared outside agents)
        self.tracer = tracer

    def with_tools(self, tools: Sequence[Tool]) -> ToolExecutor:
        """This executor for ``tools`` instead (same concurrency, threads and tracer)."""
        return ToolExecutor(
            tools, concurrently=self.concurrently, threads=self.threads, tracer=self.tracer
        )

    async def run(
        self,
        calls: Sequence[ToolCall],
        context: ToolContext,
        events: Emitter,
        watch: _StopWatch,
    ) -> Batch:
        """Run ``calls`` under ``watch``; a stop cancels the calls still running.

        When the *caller's* task is cancelled instead, the ``CancelledError`` propagates with
        the batch as it stood attached as ``error.agentfsm_batch`` (computed without awaiting:
        a cancelled task must not wait), so the caller can still record every finished result.
        """
        results: dict[str, ToolMessage] = {}
        started: dict[str, float] = {}
        ledger = Ledger(events)
        context = attrs.evolve(context, ledger=ledger)

        async def run_all() -> None:
            if self.concurrently and len(calls) > 1:
                await asyncio.gather(
                    *(self._run_one(c, context, events, results, started) for c in calls)
                )
            else:
                for call in calls:
                    await self._run_one(call, context, events, results, started)

        try:
            stopped = isinstance(await watch.run(run_all()), _Stopped)
        except asyncio.CancelledError as error:
            error.agentfsm_batch = _settle(calls, results, started, ledger, stopped=True)  # type: ignore[attr-defined]
            raise
        batch = _settle(calls, results, started, ledger, stopped=stopped)
        await self.report_cancelled(batch, context, events, started)
        return batch

    async def report_cancelled(
        self,
        batch: Batch,
        context: ToolContext,
        events: Emitter,
        started: Mapping[str, float] | None = None,
    ) -> None:
        """Fire the error hooks of the batch's cancelled calls and stream their results."""
        by_id = {r.tool_call_id: r for r in batch.results}
        for call in batch.unfinished:
            result = by_id[call.id]
            if call in batch.cancelled:
                began = (started or {}).get(call.id, time.perf_counter())
                error = asyncio.CancelledError()
                await _report_error(events, context, call, {}, error, result, began)
            await events.tool_result(result, context.turn, finished=False)

    async def _run_one(
        self,
        call: ToolCall,
        context: ToolContext,
        events: Emitter,
        results: dict[str, ToolMessage],
        started: dict[str, float],
    ) -> None:
        """Validate, run and record one call; every failure becomes a result the model reads."""
        began = time.perf_counter()
        context = attrs.evolve(context, call_id=call.id)  # each call knows its own id
        tool = self.tools.get(call.name)
        try:
            if tool is None:
                known = ", ".join(sorted(self.tools)) or "none"
                raise ToolArgumentError(
                    call.name, f"Unknown tool {call.name!r}. Available tools: {known}."
                )
            try:
                prepared = tool.prepare(call.arguments)
            except RecursionError:  # valid JSON, too deep for the validator to walk
                raise ToolArgumentError(
                    call.name,
                    f"Invalid arguments for tool {call.name!r}: nested too deeply to check; "
                    "send a flatter JSON object",
                ) from None
        except ToolArgumentError as error:
            results[call.id] = _error_result(call, f"Error: {error}")
            await _report_error(
                events, context, call, _loose(call.arguments), error, results[call.id], began
            )
            await events.tool_result(results[call.id], context.turn)
            return
        if prepared.ignored:
            log.warning(
                "injected_arguments_ignored",
                tool=call.name,
                chat_id=context.chat_id,
                names=list(prepared.ignored),
            )
        if events.wants("on_function_call_start"):
            await events.emit(
                "on_function_call_start",
                FunctionCallStartEvent(
                    **events.fields(context.turn),
                    tool_name=call.name,
                    call_id=call.id,
                    arguments=prepared.arguments,
                ),
            )
        started[call.id] = began
        try:
            with self.tracer.tool_call(call, tool, context):  # the tool runs in its span
                value = await tool.invoke(prepared, context, threads=self.threads)
            content = _sendable(format_result(value))
        except Exception as error:
            results[call.id] = _error_result(call, f"Error: {type(error).__name__}: {error}")
            await _report_error(
                events, context, call, prepared.arguments, error, results[call.id], began
            )
            await events.tool_result(results[call.id], context.turn)
            return
        results[call.id] = ToolMessage(call.id, content, tool_name=call.name)
        await events.tool_result(results[call.id], context.turn)
        if events.wants("on_function_call_end"):
            await events.emit(
                "on_function_call_end",
                FunctionCallEndEvent(
                    **events.fields(context.turn),
                    tool_name=call.name,
                    call_id=call.id,
                    arguments=prepared.arguments,
                    result=value,
                    content=content,
                    duration=time.perf_counter() - began,
                ),
            )


def _settle(
    calls: Sequence[ToolCall],
    results: Mapping[str, ToolMessage],
    started: Mapping[str, float],
    ledger: Ledger,
    *,
    stopped: bool,
) -> Batch:
    """The batch as it stands, in call order: a cancelled result for every call that did not
    finish (started or not), and what the calls reported spending."""
    unfinished = tuple(c for c in calls if c.id not in results)
    return Batch(
        results=tuple(results.get(c.id) or _error_result(c, CANCELLED_RESULT) for c in calls),
        executed=len(calls) - len(unfinished),
        stopped=stopped,
        unfinished=unfinished,
        cancelled=tuple(c for c in unfinished if c.id in started),
        usage=ledger.usage,
        cost=ledger.cost,
    )


def _error_result(call: ToolCall, content: str) -> ToolMessage:
    return ToolMessage(call.id, _sendable(content), tool_name=call.name, is_error=True)


def _sendable(content: str) -> str:
    """``content`` as text a server can take: lone surrogates (no UTF-8 form) become "?"."""
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        return content.encode("utf-8", "replace").decode("utf-8")
    return content


async def _report_error(
    events: Emitter,
    context: ToolContext,
    call: ToolCall,
    arguments: Mapping[str, Any],
    error: BaseException,
    result: ToolMessage,
    began: float,
) -> None:
    """Log a failed call and fire ``on_function_call_error``."""
    log.warning(
        "tool_call_failed",
        tool=call.name,
        call_id=call.id,
        chat_id=context.chat_id,
        error_type=type(error).__name__,
    )
    if events.wants("on_function_call_error"):
        await events.emit(
            "on_function_call_error",
            FunctionCallErrorEvent(
                **events.fields(context.turn),
                tool_name=call.name,
                call_id=call.id,
                arguments=arguments,
                error=error,
                content=result.content,
                duration=time.perf_counter() - began,
            ),
        )


def _loose(arguments: str) -> Mapping[str, Any]:
    """The arguments as parsed as they can be, for the error hook (never raises)."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
