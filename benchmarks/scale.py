"""Many workers over Redis, and the memory an idle conversation takes in a process.

Two measurements, each printed as a table (``--only`` picks one):

- ``workers``: 1, 2 and 4 worker processes sharing one private redis-server, each running
  ``--chats`` one-tool conversations (user → tool call → tool result → answer), ``--concurrency``
  at a time. agentfsm: ``send_message`` with a fresh ``chat_id`` on an agent with
  ``store=RedisStore(url)`` (a checkpoint after every transition, under a lease). Raw: the
  hand-written openai SDK loop of ``benchmarks/overhead.py`` doing the same two requests and
  tool call, then saving the history as JSON with one plain ``SET``. Both run in the same
  worker processes, in alternating phases (all workers run the same side at once), best of
  ``--rounds``. Printed: chats per second (all workers together, first start to last end),
  CPU ms per chat in the workers (``process_time``), their ratio, and Redis' own CPU and
  commands per chat. Each worker talks to its own scripted server process (started once, not
  counted), as a fleet's workers talk to a provider that is not their bottleneck; on a small
  machine every process shares the same cores, so chats per second is bounded by the whole
  machine while CPU per chat is the figure that carries over to a bigger one.
- ``memory``: ``--idle`` finished one-tool conversations, each from a real run against the
  scripted server, held in this process (``response.conversation``), against the same
  messages as plain OpenAI dicts (``json.loads`` of their JSON). Size is the sum of
  ``sys.getsizeof`` over the distinct objects the conversations reach (objects shared by all
  of them, like interned names, count once), per conversation, with a breakdown by field.
  The agent trims with accurate token counts (``max_context_length`` set), so messages carry
  their counts and the conversation its context window, as in production. ``--trace`` adds
  a tracemalloc profile (by line) of what the conversations hold, from a smaller run.

    python benchmarks/scale.py [--only workers,memory] [--workers 1,2,4] [--chats 150]
                               [--concurrency 32] [--rounds 2] [--idle 10000] [--trace]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import enum
import gc
import json
import os
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for tests.store_servers
sys.path.insert(0, str(HERE))  # for overhead
_CACHE = HERE.parents[1] / "shared" / "tiktoken-cache"
if _CACHE.is_dir():  # machines here cannot download tiktoken's encodings
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_CACHE))

import openai  # noqa: E402
from overhead import QUESTION, SYSTEM, get_weather, raw_loop  # noqa: E402

from agentfsm import AsyncOpenAISimpleAgent, Conversation  # noqa: E402
from agentfsm.messages import messages_to_openai  # noqa: E402
from tests.store_servers import redis_server  # noqa: E402

MODES = ("raw", "fsm")


# --------------------------------------------------------------------------- a worker


async def raw_chat(client: openai.AsyncOpenAI, redis: Any, chat_id: str) -> str:
    """``overhead.raw_conversation``'s loop, keeping the messages, then one ``SET`` of them."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
    ]
    answer = await raw_loop(client, messages)
    await redis.set(f"raw:{chat_id}", json.dumps(messages))
    return answer


def _say(payload: dict[str, Any]) -> None:
    print("@@ " + json.dumps(payload), flush=True)


async def worker(redis_url: str, base_url: str, name: str, chats: int, concurrency: int) -> None:
    """Run phases as the parent asks on stdin (``raw <tag>``, ``fsm <tag>``, ``quit``),
    answering each with a JSON line: chats, CPU seconds, wall start and end."""
    import httpx2 as httpx  # the HTTP library of the installed openai SDK
    import redis.asyncio as aioredis

    from agentfsm.store import RedisStore

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)

    def client() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key="bench",
            base_url=base_url,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits),
        )

    raw_client, raw_redis = client(), aioredis.Redis.from_url(redis_url)
    store = RedisStore(redis_url)
    agent = AsyncOpenAISimpleAgent(
        model="scripted-model",
        client=client(),
        system_prompt=SYSTEM,
        tool_registry=[get_weather],
        store=store,
    )

    async def one(mode: str, chat_id: str) -> str:
        if mode == "raw":
            return await raw_chat(raw_client, raw_redis, chat_id)
        response = await agent.send_message(QUESTION, user_id="u1", chat_id=chat_id)
        return response.output

    async def phase(mode: str, tag: str, count: int) -> list[str]:
        ids = iter(range(count))

        async def lane() -> list[str]:
            return [await one(mode, f"{mode}:{tag}:{name}:{i}") for i in ids]

        lanes = await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
        return [answer for answers in lanes for answer in answers]

    for mode in MODES:  # warm up connections, caches and Redis' script cache
        await phase(mode, "warm", 2 * concurrency)
    _say({"ready": name})
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        mode, tag = line
        gc.collect()
        began, cpu = time.time(), time.process_time()
        answers = await phase(mode, tag, chats)
        cpu, ended = time.process_time() - cpu, time.time()
        ok = sum("sunny" in answer.lower() for answer in answers)
        _say({"chats": len(answers), "ok": ok, "cpu": cpu, "start": began, "end": ended})
    await agent.aclose()
    await store.aclose()
    await raw_client.close()
    await raw_redis.aclose()


# --------------------------------------------------------------------------- the parent


def _read(stream: IO[str]) -> dict[str, Any]:
    while True:
        line = stream.readline()
        if not line:
            raise RuntimeError("a worker exited early (run it alone to see why)")
        if line.startswith("@@ "):
            answer: dict[str, Any] = json.loads(line[3:])
            return answer


@contextlib.contextmanager
def scripted_servers(count: int) -> Iterator[list[str]]:
    """``count`` scripted servers, each in its own process; yields their base URLs."""
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "agentfsm.testing", "--scenario", "weather", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        urls = []
        for server in servers:
            assert server.stdout is not None
            line = server.stdout.readline().strip()
            if not line.startswith("READY "):
                raise RuntimeError(f"scripted server did not start: {line!r}")
            urls.append(line.split(" ", 1)[1])
        yield urls
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)


def _cpu_of(admin: Any) -> float:
    """CPU seconds (user + system) redis-server has used, as it reports them."""
    cpu = admin.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def run_workers(
    redis_url: str, urls: Sequence[str], workers: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Per side: best chats/s and CPU s per chat in the workers, Redis CPU s and commands
    per chat, over ``args.rounds`` rounds of ``workers`` processes."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    command = [sys.executable, __file__, "--worker", "--redis", redis_url]
    sizes = ["--chats", str(args.chats), "--concurrency", str(args.concurrency)]
    procs = [
        subprocess.Popen(
            [*command, "--base-url", urls[k], "--name", f"w{workers}.{k}", *sizes],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    best: dict[str, dict[str, float]] = {
        mode: {"rate": 0.0, "cpu": float("inf"), "redis_cpu": float("inf"), "commands": 0.0}
        for mode in MODES
    }
    try:
        for proc in procs:
            assert proc.stdout is not None
            _read(proc.stdout)
        for r in range(args.rounds):
            for mode in MODES:
                redis_cpu = _cpu_of(admin)
                commands = int(admin.info("stats")["total_commands_processed"])
                for proc in procs:
                    assert proc.stdin is not None
                    proc.stdin.write(f"{mode} {uuid.uuid4().hex[:8]}.{r}\n")
                    proc.stdin.flush()
                results = [_read(proc.stdout) for proc in procs if proc.stdout is not None]
                redis_cpu = _cpu_of(admin) - redis_cpu
                commands = int(admin.info("stats")["total_commands_processed"]) - commands
                chats = sum(x["chats"] for x in results)
                if sum(x["ok"] for x in results) != chats:
                    raise RuntimeError(f"{mode}: some chats did not end with the answer")
                wall = max(x["end"] for x in results) - min(x["start"] for x in results)
                mine = best[mode]
                mine["rate"] = max(mine["rate"], chats / wall)
                mine["cpu"] = min(mine["cpu"], sum(x["cpu"] for x in results) / chats)
                mine["redis_cpu"] = min(mine["redis_cpu"], redis_cpu / chats)
                mine["commands"] = commands / chats
    finally:
        for proc in procs:
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write("quit\n")
                    proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        admin.close()
    return best


def workers_table(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    with redis_server() as redis_url:
        if redis_url is None:
            print("workers: skipped (redis-server is not installed)")
            return
        with scripted_servers(max(counts)) as urls:
            rows = [(n, run_workers(redis_url, urls, n, args)) for n in counts]
    print(
        f"one-tool chats over Redis: {args.chats} per worker per round, {args.concurrency} at "
        f"a time per worker, best of {args.rounds} rounds; {os.cpu_count()} CPUs"
    )
    print("CPU ms per chat: the worker processes' own (process_time); Redis: redis-server's")
    header = (
        "workers", "chats/s fsm", "chats/s raw", "CPU ms fsm", "CPU ms raw", "ratio",
        "Redis ms fsm", "Redis ms raw", "cmds fsm", "cmds raw",
    )  # fmt: skip
    print("".join(f"{h:>13}" for h in header))
    for n, best in rows:
        fsm, raw = best["fsm"], best["raw"]
        print(
            f"{n:>13}{fsm['rate']:>13.0f}{raw['rate']:>13.0f}{fsm['cpu'] * 1e3:>13.2f}"
            f"{raw['cpu'] * 1e3:>13.2f}{fsm['cpu'] / raw['cpu']:>12.2f}x"
            f"{fsm['redis_cpu'] * 1e3:>13.3f}{raw['redis_cpu'] * 1e3:>13.3f}"
            f"{fsm['commands']:>13.1f}{raw['commands']:>13.1f}"
        )


# --------------------------------------------------------------------------- memory

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, enum.Enum)


def reached(roots: Sequence[Any], seen: set[int]) -> tuple[int, collections.Counter[str]]:
    """Bytes (``sys.getsizeof``) of the objects ``roots`` reach that are not in ``seen``
    (which they are added to), and the bytes by type: tracemalloc's figure for what they
    hold, less the allocator's rounding, without tracing the run that made them. Classes,
    modules, functions and enum members are not data of a conversation: not counted or
    followed."""
    total, by_type = 0, collections.Counter[str]()
    stack = list(roots)
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None or isinstance(item, (bool, *_SKIP)):
            continue
        seen.add(id(item))
        size = sys.getsizeof(item)
        total += size
        by_type[type(item).__name__] += size
        stack.extend(gc.get_referents(item))
        if isinstance(item, dict):  # the collector does not visit a dict's string keys
            stack.extend(item)
    return total, by_type


async def idle_chats(base_url: str, count: int) -> list[Conversation]:
    """``count`` finished one-tool conversations from real runs, asking about varied cities."""
    client = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0)
    agent = AsyncOpenAISimpleAgent(
        model="scripted-model",
        client=client,
        system_prompt=SYSTEM,
        tool_registry=[get_weather],
        max_context_length=128_000,
    )
    ids = iter(range(count))

    async def lane() -> list[Conversation]:
        done = []
        for i in ids:
            response = await agent.send_message(
                f"what is the weather in city{i}", user_id=f"user{i % 100}", chat_id=f"chat-{i}"
            )
            done.append(response.conversation)
        return done

    lanes = await asyncio.gather(*(lane() for _ in range(64)))
    await agent.aclose()
    await client.close()
    return [c for conversations in lanes for c in conversations]


def memory_table(args: argparse.Namespace) -> None:
    with scripted_servers(1) as urls:
        began = time.perf_counter()
        conversations = asyncio.run(idle_chats(urls[0], args.idle))
        took = time.perf_counter() - began
        if args.trace:
            trace(urls[0], min(args.idle, 1000))
    n = len(conversations)
    assert all(c.finished and len(c.messages) == 4 for c in conversations)
    gc.collect()
    ours, by_type = reached(conversations, {id(conversations)})
    plain_copies = [json.loads(json.dumps(messages_to_openai(c.messages))) for c in conversations]
    plain, _ = reached(plain_copies, {id(plain_copies)})
    by_field: dict[str, int] = {}
    seen: set[int] = {id(conversations)}
    for field in ("messages", "requests", "transitions", "context", "usage", "run_usage"):
        by_field[field] = reached([getattr(c, field) for c in conversations], seen)[0]
    by_field["the rest"] = reached(conversations, seen)[0]
    print(f"{n:,} idle one-tool conversations held in one process (run in {took:.0f} s)")
    print(f"{'':28}{'B per chat':>12}")
    print(f"{'agentfsm Conversation':28}{ours / n:>12.0f}")
    print(f"{'plain OpenAI dicts':28}{plain / n:>12.0f}")
    print(f"{'ratio':28}{ours / plain:>11.2f}x")
    print("by field: " + ", ".join(f"{k} {v / n:.0f}" for k, v in by_field.items()))
    print("by type:  " + ", ".join(f"{k} {v / n:.0f}" for k, v in by_type.most_common(10)))


def trace(base_url: str, count: int) -> None:
    """tracemalloc's lines of what ``count`` conversations hold: allocated while traced,
    freed when they are dropped."""
    import tracemalloc

    asyncio.run(idle_chats(base_url, 20))  # warm
    tracemalloc.start()
    conversations = asyncio.run(idle_chats(base_url, count))
    gc.collect()
    holding = tracemalloc.take_snapshot()
    del conversations
    gc.collect()
    dropped = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print(f"tracemalloc: bytes per conversation by the line that allocated them ({count:,})")
    for stat in holding.compare_to(dropped, "lineno")[:15]:
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        print(f"{stat.size_diff / count:>10.0f} {stat.count_diff / count:>6.1f} obj  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="workers,memory")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--chats", type=int, default=150, help="per worker per round")
    parser.add_argument("--concurrency", type=int, default=32, help="chats at once per worker")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=int, default=10_000, help="conversations to hold")
    parser.add_argument("--trace", action="store_true", help="tracemalloc profile by line")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.redis, args.base_url, args.name, args.chats, args.concurrency))
        return
    only = set(args.only.split(","))
    if "workers" in only:
        workers_table(args)
    if "memory" in only:
        if "workers" in only:
            print()
        memory_table(args)


if __name__ == "__main__":
    main()
