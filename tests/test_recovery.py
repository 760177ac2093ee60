"""Leases and recovery: a run holds its chat, a chat whose worker died is resumed (or stopped)
exactly once by whichever worker asks, against real SQLite, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentfsm import (
    ConfigurationError,
    Conversation,
    Phase,
    StopReason,
    dumps,
    tool,
)
from agentfsm.state import TransitionRecord
from agentfsm.store import (
    ChatPage,
    ConcurrentUpdateError,
    LeaseLostError,
    LeaseStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    Store,
)
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls
from tests.conftest import AgentFactory
from tests.test_store import _drop_postgres_table, _drop_redis_keys, postgres_dsn, redis_url

__all__ = ["postgres_dsn", "redis_url"]  # session fixtures shared with tests/test_store.py

KINDS = ["memory", "sqlite", "redis", "postgres"]


class Stores:
    """Store instances of one kind over the same data: one per worker of a test."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self.request = request
        self.path = tmp_path / "chats.db"
        self.prefix = f"test-{uuid.uuid4().hex}:"
        self.table = f"chats_{uuid.uuid4().hex}"
        self.made: list[Store] = []
        self.memory: MemoryStore | None = None

    def open(self, lease_ttl: float = 5.0) -> LeaseStore:
        """A new instance (a worker's own connection); MemoryStore is one shared instance
        (it lives in this process only), so its lease length is the first asked for."""
        store: LeaseStore
        if self.kind == "memory":
            if self.memory is None:
                self.memory = MemoryStore(lease_ttl=lease_ttl)
            return self.memory
        if self.kind == "sqlite":
            store = SQLiteStore(self.path, lease_ttl=lease_ttl)
        elif self.kind == "redis":
            url = self.request.getfixturevalue("redis_url")
            store = RedisStore(url, prefix=self.prefix, lease_ttl=lease_ttl)
        else:
            dsn = self.request.getfixturevalue("postgres_dsn")
            store = PostgresStore(dsn, table=self.table, lease_ttl=lease_ttl)
        self.made.append(store)
        return store

    async def close(self) -> None:
        for store in self.made:
            await store.aclose()
        if self.kind == "redis":
            await _drop_redis_keys(self.request.getfixturevalue("redis_url"), self.prefix)
        elif self.kind == "postgres":
            dsn = self.request.getfixturevalue("postgres_dsn")
            await _drop_postgres_table(dsn, self.table)
            await _drop_postgres_table(dsn, f"{self.table}_items")


@pytest.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """Instances of each store in turn, wiped after the test."""
    made = Stores(request.param, request, tmp_path)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture(params=KINDS[1:])
async def durable_stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """Instances of each store shared between processes, in turn."""
    made = Stores(request.param, request, tmp_path)
    try:
        yield made
    finally:
        await made.close()


async def left_mid_run(
    make_agent: AgentFactory, store: LeaseStore, chat_id: str, message: str = "hi"
) -> Conversation:
    """A chat a worker left in ``awaiting_model`` when it died, holding a lease that runs
    out after the dead worker's store's ``lease_ttl`` (its own clock)."""
    scratch = make_agent()  # no store: steps are not saved
    conversation = scratch.start(message, user_id="u1", chat_id=chat_id)
    conversation = await scratch.step(conversation)  # trimming_context -> awaiting_model
    assert conversation.phase is Phase.AWAITING_MODEL
    await store.save(conversation, None, lease="dead-worker")
    return conversation


async def past_lease(stores: Stores, seconds: float) -> None:
    """Let a lease of ``seconds`` run out by the store's clock (real time: Redis expires the
    key, PostgreSQL compares with now())."""
    await asyncio.sleep(seconds * 2 + 0.05)


# --------------------------------------------------------------------------- recover()


async def test_concurrent_recover_calls_resume_each_chat_exactly_once(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Five workers calling recover() at once over four abandoned chats: every chat is
    resumed by exactly one of them (one model request each) and finishes."""
    dead = stores.open(lease_ttl=0.05)
    for n in range(4):
        await left_mid_run(make_agent, dead, f"c{n}")
    await past_lease(stores, 0.05)
    server.add(*(text(f"answer {n}") for n in range(4)))
    workers = [make_agent(store=stores.open()) for _ in range(5)]

    results = await asyncio.gather(*(worker.recover() for worker in workers))

    recovered = sorted(c.chat_id for found in results for c in found)
    assert recovered == ["c0", "c1", "c2", "c3"]
    assert len(server.requests) == 4
    for n in range(4):
        stored = await dead.load(f"c{n}")
        assert stored is not None
        assert (stored.phase, stored.stop_reason) == (Phase.DONE, StopReason.RESPONSE)
    assert [await worker.recover() for worker in workers] == [[]] * 5


async def test_a_live_lease_is_not_recovered_and_an_expired_one_is(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A run busy in a tool for longer than its lease keeps the lease (it is renewed), so
    another worker's recover() leaves it alone; a dead worker's chat is taken."""
    release = asyncio.Event()
    started = asyncio.Event()

    @tool
    async def slow(q: str) -> str:
        """Takes its time."""
        started.set()
        await release.wait()
        return f"slow {q}"

    await left_mid_run(make_agent, stores.open(lease_ttl=0.05), "dead")
    server.add(tool_calls(call("slow", {"q": "x"})), text("dead done"), text("busy done"))
    busy = make_agent(store=stores.open(lease_ttl=0.6), tool_registry=[slow])
    run = asyncio.ensure_future(busy.send_message("work", user_id="u1", chat_id="busy"))
    await started.wait()
    await asyncio.sleep(1.0)  # longer than the 0.6 s lease: only renewals keep it

    other = make_agent(store=stores.open())
    recovered = await other.recover()

    assert [(c.chat_id, c.output) for c in recovered] == [("dead", "dead done")]
    release.set()
    response = await run
    assert response.output == "busy done"
    assert len(server.requests) == 3  # the busy run's two, the dead chat's one


async def test_a_run_whose_lease_was_taken_stops_at_its_next_save(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """While a run waits on a tool another worker takes its chat's lease: the run's next
    save is refused with LeaseLostError (a ConcurrentUpdateError), nothing is written, and
    the run's renewals do not take the lease back."""
    release = asyncio.Event()
    started = asyncio.Event()

    @tool
    async def slow(q: str) -> str:
        """Takes its time."""
        started.set()
        await release.wait()
        return f"slow {q}"

    server.add(tool_calls(call("slow", {"q": "x"})), text("never sent"))
    store = stores.open(lease_ttl=0.3)
    worker = make_agent(store=store, tool_registry=[slow])
    run = asyncio.ensure_future(worker.send_message("work", user_id="u1", chat_id="c1"))
    await started.wait()
    before = await store.load("c1")
    assert before is not None
    assert before.phase is Phase.EXECUTING_TOOLS

    thief = stores.open()
    assert await thief.take_lease("c1", "thief", steal=True) is True
    assert await thief.take_lease("c1", worker.lease_owner) is False
    await asyncio.sleep(0.25)  # renewals of the run come and go meanwhile
    release.set()

    with pytest.raises(LeaseLostError) as caught:
        await run
    assert isinstance(caught.value, ConcurrentUpdateError)
    assert caught.value.holder == "thief"
    assert await store.load("c1") == before
    assert len(server.requests) == 1
    assert await thief.take_lease("c1", worker.lease_owner) is False  # still the thief's


async def test_resume_takes_the_chat_over_from_a_live_worker(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """resume() does not wait for the lease: it takes it and runs the tool batch again
    (at-least-once), and the worker still running the chat loses its next save."""
    release = asyncio.Event()
    entered = [asyncio.Event(), asyncio.Event()]
    calls: list[str] = []

    @tool
    async def slow(q: str) -> str:
        """Takes its time."""
        calls.append(q)
        entered[len(calls) - 1].set()
        await release.wait()
        return f"slow {q}"

    server.add(tool_calls(call("slow", {"q": "x"})), text("the resumer's answer"))
    first = make_agent(store=stores.open(), tool_registry=[slow])
    run = asyncio.ensure_future(first.send_message("work", user_id="u1", chat_id="c1"))
    await entered[0].wait()
    second = make_agent(store=stores.open(), tool_registry=[slow])
    resumed = asyncio.ensure_future(second.resume("c1"))
    await entered[1].wait()  # the resumer is in the tool too: it holds the lease
    release.set()

    finished = await resumed
    assert finished.output == "the resumer's answer"
    with pytest.raises(ConcurrentUpdateError):
        await run
    assert len(server.requests) == 2


async def test_on_lost_stop_stops_the_chat_with_worker_lost(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With on_lost="stop" the abandoned chat is stopped (stop reason worker_lost, no model
    request), and a new message then continues it."""
    dead = stores.open(lease_ttl=0.05)
    await left_mid_run(make_agent, dead, "c1")
    await past_lease(stores, 0.05)
    worker = make_agent(store=stores.open())

    [stopped] = await worker.recover(on_lost="stop")

    assert (stopped.phase, stopped.stop_reason) == (Phase.STOPPED, StopReason.WORKER_LOST)
    assert stopped.transitions[-1] == TransitionRecord(
        Phase.AWAITING_MODEL,
        Phase.STOPPED,
        "worker_lost",
        stopped.turn,
        stopped.transitions[-1].at,
    )
    assert await dead.load("c1") == stopped
    assert server.requests == []
    server.add(text("retried"))
    again = await worker.send_message("try again", user_id="u1", chat_id="c1")
    assert again.output == "retried"


async def test_recovering_resumes_in_the_background(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """agent.recovering(every=...) sweeps while the block runs and finishes the chats it
    took before the block is left."""
    dead = stores.open(lease_ttl=0.05)
    await left_mid_run(make_agent, dead, "c1")
    server.add(text("recovered in the background"))
    done = asyncio.Event()

    def finished(event: Any) -> None:
        if event.to_phase is Phase.DONE:
            done.set()

    worker = make_agent(store=stores.open(), hooks={"on_transition": finished})
    async with worker.recovering(every=0.02):
        await done.wait()
    stored = await dead.load("c1")
    assert stored is not None
    assert stored.phase is Phase.DONE
    assert stored.messages[-1].content == "recovered in the background"  # type: ignore[union-attr]


async def test_a_finished_chat_is_never_claimed(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A chat whose run finished (its lease released with the last save) is not recovered,
    and a worker can start a new run on it at once."""
    server.add(text("one"), text("two"))
    first = make_agent(store=stores.open())
    await first.send_message("hi", user_id="u1", chat_id="c1")
    second = make_agent(store=stores.open())
    assert await second.recover() == []
    response = await second.send_message("again", user_id="u1", chat_id="c1")
    assert response.output == "two"


async def test_steps_driven_by_hand_can_move_between_workers(
    stores: Stores, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """agent.step() takes no lease: a chat stepped by one worker can be stepped by another
    at once (one step per HTTP request, say), and recover() leaves it alone meanwhile."""
    server.add(text("stepped by hand"))
    first = make_agent(store=stores.open())
    second = make_agent(store=stores.open())
    conversation = first.start("hi", user_id="u1", chat_id="c1")
    await stores.open().save(conversation, None)
    conversation = await first.step(conversation)  # -> awaiting_model, saved
    assert await second.recover() == []
    conversation = await second.step(conversation)  # another worker, at once
    assert conversation.phase is Phase.DONE
    assert await stores.open().load("c1") == conversation


# --------------------------------------------------------------------------- configuration


class PlainStore:
    """A store of one's own, written to the 0.1.0 ``Store`` protocol (no leases)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    async def load(self, chat_id: str) -> Conversation | None:
        return await self.inner.load(chat_id)

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        await self.inner.save(conversation, expected_version)

    async def delete(self, chat_id: str) -> bool:
        return await self.inner.delete(chat_id)

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        return await self.inner.list(user_id, limit, cursor)

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> PlainStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


async def test_a_store_without_leases_runs_but_cannot_recover(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A custom store without lease methods keeps working for runs and resume; recover()
    says clearly what it lacks."""
    server.add(tool_calls(call("lookup", {"q": "x"})), text("done"))

    @tool
    def lookup(q: str) -> str:
        """Looks up q."""
        return q

    store = PlainStore()
    agent = make_agent(store=store, tool_registry=[lookup])
    response = await agent.send_message("hi", user_id="u1", chat_id="c1")
    assert response.output == "done"
    with pytest.raises(ConfigurationError, match="PlainStore has none"):
        await agent.recover()
    with pytest.raises(ConfigurationError, match="PlainStore has none"):
        async with agent.recovering():
            pass
    with pytest.raises(ConfigurationError, match="needs an agent built with store="):
        await make_agent().recover()


async def test_a_subclass_saving_the_old_way_runs_but_cannot_recover(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """A subclass of a store of ours whose save() has the plain signature (no lease=) is
    saved to the plain way, and recover() says it cannot lease."""
    server.add(text("done"))
    saved: list[int] = []

    class Audited(SQLiteStore):
        async def save(self, conversation: Conversation, expected_version: int | None) -> None:
            saved.append(conversation.version)
            await super().save(conversation, expected_version)

    async with Audited(tmp_path / "c.db") as store:
        agent = make_agent(store=store)
        response = await agent.send_message("hi", user_id="u1", chat_id="c1")
        assert response.output == "done"
        assert saved == [0, 1, 2]  # the new run, its context, its answer
        with pytest.raises(ConfigurationError, match="Audited has none"):
            await agent.recover()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_lost": "retry"}, "on_lost must be 'resume' or 'stop'"),
        ({"limit": 0}, "limit must be an int from 1 to 1000"),
    ],
)
async def test_bad_recover_settings_are_configuration_errors(
    make_agent: AgentFactory, options: dict[str, Any], message: str
) -> None:
    """An unknown policy or a limit out of range is refused before the store is asked."""
    agent = make_agent(store=MemoryStore())
    with pytest.raises(ConfigurationError, match=message):
        await agent.recover(**options)
    with pytest.raises(ConfigurationError, match="every must be a positive number"):
        async with agent.recovering(every=0):
            pass


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), 10**6, True])
def test_bad_lease_lengths_are_configuration_errors(ttl: Any, tmp_path: Path) -> None:
    """lease_ttl outside 0.01 s to a day is refused when the store is built."""
    with pytest.raises(ConfigurationError, match="lease_ttl must be a number of seconds"):
        SQLiteStore(tmp_path / "c.db", lease_ttl=ttl)
    with pytest.raises(ConfigurationError, match="lease_ttl must be a number of seconds"):
        MemoryStore(lease_ttl=ttl)


# --------------------------------------------------------------------------- 0.1.0 and the CLI


def _0_1_0_sqlite(path: Path, conversation: Conversation) -> None:
    """A SQLite file as agentfsm 0.1.0 wrote it, holding ``conversation``."""
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute(
            "CREATE TABLE agentfsm_conversations (chat_id TEXT PRIMARY KEY NOT NULL, "
            "user_id TEXT, agent_name TEXT NOT NULL, phase TEXT NOT NULL, version INTEGER NOT "
            "NULL, schema_version INTEGER NOT NULL, updated_at INTEGER NOT NULL, data TEXT NOT "
            "NULL)"
        )
        db.execute(
            "INSERT INTO agentfsm_conversations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation.chat_id, conversation.user_id, conversation.agent_name,
             conversation.phase.value, conversation.version, conversation.schema_version,
             1_700_000_000_000_000, dumps(conversation)),
        )  # fmt: skip


async def test_a_chat_a_0_1_0_worker_left_mid_run_is_recovered(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """A running chat in a 0.1.0 file has no lease at all: recover() takes and finishes it."""
    scratch = make_agent()
    conversation = await scratch.step(scratch.start("hi", user_id="u1", chat_id="old"))
    _0_1_0_sqlite(tmp_path / "old.db", conversation)
    server.add(text("finished after the upgrade"))
    async with SQLiteStore(tmp_path / "old.db") as store:
        worker = make_agent(store=store)
        [recovered] = await worker.recover()
        assert recovered.output == "finished after the upgrade"
        assert await store.load("old") == recovered


_AGENT_MODULE = """
from agentfsm import AsyncOpenAISimpleAgent

agent = AsyncOpenAISimpleAgent(model="scripted-model", api_key="k", base_url={base_url!r})
"""


async def test_recover_from_the_command_line(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """``agentfsm recover --store URL --agent MOD:NAME`` resumes the abandoned chats with
    the user's agent and reports each; a second run finds none."""
    async with SQLiteStore(tmp_path / "chats.db", lease_ttl=0.05) as dead:
        await left_mid_run(make_agent, dead, "c1")
    await asyncio.sleep(0.15)  # the dead worker's 50 ms lease runs out
    (tmp_path / "my_agents.py").write_text(
        textwrap.dedent(_AGENT_MODULE.format(base_url=server.base_url))
    )
    server.add(text("recovered by the command"))
    url = f"sqlite:///{tmp_path / 'chats.db'}"

    async def command(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentfsm", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await command("recover", "--store", url, "--agent", "my_agents:agent")
    assert (code, err) == (0, "")
    assert out == "c1: done (response)\nrecovered 1 chat\n"
    code, out, err = await command("recover", "--store", url, "--agent", "my_agents:agent")
    assert (code, out) == (0, "recovered 0 chats\n")
