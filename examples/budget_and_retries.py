"""Retries, a fallback model, cost accounting and a per-chat budget.

Offline (default): a scripted server that rate-limits, fails and answers, with fake sleeps
so nothing waits for real. For real: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL,
MODEL, FALLBACK_MODEL) and run it again; the budget then stops a tool-hungry chat.

    python examples/budget_and_retries.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agentfsm import (
    AsyncOpenAISimpleAgent,
    BudgetExceededEvent,
    FallbackEvent,
    RetryEvent,
    tool,
)

PRICING = {"input_per_million": 0.15, "output_per_million": 0.60, "cached_input_per_million": 0.075}


@tool
def search_docs(query: str) -> str:
    """Searches the product documentation.

    Args:
        query: what to look for.
    """
    return f"3 pages about {query!r}: pricing, limits, billing."


def on_retry(event: RetryEvent) -> None:
    print(
        f"  retry #{event.attempt} after {event.error_class} ({event.error.status}): "
        f"waiting {event.delay:.2f}s"
    )


def on_fallback(event: FallbackEvent) -> None:
    print(f"  {event.from_model} failed ({event.error.status}); asking {event.to_model}")


def on_budget(event: BudgetExceededEvent) -> None:
    print(f"  budget: spent ${event.spent} of ${event.budget} (reserve ${event.reserve})")


async def run(agent: AsyncOpenAISimpleAgent) -> None:
    response = await agent.send_message(
        "Research our pricing docs thoroughly, search several times.", user_id="u1"
    )
    print(f"\nstop_reason: {response.stop_reason.value}")
    print(f"output:      {response.output[:200]!r}")
    for r in response.requests:
        print(
            f"  request: {r.model}, {r.usage.total_tokens} tokens, ${r.cost}, "
            f"{r.attempts} attempt(s)"
        )
    print(f"run cost:    ${response.cost}")


async def offline() -> None:
    from agentfsm.testing import (
        FakeClock,
        Reply,
        ScriptedOpenAIServer,
        call,
        fault,
        text,
        tool_calls,
    )

    usage = {"prompt_tokens": 900, "completion_tokens": 120}
    primary_script: list[Reply] = [
        fault.rate_limit(retry_after=2),
        fault.server_error(503),
        tool_calls(call("search_docs", {"query": "pricing"}), usage=usage),
        fault.status(404, "The model `scripted-model` has been retired"),
    ]
    backup_script: list[Reply] = [
        tool_calls(call("search_docs", {"query": "limits"}), usage=usage),
        tool_calls(call("search_docs", {"query": "billing"}), usage=usage),
        text("Done.", usage=usage),
    ]
    clock = FakeClock()
    async with (
        ScriptedOpenAIServer(primary_script) as primary,
        ScriptedOpenAIServer(backup_script, model="backup-model") as backup,
    ):
        options: dict[str, Any] = {
            "clock": clock,
            "sleep": clock.sleep,
            "api_key": "offline",
            "base_url": primary.base_url,
            "model": "scripted-model",
            "fallback_models": [{"model": "backup-model", "base_url": backup.base_url}],
        }
        async with make_agent(options) as agent:
            await run(agent)
    print(f"slept (fake): {clock.sleeps}")


def make_agent(options: dict[str, Any]) -> AsyncOpenAISimpleAgent:
    return AsyncOpenAISimpleAgent(
        system_prompt="You are a research assistant. Use search_docs.",
        tool_registry=[search_docs],
        max_turns=8,
        request_timeout=60,
        retry_strategy={"rate_limit": {"max_retries": 5}, "server_error": {"max_retries": 2}},
        pricing=PRICING,
        budget_control={"max_budget_for_this_chat": 0.0006, "reserved_budget": 0.0002},
        hooks={"on_retry": on_retry, "on_fallback": on_fallback, "on_budget_exceeded": on_budget},
        **options,
    )


async def online() -> None:
    options: dict[str, Any] = {"model": os.environ.get("MODEL", "gpt-4o-mini")}
    if fallback := os.environ.get("FALLBACK_MODEL"):
        options["fallback_models"] = [{"model": fallback}]
    async with make_agent(options) as agent:
        await run(agent)


if __name__ == "__main__":
    asyncio.run(online() if os.environ.get("OPENAI_API_KEY") else offline())
