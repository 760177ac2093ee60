"""A worker that finishes the chats of a dead worker: leases, recover() and idempotent tools.

Worker A takes a chat as far as its tool calls and dies there (here: it simply stops stepping,
as a SIGKILLed process would). Worker B, sharing the store, runs ``recover()``: the store hands
it the chat, whose lease nobody renews any more, and B finishes the run. B runs the tool call
A had not finished as attempt 2 (A may or may not have booked: nobody can know), with the same
call id, and the tool deduplicates on that id, so the booking happens at most once.

Runs offline against the scripted server; with ``OPENAI_API_KEY`` set (and optionally
``OPENAI_BASE_URL`` / ``OPENAI_MODEL``) both workers use that real model.

    python examples/recovering_worker.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from agentfsm import AsyncOpenAISimpleAgent, Phase, ToolContext, tool
from agentfsm.store import SQLiteStore

BOOKED: dict[str, str] = {}  # in production: a table with a unique key on the call id


@tool
async def book_table(restaurant: str, people: int, context: ToolContext) -> str:
    """Books a table.

    Args:
        restaurant: where.
        people: how many.
    """
    key = f"{context.chat_id}:{context.call_id}"
    if key in BOOKED:  # ran before the crash: do not book twice
        return BOOKED[key]
    BOOKED[key] = f"table for {people} at {restaurant}, attempt {context.attempt}"
    return BOOKED[key]


async def run(options: dict[str, Any], database: Path) -> None:
    # lease_ttl: how long a silent worker keeps its chats (short here, to see recovery)
    async with SQLiteStore(database, lease_ttl=0.2) as store:
        worker_a = AsyncOpenAISimpleAgent(tool_registry=[book_table], store=store, **options)
        conversation = worker_a.start("Book Chez Anna for 4 tonight", chat_id="dinner")
        await store.save(conversation, None)
        while conversation.phase is not Phase.EXECUTING_TOOLS:
            conversation = await worker_a.step(conversation)
        print(f"worker A died in {conversation.phase.value}, version {conversation.version}")

        worker_b = AsyncOpenAISimpleAgent(tool_registry=[book_table], store=store, **options)
        await asyncio.sleep(0.3)  # the dead worker's lease runs out
        for finished in await worker_b.recover():
            print(f"worker B finished {finished.chat_id}: {finished.messages[-1].content}")
        print(f"bookings: {sorted(BOOKED.values())}")
        await worker_a.aclose()
        await worker_b.aclose()


async def offline() -> None:
    from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

    script = [
        tool_calls(call("book_table", {"restaurant": "Chez Anna", "people": 4})),
        text("Booked: a table for 4 at Chez Anna tonight."),
    ]
    async with ScriptedOpenAIServer(script) as server:
        with tempfile.TemporaryDirectory() as folder:
            options = {"model": "scripted-model", "api_key": "offline"}
            await run({**options, "base_url": server.base_url}, Path(folder) / "chats.db")


async def online() -> None:
    with tempfile.TemporaryDirectory() as folder:
        options = {"model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini")}
        await run(options, Path(folder) / "chats.db")


if __name__ == "__main__":
    asyncio.run(online() if os.environ.get("OPENAI_API_KEY") else offline())
