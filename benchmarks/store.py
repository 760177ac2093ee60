"""Latency of persisting one transition, per store, for a 100-message conversation.

One transition as a web worker does it: ``load`` the chat, advance it (version + 1), ``save``
it over the loaded version. The conversation holds 100 messages (25 turns of question, tool
call, ~300-token tool result, answer). Prints median and p95 in µs of the load, the save and
both, for the memory store (which is ``loads`` + ``dumps`` alone), SQLite (WAL, synchronous
NORMAL, on local disk) and, when their servers are installed, private Redis (no persistence)
and PostgreSQL (fsync on) instances on loopback.

    python benchmarks/store.py [--transitions 500] [--messages 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.store_servers

from agentfsm import (
    AssistantMessage,
    Conversation,
    Phase,
    ToolCall,
    ToolMessage,
    UserMessage,
    dumps,
)
from agentfsm.messages import Message
from agentfsm.store import (
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    Store,
)
from tests.store_servers import postgres_server, redis_server

WORDS = "the river stone cloud maple orbit quartz tiger report figure table value"
VOCABULARY = WORDS.split()


def prose(n: int, seed: int) -> str:
    """n words of varied text."""
    return " ".join(VOCABULARY[(seed * 7 + i * 5 + i // 3) % len(VOCABULARY)] for i in range(n))


def conversation(messages: int) -> Conversation:
    """A finished conversation of ``messages`` messages, in turns of four."""
    history: list[Message] = []
    for t in range(messages // 4 + 1):
        call = ToolCall(f"call_{t}", "search", f'{{"query": "topic {t}"}}')
        history += [
            UserMessage(f"Question {t}: {prose(30, t)}"),
            AssistantMessage(tool_calls=(call,), model="gpt-4o-mini"),
            ToolMessage(call.id, prose(300, t + 1), tool_name="search"),
            AssistantMessage(f"Answer {t}: {prose(60, t + 2)}", model="gpt-4o-mini"),
        ]
    return Conversation(
        chat_id="bench", user_id="u1", phase=Phase.DONE, messages=tuple(history[:messages])
    )


async def measure(store: Store, start: Conversation, transitions: int) -> dict[str, list[float]]:
    """µs of each load, save and load + save over ``transitions`` transitions."""
    await store.save(start, None)
    times: dict[str, list[float]] = {"load": [], "save": [], "both": []}
    for n in range(transitions + 20):  # the first 20 warm caches and connections
        began = time.perf_counter()
        current = await store.load(start.chat_id)
        loaded = time.perf_counter()
        assert current is not None
        await store.save(attrs.evolve(current, version=current.version + 1), current.version)
        saved = time.perf_counter()
        if n >= 20:
            times["load"].append((loaded - began) * 1e6)
            times["save"].append((saved - loaded) * 1e6)
            times["both"].append((saved - began) * 1e6)
    return times


def p95(values: list[float]) -> float:
    """The 95th percentile."""
    return statistics.quantiles(values, n=20)[-1]


async def main(transitions: int, messages: int) -> None:
    start = conversation(messages)
    print(
        f"{messages} messages, {len(dumps(start).encode()) / 1024:.0f} KiB of JSON; "
        f"{transitions} transitions per store; µs"
    )
    header = ("store", "load p50", "load p95", "save p50", "save p95", "both p50", "both p95")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server() as redis_url,
        postgres_server(durable=True) as postgres_dsn,
    ):
        stores: dict[str, Store | None] = {
            "memory": MemoryStore(),
            "sqlite": SQLiteStore(Path(tmp, "bench.db")),
            "redis": None if redis_url is None else RedisStore(redis_url),
            "postgres": None if postgres_dsn is None else PostgresStore(postgres_dsn),
        }
        for name, store in stores.items():
            if store is None:
                print(f"| {name} | (server not installed) |")
                continue
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(store)
                times = await measure(store, start, transitions)
            cells = [
                f"{f(times[k]):,.0f}"
                for k in ("load", "save", "both")
                for f in (statistics.median, p95)
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.transitions, args.messages))
