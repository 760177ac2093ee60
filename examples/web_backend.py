"""A minimal chat backend: send, stream (SSE), stop and read chats, with a persistent store.

Endpoints:
    POST /chats/{chat_id}/messages   {"user_id", "message"} -> the response as JSON
    POST /chats/{chat_id}/stream     {"user_id", "message"} -> Server-Sent Events
    POST /chats/{chat_id}/stop       the stop button (works across workers with Redis)
    GET  /chats/{chat_id}?user_id=   the stored chat: phase, messages, usage, cost

Storage: SQLiteStore("chats.db") by default; RedisStore + RedisStopSignal when REDIS_URL is
set (then any worker can serve any request, and a stop reaches the worker running the chat).

    pip install 'agentfsm[web,testing]'
    python examples/web_backend.py            # offline self-test against the scripted server
    python examples/web_backend.py serve      # serve on :8000 (real model if OPENAI_API_KEY)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agentfsm import (
    AgentFSMError,
    AsyncOpenAIStreamingAgent,
    ChatAccessError,
    FinalResponseEvent,
    RunInProgressError,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TransitionEvent,
    tool,
)
from agentfsm.store import SQLiteStore, Store


@tool
async def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: the city name.
    """
    await asyncio.sleep(0.05)
    return f"Sunny, 22 °C in {city}"


def build_app(
    agent: AsyncOpenAIStreamingAgent, store: Store, stop: Callable[[str], Any]
) -> Starlette:
    """The HTTP API around one agent; ``stop(chat_id)`` presses the stop button."""

    async def body(request: Request) -> tuple[str, str]:
        data = await request.json()
        return str(data["user_id"]), str(data["message"])

    async def send(request: Request) -> Response:
        user_id, message = await body(request)
        chat_id = request.path_params["chat_id"]
        try:
            response = await agent.send_message(message, user_id=user_id, chat_id=chat_id)
        except RunInProgressError as error:
            return JSONResponse({"error": str(error)}, status_code=409)
        except ChatAccessError as error:
            return JSONResponse({"error": str(error)}, status_code=403)
        data = response.to_dict()
        del data["conversation"]  # the store has it; the browser needs the rest
        return JSONResponse(data)

    async def stream(request: Request) -> Response:
        user_id, message = await body(request)
        chat_id = request.path_params["chat_id"]

        async def events() -> AsyncIterator[str]:
            try:
                async for event in agent.stream_message(message, user_id=user_id, chat_id=chat_id):
                    data = json.dumps(_event_json(event))
                    yield f"event: {type(event).__name__}\ndata: {data}\n\n"
            except AgentFSMError as error:
                yield f"event: error\ndata: {json.dumps({'error': str(error)})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def stop_chat(request: Request) -> Response:
        result = stop(request.path_params["chat_id"])
        if isinstance(result, Awaitable):
            await result
        return JSONResponse({"stopping": True})

    async def get_chat(request: Request) -> Response:
        conv = await store.load(request.path_params["chat_id"])
        if conv is None or conv.user_id != request.query_params.get("user_id"):
            return JSONResponse({"error": "no such chat"}, status_code=404)
        response = agent.response(conv) if conv.finished else None
        return JSONResponse(
            {
                "chat_id": conv.chat_id,
                "phase": conv.phase.value,
                "messages": response.history_without_function_calls if response else [],
                "tokens": conv.usage.total_tokens,
                "cost": str(conv.cost),
            }
        )

    return Starlette(
        routes=[
            Route("/chats/{chat_id}/messages", send, methods=["POST"]),
            Route("/chats/{chat_id}/stream", stream, methods=["POST"]),
            Route("/chats/{chat_id}/stop", stop_chat, methods=["POST"]),
            Route("/chats/{chat_id}", get_chat, methods=["GET"]),
        ]
    )


def _event_json(event: Any) -> dict[str, Any]:
    if isinstance(event, TokenEvent):
        return {"delta": event.delta}
    if isinstance(event, ToolCallEvent):
        return {"tool": event.call.name, "arguments": event.call.arguments}
    if isinstance(event, ToolResultEvent):
        return {"tool": event.tool_name, "result": event.content}
    if isinstance(event, TransitionEvent):
        return {"from": event.from_phase.value, "to": event.to_phase.value, "reason": event.reason}
    if isinstance(event, FinalResponseEvent):
        return {"output": event.response.output, "stop_reason": event.response.stop_reason.value}
    return {}


async def make_backend(
    model: str, base_url: str | None, api_key: str | None, db: Path
) -> tuple[Starlette, Callable[[], Awaitable[None]]]:
    """The app and its cleanup: Redis (store + cross-worker stop) if REDIS_URL, else SQLite."""
    options: dict[str, Any] = {}
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        from agentfsm.store import RedisStopSignal, RedisStore

        store: Store = RedisStore(redis_url)
        signal = RedisStopSignal(redis_url)
        options["manual_stop_signal_function"] = signal
        options["check_for_stop_signal_time"] = 0.5
        stop: Callable[[str], Any] = signal.request_stop
    else:
        store = SQLiteStore(db)
    agent = AsyncOpenAIStreamingAgent(
        model=model,
        base_url=base_url,
        api_key=api_key,
        system_prompt="You are a helpful assistant.",
        tool_registry=[get_weather],
        store=store,
        **options,
    )
    if not redis_url:
        stop = agent.request_stop

    async def close() -> None:
        await agent.aclose()
        await store.aclose()
        if redis_url:
            await signal.aclose()

    return build_app(agent, store, stop), close


async def self_test() -> None:
    """Run the backend against the scripted server and call every endpoint once."""
    import aiohttp
    import uvicorn

    from agentfsm.testing import ScriptedOpenAIServer, weather_scenario

    with tempfile.TemporaryDirectory() as tmp:
        async with ScriptedOpenAIServer(weather_scenario) as model_server:
            app, close = await make_backend(
                "scripted-model", model_server.base_url, "offline", Path(tmp) / "chats.db"
            )
            config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
            server = uvicorn.Server(config)
            serving = asyncio.ensure_future(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                payload = {"user_id": "u1", "message": "weather in tokyo?"}
                async with http.post(f"{base}/chats/c1/messages", json=payload) as r:
                    answer = await r.json()
                    print(f"POST messages -> {answer['output']!r} ({answer['stop_reason']})")
                payload["message"] = "and in paris?"
                async with http.post(f"{base}/chats/c1/stream", json=payload) as r:
                    kinds = [line[7:] async for line in _lines(r) if line.startswith("event: ")]
                    print(f"POST stream   -> {len(kinds)} events, last {kinds[-1]}")
                async with http.post(f"{base}/chats/c1/stop") as r:
                    print(f"POST stop     -> {await r.json()}")
                async with http.get(f"{base}/chats/c1", params={"user_id": "u1"}) as r:
                    chat = await r.json()
                    print(f"GET chat      -> {chat['phase']}, {len(chat['messages'])} messages")
                async with http.get(f"{base}/chats/c1", params={"user_id": "u2"}) as r:
                    print(f"GET as u2     -> {r.status}")
            server.should_exit = True
            await serving
            await close()


async def _lines(response: Any) -> AsyncIterator[str]:
    async for raw in response.content:
        yield raw.decode().rstrip("\n")


def serve() -> None:
    import uvicorn

    async def main() -> None:
        app, close = await make_backend(
            os.environ.get("MODEL", "gpt-4o-mini"),
            os.environ.get("OPENAI_BASE_URL"),
            os.environ.get("OPENAI_API_KEY"),
            Path("chats.db"),
        )
        try:
            await uvicorn.Server(uvicorn.Config(app, port=8000)).serve()
        finally:
            await close()

    asyncio.run(main())


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        asyncio.run(self_test())
