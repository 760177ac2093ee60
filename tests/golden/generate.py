"""Writes the golden payload of the CURRENT schema version (run once per schema bump).

Never regenerate the file of a released version: it is what old stores hold.

    python tests/golden/generate.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentfsm import AsyncOpenAISimpleAgent, dumps, tool
from agentfsm.state import SCHEMA_VERSION
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls


@tool
def get_weather(city: str) -> str:
    """Weather."""
    return f"Sunny in {city}"


async def main() -> None:
    ticks = iter(range(1000))
    script = [
        tool_calls(call("get_weather", {"city": "Tokyo"}, id="call_1")),
        text("Sunny in Tokyo.", usage={"prompt_tokens": 40, "completion_tokens": 5}),
    ]
    async with (
        ScriptedOpenAIServer(script) as server,
        AsyncOpenAISimpleAgent(
            model="m",
            api_key="k",
            base_url=server.base_url,
            tool_registry=[get_weather],
            pricing={"input_per_million": "0.15", "output_per_million": "0.60"},
            clock=lambda: 1_790_000_000.0 + next(ticks),
        ) as agent,
    ):
        response = await agent.send_message("weather in tokyo?", user_id="u1", chat_id="c1")
    target = Path(__file__).with_name(f"conversation_v{SCHEMA_VERSION}.json")
    target.write_text(dumps(response.conversation, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
