"""A real MCP server for tests/test_mcp.py, written with the ``mcp`` package's server API.

Run as ``python tools_server.py stdio`` (the client spawns it and talks over its pipes) or
``python tools_server.py http`` (streamable HTTP on a free 127.0.0.1 port, printed as the
first line of stdout once the socket listens).
"""

from __future__ import annotations

import base64
import os
import socket
import sys
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Audio, Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    BlobResourceContents,
    EmbeddedResource,
    ResourceLink,
    TextResourceContents,
)
from pydantic import BaseModel, WithJsonSchema

mcp = MCPServer("tools", log_level="WARNING")

# Per-key events, so tests sharing one server process do not see each other's calls.
_started: dict[str, anyio.Event] = {}
_cancelled: dict[str, anyio.Event] = {}

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(1226)  # 1234 bytes: only the size is read


def _event(events: dict[str, anyio.Event], key: str) -> anyio.Event:
    if key not in events:
        events[key] = anyio.Event()
    return events[key]


class Forecast(BaseModel):
    """A forecast, returned as structured content."""

    city: str
    days: int
    temperatures: list[float]


@mcp.tool()
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny, 22 °C in {city}"


@mcp.tool()
def forecast(city: str, days: int = 2) -> Forecast:
    """A forecast of several days, as structured content."""
    return Forecast(city=city, days=days, temperatures=[21.5 + i for i in range(days)])


@mcp.tool()
def chart() -> Image:
    """A chart, as an image."""
    return Image(data=PNG_BYTES, format="png")


@mcp.tool()
def cities() -> list[str]:
    """A list: one text block per item (and structured content)."""
    return ["Oslo", "Rome"]


@mcp.tool(structured_output=False)
def media() -> list[Any]:
    """Every other kind of content block."""
    return [
        Audio(data=bytes(100), format="wav"),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(uri="file:///notes.txt", text="the notes"),
        ),
        EmbeddedResource(
            type="resource",
            resource=BlobResourceContents(
                uri="file:///report.pdf",
                mime_type="application/pdf",
                blob=base64.b64encode(bytes(2048)).decode(),
            ),
        ),
        ResourceLink(type="resource_link", name="report", uri="file:///report.pdf"),
    ]


@mcp.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(reason)


@mcp.tool()
async def slow(key: str) -> str:
    """Runs until it is cancelled; records when it starts and when it is cancelled."""
    _event(_started, key).set()
    try:
        await anyio.sleep_forever()
    finally:
        _event(_cancelled, key).set()
    return "unreachable"  # pragma: no cover


@mcp.tool()
async def wait_started(key: str) -> str:
    """Answers once ``slow(key)`` is running."""
    await _event(_started, key).wait()
    return "started"


@mcp.tool()
async def wait_cancelled(key: str) -> str:
    """Answers once ``slow(key)`` has been cancelled."""
    await _event(_cancelled, key).wait()
    return "cancelled"


@mcp.tool()
def whoami(user: str | None = None, chat: str | None = None, note: str = "") -> dict[str, Any]:
    """Echoes the identity arguments it received (for mapped injection)."""
    return {"user": user, "chat": chat, "note": note}


@mcp.tool()
def record(
    user_id: str | None = None, chat_id: str | None = None, note: str = ""
) -> dict[str, Any]:
    """Echoes ``user_id`` / ``chat_id`` as received (they must not arrive unless mapped)."""
    return {"user_id": user_id, "chat_id": chat_id, "note": note}


@mcp.tool(name="math.add")
def add(a: int, b: int) -> int:
    """Adds two integers (a dotted name, as MCP allows and OpenAI does not)."""
    return a + b


@mcp.tool()
def odd(
    data: Annotated[
        dict[str, Any],
        WithJsonSchema({"type": "object", "unevaluatedProperties": False}),
    ],
) -> str:
    """A schema keyword agentfsm's validator refuses: the server validates instead."""
    return f"got {sorted(data)}"


@mcp.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Adds a tool named ``name`` that answers with its own name."""

    def added() -> str:
        return f"I am {name}"

    mcp.add_tool(added, name=name, description=f"Added at run time: {name}")
    await ctx.notify_tools_changed()
    return f"added {name}"


@mcp.tool()
def header(name: str, ctx: Context) -> str:
    """The value of an HTTP request header (empty over stdio)."""
    headers = ctx.headers or {}
    return headers.get(name.lower(), "")


@mcp.tool()
def pid() -> int:
    """The server process's id."""
    return os.getpid()


@mcp.tool()
def crash() -> str:
    """Ends the server process at once, as a crash would."""
    os._exit(3)


def _serve_http() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    app = mcp.streamable_http_app(host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    print(sock.getsockname()[1], flush=True)  # the socket listens: connections queue from now
    anyio.run(lambda: server.serve(sockets=[sock]))


if __name__ == "__main__":
    if sys.argv[1:] == ["http"]:
        _serve_http()
    else:
        mcp.run()
