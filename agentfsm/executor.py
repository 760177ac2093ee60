"""The tool executor: runs one assistant message's tool calls and maps results to call ids."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from agentfsm.errors import ToolArgumentError
from agentfsm.hooks import FunctionCallEndEvent, FunctionCallErrorEvent, FunctionCallStartEvent
from agentfsm.messages import Message, ToolCall, ToolMessage
from agentfsm.stop import STOPPED
from agentfsm.tools import Tool, ToolContext, format_result

if TYPE_CHECKING:
    from agentfsm.runtime import Step

__all__ = ["CANCELLED_RESULT", "ToolExecutor"]

log = structlog.get_logger(__name__)

CANCELLED_RESULT = "Cancelled: the run was stopped before this call finished."


class ToolExecutor:
    """Runs tool calls concurrently or one by one; every call gets exactly one result."""

    __slots__ = ("concurrently", "tools")

    def __init__(self, tools: Sequence[Tool], *, concurrently: bool) -> None:
        self.tools: Mapping[str, Tool] = {t.name: t for t in tools}
        self.concurrently = concurrently

    async def run(
        self, step: Step, calls: Sequence[ToolCall], context: ToolContext
    ) -> tuple[Sequence[Message], int, bool]:
        """Results in call order, how many calls ran to an end, and whether a stop cut in."""
        results: dict[str, ToolMessage] = {}
        started: dict[str, float] = {}

        async def run_all() -> None:
            if self.concurrently and len(calls) > 1:
                await asyncio.gather(
                    *(self._run_one(step, c, context, results, started) for c in calls)
                )
            else:
                for call in calls:
                    await self._run_one(step, call, context, results, started)

        stopped = await step.watch.run(run_all()) is STOPPED
        ordered: list[Message] = []
        for call in calls:
            result = results.get(call.id)
            if result is None:
                result = ToolMessage(call.id, CANCELLED_RESULT, tool_name=call.name, is_error=True)
                if call.id in started:
                    await self._report_error(
                        step, call, {}, asyncio.CancelledError(), result.content, started[call.id]
                    )
                await step.tool_result(result)
            ordered.append(result)
        return ordered, len(results), stopped

    async def _run_one(
        self,
        step: Step,
        call: ToolCall,
        context: ToolContext,
        results: dict[str, ToolMessage],
        started: dict[str, float],
    ) -> None:
        began = time.perf_counter()
        tool = self.tools.get(call.name)
        try:
            if tool is None:
                known = ", ".join(sorted(self.tools)) or "none"
                raise ToolArgumentError(
                    call.name, f"Unknown tool {call.name!r}. Available tools: {known}."
                )
            prepared = tool.prepare(call.arguments)
        except ToolArgumentError as error:
            content = f"Error: {error}"
            results[call.id] = ToolMessage(call.id, content, tool_name=call.name, is_error=True)
            await self._report_error(step, call, _loose(call.arguments), error, content, began)
            await step.tool_result(results[call.id])
            return
        if prepared.ignored:
            log.warning(
                "injected_arguments_ignored",
                tool=call.name,
                chat_id=context.chat_id,
                names=list(prepared.ignored),
            )
        if step.wants("on_function_call_start"):
            await step.emit(
                "on_function_call_start",
                FunctionCallStartEvent(
                    **step.base(),
                    tool_name=call.name,
                    call_id=call.id,
                    arguments=prepared.arguments,
                ),
            )
        started[call.id] = began
        try:
            value = await tool.invoke(prepared, context)
        except Exception as error:
            content = f"Error: {type(error).__name__}: {error}"
            results[call.id] = ToolMessage(call.id, content, tool_name=call.name, is_error=True)
            await self._report_error(step, call, prepared.arguments, error, content, began)
            await step.tool_result(results[call.id])
            return
        content = format_result(value)
        results[call.id] = ToolMessage(call.id, content, tool_name=call.name)
        await step.tool_result(results[call.id])
        if step.wants("on_function_call_end"):
            await step.emit(
                "on_function_call_end",
                FunctionCallEndEvent(
                    **step.base(),
                    tool_name=call.name,
                    call_id=call.id,
                    arguments=prepared.arguments,
                    result=value,
                    content=content,
                    duration=time.perf_counter() - began,
                ),
            )

    async def _report_error(
        self,
        step: Step,
        call: ToolCall,
        arguments: Mapping[str, Any],
        error: BaseException,
        content: str,
        began: float,
    ) -> None:
        log.warning(
            "tool_call_failed",
            tool=call.name,
            call_id=call.id,
            chat_id=step.chat_id,
            error_type=type(error).__name__,
        )
        if step.wants("on_function_call_error"):
            await step.emit(
                "on_function_call_error",
                FunctionCallErrorEvent(
                    **step.base(),
                    tool_name=call.name,
                    call_id=call.id,
                    arguments=arguments,
                    error=error,
                    content=content,
                    duration=time.perf_counter() - began,
                ),
            )


def _loose(arguments: str) -> Mapping[str, Any]:
    """The arguments as parsed as they can be, for the error hook (never raises)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
