"""CPU cost of an agentfsm conversation against a hand-written loop on the raw openai SDK.

Both run the same one-tool conversation (user → tool call → tool result → final answer)
against the scripted server in another process, so the server's CPU is not counted. Prints
CPU seconds per conversation for both and their ratio, sequentially and with 500 at once;
and the time ``import agentfsm`` takes against ``import openai`` (each in a fresh interpreter,
best of ``--imports`` runs; agentfsm's figure includes the openai it imports).

    python benchmarks/overhead.py [--conversations 300] [--concurrent 500] [--rounds 3]
                                  [--imports 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx2 as httpx  # the HTTP library of the installed openai SDK
import openai

from agentfsm import AsyncOpenAISimpleAgent, Guard, loop_breaker, tool

SYSTEM = "You are a helpful assistant."
QUESTION = "what is the weather in tokyo"


async def get_weather_impl(city: str) -> str:
    return f"Sunny, 22 °C in {city}"


@tool
async def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: the city name.
    """
    return await get_weather_impl(city)


TOOLS = [get_weather.to_openai()]


@attrs.frozen
class WeatherReport:
    """The typed answer of the structured-output row."""

    city: str
    celsius: int
    conditions: str


REPORT_FORMAT = {  # what a careful raw-SDK user sends for the same typed answer
    "type": "json_schema",
    "json_schema": {
        "name": "WeatherReport",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "celsius": {"type": "integer"},
                "conditions": {"type": "string"},
            },
            "required": ["city", "celsius", "conditions"],
            "additionalProperties": False,
        },
    },
}


async def raw_conversation(client: openai.AsyncOpenAI, typed: bool = False) -> str:
    """The hand-written loop a careful user would write on the raw SDK (``typed``: asking
    for a WeatherReport and parsing it into one, as the agent does)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
    ]
    extra: dict[str, Any] = {"response_format": REPORT_FORMAT} if typed else {}
    answer = await raw_loop(client, messages, **extra)
    return WeatherReport(**json.loads(answer or "{}")).conditions if typed else answer


async def raw_loop(client: Any, messages: list[dict[str, Any]], **extra: Any) -> str:
    """Ask, run the weather tool calls, ask again until an answer; every message (the answer
    too) is appended to ``messages``, which the caller keeps as the chat's history."""
    for _ in range(10):
        completion = await client.chat.completions.create(
            model="scripted-model", messages=messages, tools=TOOLS, **extra
        )
        message = completion.choices[0].message
        if not message.tool_calls:
            messages.append({"role": "assistant", "content": message.content or ""})
            return message.content or ""
        messages.append(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in message.tool_calls
                ],
            }
        )
        for c in message.tool_calls:
            result = await get_weather_impl(**json.loads(c.function.arguments))
            messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    raise RuntimeError("no final answer")


async def measure(
    make: Callable[[], Awaitable[str]], conversations: int, concurrent: int
) -> tuple[float, float]:
    """CPU seconds per conversation: run one after another, then ``concurrent`` at once."""
    for _ in range(5):  # warm up connections and caches
        await make()
    began = time.process_time()
    for _ in range(conversations):
        await make()
    sequential = (time.process_time() - began) / conversations
    began = time.process_time()
    results = await asyncio.gather(*(make() for _ in range(concurrent)))
    parallel = (time.process_time() - began) / concurrent
    assert all("sunny" in r.lower() for r in results), results[:3]
    return sequential, parallel


def import_seconds(module: str, runs: int) -> float:
    """The best wall time of ``import module`` in a fresh interpreter (startup excluded).

    Bytecode is written and used (``PYTHONDONTWRITEBYTECODE`` is dropped), as in an installed
    package: with it set, an editable checkout is compiled from source on every import while
    site-packages' openai is not, which would compare compiling against loading.
    """
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def once() -> float:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        return float(done.stdout)

    once()  # writes the bytecode
    return min(once() for _ in range(runs))


def print_imports(runs: int) -> None:
    """``import agentfsm`` against ``import openai``, interleaved so drift hits both alike."""
    openai_best, fsm_best = float("inf"), float("inf")
    for _ in range(runs):
        openai_best = min(openai_best, import_seconds("openai", 1))
        fsm_best = min(fsm_best, import_seconds("agentfsm", 1))
    print(f"import, best of {runs} fresh interpreters (bytecode cached), ms")
    print(f"{'':24}{'openai':>12}{'agentfsm':>12}{'ratio':>8}")
    print(
        f"{'import':24}{openai_best * 1e3:12.1f}{fsm_best * 1e3:12.1f}"
        f"{fsm_best / openai_best:8.3f}x"
    )


async def main(conversations: int, concurrent: int, rounds: int) -> None:
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "agentfsm.testing", "--scenario", "weather", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"scripted server did not start: {line!r}")
        base_url = line.split(" ", 1)[1]
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)

        def client() -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(
                api_key="bench",
                base_url=base_url,
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits),
            )

        raw_client = client()
        agent = AsyncOpenAISimpleAgent(
            model="scripted-model",
            client=client(),
            system_prompt=SYSTEM,
            tool_registry=[get_weather],
        )

        async def via_agent() -> str:
            return (await agent.send_message(QUESTION, user_id="u1")).output

        guarded = AsyncOpenAISimpleAgent(
            model="scripted-model",
            client=client(),
            system_prompt=SYSTEM,
            tool_registry=[get_weather],
            guards=[  # three cheap guards: the input, every request, the tool calls
                Guard("moderation", lambda ctx: "forbidden" in ctx.user_message, on="input"),
                Guard("cap", lambda ctx: ctx.conversation.turn > 8),
                loop_breaker(),
            ],
        )

        async def via_agent_guarded() -> str:
            return (await guarded.send_message(QUESTION, user_id="u1")).output

        async def via_agent_typed() -> str:
            response = await agent.send_message(QUESTION, output_type=WeatherReport)
            return response.output.conditions

        cases: dict[str, tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[str]]]] = {
            "": (lambda: raw_conversation(raw_client), via_agent),
            ", typed": (lambda: raw_conversation(raw_client, typed=True), via_agent_typed),
            ", 3 guards": (lambda: raw_conversation(raw_client), via_agent_guarded),
        }
        best: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):  # interleave, so drift in the machine hits both alike
            for suffix, (raw, fsm) in cases.items():
                for who, make in (("raw", raw), ("fsm", fsm)):
                    s, p = await measure(make, conversations, concurrent)
                    best.setdefault((who, "sequential" + suffix), []).append(s)
                    best.setdefault((who, f"{concurrent} concurrent" + suffix), []).append(p)
        print(f"one-tool conversation, {conversations} sequential / {concurrent} concurrent,")
        print(f"best of {rounds} rounds, CPU ms per conversation (client process only);")
        print("'typed': a structured WeatherReport answer (response_format + validation);")
        print("'3 guards': the plain conversation with three cheap user guards")
        print(f"{'':28}{'raw openai':>12}{'agentfsm':>12}{'ratio':>8}")
        for suffix in cases:
            for kind in ("sequential", f"{concurrent} concurrent"):
                label = kind + suffix
                raw, fsm = min(best[("raw", label)]), min(best[("fsm", label)])
                print(f"{label:28}{raw * 1e3:12.3f}{fsm * 1e3:12.3f}{fsm / raw:8.3f}x")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--imports", type=int, default=15)
    args = parser.parse_args()
    print_imports(args.imports)
    asyncio.run(main(args.conversations, args.concurrent, args.rounds))
