"""The ready-made agents: one machine, configured for a kind of model interaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from agentfsm.agent import _AGENT_OUTPUT, Agent, OutputT, UserInput
from agentfsm.budget import Budget
from agentfsm.hooks import (
    Event,
    FinalResponseEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TransitionEvent,
)
from agentfsm.state import Conversation

__all__ = [
    "AsyncOpenAIMultimodalAgent",
    "AsyncOpenAISimpleAgent",
    "AsyncOpenAIStreamingAgent",
    "StreamEvent",
]

StreamEvent = TokenEvent | ToolCallEvent | ToolResultEvent | TransitionEvent | FinalResponseEvent
"""What ``stream_message`` yields."""

_END = object()


class AsyncOpenAISimpleAgent(Agent[OutputT]):
    """An agent that sends plain (non-streaming) chat-completions requests.

    Example:
        ```python
        agent = AsyncOpenAISimpleAgent(model="gpt-4o-mini", tool_registry=[get_weather])
        response = await agent.send_message("weather in Tokyo?", user_id="u1")
        print(response.output, response.stop_reason)
        ```

    Every keyword is documented on :class:`~agentfsm.agent.Agent`.
    """


class AsyncOpenAIStreamingAgent(Agent[OutputT]):
    """An agent whose model requests stream: tokens arrive as the model writes them.

    ``send_message`` works as for the simple agent (it streams inside and fires
    ``on_token_received``); :meth:`stream_message` hands every event to the caller as it
    happens. A stop during a stream closes the HTTP stream at once and keeps the text that
    arrived, exactly, in a message marked ``interrupted``.

    Args:
        stream_buffer: events ``stream_message`` holds for a slow consumer before the run
            waits for it (backpressure: the model's stream is then read no faster than the
            consumer reads events).

    Every other keyword is documented on :class:`~agentfsm.agent.Agent`.
    """

    _streaming = True

    def __init__(self, *args: Any, stream_buffer: int = 64, **kwargs: Any) -> None:
        from agentfsm.errors import ConfigurationError

        if (
            isinstance(stream_buffer, bool)
            or not isinstance(stream_buffer, int)
            or stream_buffer < 1
        ):
            raise ConfigurationError(
                f"stream_buffer must be an integer >= 1, got {stream_buffer!r}"
            )
        super().__init__(*args, **kwargs)
        self.stream_buffer = stream_buffer

    async def stream_message(
        self,
        message: UserInput,
        history: Iterable[Mapping[str, Any]] | None = None,
        *,
        user_id: str | None = None,
        chat_id: str | None = None,
        conversation: Conversation | None = None,
        debug_print: bool = False,
        budget_control: Budget | Mapping[str, Any] | None = None,
        output_type: Any = _AGENT_OUTPUT,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Run one user message, yielding its events as they happen.

        Yields ``TokenEvent`` (text deltas), ``ToolCallEvent`` (a complete call),
        ``ToolResultEvent``, ``TransitionEvent`` (every phase change) and, last,
        ``FinalResponseEvent`` carrying the same ``AgentResponse`` as ``send_message``.

        Breaking out of the loop (or ``aclose()``) stops the run cleanly: it ends in
        ``stopped`` / ``user_stop`` and no task or connection is left behind. With an
        ``output_type`` the text streams as it comes and is validated at the end.
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
        queue: asyncio.Queue[Any] = asyncio.Queue(self.stream_buffer)
        closed = False

        async def sink(event: Event) -> None:
            if not closed:
                await queue.put(event)

        async def produce() -> None:
            try:
                final = await self._run_started(conv, debug_print, sink)
                response = self.response(final)
                await sink(
                    FinalResponseEvent(
                        chat_id=final.chat_id,
                        user_id=final.user_id,
                        agent_name=self.name,
                        turn=final.turn,
                        at=self.wiring.clock(),
                        response=response,
                    )
                )
            finally:
                if not closed:
                    await queue.put(_END)

        task = asyncio.get_running_loop().create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                yield item
            await task  # re-raises what the run raised, if anything
        finally:
            if not task.done():
                closed = True
                self.request_stop(conv.chat_id)  # the run ends as a clean user stop
                while not queue.empty():  # unblock a producer waiting for room
                    queue.get_nowait()
                # Shielded: a caller cancelled again and again (anyio cancel scopes do that)
                # must not cancel the run mid-phase; it finishes its stop on its own.
                await asyncio.shield(asyncio.gather(task, return_exceptions=True))


class AsyncOpenAIMultimodalAgent(AsyncOpenAIStreamingAgent[OutputT]):
    """An agent for messages with images, audio and files next to text.

    ``send_message`` / ``stream_message`` take a list of parts: text (``str``),
    ``Image.from_url(...)`` / ``Image.from_path(...)`` / ``Image.from_bytes(data, mime)``,
    ``Audio.from_path(...)`` (wav, mp3), ``File.from_path(...)`` where the endpoint supports
    files, or OpenAI content-part dicts. Local data is sent as base64 data URLs; files are
    read and checked (existence, type sniffed from the bytes, size) when the part is built,
    before any request.

    Example:
        ```python
        agent = AsyncOpenAIMultimodalAgent(model="gpt-4o-mini")
        response = await agent.send_message(
            ["What is in this picture?", Image.from_path("cat.png", detail="low")]
        )
        ```

    Args:
        stream: stream the model's answers (``stream_message`` yields tokens then).

    Every other keyword is documented on :class:`~agentfsm.agent.Agent` and
    :class:`AsyncOpenAIStreamingAgent`.
    """

    def __init__(self, *args: Any, stream: bool = False, **kwargs: Any) -> None:
        from agentfsm.errors import ConfigurationError

        if not isinstance(stream, bool):
            raise ConfigurationError("stream must be True or False")
        self._streaming = stream  # read by the wiring, which Agent.__init__ builds
        super().__init__(*args, **kwargs)
