"""Agents as tools: a travel planner that asks a researcher sub-agent, which has its own tool.

The researcher's run is a child chat (``<chat>/<call id>``) of the planner's: its cost counts
in the planner's totals and budget, its transitions reach the planner's hooks (with
``parent_chat_id`` and ``depth``), it is saved in the same store, and the diagram of the
planner's run draws it nested.

Runs offline against two scripted servers (one per agent); with ``OPENAI_API_KEY`` set (and
optionally ``OPENAI_BASE_URL`` / ``OPENAI_MODEL``) both agents use that real model.

    python examples/agents_as_tools.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agentfsm import AsyncOpenAISimpleAgent, TransitionEvent, load_children, tool
from agentfsm.store import SQLiteStore
from agentfsm.viz import run_mermaid

PRICES = {"input_per_million": 0.15, "output_per_million": 0.60}


@tool
def city_facts(city: str) -> str:
    """Facts about a city.

    Args:
        city: the city.
    """
    return f"{city}: 700,000 people, mild summers, museums by the fjord."


def show(event: TransitionEvent) -> None:
    indent = "    " * event.depth
    print(f"{indent}{event.chat_id}: {event.from_phase.value} -> {event.to_phase.value}")


async def run(planner_options: dict[str, Any], researcher_options: dict[str, Any]) -> None:
    store = SQLiteStore(":memory:")
    researcher = AsyncOpenAISimpleAgent(
        agent_name="researcher",
        agent_description="Finds facts about a city. Give it one question.",
        tool_registry=[city_facts],
        store=store,
        pricing=PRICES,
        **researcher_options,
    )
    planner = AsyncOpenAISimpleAgent(
        agent_name="planner",
        system_prompt="You plan trips. Ask the researcher for facts before answering.",
        tool_registry=[researcher.as_tool()],
        store=store,
        pricing=PRICES,
        budget_control={"max_budget_for_this_chat": "0.05"},
        hooks={"on_transition": show},
        **planner_options,
    )
    async with store, researcher, planner:
        response = await planner.send_message(
            "Is Oslo good for a summer weekend?", chat_id="trip-1", user_id="ada"
        )
        print(f"\nplanner: {response.output}")
        print(f"{response.usage.requests} requests in all, ${response.cost:.6f}")
        children = await load_children(store, response.conversation)
        print(f"sub-agent chats: {sorted(children)}\n")
        print(run_mermaid(response.conversation, children))


async def offline() -> None:
    from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

    planner_script = [
        tool_calls(call("researcher", {"input": "What is Oslo like in summer?"}, id="ask_1")),
        text("Yes: Oslo in summer is mild, with museums by the fjord."),
    ]
    researcher_script = [
        tool_calls(call("city_facts", {"city": "Oslo"})),
        text("Mild summers, 700,000 people, museums by the fjord."),
    ]
    async with (
        ScriptedOpenAIServer(planner_script) as planner_server,
        ScriptedOpenAIServer(researcher_script) as researcher_server,
    ):
        await run(
            {"model": "scripted-model", "api_key": "offline", "base_url": planner_server.base_url},
            {
                "model": "scripted-model",
                "api_key": "offline",
                "base_url": researcher_server.base_url,
            },
        )


async def online() -> None:
    model = {"model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini")}
    await run(model, model)


if __name__ == "__main__":
    asyncio.run(online() if os.environ.get("OPENAI_API_KEY") else offline())
