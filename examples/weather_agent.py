"""A weather agent with one tool, hooks and a stop button.

Offline (default): runs against agentfsm's scripted OpenAI-compatible server.
For real: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, MODEL) and run it again.

    python examples/weather_agent.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from agentfsm import (
    AsyncOpenAISimpleAgent,
    FunctionCallStartEvent,
    ToolContext,
    TransitionEvent,
    tool,
)


@tool
async def get_weather(city: str, context: ToolContext) -> str:
    """Current weather for a city.

    Args:
        city: the city name, e.g. "Tokyo".
    """
    await asyncio.sleep(0.05)  # a real tool would call a weather API here
    return f"Sunny, 22 °C in {city}"


def get_current_time(timezone: str = "UTC") -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(timezone)).strftime("%H:%M")


get_current_time_schema = {
    "name": "get_current_time",
    "description": "The current time in a timezone.",
    "parameters": {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA name"}},
    },
}


def on_transition(event: TransitionEvent) -> None:
    print(f"  [{event.turn}] {event.from_phase} → {event.to_phase} ({event.reason})")


def on_tool(event: FunctionCallStartEvent) -> None:
    print(f"  tool {event.tool_name}({dict(event.arguments)})")


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
    async with endpoint() as (base_url, api_key, model):
        agent = AsyncOpenAISimpleAgent(
            agent_name="Weather Agent",
            model=model,
            api_key=api_key,
            base_url=base_url,
            system_prompt="You are a helpful assistant. Use tools for weather and time.",
            tool_registry=[
                get_weather,
                {
                    "name": "get_current_time",
                    "function_schema": get_current_time_schema,
                    "func": get_current_time,
                },
            ],
            max_turns=5,
            hooks={"on_transition": on_transition, "on_function_call_start": on_tool},
        )
        response = await agent.send_message(
            "what is the weather in tokyo", user_id="u1", chat_id="c1"
        )
        print(
            f"\n{response.output}\n(stop_reason={response.stop_reason.value}, "
            f"{response.usage.total_tokens} tokens in {response.usage.requests} requests)"
        )


if __name__ == "__main__":
    asyncio.run(main())
