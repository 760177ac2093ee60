"""A live view of one agent: a chat next to its state machine, lit up as the run moves.

The page (``index.html``) draws the machine from ``GET /machine.json``, posts each message to
``/chats/{chat_id}/stream`` and reads the run's events as Server-Sent Events: every
``TransitionEvent`` lights the phase the conversation entered, tool calls appear while they
run, tokens stream into the chat bubble, and the Stop button calls ``agent.request_stop``.

Endpoints:
    GET  /                        the page
    GET  /machine.json            phases and edges of the machine, and its Mermaid text
    POST /chats/{chat_id}/stream  {"message"} -> Server-Sent Events of one run
    POST /chats/{chat_id}/stop    the Stop button

Offline by default: the app starts a ``ScriptedOpenAIServer`` playing the weather scenario,
and its ``get_weather`` tool takes ``LIVE_VIEW_TOOL_SECONDS`` (default 1.5) so there is time
to press Stop. With ``OPENAI_API_KEY`` set it talks to ``OPENAI_BASE_URL`` with ``MODEL``.

    pip install 'agentfsm[web,testing]'
    python examples/live_view/app.py              # http://127.0.0.1:8000
    python examples/live_view/app.py --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agentfsm import (
    AgentFSMError,
    AsyncOpenAIStreamingAgent,
    FinalResponseEvent,
    TokenEvent,
    Tool,
    ToolCallEvent,
    ToolResultEvent,
    TransitionEvent,
    tool,
)
from agentfsm.store import MemoryStore
from agentfsm.testing import RecordedRequest, Reply, ScriptedOpenAIServer, weather_scenario
from agentfsm.viz import machine_json, machine_mermaid

PAGE = Path(__file__).with_name("index.html")
USER_ID = "browser"  # one user: the page has no login
# Slow enough that a reader sees the answer being written, fast enough for a test.
_TOKEN_DELAY = 0.03


def weather_tool(seconds: float) -> Tool:
    """A fake ``get_weather`` (always sunny) that takes ``seconds``: time to press Stop."""

    @tool
    async def get_weather(city: str) -> str:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        await asyncio.sleep(seconds)
        return f"Sunny, 22 °C in {city}"

    return get_weather


def create_app(
    *,
    model: str = "gpt-4o-mini",
    base_url: str | None = None,
    api_key: str | None = None,
    tool_seconds: float = 1.5,
) -> Starlette:
    """The live view app; with no ``api_key`` it runs against its own scripted model server.

    Args:
        model: the model to ask when ``api_key`` is given.
        base_url: an OpenAI-compatible endpoint, or None for OpenAI's.
        api_key: the endpoint's key; None starts the offline scripted server instead.
        tool_seconds: how long ``get_weather`` takes.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            name, url, key = model, base_url, api_key
            if api_key is None:
                scripted = ScriptedOpenAIServer(_paced(weather_scenario))
                server = await stack.enter_async_context(scripted)
                name, url, key = "scripted-model", server.base_url, "offline"
            app.state.agent = await stack.enter_async_context(
                AsyncOpenAIStreamingAgent(
                    model=name,
                    base_url=url,
                    api_key=key,
                    system_prompt="You are a helpful assistant. Use get_weather for weather.",
                    tool_registry=[weather_tool(tool_seconds)],
                    store=MemoryStore(),  # the next message continues the same chat
                )
            )
            yield

    async def page(request: Request) -> Response:
        return FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def machine(request: Request) -> Response:
        # Generated from the machine's tables; edges this agent can never take are marked.
        agent = request.app.state.agent
        return JSONResponse({**machine_json(agent), "mermaid": machine_mermaid(agent)})

    async def stream(request: Request) -> Response:
        agent: AsyncOpenAIStreamingAgent = request.app.state.agent
        message = str((await request.json())["message"])
        chat_id = request.path_params["chat_id"]

        async def events() -> AsyncIterator[str]:
            run = agent.stream_message(message, user_id=USER_ID, chat_id=chat_id)
            try:
                async with contextlib.aclosing(run):
                    async for event in run:
                        yield _sse(*_event_json(event))
            except AgentFSMError as error:  # e.g. a run of this chat is still going
                yield _sse("error", {"error": str(error)})

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stop(request: Request) -> Response:
        request.app.state.agent.request_stop(request.path_params["chat_id"])
        return JSONResponse({"stopping": True})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/machine.json", machine),
            Route("/chats/{chat_id}/stream", stream, methods=["POST"]),
            Route("/chats/{chat_id}/stop", stop, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def _paced(script: Callable[[RecordedRequest], Reply]) -> Callable[[RecordedRequest], Reply]:
    """``script`` with its answers streamed a few characters at a time, as a model writes."""

    def paced(request: RecordedRequest) -> Reply:
        return attrs.evolve(script(request), chunk_delay=_TOKEN_DELAY)

    return paced


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _event_json(event: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(event, TokenEvent):
        return "token", {"delta": event.delta}
    if isinstance(event, ToolCallEvent):
        call = event.call
        return "tool_call", {"id": call.id, "name": call.name, "arguments": call.arguments}
    if isinstance(event, ToolResultEvent):
        return "tool_result", {
            "call_id": event.call_id,
            "name": event.tool_name,
            "content": event.content,
            "is_error": event.is_error,
        }
    if isinstance(event, TransitionEvent):
        return "transition", {
            "from": event.from_phase.value,
            "to": event.to_phase.value,
            "reason": event.reason,
            "turn": event.turn,
        }
    assert isinstance(event, FinalResponseEvent)
    response = event.response
    return "final", {"output": response.output, "stop_reason": response.stop_reason.value}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the live view; the model comes from the environment (offline without a key)."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the agentfsm live view.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    app = create_app(
        model=os.environ.get("MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
        tool_seconds=float(os.environ.get("LIVE_VIEW_TOOL_SECONDS", "1.5")),
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
