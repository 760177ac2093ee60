"""Cost of persisting conversations: serialization, the response, trimming after a load, stores.

Four measurements, each printed as a table (``--only`` picks some):

- ``serde``: ``dumps`` + ``loads`` of a conversation of 10, 100, 1,000 and 10,000 messages
  (~300-character messages in turns of question, tool call, tool result, answer) as a ratio
  to ``json.dumps`` + ``json.loads`` of the same history as plain OpenAI dicts, in the same
  run. ``loads(dict)`` is what a store assembling a conversation from rows calls;
  "counted": the messages carry their token counts (as a trimming agent stores them).
- ``response``: ``AgentResponse.from_conversation`` of a finished 10,000-message run, and the
  same with its ``history`` views read.
- ``trim``: the first ``fit()`` after a load (fresh message objects, a fresh accurate counter)
  of a conversation of 13 and 1,000 messages; the chat was counted before it was saved, as a
  run does. Against the same fit on messages that were never counted.
- ``stores``: one transition as a web worker does it: ``load`` the chat, advance it
  (version + 1), ``save`` it over the loaded version, for a 100-message conversation (25 turns
  of question, tool call, ~300-token tool result, answer). Median and p95 in µs of the load,
  the save and both, for the memory store (``loads`` + ``dumps`` alone), SQLite (WAL,
  synchronous NORMAL, on local disk) and, when their servers are installed, private Redis (no
  persistence) and PostgreSQL (fsync on) instances on loopback.
- ``run``: one new one-tool run (``send_message`` on a stored chat of 1,000 and 10,000
  messages, ~300 characters each, with their request records and transition log: the load,
  two requests to the scripted server, the tool, every checkpoint) against the raw openai SDK
  loop of ``benchmarks/overhead.py`` making the same two requests with the same history, in
  the same process, interleaved. CPU ms of this process (``process_time``, every thread: the
  SQLite store's work counts as ours); the scripted server runs in another process and is not
  counted. Printed: the run's CPU, the raw loop's, agentfsm's own (the run's less the raw
  loop's, median over pairs of runs: the SDK calls inside the run cost what the raw loop's
  do) and its ratio to the raw loop's. Redis and PostgreSQL (private servers, PostgreSQL
  fsync off) run in their own processes: their CPU is not in the ratio but printed apart
  (Redis: its ``INFO cpu``; PostgreSQL: ``/proc`` of its client backends). Without and with
  trimming (``max_context_length=128,000``, the stored messages carrying their token counts
  as a trimming agent saves them; the raw loop then sends the same window of old messages).
  ``--profile`` prints cProfile's top functions of three more runs at the largest size.

    python benchmarks/store.py [--only serde,response,trim,stores,run] [--transitions 500]
                               [--messages 100] [--run-sizes 1000,10000] [--runs 10]
                               [--run-stores sqlite,redis,postgres] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.store_servers
_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken-cache"
if _CACHE.is_dir():  # machines here cannot download tiktoken's encodings
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_CACHE))

from agentfsm import (  # noqa: E402
    AgentResponse,
    AssistantMessage,
    Conversation,
    Phase,
    StopReason,
    ToolCall,
    ToolMessage,
    UserMessage,
    dumps,
    loads,
)
from agentfsm.context import ContextSettings  # noqa: E402
from agentfsm.context.counting import AccurateCounter  # noqa: E402
from agentfsm.context.trimming import fit  # noqa: E402
from agentfsm.messages import Message, messages_to_openai  # noqa: E402
from agentfsm.store import (  # noqa: E402
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    Store,
)
from tests.store_servers import postgres_server, redis_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for overhead and checkpoint

WORDS = "the river stone cloud maple orbit quartz tiger report figure table value"
VOCABULARY = WORDS.split()
SIZES = (10, 100, 1_000, 10_000)
SYSTEM = "You are a research assistant. Answer briefly and cite the documents you used."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the documents.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to find."}},
            },
        },
    }
]


def prose(n: int, seed: int) -> str:
    """n words of varied text."""
    return " ".join(VOCABULARY[(seed * 7 + i * 5 + i // 3) % len(VOCABULARY)] for i in range(n))


def conversation(messages: int, result_words: int = 300) -> Conversation:
    """A finished conversation of ``messages`` messages, in turns of four (question, call,
    result of ``result_words`` words, answer); its last run is its last turn."""
    history: list[Message] = []
    for t in range(messages // 4 + 1):
        call = ToolCall(f"call_{t}", "search", f'{{"query": "topic {t}"}}')
        history += [
            UserMessage(f"Question {t}: {prose(30, t)}"),
            AssistantMessage(tool_calls=(call,), model="gpt-4o-mini", finish_reason="tool_calls"),
            ToolMessage(call.id, f"#{t} {prose(result_words, t + 1)}", tool_name="search"),
            AssistantMessage(
                f"Answer {t}: {prose(60, t + 2)}", model="gpt-4o-mini", finish_reason="stop"
            ),
        ]
    history = history[:messages]
    run_start = max(i for i, m in enumerate(history) if isinstance(m, UserMessage))
    return Conversation(
        chat_id="bench",
        user_id="u1",
        phase=Phase.DONE,
        stop_reason=StopReason.RESPONSE,
        messages=tuple(history),
        run_start=run_start,
    )


def chatty(messages: int) -> Conversation:
    """~300-character messages on average: question ~190, call ~30, result ~540, answer ~390."""
    return conversation(messages, result_words=90)


def best(action: Callable[[], object], budget: float = 1.0, least: int = 3) -> float:
    """Median seconds of ``action``, run at least ``least`` times and for about ``budget`` s."""
    runs: list[float] = []
    began = time.perf_counter()
    gc.collect()
    while len(runs) < least or (time.perf_counter() - began < budget and len(runs) < 200):
        start = time.perf_counter()
        action()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


# --------------------------------------------------------------------------- serde


def serde() -> None:
    """dumps + loads against json.dumps + json.loads of the plain OpenAI dicts."""
    print("serialization: dumps + loads of a conversation vs json.dumps + json.loads of its")
    print("history as plain OpenAI dicts (median ms; ratio = ours / json)")
    header = (
        "messages", "KiB", "json", "dumps", "loads(str)", "dumps+loads", "ratio",
        "loads(dict)", "ratio (dict)", "ratio (counted)",
    )  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for size in SIZES:
        conv = chatty(size)
        plain = messages_to_openai(conv.messages)
        budget = 2.0 if size >= 1_000 else 0.5
        raw = best(lambda: json.loads(json.dumps(plain)), budget)  # noqa: B023
        payload = dumps(conv)
        parsed = json.loads(payload)
        assert loads(payload) == conv
        # a freshly loaded conversation each time: no cache of this very object helps dumps
        fresh = [loads(payload) for _ in range(3)]
        dump = statistics.median(best(lambda c=c: dumps(c), budget / 3, 1) for c in fresh)
        load = best(lambda: loads(payload), budget)  # noqa: B023
        load_dict = best(lambda: loads(parsed), budget)  # noqa: B023
        counted = chatty(size)  # as a trimming agent saves it: its token counts stored too
        counter = AccurateCounter()
        for message in counted.messages:
            counter.count_message(message)
        both = best(lambda: loads(dumps(counted)), budget)  # noqa: B023
        cells = (
            f"{size:,}",
            f"{len(payload.encode()) / 1024:,.0f}",
            f"{raw * 1e3:.3f}",
            f"{dump * 1e3:.3f}",
            f"{load * 1e3:.3f}",
            f"{(dump + load) * 1e3:.3f}",
            f"{(dump + load) / raw:.1f}x",
            f"{load_dict * 1e3:.3f}",
            f"{(dump + load_dict) / raw:.1f}x",
            f"{both / raw:.1f}x",
        )
        print("| " + " | ".join(cells) + " |")
    print()


# --------------------------------------------------------------------------- response


def response() -> None:
    """AgentResponse.from_conversation of a finished 10,000-message conversation."""
    conv = chatty(10_000)
    build = best(lambda: AgentResponse.from_conversation(conv), 2.0)

    def read() -> None:
        answer = AgentResponse.from_conversation(conv)
        assert len(answer.history) == 10_000
        assert answer.history_without_function_calls

    both = best(read, 2.0)
    wire = best(lambda: messages_to_openai(conv.messages), 2.0)
    print("AgentResponse.from_conversation, 10,000 messages (median ms)")
    print("| from_conversation | + history views read | messages_to_openai alone |")
    print("|---:|---:|---:|")
    print(f"| {build * 1e3:.3f} | {both * 1e3:.3f} | {wire * 1e3:.3f} |")
    print()


# --------------------------------------------------------------------------- trim


def trim() -> None:
    """The first fit() after a load, with a fresh accurate counter."""
    settings = ContextSettings(max_context_length=128_000)
    print("first trim after a load: fit() of a loaded conversation with a fresh accurate counter")
    print("(max_context_length=128,000: every message is sent; median ms)")
    print("| messages | after load (saved counted) | never counted | ratio to 13 |")
    print("|---:|---:|---:|---:|")
    small = None
    for size in (13, 1_000):
        conv = chatty(size)

        def first_fit(conv: Conversation) -> None:
            fit(
                conv.messages,
                newest_user=conv.run_start,
                system_prompt=SYSTEM,
                summary=None,
                tools=TOOLS,
                settings=settings,
                counter=AccurateCounter(),
            )

        first_fit(conv)  # the run that wrote it counted its messages
        payload = dumps(conv)
        runs, cold = [], []
        for _ in range(15 if size < 1_000 else 7):
            loaded = loads(payload)
            began = time.perf_counter()
            first_fit(loaded)
            runs.append(time.perf_counter() - began)
            copies = attrs.evolve(conv, messages=tuple(attrs.evolve(m) for m in conv.messages))
            began = time.perf_counter()
            first_fit(copies)
            cold.append(time.perf_counter() - began)
        after, never = statistics.median(runs), statistics.median(cold)
        small = small or after
        print(f"| {size:,} | {after * 1e3:.3f} | {never * 1e3:.3f} | {after / small:.1f}x |")
    print()


# --------------------------------------------------------------------------- stores


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


async def stores(transitions: int, messages: int) -> None:
    """Load + save latency per store."""
    start = conversation(messages)
    print(
        f"stores: {messages} messages, {len(dumps(start).encode()) / 1024:.0f} KiB of JSON; "
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
        by_name: dict[str, Store | None] = {
            "memory": MemoryStore(),
            "sqlite": SQLiteStore(Path(tmp, "bench.db")),
            "redis": None if redis_url is None else RedisStore(redis_url),
            "postgres": None if postgres_dsn is None else PostgresStore(postgres_dsn),
        }
        for name, store in by_name.items():
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
    print()


# --------------------------------------------------------------------------- run


async def raw_run(client: Any, start: list[dict[str, Any]]) -> str:
    """``overhead.raw_conversation``'s loop, starting from ``start`` (system prompt, stored
    history, the new question) instead of the system prompt and question alone."""
    from overhead import raw_loop

    return await raw_loop(client, list(start))


def _proc_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes, from ``/proc``."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def _server_cpu(kind: str, target: str | None) -> float:
    """CPU seconds the store's server has used so far (0 for SQLite: it runs in here)."""
    if kind == "redis" and target is not None:
        import redis.asyncio as aioredis

        admin = aioredis.Redis.from_url(target)
        try:
            cpu = await admin.info("cpu")
        finally:
            await admin.aclose()
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    if kind == "postgres" and target is not None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(target, autocommit=True) as admin:
            rows = await (
                await admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()"
                )
            ).fetchall()
        return _proc_cpu([int(r[0]) for r in rows])
    return 0.0


async def profile_runs(agent: Any, chat: str, title: str, runs: int = 3) -> None:
    """cProfile's top functions of ``runs`` more runs of the agent on ``chat``: agentfsm's
    own by internal time, then the whole by cumulative time.

    cProfile sees one thread; for these runs a long chat is decoded and encoded on the loop
    thread (the stores' threshold for going off the loop is raised) so that it shows.
    """
    import cProfile
    import pstats

    from agentfsm.store import _layout

    threshold = _layout.OFF_LOOP_ITEMS
    _layout.OFF_LOOP_ITEMS = 1 << 60
    profiler = cProfile.Profile()
    try:
        for _ in range(runs):
            gc.collect()
            profiler.enable()
            await agent.send_message("what is the weather in paris", user_id="u1", chat_id=chat)
            profiler.disable()
    finally:
        _layout.OFF_LOOP_ITEMS = threshold
    print(f"profile: {title}, {runs} runs (cProfile inflates every figure)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats("/agentfsm/", 15)
    stats.sort_stats("cumulative").print_stats("/agentfsm/", 30)


async def one_run(
    kind: str, target: str | None, tmp: str, base_url: str, size: int, trims: bool, runs: int,
    profile: bool,
) -> dict[str, float]:  # fmt: skip
    """Median CPU ms of the agent's run and of the raw loop, and the store server's CPU ms
    per agent run, for one store, history size and trimming setting."""
    import openai
    from checkpoint import history
    from overhead import QUESTION, get_weather

    from agentfsm import AsyncOpenAISimpleAgent

    store: Store
    if kind == "sqlite":
        store = SQLiteStore(Path(tmp, f"run-{size}-{trims}.db"))
    elif kind == "redis":
        assert target is not None
        store = RedisStore(target, prefix=f"run-{size}-{trims}:")
    else:
        assert target is not None
        store = PostgresStore(target, table=f"run_{size}_{int(trims)}")
    client = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0)
    raw_client = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0)
    agent = AsyncOpenAISimpleAgent(
        model="scripted-model",
        client=client,
        agent_name="bench",
        system_prompt=SYSTEM,
        tool_registry=[get_weather],
        store=store,
        max_context_length=128_000 if trims else None,
    )
    try:
        async with store:
            stored = history(size)
            if trims:  # as a trimming agent saves them: every message with its count
                counter = agent.wiring.counter
                for message in stored.messages:
                    counter.count_message(message)
            await store.save(stored, None)
            chat = stored.chat_id
            plain = messages_to_openai(stored.messages)
            sent = plain
            for _ in range(2):  # warm connections, caches, the tokenizer
                answer = await agent.send_message(QUESTION, user_id="u1", chat_id=chat)
            window = answer.conversation.context
            if trims and window is not None:  # the raw loop sends the same old messages
                sent = [plain[i] for i in window.selected if i < len(plain)]
            start = [{"role": "system", "content": SYSTEM}, *sent,
                     {"role": "user", "content": QUESTION}]  # fmt: skip
            await raw_run(raw_client, start)
            fsm: list[float] = []
            raw: list[float] = []
            server = 0.0
            for _ in range(runs):  # interleaved, so drift in the machine hits both alike
                gc.collect()
                before = await _server_cpu(kind, target)
                began = time.process_time()
                answer = await agent.send_message(QUESTION, user_id="u1", chat_id=chat)
                fsm.append(time.process_time() - began)
                server += await _server_cpu(kind, target) - before
                assert "sunny" in answer.output.lower(), answer.output
                gc.collect()
                began = time.process_time()
                output = await raw_run(raw_client, start)
                raw.append(time.process_time() - began)
                assert "sunny" in output.lower(), output
            if profile:
                await profile_runs(agent, chat, f"{kind}, {size:,} messages, trimming {trims}")
            await store.delete(chat)
    finally:
        await agent.aclose()
        await client.close()
        await raw_client.close()
    return {
        "fsm": statistics.median(fsm) * 1e3,
        "raw": statistics.median(raw) * 1e3,
        # each run against the raw loop next to it: the difference of two large figures is
        # noisy, the median of the pairs' differences less so than the medians' difference
        "own": statistics.median(f - r for f, r in zip(fsm, raw, strict=True)) * 1e3,
        "server": server / runs * 1e3,
        "window": len(sent),
    }


async def run_table(sizes: list[int], kinds: list[str], runs: int, profile: bool) -> None:
    """One new one-tool run on a stored chat, per store, size and trimming setting."""
    from scale import scripted_servers

    print(
        f"one new one-tool run on a stored chat vs the raw SDK's two calls; median CPU ms of "
        f"{runs} runs of this process. sent: old messages in the requests; run: the agent's "
        "send_message; raw: the raw SDK loop's two calls; agentfsm: run - raw (median over "
        "pairs of runs), agentfsm's own CPU (the SDK calls inside the run cost what raw "
        "does); ratio = agentfsm / raw; "
        "server: the store server's own CPU per run, not in the ratio"
    )
    header = ("messages", "store", "trimming", "sent", "run ms", "raw ms", "agentfsm ms",
              "ratio", "server ms")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if i != 1 else "---" for i in range(len(header))) + "|")
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server() as redis_url,
        postgres_server() as postgres_dsn,
        scripted_servers(1) as urls,
    ):
        targets = {"sqlite": None, "redis": redis_url, "postgres": postgres_dsn}
        for size in sizes:
            for kind in kinds:
                if kind != "sqlite" and targets[kind] is None:
                    print(f"| {size:,} | {kind} | (server not installed) |")
                    continue
                for trims in (False, True):
                    got = await one_run(
                        kind, targets[kind], tmp, urls[0], size, trims,
                        runs if size >= 10_000 else 3 * runs,
                        profile and size == max(sizes),
                    )  # fmt: skip
                    cells = (
                        f"{size:,}", kind, "yes" if trims else "no", f"{got['window']:,}",
                        f"{got['fsm']:.1f}", f"{got['raw']:.1f}",
                        f"{got['own']:.1f}",
                        f"{got['own'] / got['raw']:.2f}x",
                        "-" if kind == "sqlite" else f"{got['server']:.1f}",
                    )  # fmt: skip
                    print("| " + " | ".join(cells) + " |", flush=True)
    print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="serde,response,trim,stores,run")
    parser.add_argument("--transitions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--run-sizes", default="1000,10000")
    parser.add_argument("--run-stores", default="sqlite,redis,postgres")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "serde" in only:
        serde()
    if "response" in only:
        response()
    if "trim" in only:
        trim()
    if "stores" in only:
        asyncio.run(stores(args.transitions, args.messages))
    if "run" in only:
        sizes = [int(n) for n in args.run_sizes.split(",")]
        kinds = args.run_stores.split(",")
        asyncio.run(run_table(sizes, kinds, args.runs, args.profile))
