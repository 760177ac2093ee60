"""An agent whose tools come from an MCP server (the official ``mcp`` package's server API).

This file is both: run with ``serve`` it is a small MCP weather server (stdio); run without
arguments it spawns itself as that server and lets an agent use its tools.

Offline (default): the agent talks to agentfsm's scripted OpenAI-compatible server.
For real: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, MODEL) and run it again.

    pip install 'agentfsm[mcp]'
    python examples/mcp_tools.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfsm import FunctionCallEndEvent


def serve() -> None:
    """The MCP server: what a team would ship as its own package or container."""
    from mcp.server.mcpserver import MCPServer as Server

    server = Server("weather", log_level="WARNING")

    @server.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"Sunny, 22 °C in {city}"

    @server.tool()
    def favourite_cities(user: str) -> str:
        """The cities the calling user follows."""
        return {"ada": "Tokyo, Oslo"}.get(user, "none")

    server.run()


def on_tool_end(event: FunctionCallEndEvent) -> None:
    print(f"  tool {event.tool_name}({dict(event.arguments)}) -> {event.content}")


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[tuple[str | None, str | None, str]]:
    """The real endpoint when OPENAI_API_KEY is set, else a scripted server."""
    if os.environ.get("OPENAI_API_KEY"):
        yield None, None, os.environ.get("MODEL", "gpt-4o-mini")
        return
    from agentfsm.testing import ScriptedOpenAIServer, weather_scenario

    async with ScriptedOpenAIServer(weather_scenario) as server:
        yield server.base_url, "offline", "scripted-model"


async def main() -> None:
    # Imported here, not at the top: the server process (`serve`) needs only mcp.
    from agentfsm import AsyncOpenAISimpleAgent, ToolContext
    from agentfsm.mcp import MCPServer

    # The server's `user` argument is filled from the conversation's user_id: the model
    # neither sees it nor can set it.
    weather = MCPServer.stdio(sys.executable, [__file__, "serve"], inject={"user": "user_id"})
    async with weather, endpoint() as (base_url, api_key, model):
        tools = await weather.list_tools()
        print("MCP tools:", ", ".join(t.name for t in tools))
        favourites = next(t for t in tools if t.name == "favourite_cities")
        context = ToolContext(chat_id="c1", user_id="ada", agent_name="demo", turn=0)
        print("ada follows:", await favourites.invoke(favourites.prepare({}), context))

        agent = AsyncOpenAISimpleAgent(
            agent_name="Weather Agent",
            model=model,
            api_key=api_key,
            base_url=base_url,
            system_prompt="You are a helpful assistant. Use tools for the weather.",
            tool_registry=tools,
            max_turns=5,
            hooks={"on_function_call_end": on_tool_end},
        )
        async with agent:
            response = await agent.send_message(
                "what is the weather in tokyo", user_id="ada", chat_id="c1"
            )
        print(f"\n{response.output}\n(stop_reason={response.stop_reason.value})")


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        asyncio.run(main())
