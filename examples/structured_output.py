"""Structured output: a typed answer, a repaired invalid answer, and an ``invalid_output`` stop.

Runs offline against the scripted server; with ``OPENAI_API_KEY`` set (and optionally
``OPENAI_BASE_URL`` / ``OPENAI_MODEL``) it asks a real model for the typed answer.

    python examples/structured_output.py
"""

from __future__ import annotations

import asyncio
import json
import os

import attrs

from agentfsm import AsyncOpenAISimpleAgent, InvalidOutputEvent, StopReason


@attrs.frozen
class Weather:
    """The weather in one city."""

    city: str
    celsius: int
    sunny: bool


def show_repair(event: InvalidOutputEvent) -> None:
    what = "stopping" if event.stopped else "asking again"
    print(f"  answer rejected ({what}): {'; '.join(event.errors)}")


async def offline() -> None:
    from agentfsm.testing import ScriptedOpenAIServer, text

    good = json.dumps({"city": "Tokyo", "celsius": 22, "sunny": True})
    script = [
        text(good),  # 1. a typed answer
        text('{"city": "Oslo", "celsius": "cold", "sunny": false}'),  # 2. invalid, then
        text('{"city": "Oslo", "celsius": -3, "sunny": false}'),  # repaired
        text("It is raining."),  # 3. never valid:
        text("Still raining."),  # the run stops invalid_output
    ]
    async with ScriptedOpenAIServer(script) as server:
        agent = AsyncOpenAISimpleAgent(
            model="scripted-model",
            api_key="offline",
            base_url=server.base_url,
            output_type=Weather,
            hooks={"on_invalid_output": show_repair},
        )
        async with agent:
            first = await agent.send_message("Weather in Tokyo?")
            print(f"1. {first.output!r}")  # a Weather, not a string
            second = await agent.send_message("Weather in Oslo?")
            print(f"2. {second.output!r} after {second.turns} model calls")
            third = await agent.send_message("Weather in Bergen?")
            assert third.stop_reason is StopReason.INVALID_OUTPUT
            print(f"3. stopped: {third.stop_reason}, error: {third.error.message}")  # type: ignore[union-attr]


async def online() -> None:
    agent = AsyncOpenAISimpleAgent(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), output_type=Weather
    )
    async with agent:
        response = await agent.send_message("Make up today's weather in Tokyo.")
        print(response.stop_reason, repr(response.output))


if __name__ == "__main__":
    asyncio.run(online() if os.environ.get("OPENAI_API_KEY") else offline())
