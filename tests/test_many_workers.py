"""A fleet: four worker processes share one store (Redis, then PostgreSQL) and a queue of
1,000 one-tool chats, while a random worker is SIGKILLed and restarted about every second.

Every chat must finish, answered once, with a valid history; a tool call may run again only
where a worker died with that chat in hand, and then with the same call id. The workers are
tests/workers/fleet_worker.py, forked by a fork server that imported everything once (a cold
start costs about 1.2 s of CPU, which at one kill a second on 2 cores would be most of the
load); each logs what it did (chats sent, tool executions with their call id and attempt)
to a file of its own, which outlives its SIGKILL.

On a 2-core machine each store takes 10-20 s idle, 20-40 s with the machine busy (7 to 35
kills); the test fails after 100 s with the chats still unfinished.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from agentfsm import Conversation, Phase, StopReason, dumps, loads
from agentfsm.messages import AssistantMessage, ToolMessage, UserMessage
from agentfsm.store import LeaseStore, PostgresStore, RedisStore
from agentfsm.testing import RecordedRequest, ScriptedOpenAIServer, call, text, tool_calls
from agentfsm.testing._replies import Reply
from tests.test_store import _drop_postgres_table, _drop_redis_keys, postgres_dsn, redis_url

__all__ = ["postgres_dsn", "redis_url"]  # session fixtures shared with tests/test_store.py

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "workers" / "fleet_worker.py"

CHATS = 1000
WORKERS = 4
CONCURRENCY = 16
"""Chats each worker runs at once."""
LEASE_TTL = 2.0
"""Seconds: a dead worker's chats are taken over this long after its last renewal."""
RECOVER_EVERY = 0.25
RECOVER_LIMIT = CONCURRENCY
"""Chats one sweep of a worker claims at most: a worker killed just after a sweep strands
no more than that for another lease."""
KILL_EVERY = (0.6, 1.4)
"""Seconds between two kills, drawn uniformly."""
TIME_LIMIT = 100.0
"""Seconds the fleet gets to finish every chat before the test fails, naming the laggards."""


def chat_of(request: RecordedRequest) -> str:
    """The chat a model request belongs to, from its first user message."""
    first = next(m for m in request.messages if m["role"] == "user")
    content: str = first["content"]
    assert content.startswith("question "), content
    return content.removeprefix("question ")


class Model:
    """The scripted model: a question gets a call of ``lookup`` (a fresh call id each time it
    is asked, so a call id names one answer of the model), a tool result gets an answer
    quoting it."""

    def __init__(self) -> None:
        self.asked: collections.Counter[str] = collections.Counter()
        self.serial = itertools.count(1)

    def __call__(self, request: RecordedRequest) -> Reply:
        chat = chat_of(request)
        last = request.messages[-1]
        if last["role"] == "tool":
            return text(f"Answer for {chat}: {last['content']}")
        assert [m["role"] for m in request.messages] == ["user"], request.messages
        self.asked[chat] += 1
        return tool_calls(call("lookup", {"topic": chat}, id=f"call_{chat}_{next(self.serial)}"))


class Fleet:
    """The worker processes, one per slot, forked by tests/workers/fleet_worker.py; each
    incarnation logs to files of its own."""

    def __init__(self, config: dict[str, Any], logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.slots: list[tuple[str, int] | None] = [None] * WORKERS
        self.numbers = itertools.count(1)
        self.started: list[str] = []
        self.killed: set[str] = set()
        self.ready_ones: set[str] = set()
        self.forks: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Fleet:
        self.forks = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for held in self.slots:
            if held is not None and alive(held[1]):
                os.kill(held[1], signal.SIGKILL)
        assert self.forks is not None
        assert self.forks.stdin is not None
        self.forks.stdin.close()
        await self.forks.wait()

    async def start(self, slot: int) -> None:
        """Fork a new worker for ``slot``."""
        incarnation = f"w{slot}.{next(self.numbers)}"
        config = {
            **self.config,
            "slot": slot,
            "incarnation": incarnation,
            "log": str(self.logs / f"{incarnation}.jsonl"),
            "err": str(self.logs / f"{incarnation}.err"),
        }
        assert self.forks is not None
        assert self.forks.stdin is not None
        assert self.forks.stdout is not None
        self.forks.stdin.write(json.dumps(config).encode() + b"\n")
        await self.forks.stdin.drain()
        pid = int(await asyncio.wait_for(self.forks.stdout.readline(), 30))
        self.slots[slot] = (incarnation, pid)
        self.started.append(incarnation)

    def ready(self, slot: int) -> bool:
        """True once the slot's worker serves (its log says so)."""
        held = self.slots[slot]
        assert held is not None
        incarnation, _ = held
        if incarnation not in self.ready_ones:
            log = self.logs / f"{incarnation}.jsonl"
            if log.exists() and b'"event": "ready"' in log.read_bytes():
                self.ready_ones.add(incarnation)
        return incarnation in self.ready_ones

    def check_alive(self) -> None:
        """Fail if a worker ended of its own accord (a raw exception, say)."""
        for held in self.slots:
            assert held is not None
            incarnation, pid = held
            if not alive(pid):
                err = (self.logs / f"{incarnation}.err").read_text()
                pytest.fail(f"worker {incarnation} exited by itself:\n{err}")

    async def kill(self, slot: int) -> None:
        """SIGKILL the slot's worker and wait until it is gone."""
        held = self.slots[slot]
        assert held is not None
        incarnation, pid = held
        os.kill(pid, signal.SIGKILL)
        await gone(pid)
        self.killed.add(incarnation)

    async def stop(self) -> None:
        """SIGTERM every worker: each finishes what it holds and exits."""
        for held in self.slots:
            assert held is not None
            os.kill(held[1], signal.SIGTERM)
        for held in self.slots:
            assert held is not None
            await asyncio.wait_for(gone(held[1]), 30)

    def events(self) -> Iterator[dict[str, Any]]:
        for incarnation in self.started:
            log = self.logs / f"{incarnation}.jsonl"
            if log.exists():
                for line in log.read_text().splitlines():
                    yield json.loads(line)  # whole lines only: each was one write()

    def printed(self) -> dict[str, str]:
        """What workers wrote to stdout or stderr (nothing, if all went well)."""
        found = {}
        for incarnation in self.started:
            err = self.logs / f"{incarnation}.err"
            if err.exists() and err.stat().st_size:
                found[incarnation] = err.read_text()[:2000]
        return found


def alive(pid: int) -> bool:
    """True while process ``pid`` exists (the fork server's children are reaped at exit)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int) -> None:
    """Wait until process ``pid`` has exited (its pidfd turns readable: Linux)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, exited.set)
    try:
        await exited.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


@asynccontextmanager
async def shared_store(
    kind: str, request: pytest.FixtureRequest, lease_ttl: float
) -> AsyncIterator[tuple[LeaseStore, dict[str, Any]]]:
    """A store of ``kind`` for the test's own reads, and the settings workers open it with;
    its data is dropped afterwards."""
    store: LeaseStore
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"fleet-{uuid.uuid4().hex}:"
        store = RedisStore(url, prefix=prefix, lease_ttl=lease_ttl)
        settings = {"kind": kind, "store": url, "prefix": prefix}
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        table = f"fleet_{uuid.uuid4().hex}"
        store = PostgresStore(dsn, table=table, lease_ttl=lease_ttl)
        settings = {"kind": kind, "store": dsn, "table": table}
    try:
        yield store, settings
    finally:
        await store.aclose()
        if kind == "redis":
            await _drop_redis_keys(settings["store"], settings["prefix"])
        else:
            await _drop_postgres_table(settings["store"], settings["table"])
            await _drop_postgres_table(settings["store"], f"{settings['table']}_items")


def check_chat(
    conversation: Conversation | None,
    runs: list[dict[str, Any]],
    returns: dict[tuple[str, int, str], str],
    killed: set[str],
    senders: set[str],
    asked: int,
) -> str | None:
    """What is wrong with a chat as stored and as its tool executions were logged, if anything.

    Args:
        conversation: the chat as the store holds it at the end.
        runs: the executions of its tool call (``call`` events).
        returns: every execution's result, by chat, attempt and incarnation.
        killed: the incarnations killed.
        senders: the incarnations that sent its message (more than one if the first died
            before the chat was stored).
        asked: how many times the model was asked for the tool call.
    """
    if conversation is None:
        return "lost"
    chat_id = conversation.chat_id
    if (conversation.phase, conversation.stop_reason) != (Phase.DONE, StopReason.RESPONSE):
        return f"{conversation.phase.value}, {conversation.stop_reason}"
    if loads(dumps(conversation)) != conversation:
        return "does not load as it was saved"
    if len(conversation.messages) != 4:  # one question, answered once
        return f"{len(conversation.messages)} messages: {conversation.messages}"
    user, question, result, answer = conversation.messages
    if not (
        user == UserMessage(f"question {chat_id}")
        and isinstance(question, AssistantMessage)
        and len(question.tool_calls) == 1
        and question.tool_calls[0].name == "lookup"
        and json.loads(question.tool_calls[0].arguments) == {"topic": chat_id}
        and isinstance(result, ToolMessage)
        and result.tool_call_id == question.tool_calls[0].id
        and isinstance(answer, AssistantMessage)
        and answer.content == f"Answer for {chat_id}: {result.content}"
        and answer.tool_calls == ()
    ):
        return f"not question, call, result, answer: {conversation.messages}"
    runs = sorted(runs, key=lambda run: run["attempt"])
    if not runs:
        return "its tool result came from no execution"
    if {run["call_id"] for run in runs} != {result.tool_call_id}:
        return f"executions with another call id than {result.tool_call_id}: {runs}"
    if len({run["attempt"] for run in runs}) != len(runs):
        return f"two executions with the same attempt number: {runs}"
    kept = runs[-1]  # the last attempt's result is the one in the history
    if returns.get((chat_id, kept["attempt"], kept["inc"])) != result.content:
        return f"the result {result.content!r} is not the last attempt's: {runs}"
    if len(runs) > 1 or kept["attempt"] > 1 or asked > 1:
        if not senders & killed:
            return f"ran again though its worker was not killed: {runs}, asked {asked} times"
        if any(run["inc"] not in killed for run in runs[:-1]):
            return f"ran again after a run whose worker was not killed: {runs}"
    return None


async def finished_count(store: LeaseStore) -> int:
    page = await store.list(user_id="fleet", limit=CHATS)
    return sum(item.phase is Phase.DONE for item in page.items)


@pytest.mark.fleet
@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_a_fleet_killed_at_random_finishes_every_chat_once(
    kind: str, request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    """1,000 chats through 4 workers over one store, a random worker SIGKILLed and restarted
    about every second until all are done: every chat finished and answered once, every
    history valid, and a tool call run again only for a chat a killed worker had in hand,
    with the same call id and a higher attempt."""
    assert CHATS <= 1000  # one page of list()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    chat_ids = [f"c{n:04d}" for n in range(CHATS)]
    queue_key = f"fleet-queue-{uuid.uuid4().hex}"
    queue = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    model = Model()
    began = time.monotonic()
    async with (
        shared_store(kind, request, LEASE_TTL) as (store, settings),
        ScriptedOpenAIServer(model) as server,
    ):
        await queue.rpush(queue_key, *chat_ids)
        config = {
            **settings,
            "base_url": server.base_url,
            "lease_ttl": LEASE_TTL,
            "recover_every": RECOVER_EVERY,
            "concurrency": CONCURRENCY,
            "recover_limit": RECOVER_LIMIT,
            "queue_url": redis_url,
            "queue": queue_key,
        }
        async with Fleet(config, tmp_path) as fleet:
            for slot in range(WORKERS):
                await fleet.start(slot)
            deadline = time.monotonic() + TIME_LIMIT
            while (done := await finished_count(store)) < CHATS:
                fleet.check_alive()
                if time.monotonic() > deadline:
                    page = await store.list(user_id="fleet", limit=CHATS)
                    laggards = [(i.chat_id, i.phase.value) for i in page.items]
                    pytest.fail(
                        f"{done}/{CHATS} chats done after {TIME_LIMIT} s (seed {seed}, logs in "
                        f"{tmp_path}); "
                        f"{CHATS - len(page.items)} never stored; unfinished: "
                        f"{[(c, p) for c, p in laggards if p != 'done'][:20]}"
                    )
                await asyncio.sleep(rng.uniform(*KILL_EVERY))  # the kill cadence
                serving = [slot for slot in range(WORKERS) if fleet.ready(slot)]
                if serving:
                    slot = rng.choice(serving)
                    await fleet.kill(slot)
                    await fleet.start(slot)
            wall = time.monotonic() - began
            await fleet.stop()
        assert await queue.llen(queue_key) == 0
        for slot in range(WORKERS):
            assert await queue.llen(f"{queue_key}:taken:{slot}") == 0
        stored = {chat_id: await store.load(chat_id) for chat_id in chat_ids}
    await queue.delete(queue_key)
    await queue.aclose()

    where = f"(seed {seed}; the workers' logs are in {tmp_path})"
    assert fleet.printed() == {}, where
    final = [held[0] for held in fleet.slots if held is not None]
    events = list(fleet.events())
    assert {e["inc"] for e in events if e["event"] == "stopped"} == set(final), where
    killed = fleet.killed
    by_kind: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for event in events:
        by_kind[event["event"]].append(event)
    # No run of a live worker failed (LeaseLostError...), and agentfsm warned of nothing (a
    # lost lease, a failed recovery or checkpoint).
    failures = by_kind["error"] + [e for e in by_kind["log"] if e["level"] != "INFO"]
    assert failures == [], f"{len(failures)} failures {where}, first: {failures[:3]}"

    calls: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for event in by_kind["call"]:
        calls[event["chat"]].append(event)
    returns = {(e["chat"], e["attempt"], e["inc"]): e["result"] for e in by_kind["return"]}
    senders: dict[str, set[str]] = collections.defaultdict(set)
    for event in by_kind["send"]:
        senders[event["chat"]].add(event["inc"])
    problems = []
    for chat_id in chat_ids:
        runs, asked = calls[chat_id], model.asked[chat_id]
        problem = check_chat(stored[chat_id], runs, returns, killed, senders[chat_id], asked)
        if problem is not None:
            problems.append(f"{chat_id}: {problem}")
    assert problems == [], f"{len(problems)} chats wrong {where}:\n" + "\n".join(problems[:10])

    rerun_chats = sum(len(calls[chat_id]) > 1 for chat_id in chat_ids)
    reruns = len(by_kind["call"]) - CHATS
    reasked = sum(model.asked.values()) - CHATS
    claims = sum(int(e["fields"]["count"]) for e in by_kind["log"] if e["name"] == "chats_claimed")
    elsewhere = sum(e["name"] == "chat_claimed_elsewhere" for e in by_kind["log"])
    print(
        f"\n{kind}: {CHATS} chats, {WORKERS} workers, wall {wall:.1f} s, seed {seed}: "
        f"{len(killed)} kills, {claims} claims ({elsewhere} let go: claimed elsewhere meanwhile), "
        f"{reruns} tool re-executions "
        f"({rerun_chats} chats), {reasked} model questions asked again, "
        f"{len(server.requests)} model requests, {len(by_kind['skipped'])} queue entries "
        f"left to recovery"
    )
    assert killed, "no worker was killed"
