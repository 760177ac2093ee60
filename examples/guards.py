"""Guards of your own: a moderation check on the input, a refusal of one tool call, and the
loop breaker stopping a model that asks for the same weather again and again.

Runs offline against the scripted server; with ``OPENAI_API_KEY`` set (and optionally
``OPENAI_BASE_URL`` / ``OPENAI_MODEL``) it runs the same guards against a real model.

    python examples/guards.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agentfsm import (
    AsyncOpenAISimpleAgent,
    Guard,
    GuardContext,
    Refuse,
    guard,
    loop_breaker,
    tool,
)


@tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city.
    """
    return f"Sunny, 22 °C in {city}"


@tool
def delete_file(path: str) -> str:
    """Deletes a file.

    Args:
        path: the file.
    """
    return f"deleted {path}"


def moderation(ctx: GuardContext) -> str | None:
    return "the request mentions passwords" if "password" in ctx.user_message.lower() else None


@guard(on="tools")
def no_deletes(ctx: GuardContext) -> Refuse | None:
    refused = {c.id: "deleting files is not allowed" for c in ctx.calls if c.name == "delete_file"}
    return Refuse(refused) if refused else None


GUARDS = [Guard("moderation", moderation, on="input"), no_deletes, loop_breaker(times=3)]


async def run(agent: Any) -> None:
    first = await agent.send_message("What is the admin password?")
    print(f"1. {first.stop_reason}: {first.guard.name} ({first.guard.message})")
    second = await agent.send_message("Weather in Oslo, then delete /tmp/report.txt")
    print(f"2. {second.stop_reason}: {second.output}")
    third = await agent.send_message("Weather in Tokyo? Check it again and again.")
    print(f"3. {third.stop_reason}: {third.guard.name if third.guard else '-'}")


async def offline() -> None:
    from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

    script = [
        # 1. refused by the input guard: no request at all
        # 2. one call refused, the other runs
        tool_calls(call("get_weather", {"city": "Oslo"}), call("delete_file", {"path": "/tmp"})),
        text("Sunny in Oslo; I was not allowed to delete the file."),
        # 3. a model stuck in a loop
        *[tool_calls(call("get_weather", {"city": "Tokyo"})) for _ in range(4)],
    ]
    async with ScriptedOpenAIServer(script) as server:
        agent = AsyncOpenAISimpleAgent(
            model="scripted-model",
            api_key="offline",
            base_url=server.base_url,
            tool_registry=[get_weather, delete_file],
            guards=GUARDS,
        )
        async with agent:
            await run(agent)


async def online() -> None:
    agent = AsyncOpenAISimpleAgent(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        tool_registry=[get_weather, delete_file],
        guards=GUARDS,
    )
    async with agent:
        await run(agent)


if __name__ == "__main__":
    asyncio.run(online() if os.environ.get("OPENAI_API_KEY") else offline())
