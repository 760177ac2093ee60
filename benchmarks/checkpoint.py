"""Checkpoint cost: one save after one transition, and one load, by the size of the history.

A worker that runs a chat saves it after every transition. This measures that save for a
chat of 10, 100, 1,000 and 10,000 messages (~300 characters each, in turns of question,
tool call, tool result and answer, with their request records and transition log), for
SQLite (WAL, on local disk), Redis and PostgreSQL (private servers on loopback, PostgreSQL
with fsync off, so the figures are agentfsm's and the server's work, not the disk's).

Each timed save is one transition of a run as the machine makes it, cycling through
``done -> trimming_context`` (a user message), ``trimming_context -> awaiting_model`` and
``awaiting_model -> done`` (an answer and its request record), each over the version saved
before. Prints the median ms of the save and of a ``load`` of the whole chat, and the ratio
of the largest history's save to the smallest's.

    python benchmarks/checkpoint.py [--sizes 10,100,1000,10000] [--saves 30]
                                    [--stores sqlite,redis,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.store_servers

from agentfsm import (
    AssistantMessage,
    Conversation,
    Phase,
    RequestRecord,
    StopReason,
    ToolCall,
    ToolMessage,
    TransitionRecord,
    Usage,
    UserMessage,
)
from agentfsm.messages import Message
from agentfsm.store import PostgresStore, RedisStore, SQLiteStore, Store
from tests.store_servers import postgres_server, redis_server

VOCABULARY = ["the", "river", "stone", "cloud", "maple", "orbit", "quartz", "tiger", "report",
              "figure", "table", "value"]  # fmt: skip
USAGE = Usage(prompt_tokens=900, completion_tokens=60, total_tokens=960, requests=1)


def prose(n: int, seed: int) -> str:
    """n words of varied text."""
    return " ".join(VOCABULARY[(seed * 7 + i * 5 + i // 3) % len(VOCABULARY)] for i in range(n))


def record(at: float) -> RequestRecord:
    """One answered request."""
    return RequestRecord(model="gpt-4o-mini", usage=USAGE, cost=Decimal("0.0002"), at=at)


def history(size: int) -> Conversation:
    """A finished chat of ``size`` (an even number) messages, ~300 characters each on
    average: turns of question, tool call, tool result and answer (a last turn of question
    and answer if ``size`` is not a multiple of four), with a request record per assistant
    message and the transition log the machine would have written."""
    if size % 2:
        raise ValueError("size must be even")
    messages: list[Message] = []
    log: list[TransitionRecord] = []
    requests: list[RequestRecord] = []
    phase, at = Phase.TRIMMING_CONTEXT, 1_700_000_000.0

    def move(to: Phase, reason: str) -> None:
        nonlocal phase, at
        at += 1
        log.append(TransitionRecord(phase, to, reason, 1, at))
        phase = to

    for t in range((size + 3) // 4):
        if t:
            move(Phase.TRIMMING_CONTEXT, "new_message")
        messages.append(UserMessage(f"Question {t}: {prose(30, t)}"))
        if size - len(messages) >= 3:
            call = ToolCall(f"call_{t}", "search", f'{{"query": "topic {t}"}}')
            move(Phase.AWAITING_MODEL, "context_ready")
            requests.append(record(at))
            messages.append(AssistantMessage(tool_calls=(call,), model="gpt-4o-mini"))
            move(Phase.EXECUTING_TOOLS, "tool_calls_requested")
            messages.append(ToolMessage(call.id, f"#{t} {prose(90, t + 1)}", tool_name="search"))
            move(Phase.TRIMMING_CONTEXT, "tools_finished")
        move(Phase.AWAITING_MODEL, "context_ready")
        requests.append(record(at))
        messages.append(AssistantMessage(f"Answer {t}: {prose(60, t + 2)}", model="gpt-4o-mini"))
        move(Phase.DONE, "final_answer")
    assert len(messages) == size
    run_start = max(i for i, m in enumerate(messages) if isinstance(m, UserMessage))
    return Conversation(
        chat_id=f"bench-{uuid.uuid4().hex[:8]}",
        user_id="u1",
        agent_name="bench",
        phase=phase,
        stop_reason=StopReason.RESPONSE,
        messages=tuple(messages),
        run_start=run_start,
        requests=tuple(requests),
        run_request_start=len(requests) - 1,
        transitions=tuple(log),
        version=len(log),
    )


def one_transition(conv: Conversation, n: int) -> Conversation:
    """``conv`` one transition on, as the machine would make it (a cycle of three)."""
    at = conv.transitions[-1].at + 1 if conv.transitions else 1.0
    version = conv.version + 1

    def moved(to: Phase, reason: str, **changes: object) -> Conversation:
        log = (*conv.transitions, TransitionRecord(conv.phase, to, reason, conv.turn, at))
        return attrs.evolve(conv, phase=to, transitions=log, version=version, **changes)  # type: ignore[arg-type]

    if conv.phase.terminal:
        return moved(
            Phase.TRIMMING_CONTEXT,
            "new_message",
            messages=(*conv.messages, UserMessage(f"Question again {n}: {prose(30, n)}")),
            run_start=len(conv.messages),
            run_request_start=len(conv.requests),
            stop_reason=None,
            turn=0,
        )
    if conv.phase is Phase.TRIMMING_CONTEXT:
        return moved(Phase.AWAITING_MODEL, "context_ready")
    answer = AssistantMessage(f"Answer again {n}: {prose(60, n)}", model="gpt-4o-mini")
    return moved(
        Phase.DONE,
        "final_answer",
        messages=(*conv.messages, answer),
        requests=(*conv.requests, record(at)),
        stop_reason=StopReason.RESPONSE,
        turn=conv.turn + 1,
    )


async def measure(store: Store, size: int, saves: int, loads: int) -> tuple[float, float]:
    """Median ms of one save after one transition, and of one load, at ``size`` messages."""
    conv = history(size)
    await store.save(conv, None)
    loaded = await store.load(conv.chat_id)
    assert loaded == conv, "the store did not give back what it was given"
    save_ms: list[float] = []
    for n in range(saves + 3):  # the first three warm caches and connections
        new = one_transition(conv, n)
        gc.collect()
        began = time.perf_counter()
        await store.save(new, conv.version)
        if n >= 3:
            save_ms.append((time.perf_counter() - began) * 1000)
        conv = new
    load_ms: list[float] = []
    for n in range(loads + 1):
        gc.collect()
        began = time.perf_counter()
        again = await store.load(conv.chat_id)
        if n:
            load_ms.append((time.perf_counter() - began) * 1000)
    assert again == conv, "the store did not give back what it was given"
    await store.delete(conv.chat_id)
    return statistics.median(save_ms), statistics.median(load_ms)


@contextlib.contextmanager
def servers(kinds: list[str]) -> Iterator[dict[str, str | None]]:
    """The Redis and PostgreSQL servers the chosen stores need."""
    with contextlib.ExitStack() as stack:
        found: dict[str, str | None] = {}
        if "redis" in kinds:
            found["redis"] = stack.enter_context(redis_server())
        if "postgres" in kinds:
            found["postgres"] = stack.enter_context(postgres_server())
        yield found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--saves", type=int, default=30)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--stores", default="sqlite,redis,postgres")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    kinds = options.stores.split(",")
    runs = f"{options.saves} saves, {options.loads} loads"
    print(f"python {sys.version.split()[0]}; median ms; {runs}")
    with servers(kinds) as found, tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            rows: list[tuple[int, float, float]] = []
            for size in sizes:
                store: Store
                if kind == "sqlite":
                    store = SQLiteStore(Path(tmp, f"{uuid.uuid4().hex}.db"))
                elif kind == "redis":
                    if found["redis"] is None:
                        break
                    store = RedisStore(found["redis"], prefix=f"bench-{uuid.uuid4().hex}:")
                else:
                    if found["postgres"] is None:
                        break
                    store = PostgresStore(found["postgres"], table=f"bench_{uuid.uuid4().hex}")
                saves = options.saves if size < 10_000 else max(5, options.saves // 3)
                async with store:
                    save, load = await measure(store, size, saves, options.loads)
                rows.append((size, save, load))
            if not rows:
                print(f"\n{kind}: server not installed, skipped")
                continue
            print(f"\n{kind:8}  {'messages':>8}  {'save':>9}  {'load':>9}")
            for size, save, load in rows:
                print(f"{'':8}  {size:>8,}  {save:>9.3f}  {load:>9.3f}")
            first, last = rows[0], rows[-1]
            print(f"{'':8}  save {last[0]:,} / {first[0]:,} messages: {last[1] / first[1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
