"""Incremental checkpoints: a save writes what changed, loading puts it back together, and
chats stored whole by agentfsm 0.1.0 keep loading and are migrated."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import redis as redis_sync
import redis.crc

from agentfsm import (
    AssistantMessage,
    Conversation,
    Phase,
    RequestRecord,
    SerializationError,
    StopReason,
    ToolCall,
    ToolMessage,
    TransitionRecord,
    Usage,
    UserMessage,
    dumps,
    loads,
    tool,
)
from agentfsm.store import PostgresStore, RedisStore, SQLiteStore, Store, StoreError
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls
from tests.conftest import AgentFactory
from tests.test_store import (
    Ticker,
    _drop_postgres_table,
    _drop_redis_keys,
    _fresh_store,
    postgres_dsn,
    redis_chat_keys,
    redis_url,
    rich,
)

__all__ = ["postgres_dsn", "redis_url"]  # session fixtures shared with tests/test_store.py

GOLDEN_V1 = Path(__file__).parent / "golden" / "conversation_v1.json"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store that keeps chats in parts, empty, closed and wiped after the test."""
    async for made in _fresh_store(request, tmp_path, Ticker()):
        yield made


def long_chat(turns: int, chat_id: str = "long") -> Conversation:
    """A finished chat of ``turns`` turns (question, tool call, result, answer) whose
    transition log is the machine's."""
    messages: list[Any] = []
    log: list[TransitionRecord] = []
    phase = Phase.TRIMMING_CONTEXT

    def move(to: Phase, reason: str) -> None:
        nonlocal phase
        log.append(TransitionRecord(phase, to, reason, 1, float(len(log))))
        phase = to

    for t in range(turns):
        if t:
            move(Phase.TRIMMING_CONTEXT, "new_message")
        call = ToolCall(f"call_{t}", "search", json.dumps({"q": t}))
        messages.append(UserMessage(f"question {t}"))
        move(Phase.AWAITING_MODEL, "context_ready")
        messages.append(AssistantMessage(tool_calls=(call,)))
        move(Phase.EXECUTING_TOOLS, "tool_calls_requested")
        messages.append(ToolMessage(call.id, f"result {t}", tool_name="search"))
        move(Phase.TRIMMING_CONTEXT, "tools_finished")
        move(Phase.AWAITING_MODEL, "context_ready")
        messages.append(AssistantMessage(f"answer {t}"))
        move(Phase.DONE, "final_answer")
    return Conversation(
        chat_id=chat_id,
        user_id="alice",
        phase=phase,
        stop_reason=StopReason.RESPONSE,
        messages=tuple(messages),
        run_start=len(messages) - 4,
        transitions=tuple(log),
        version=len(log),
    )


def next_turn(conv: Conversation, text: str) -> Conversation:
    """``conv`` with one more run begun: a user message and its transition."""
    record = TransitionRecord(conv.phase, Phase.TRIMMING_CONTEXT, "new_message", 0, 99.0)
    return attrs.evolve(
        conv,
        phase=Phase.TRIMMING_CONTEXT,
        stop_reason=None,
        messages=(*conv.messages, UserMessage(text)),
        run_start=len(conv.messages),
        transitions=(*conv.transitions, record),
        version=conv.version + 1,
    )


def advance(conv: Conversation) -> Conversation:
    """``conv`` (trimming its context) one transition on, to awaiting the model."""
    record = TransitionRecord(conv.phase, Phase.AWAITING_MODEL, "context_ready", 0, 99.5)
    return attrs.evolve(
        conv,
        phase=Phase.AWAITING_MODEL,
        transitions=(*conv.transitions, record),
        version=conv.version + 1,
    )


# --------------------------------------------------------------------------- behind the back


def _sqlite(store: SQLiteStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


def items_of(store: Store, request: pytest.FixtureRequest, chat_id: str) -> list[list[str]]:
    """The stored items of ``chat_id`` per kind (messages, requests, transitions), read
    behind the store's back."""
    if isinstance(store, SQLiteStore):
        with _sqlite(store) as db:
            return [
                [d for (d,) in db.execute(
                    "SELECT data FROM agentfsm_conversation_items WHERE chat_id = ? AND kind = ?"
                    " ORDER BY seq", (chat_id, kind))]
                for kind in range(3)
            ]  # fmt: skip
    if isinstance(store, RedisStore):
        client = redis_sync.Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            keys = redis_chat_keys(store.prefix, chat_id)[1:4]
            return [[item.decode() for item in client.lrange(key, 0, -1)] for key in keys]
        finally:
            client.close()
    assert isinstance(store, PostgresStore)
    with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as db:
        query = psycopg.sql.SQL(
            "SELECT data::text FROM {} WHERE chat_id = %s AND kind = %s ORDER BY seq"
        ).format(psycopg.sql.Identifier(f"{store.table}_items"))
        return [[d for (d,) in db.execute(query, (chat_id, kind))] for kind in range(3)]


def rewrite_item(
    store: Store, request: pytest.FixtureRequest, chat_id: str, kind: int, seq: int, data: Any
) -> None:
    """Put ``data`` as item ``seq`` of ``kind`` of ``chat_id``, behind the store's back."""
    if isinstance(store, SQLiteStore):
        with _sqlite(store) as db:
            db.execute(
                "UPDATE agentfsm_conversation_items SET data = ? WHERE chat_id = ? AND kind = ? "
                "AND seq = ?",
                (data, chat_id, kind, seq),
            )
    elif isinstance(store, RedisStore):
        client = redis_sync.Redis.from_url(request.getfixturevalue("redis_url"))
        client.lset(redis_chat_keys(store.prefix, chat_id)[1 + kind], seq, data)
        client.close()
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as db:
            db.execute(
                psycopg.sql.SQL(
                    "UPDATE {} SET data = %s::jsonb WHERE chat_id = %s AND kind = %s AND seq = %s"
                ).format(psycopg.sql.Identifier(f"{store.table}_items")),
                (data, chat_id, kind, seq),
            )


def drop_last_item(store: Store, request: pytest.FixtureRequest, chat_id: str, kind: int) -> None:
    """Remove the last stored item of ``kind``, behind the store's back."""
    if isinstance(store, SQLiteStore):
        with _sqlite(store) as db:
            db.execute(
                "DELETE FROM agentfsm_conversation_items WHERE chat_id = ? AND kind = ? AND seq "
                "= (SELECT max(seq) FROM agentfsm_conversation_items WHERE chat_id = ? "
                "AND kind = ?)",
                (chat_id, kind, chat_id, kind),
            )
    elif isinstance(store, RedisStore):
        client = redis_sync.Redis.from_url(request.getfixturevalue("redis_url"))
        client.rpop(redis_chat_keys(store.prefix, chat_id)[1 + kind])
        client.close()
    else:
        assert isinstance(store, PostgresStore)
        table = psycopg.sql.Identifier(f"{store.table}_items")
        with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as db:
            db.execute(
                psycopg.sql.SQL(
                    "DELETE FROM {0} WHERE chat_id = %s AND kind = %s AND seq = "
                    "(SELECT max(seq) FROM {0} WHERE chat_id = %s AND kind = %s)"
                ).format(table),
                (chat_id, kind, chat_id, kind),
            )


# --------------------------------------------------------------------------- what a save writes


async def test_a_save_appends_only_the_new_items(
    durable: Store, request: pytest.FixtureRequest
) -> None:
    """After one transition the store holds the old items untouched plus the new ones: an
    old message changed behind the store's back stays changed through the save."""
    first = long_chat(20)
    await durable.save(first, None)
    assert [len(kind) for kind in items_of(durable, request, "long")] == [80, 0, 119]
    marked = json.dumps({"content": "changed behind the back", "role": "user", "name": None})
    rewrite_item(durable, request, "long", 0, 0, marked)

    second = next_turn(first, "one more")
    await durable.save(second, first.version)

    stored = items_of(durable, request, "long")
    assert [len(kind) for kind in stored] == [81, 0, 120]
    assert json.loads(stored[0][0])["content"] == "changed behind the back"
    assert json.loads(stored[0][80])["content"] == "one more"
    loaded = await durable.load("long")
    assert loaded == attrs.evolve(
        second, messages=(UserMessage("changed behind the back"), *second.messages[1:])
    )


async def test_a_fresh_store_instance_appends_too(
    durable: Store, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A worker that did not load the chat itself (a second store instance) reads the
    stored mark and still appends rather than rewriting."""
    first = long_chat(5)
    await durable.save(first, None)
    marked = json.dumps({"content": "kept", "role": "user", "name": None})
    rewrite_item(durable, request, "long", 0, 0, marked)
    async with _twin(durable, request) as other:
        await other.save(next_turn(first, "from the other worker"), first.version)
    stored = items_of(durable, request, "long")
    assert json.loads(stored[0][0])["content"] == "kept"
    assert [len(kind) for kind in stored] == [21, 0, 30]


def _twin(store: Store, request: pytest.FixtureRequest) -> Any:
    """A second instance of ``store`` over the same data."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    if isinstance(store, RedisStore):
        return RedisStore(request.getfixturevalue("redis_url"), prefix=store.prefix)
    assert isinstance(store, PostgresStore)
    return PostgresStore(request.getfixturevalue("postgres_dsn"), table=store.table)


@pytest.mark.parametrize(
    "unrelated",
    [
        pytest.param(lambda c: attrs.evolve(c, messages=c.messages[:3], run_start=0), id="fewer"),
        pytest.param(
            lambda c: attrs.evolve(
                c, messages=(*c.messages[:-1], AssistantMessage("another answer"))
            ),
            id="other-last-message",
        ),
        pytest.param(
            lambda c: attrs.evolve(
                c,
                messages=(*c.messages[:-1], AssistantMessage("other"), UserMessage("more")),
                run_start=len(c.messages),
                phase=Phase.TRIMMING_CONTEXT,
                stop_reason=None,
                transitions=(
                    *c.transitions,
                    TransitionRecord(Phase.DONE, Phase.TRIMMING_CONTEXT, "new_message", 0, 1.0),
                ),
            ),
            id="longer-but-diverging",
        ),
        pytest.param(
            lambda c: attrs.evolve(
                c,
                transitions=(
                    *c.transitions[:-1],
                    attrs.evolve(c.transitions[-1], reason="something else"),
                ),
            ),
            id="other-last-transition",
        ),
    ],
)
async def test_a_conversation_that_does_not_continue_the_stored_one_is_written_whole(
    durable: Store, request: pytest.FixtureRequest, unrelated: Any
) -> None:
    """Saving an unrelated conversation over a matching version (fewer items, or a
    different last item) rewrites the chat in full: what loads is exactly what was saved."""
    first = long_chat(3)
    await durable.save(first, None)
    other = attrs.evolve(unrelated(first), version=first.version + 1)
    await durable.save(other, first.version)
    assert await durable.load("long") == other
    stored = items_of(durable, request, "long")
    assert [len(kind) for kind in stored] == [
        len(other.messages),
        len(other.requests),
        len(other.transitions),
    ]


async def test_a_chat_recreated_at_the_same_version_is_not_appended_to(
    durable: Store, request: pytest.FixtureRequest
) -> None:
    """A worker that remembers the chat at version v (its own last save) finds it deleted
    and recreated at v by another: its next save rewrites the chat instead of appending to
    items that are not the ones it remembers."""
    first = long_chat(3)
    await durable.save(first, None)  # this instance remembers first's items at its version
    async with _twin(durable, request) as other:
        assert await other.delete("long") is True
        replacement = attrs.evolve(long_chat(2), version=first.version)
        await other.save(replacement, None)
    mine = next_turn(first, "mine")
    await durable.save(mine, first.version)
    assert await durable.load("long") == mine


async def test_a_bad_new_message_writes_nothing(durable: Store) -> None:
    """A lone surrogate in a new message fails the save with StoreError; the stored chat
    is what it was."""
    first = long_chat(2)
    await durable.save(first, None)
    with pytest.raises(StoreError, match="lone surrogate"):
        await durable.save(next_turn(first, "bad \udcff"), first.version)
    assert await durable.load("long") == first
    await durable.save(next_turn(first, "good"), first.version)
    assert (await durable.load("long")) == next_turn(first, "good")


# --------------------------------------------------------------------------- hostile items


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("not json", "not a JSON conversation"),
        ('{"role": "robot", "content": "x"}', "role must be one of"),
        ("7", "expected an object"),
    ],
)
async def test_a_broken_item_is_a_serialization_error(
    durable: Store, request: pytest.FixtureRequest, data: str, says: str
) -> None:
    """An item another program broke fails load() with a SerializationError naming the
    chat (PostgreSQL's jsonb refuses text that is not JSON, so it gets the others only)."""
    if isinstance(durable, PostgresStore) and data == "not json":
        data = '"a string"'
        says = "expected an object"
    await durable.save(long_chat(2), None)
    rewrite_item(durable, request, "long", 0, 1, data)
    with pytest.raises(SerializationError) as caught:
        await durable.load("long")
    assert str(caught.value).startswith("stored chat 'long' does not load: ")
    assert says in str(caught.value)


@pytest.mark.parametrize(("kind", "name"), [(0, "messages"), (2, "transitions")])
async def test_a_missing_item_is_a_serialization_error(
    durable: Store, request: pytest.FixtureRequest, kind: int, name: str
) -> None:
    """Fewer items than the header counts (one deleted behind the store's back) is a
    SerializationError, not a shorter conversation."""
    await durable.save(long_chat(2), None)
    drop_last_item(durable, request, "long", kind)
    count = len(long_chat(2).messages if kind == 0 else long_chat(2).transitions)
    with pytest.raises(SerializationError, match=f"counts {count} {name}, but {count - 1}"):
        await durable.load("long")


async def test_a_sqlite_item_of_another_type_is_a_serialization_error(tmp_path: Path) -> None:
    """SQLite keeps any type in any column: a number or bytes as an item is refused."""
    async with SQLiteStore(tmp_path / "c.db") as store:
        await store.save(long_chat(1), None)
        for value in (42, b"\xff\x00"):
            with _sqlite(store) as db:
                db.execute(
                    "UPDATE agentfsm_conversation_items SET data = ? WHERE seq = 0", (value,)
                )
            with pytest.raises(SerializationError, match=r"^stored chat 'long' does not load: "):
                await store.load("long")


# --------------------------------------------------------------------------- Redis Cluster


def running_with_a_request(chat_id: str) -> Conversation:
    """A chat mid-run with items of every kind (so every key of it exists)."""
    record = RequestRecord(model="m", usage=Usage(total_tokens=3))
    return next_turn(long_chat(1, chat_id), "running").with_request(record)


CLUSTER_IDS = ["plain", "a{b", "a}b", "{x}", "}", "~tilde", "ü-{é}", "x" * 1024]


async def test_the_keys_of_one_redis_chat_share_a_cluster_slot(redis_url: str) -> None:
    """Every key a chat is stored under (header, items, lease) hashes to one Redis Cluster
    slot, whatever braces its id holds, so the save script can run on a cluster; ids
    without braces get the documented key names."""
    prefix = f"test-{uuid.uuid4().hex}:"
    client = redis_sync.Redis.from_url(redis_url)
    try:
        async with RedisStore(redis_url, prefix=prefix) as store:
            for chat_id in CLUSTER_IDS:
                await store.save(running_with_a_request(chat_id), None)
            keys = {key.decode() for key in client.scan_iter(match=f"{prefix}*")}
            indexes = {f"{prefix}chats", f"{prefix}user:alice", f"{prefix}running"}
            chat_keys = keys - indexes
            assert len(chat_keys) == 5 * len(CLUSTER_IDS)  # h, m, r, t, lease each
            slots: dict[int, set[str]] = {}
            for key in chat_keys:
                slots.setdefault(redis.crc.key_slot(key.encode()), set()).add(key)
            assert sorted(len(group) for group in slots.values()) == [5] * len(CLUSTER_IDS)
            for chat_id in ("plain", "a{b", "x" * 1024):
                assert set(redis_chat_keys(prefix, chat_id)) <= chat_keys
            for chat_id in CLUSTER_IDS:
                assert await store.load(chat_id) == running_with_a_request(chat_id)
    finally:
        client.close()
        await _drop_redis_keys(redis_url, prefix)


# --------------------------------------------------------------------------- off the loop


@pytest.fixture
def loop_thread_loads() -> Iterator[list[int]]:
    """Counts the calls of ``agentfsm.serde.loads`` made on this (the event loop's) thread."""
    calls: list[int] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == "loads" and code.co_filename.endswith("serde.py"):
            calls.append(threading.get_ident())

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


async def test_a_long_chat_is_decoded_off_the_event_loop(
    durable: Store, loop_thread_loads: list[int]
) -> None:
    """Loading a 1,000-message chat parses it in a worker thread; a short one is parsed
    on the loop (a thread would cost more than it saves)."""
    await durable.save(long_chat(250), None)
    await durable.save(long_chat(2, "short"), None)
    assert await durable.load("short") is not None
    assert loop_thread_loads == [threading.get_ident()]
    loop_thread_loads.clear()
    assert await durable.load("long") == long_chat(250)
    assert loop_thread_loads == []


# --------------------------------------------------------------------------- 0.1.0 stores

_SQLITE_0_1_0 = """
CREATE TABLE agentfsm_conversations (
    chat_id TEXT PRIMARY KEY NOT NULL, user_id TEXT, agent_name TEXT NOT NULL,
    phase TEXT NOT NULL, version INTEGER NOT NULL, schema_version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX agentfsm_conversations_recent
    ON agentfsm_conversations (updated_at DESC, chat_id DESC);
CREATE INDEX agentfsm_conversations_user_recent
    ON agentfsm_conversations (user_id, updated_at DESC, chat_id DESC);
"""

_POSTGRES_0_1_0 = """
CREATE TABLE {table} (
    chat_id text COLLATE "C" PRIMARY KEY, user_id text COLLATE "C", agent_name text NOT NULL,
    phase text NOT NULL, version bigint NOT NULL, schema_version integer NOT NULL,
    updated_at timestamptz NOT NULL, data jsonb NOT NULL
)
"""


def golden_v1() -> Conversation:
    """The conversation of the schema-1 golden payload (what an early 0.1.0 wrote)."""
    return loads(GOLDEN_V1.read_text())


def legacy_rows() -> list[tuple[Conversation, str]]:
    """Chats as agentfsm 0.1.0 stored them: the conversation and its whole payload."""
    return [
        (golden_v1(), GOLDEN_V1.read_text()),
        (rich("r1"), dumps(rich("r1"))),
        (long_chat(30, "l1"), dumps(long_chat(30, "l1"))),
    ]


class Legacy:
    """A store of each kind filled the way agentfsm 0.1.0 filled it, before any agentfsm
    of today opened it."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self.request = request
        self.path = tmp_path / "old.db"
        self.prefix = f"old-{uuid.uuid4().hex}:"
        self.table = f"old_{uuid.uuid4().hex}"

    def fill(self, rows: list[tuple[Conversation, str]], broken: str | None = None) -> None:
        stamp = 1_700_000_000_000_000
        if self.kind == "sqlite":
            with sqlite3.connect(self.path, isolation_level=None) as db:
                db.executescript(_SQLITE_0_1_0)
                for n, (c, payload) in enumerate(rows):
                    db.execute(
                        "INSERT INTO agentfsm_conversations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (c.chat_id, c.user_id, c.agent_name, c.phase.value, c.version,
                         c.schema_version, stamp + n, payload),
                    )  # fmt: skip
                if broken:
                    db.execute(
                        "INSERT INTO agentfsm_conversations VALUES (?, NULL, 'a', 'done', 1, 2, "
                        "?, '{\"chat_id\": 5}')",
                        (broken, stamp),
                    )
        elif self.kind == "redis":
            client = redis_sync.Redis.from_url(self.request.getfixturevalue("redis_url"))
            for n, (c, payload) in enumerate(rows):
                fields = {"data": payload, "version": str(c.version), "agent_name": c.agent_name,
                          "phase": c.phase.value, "schema_version": str(c.schema_version),
                          "updated_at": str(stamp + n)}  # fmt: skip
                if c.user_id is not None:
                    fields["user_id"] = c.user_id
                    client.zadd(f"{self.prefix}user:{c.user_id}", {c.chat_id: stamp + n})
                client.hset(f"{self.prefix}chat:{c.chat_id}", mapping=fields)
                client.zadd(f"{self.prefix}chats", {c.chat_id: stamp + n})
            if broken:
                client.hset(f"{self.prefix}chat:{broken}", mapping={
                    "data": '{"chat_id": 5}', "version": "1", "agent_name": "a",
                    "phase": "done", "schema_version": "2", "updated_at": str(stamp)})  # fmt: skip
                client.zadd(f"{self.prefix}chats", {broken: stamp})
            client.close()
        else:
            dsn = self.request.getfixturevalue("postgres_dsn")
            ident = psycopg.sql.Identifier(self.table)
            with psycopg.connect(dsn, autocommit=True) as db:
                db.execute(psycopg.sql.SQL(_POSTGRES_0_1_0).format(table=ident))
                insert = psycopg.sql.SQL(
                    "INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), %s::jsonb)"
                ).format(ident)
                for n, (c, payload) in enumerate(rows):
                    row = (c.chat_id, c.user_id, c.agent_name, c.phase.value, c.version,
                           c.schema_version, 1.7e9 + n, payload)  # fmt: skip
                    db.execute(insert, row)
                if broken:
                    db.execute(insert, (broken, None, "a", "done", 1, 2, 1.7e9, '{"chat_id": 5}'))

    def open(self) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(self.path)
        if self.kind == "redis":
            return RedisStore(self.request.getfixturevalue("redis_url"), prefix=self.prefix)
        return PostgresStore(self.request.getfixturevalue("postgres_dsn"), table=self.table)

    def url(self) -> str:
        """The ``--store`` URL of a SQLite store."""
        return f"sqlite:///{self.path}"

    def layouts(self, chat_id: str) -> set[str]:
        """Which layouts hold ``chat_id``: "whole" (0.1.0), "parts" (today)."""
        found: set[str] = set()
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as db:
                (layout,) = db.execute(
                    "SELECT layout FROM agentfsm_conversations WHERE chat_id = ?", (chat_id,)
                ).fetchone()
                (items,) = db.execute(
                    "SELECT count(*) FROM agentfsm_conversation_items WHERE chat_id = ?",
                    (chat_id,),
                ).fetchone()
            found.add("parts" if layout == 2 else "whole")
            if layout != 2 and items:
                found.add("parts")
        elif self.kind == "redis":
            client = redis_sync.Redis.from_url(self.request.getfixturevalue("redis_url"))
            if client.exists(f"{self.prefix}chat:{chat_id}"):
                found.add("whole")
            if client.exists(*redis_chat_keys(self.prefix, chat_id)[:4]):
                found.add("parts")
            client.close()
        else:
            dsn = self.request.getfixturevalue("postgres_dsn")
            with psycopg.connect(dsn, autocommit=True) as db:
                row = db.execute(
                    psycopg.sql.SQL("SELECT layout FROM {} WHERE chat_id = %s").format(
                        psycopg.sql.Identifier(self.table)
                    ),
                    (chat_id,),
                ).fetchone()
                assert row is not None
                items = db.execute(
                    psycopg.sql.SQL("SELECT count(*) FROM {} WHERE chat_id = %s").format(
                        psycopg.sql.Identifier(f"{self.table}_items")
                    ),
                    (chat_id,),
                ).fetchone()
            found.add("parts" if row[0] == 2 else "whole")
            if row[0] != 2 and items and items[0]:
                found.add("parts")
        return found

    async def wipe(self) -> None:
        if self.kind == "redis":
            await _drop_redis_keys(self.request.getfixturevalue("redis_url"), self.prefix)
        elif self.kind == "postgres":
            dsn = self.request.getfixturevalue("postgres_dsn")
            await _drop_postgres_table(dsn, self.table)
            await _drop_postgres_table(dsn, f"{self.table}_items")


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Legacy]:
    """An empty 0.1.0 store of each kind, wiped after the test."""
    made = Legacy(request.param, request, tmp_path)
    try:
        yield made
    finally:
        await made.wipe()


async def test_a_0_1_0_store_keeps_loading_and_listing(legacy: Legacy) -> None:
    """Chats stored whole by 0.1.0 load equal and list as before, and loading them writes
    nothing."""
    legacy.fill(legacy_rows())
    async with legacy.open() as store:
        for conversation, _ in legacy_rows():
            assert await store.load(conversation.chat_id) == conversation
            assert legacy.layouts(conversation.chat_id) == {"whole"}
        page = await store.list()
        assert [item.chat_id for item in page.items] == ["l1", "r1", "c1"]
        assert [item.chat_id for item in (await store.list("alice")).items] == ["l1", "r1"]


async def test_the_first_save_migrates_a_0_1_0_chat(legacy: Legacy) -> None:
    """A chat stored whole is written in parts by its first save, never in both layouts;
    it then loads, lists and deletes as any other."""
    legacy.fill(legacy_rows())
    old = long_chat(30, "l1")
    async with legacy.open() as store:
        new = next_turn(old, "after the upgrade")
        await store.save(new, old.version)
        assert legacy.layouts("l1") == {"parts"}
        assert await store.load("l1") == new
        newer = advance(new)
        await store.save(newer, new.version)
        assert await store.load("l1") == newer
        assert [item.chat_id for item in (await store.list("alice")).items] == ["l1", "r1"]
        assert legacy.layouts("r1") == {"whole"}
        assert await store.delete("l1") is True
        assert await store.load("l1") is None
        assert [item.chat_id for item in (await store.list()).items] == ["r1", "c1"]


async def test_a_stale_save_over_a_0_1_0_chat_conflicts(legacy: Legacy) -> None:
    """The compare-and-set holds across layouts: a save from another version of a 0.1.0
    chat conflicts and leaves it whole."""
    legacy.fill(legacy_rows())
    old = rich("r1")
    async with legacy.open() as store:
        with pytest.raises(StoreError, match="changed by another writer"):
            await store.save(attrs.evolve(old, version=9), 7)
        with pytest.raises(StoreError, match="changed by another writer"):
            await store.save(attrs.evolve(old, version=9), None)
        assert legacy.layouts("r1") == {"whole"}
        assert await store.load("r1") == old


async def test_migrate_rewrites_every_0_1_0_chat_at_its_version(legacy: Legacy) -> None:
    """migrate() rewrites each whole chat in parts without changing its version (a worker
    holding it loses nothing), skips one that does not load, and finds nothing the
    second time."""
    legacy.fill(legacy_rows(), broken="broken")
    async with legacy.open() as store:
        assert await store.migrate() == 3  # type: ignore[attr-defined]
        for conversation, _ in legacy_rows():
            assert legacy.layouts(conversation.chat_id) == {"parts"}
            assert await store.load(conversation.chat_id) == conversation
        assert legacy.layouts("broken") == {"whole"}
        with pytest.raises(SerializationError, match="stored chat 'broken' does not load"):
            await store.load("broken")
        assert await store.migrate() == 0  # type: ignore[attr-defined]
        old = long_chat(30, "l1")
        await store.save(next_turn(old, "a worker's save"), old.version)


async def test_migrate_from_the_command_line(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``agentfsm migrate --store URL`` migrates a 0.1.0 store and says how many chats."""
    legacy = Legacy("sqlite", request, tmp_path)
    legacy.fill(legacy_rows())
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentfsm", "migrate", "--store", legacy.url()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"migrated 3 chats in {legacy.url()}"
    assert legacy.layouts("l1") == {"parts"}


# --------------------------------------------------------------------------- token counts


async def test_token_counts_made_after_a_message_was_stored_are_stored_too(
    durable: Store,
    request: pytest.FixtureRequest,
    server: ScriptedOpenAIServer,
    make_agent: AgentFactory,
) -> None:
    """A message is saved when it is added, before the context step counts its tokens: a
    later save stores it again with its counts, so a load need not tokenize it again."""
    server.add(tool_calls(call("lookup", {"q": "x"})), text("done"), text("again"))
    agent = make_agent(store=durable, tool_registry=[lookup], max_context_length=100_000)
    await agent.send_message("hi", user_id="u1", chat_id="c1")
    await agent.send_message("more", user_id="u1", chat_id="c1")

    messages = [json.loads(item) for item in items_of(durable, request, "c1")[0]]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user",
                                             "assistant"]  # fmt: skip
    assert ["tokens" in m for m in messages[:5]] == [True] * 5
    async with _twin(durable, request) as other:
        assert await other.load("c1") == await durable.load("c1")


@tool
def lookup(q: str) -> str:
    """Looks up q."""
    return f"found {q}"
