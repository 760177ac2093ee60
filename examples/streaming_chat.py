"""Print an agent's answer live, token by token, with tool calls shown as they run.

Offline (default): the scripted server answers. For real: set OPENAI_API_KEY (and
optionally OPENAI_BASE_URL, MODEL) and run it again.

    python examples/streaming_chat.py "what is the weather in paris"
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from agentfsm import (
    AsyncOpenAIStreamingAgent,
    FinalResponseEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    tool,
)


@tool
async def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: the city name, e.g. "Paris".
    """
    await asyncio.sleep(0.2)
    return f"Sunny, 22 °C in {city}"


async def chat(agent: AsyncOpenAIStreamingAgent, question: str) -> None:
    print(f"> {question}")
    async for event in agent.stream_message(question, user_id="u1"):
        if isinstance(event, TokenEvent):
            print(event.delta, end="", flush=True)
        elif isinstance(event, ToolCallEvent):
            print(f"  [tool] {event.call.name}({event.call.arguments}) ...", flush=True)
        elif isinstance(event, ToolResultEvent):
            print(f"  [tool] {event.tool_name} -> {event.content}", flush=True)
        elif isinstance(event, FinalResponseEvent):
            response = event.response
            print(f"\n({response.stop_reason.value}, {response.usage.total_tokens} tokens)")


async def main() -> None:
    question = " ".join(sys.argv[1:]) or "what is the weather in paris"
    options: dict[str, Any] = {
        "system_prompt": "You are a helpful assistant. Use get_weather for weather questions.",
        "tool_registry": [get_weather],
    }
    if os.environ.get("OPENAI_API_KEY"):
        model = os.environ.get("MODEL", "gpt-4o-mini")
        async with AsyncOpenAIStreamingAgent(model=model, **options) as agent:
            await chat(agent, question)
        return
    from agentfsm.testing import ScriptedOpenAIServer, weather_scenario

    async with (
        ScriptedOpenAIServer(weather_scenario) as server,
        AsyncOpenAIStreamingAgent(
            model="scripted-model", api_key="offline", base_url=server.base_url, **options
        ) as agent,
    ):
        await chat(agent, question)


if __name__ == "__main__":
    asyncio.run(main())
