"""The store contract, run against every store: memory, SQLite, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import re
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import redis as redis_sync
import redis.asyncio
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfsm import (
    AssistantMessage,
    Budget,
    ConfigurationError,
    Conversation,
    InvalidInputError,
    Phase,
    RequestRecord,
    SerializationError,
    StopReason,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    TransitionRecord,
    Usage,
    UserMessage,
)
from agentfsm.messages import RawPart
from agentfsm.state import SCHEMA_VERSION
from agentfsm.store import (
    MAX_ID_BYTES,
    ChatPage,
    ChatSummary,
    ConcurrentUpdateError,
    MemoryStore,
    PostgresStore,
    RedisStopSignal,
    RedisStore,
    SQLiteStore,
    Store,
    StoreError,
)
from agentfsm.testing import ScriptedOpenAIServer, fault, text
from tests.conftest import AgentFactory
from tests.store_servers import postgres_server, redis_server

# --------------------------------------------------------------------------- servers and stores


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server for the whole session."""
    with redis_server() as url:
        if url is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
        yield url


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A private PostgreSQL for the whole session."""
    with postgres_server() as dsn:
        if dsn is None:
            pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        yield dsn


class Ticker:
    """A clock that moves one millisecond per reading, so save order is update order."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.001) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def _drop_redis_keys(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _drop_postgres_table(dsn: str, table: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table))
        )


def _make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Ticker) -> Store:
    if kind == "memory":
        return MemoryStore(clock=clock)
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "chats.db", clock=clock)
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return RedisStore(url, prefix=f"test-{uuid.uuid4().hex}:", clock=clock)
    dsn = request.getfixturevalue("postgres_dsn")
    return PostgresStore(dsn, table=f"chats_{uuid.uuid4().hex}", clock=clock)


@pytest.fixture
def clock() -> Ticker:
    """The clock every store of the test stamps ``updated_at`` with."""
    return Ticker()


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Ticker
) -> AsyncIterator[Store]:
    """Each store in turn, empty, closed and wiped after the test."""
    async for made in _fresh_store(request, tmp_path, clock):
        yield made


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def durable_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Ticker
) -> AsyncIterator[Store]:
    """Each store that keeps its payloads outside the process (so another program can
    write them), in turn."""
    async for made in _fresh_store(request, tmp_path, clock):
        yield made


async def _fresh_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Ticker
) -> AsyncIterator[Store]:
    """The store named by ``request.param``, empty, closed and wiped afterwards."""
    made = _make_store(request.param, request, tmp_path, clock)
    try:
        async with made:
            yield made
    finally:
        if isinstance(made, RedisStore):
            await _drop_redis_keys(request.getfixturevalue("redis_url"), made.prefix)
        elif isinstance(made, PostgresStore):
            await _drop_postgres_table(request.getfixturevalue("postgres_dsn"), made.table)


# --------------------------------------------------------------------------- conversations


def rich(chat_id: str = "chat-1", user_id: str | None = "alice", version: int = 2) -> Conversation:
    """A finished conversation using every kind of data the state holds; its two transitions
    each raised the version, so it starts at 2."""
    call = ToolCall("call_1", "get_weather", '{"city": "Tokyo"}')
    usage = Usage(prompt_tokens=120, completion_tokens=30, total_tokens=150, requests=2)
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
    }
    return Conversation(
        chat_id=chat_id,
        user_id=user_id,
        agent_name="weather",
        phase=Phase.DONE,
        messages=(
            SystemMessage("Answer in one line."),
            UserMessage((TextPart("Where is this, and what is the weather?"), RawPart(image))),
            AssistantMessage(tool_calls=(call,), model="gpt-4o-mini"),
            ToolMessage("call_1", "Sunny, 22 °C", tool_name="get_weather"),
            AssistantMessage("Tokyo (東京): sunny, 22 °C 🌞", model="gpt-4o-mini"),
        ),
        summary="Earlier the user asked about Paris; the answer was rain.",
        run_start=1,
        turn=2,
        function_calls=1,
        usage=usage,
        run_usage=usage,
        requests=(
            RequestRecord(
                model="gpt-4o-mini",
                usage=usage,
                cost=Decimal("0.0000525"),
                attempts=2,
                duration=0.75,
                at=1_700_000_001.5,
            ),
        ),
        cost=Decimal("0.0000525"),
        run_cost=Decimal("0.0000525"),
        budget=Budget(max_budget_for_this_chat=Decimal("0.50"), reserved_budget=Decimal("0.01")),
        stop_reason=StopReason.RESPONSE,
        transitions=(
            TransitionRecord(Phase.TRIMMING_CONTEXT, Phase.AWAITING_MODEL, "fits", 0, 1.0),
            TransitionRecord(Phase.AWAITING_MODEL, Phase.DONE, "response", 1, 2.0),
        ),
        version=version,
        metadata={"tenant": "acme", "tags": ["a", "b"]},
    )


def bump(conversation: Conversation, **changes: object) -> Conversation:
    """``conversation`` one version on, with ``changes``."""
    return attrs.evolve(conversation, version=conversation.version + 1, **changes)  # type: ignore[arg-type]


async def every_page(store: Store, user_id: str | None = None, limit: int = 3) -> list[ChatPage]:
    """All pages of ``store.list``, following the cursors."""
    pages = [await store.list(user_id, limit=limit)]
    while pages[-1].next_cursor is not None:
        pages.append(await store.list(user_id, limit=limit, cursor=pages[-1].next_cursor))
    return pages


def ids(pages: list[ChatPage]) -> list[str]:
    """The chat ids of ``pages``, in order."""
    return [item.chat_id for p in pages for item in p.items]


# --------------------------------------------------------------------------- the contract


async def test_store_satisfies_the_protocol(store: Store) -> None:
    """Every store is a ``Store``."""
    assert isinstance(store, Store)


async def test_round_trip_keeps_every_field(store: Store) -> None:
    """Tool calls, image parts, the summary, usage, cost and budget come back equal."""
    conversation = rich()
    await store.save(conversation, None)
    assert await store.load("chat-1") == conversation


async def test_load_of_an_unknown_chat_is_none(store: Store) -> None:
    """Loading a chat that was never saved gives None."""
    assert await store.load("nope") is None


async def test_save_with_expected_version_none_only_creates(store: Store) -> None:
    """Creating a chat that exists fails and leaves the stored one as it was."""
    first = rich()
    await store.save(first, None)
    with pytest.raises(ConcurrentUpdateError) as caught:
        await store.save(attrs.evolve(first, summary="overwritten?"), None)
    assert (caught.value.chat_id, caught.value.expected_version) == ("chat-1", None)
    assert caught.value.actual_version == 2
    assert await store.load("chat-1") == first


async def test_version_conflict_names_the_chat_and_both_versions(store: Store) -> None:
    """A save from a stale version fails with both versions and writes nothing."""
    v0 = rich(version=4)
    await store.save(v0, None)
    v1 = bump(v0, summary="the winner")
    await store.save(v1, 4)
    with pytest.raises(ConcurrentUpdateError) as caught:
        await store.save(bump(v0, summary="the loser"), 4)
    error = caught.value
    assert (error.chat_id, error.expected_version, error.actual_version) == ("chat-1", 4, 5)
    assert "'chat-1'" in str(error)
    assert "version 4" in str(error)
    assert "version 5" in str(error)
    assert isinstance(error, StoreError)
    assert await store.load("chat-1") == v1


async def test_update_of_a_missing_chat_conflicts(store: Store) -> None:
    """Saving over a version of a chat that does not exist fails; nothing is created."""
    with pytest.raises(ConcurrentUpdateError) as caught:
        await store.save(rich(version=3), 2)
    assert (caught.value.expected_version, caught.value.actual_version) == (2, None)
    assert "no stored chat" in str(caught.value)
    assert await store.load("chat-1") is None


async def test_a_save_must_raise_the_version(store: Store) -> None:
    """Saving a conversation whose version is not above the expected one is refused."""
    await store.save(rich(version=2), None)
    with pytest.raises(InvalidInputError, match="must raise the version"):
        await store.save(rich(version=2), 2)


async def test_successive_saves_chain_versions(store: Store) -> None:
    """Each save from the stored version succeeds and becomes the new stored version."""
    conversation = rich()
    await store.save(conversation, None)
    for _ in range(3):
        stored = await store.load("chat-1")
        assert stored is not None
        conversation = bump(stored, metadata={"step": stored.version + 1})
        await store.save(conversation, stored.version)
    assert await store.load("chat-1") == conversation
    assert conversation.version == 5


async def test_list_pages_newest_first_with_cursors(store: Store, clock: Ticker) -> None:
    """list() follows cursors through every chat, newest-updated first, none twice."""
    for i in range(7):
        await store.save(rich(f"c{i}", user_id="alice" if i % 2 else "bob"), None)
    pages = await every_page(store, limit=3)
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert ids(pages) == [f"c{i}" for i in reversed(range(7))]
    assert pages[-1].next_cursor is None
    first = pages[0].items[0]
    assert first == ChatSummary(
        chat_id="c6",
        user_id="bob",
        agent_name="weather",
        phase=Phase.DONE,
        version=2,
        updated_at=pytest.approx(clock.now, abs=1e-6),  # type: ignore[arg-type]
    )


async def test_list_filters_by_user(store: Store) -> None:
    """list(user_id=...) gives only that user's chats, paged the same way."""
    for i in range(7):
        await store.save(rich(f"c{i}", user_id="alice" if i % 2 else "bob"), None)
    await store.save(rich("anonymous", user_id=None), None)
    assert ids(await every_page(store, "alice", limit=2)) == ["c5", "c3", "c1"]
    assert ids(await every_page(store, "bob", limit=2)) == ["c6", "c4", "c2", "c0"]
    assert ids(await every_page(store, "carol")) == []
    assert ids(await every_page(store, limit=50))[0] == "anonymous"


async def test_an_update_moves_the_chat_to_the_front(store: Store) -> None:
    """A saved chat is listed first, with its new version and phase."""
    for i in range(3):
        await store.save(rich(f"c{i}"), None)
    await store.save(bump(rich("c0"), phase=Phase.STOPPED), 2)
    page = await store.list("alice")
    assert [(s.chat_id, s.version, s.phase) for s in page.items] == [
        ("c0", 3, Phase.STOPPED),
        ("c2", 2, Phase.DONE),
        ("c1", 2, Phase.DONE),
    ]


async def test_chats_saved_in_the_same_microsecond_page_by_chat_id(
    store: Store, clock: Ticker
) -> None:
    """Ties on updated_at are ordered by chat id, and cursors neither skip nor repeat them."""
    clock.step = 0.0
    names = ["a", "b", "ba", "c", "d", "é", "z"]
    for name in names:
        await store.save(rich(name), None)
    for limit in (1, 2, 3):
        assert ids(await every_page(store, limit=limit)) == sorted(names, reverse=True)
        assert ids(await every_page(store, "alice", limit=limit)) == sorted(names, reverse=True)


async def test_a_chat_moved_to_another_user_leaves_the_first_users_list(store: Store) -> None:
    """The user index follows the conversation's user_id."""
    await store.save(rich(user_id="alice"), None)
    await store.save(bump(rich(user_id="alice"), user_id="bob"), 2)
    assert ids(await every_page(store, "alice")) == []
    assert ids(await every_page(store, "bob")) == ["chat-1"]


async def test_list_rejects_a_bad_cursor_and_limit(store: Store) -> None:
    """A cursor that is not one of ours and a limit out of range are input errors."""
    with pytest.raises(InvalidInputError, match="cursor"):
        await store.list(cursor="not a cursor")
    with pytest.raises(InvalidInputError, match="limit"):
        await store.list(limit=0)


async def test_delete_removes_the_chat_everywhere(store: Store) -> None:
    """A deleted chat is gone from load and list, and can be created again."""
    await store.save(rich(), None)
    await store.save(rich("other"), None)
    assert await store.delete("chat-1") is True
    assert await store.delete("chat-1") is False
    assert await store.load("chat-1") is None
    assert ids(await every_page(store)) == ["other"]
    assert ids(await every_page(store, "alice")) == ["other"]
    await store.save(rich(), None)
    assert await store.load("chat-1") == rich()


async def test_a_payload_from_a_newer_schema_is_refused_on_load(store: Store) -> None:
    """A conversation written by a newer agentfsm is not silently misread."""
    await store.save(attrs.evolve(rich(), schema_version=SCHEMA_VERSION + 1), None)
    with pytest.raises(SerializationError, match="upgrade agentfsm"):
        await store.load("chat-1")


async def test_twenty_racing_writers_from_one_version_have_one_winner(store: Store) -> None:
    """Of 20 coroutines saving over the same loaded version, exactly one succeeds."""
    await store.save(rich(), None)
    everyone_loaded = asyncio.Event()
    loaded = 0

    async def writer(n: int) -> int | ConcurrentUpdateError:
        nonlocal loaded
        conversation = await store.load("chat-1")
        assert conversation is not None
        loaded += 1
        if loaded == 20:
            everyone_loaded.set()
        await everyone_loaded.wait()
        try:
            await store.save(bump(conversation, metadata={"writer": n}), conversation.version)
        except ConcurrentUpdateError as error:
            return error
        return n

    results = await asyncio.gather(*(writer(n) for n in range(20)))
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, ConcurrentUpdateError)]
    assert len(winners) == 1
    assert {(e.expected_version, e.actual_version) for e in losers} == {(2, 3)}
    assert len(losers) == 19
    stored = await store.load("chat-1")
    assert stored is not None
    assert (stored.version, stored.metadata) == (3, {"writer": winners[0]})


async def test_postgres_names_the_nul_character_it_cannot_store(postgres_dsn: str) -> None:
    """jsonb cannot hold U+0000: the save fails with a StoreError saying so, nothing stored."""
    conversation = Conversation(chat_id="nul", messages=(UserMessage("a\x00b"),))
    table = f"chats_{uuid.uuid4().hex}"
    try:
        async with PostgresStore(postgres_dsn, table=table) as store:
            with pytest.raises(StoreError, match="NUL character"):
                await store.save(conversation, None)
            assert await store.load("nul") is None
    finally:
        await _drop_postgres_table(postgres_dsn, table)


# --------------------------------------------------------------------------- hostile input

LONGEST = "é" * (MAX_ID_BYTES // 2)  # 1024 bytes of UTF-8 in 512 characters

BAD_IDS = [
    pytest.param("", "which is empty", id="empty"),
    pytest.param("a\x00b", "NUL character at index 1", id="nul"),
    pytest.param("x" * (MAX_ID_BYTES + 1), "which is 1025 bytes long", id="1025-bytes"),
    pytest.param(LONGEST + "e", "which is 1025 bytes long", id="1025-bytes-in-513-chars"),
    pytest.param("chat-\ud800", "lone surrogate at index 5)", id="surrogate"),
    pytest.param(42, "which is a int", id="int"),
    pytest.param(b"chat-1", "which is a bytes", id="bytes"),
]
RULE = "a non-empty string of at most 1024 bytes of UTF-8, without NUL characters"


@pytest.mark.parametrize(("bad", "problem"), BAD_IDS)
async def test_chat_ids_breaking_the_rule_are_refused_by_every_method(
    store: Store, bad: Any, problem: str
) -> None:
    """load, save and delete refuse a chat id that breaks the one id rule, saying which part."""
    calls = [
        lambda: store.load(bad),
        lambda: store.delete(bad),
        lambda: store.save(attrs.evolve(rich(), chat_id=bad), None),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError) as caught:
            await call()
        assert str(caught.value).startswith(f"chat_id must be {RULE}; got ")
        assert str(caught.value).endswith(problem)
    assert ids(await every_page(store)) == []


@pytest.mark.parametrize(("bad", "problem"), BAD_IDS)
async def test_user_ids_breaking_the_rule_are_refused(store: Store, bad: Any, problem: str) -> None:
    """save and list refuse a user id that breaks the rule (None stays allowed)."""
    with pytest.raises(
        InvalidInputError, match=f"^user_id must be {RULE}; got .*{re.escape(problem)}$"
    ):
        await store.save(rich(user_id=bad), None)
    with pytest.raises(InvalidInputError, match=f"^user_id must be {RULE}"):
        await store.list(user_id=bad)
    assert await store.load("chat-1") is None


async def test_the_longest_ids_are_kept_by_every_store(store: Store) -> None:
    """A chat id and a user id of exactly 1024 bytes are saved, loaded, listed and deleted
    (PostgreSQL indexes both: they fit its btree)."""
    conversation = rich(LONGEST, user_id="ü" * 512)
    await store.save(conversation, None)
    assert await store.load(LONGEST) == conversation
    assert ids(await every_page(store, "ü" * 512, limit=1)) == [LONGEST]
    assert await store.delete(LONGEST) is True


@pytest.mark.parametrize(
    ("version", "expected", "message"),
    [
        (2**63, None, "version must be an int from 0 to 2**63-1, got 9223372036854775808"),
        (-1, None, "version must be an int from 0 to 2**63-1, got -1"),
        (5, 2**64, "expected_version must be None or an int from 0 to 2**63-1"),
        (5, True, "expected_version must be None or an int from 0 to 2**63-1, got True"),
    ],
)
async def test_versions_no_store_can_hold_are_refused(
    store: Store, version: int, expected: Any, message: str
) -> None:
    """A version outside a signed 64-bit integer is an input error, not an overflow."""
    with pytest.raises(InvalidInputError) as caught:
        await store.save(rich(version=version), expected)
    assert message in str(caught.value)


async def test_a_lone_surrogate_is_refused_the_same_by_every_store(store: Store) -> None:
    """Text that is not valid Unicode (a tool's surrogate-escaped bytes) cannot be stored
    anywhere: a StoreError says so, and nothing is written."""
    bad = attrs.evolve(rich(), messages=(UserMessage("file-\udcff.txt"),))
    with pytest.raises(StoreError, match=r"not valid Unicode \(a lone surrogate, '\\udcff'\)"):
        await store.save(bad, None)
    assert await store.load("chat-1") is None


def _cursor(updated_us: Any, chat_id: Any) -> str:
    raw = json.dumps([updated_us, chat_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(10**30, "c1"),  # was an OverflowError in SQLite and PostgreSQL
        _cursor(-(10**30), "c1"),
        _cursor(1, "a\x00b"),  # was a raw DataError in PostgreSQL
        _cursor(1, ""),
        _cursor(1.5, "c1"),
        _cursor("1", "c1"),
        "É",
        "",
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    ],
    ids=[
        "huge",
        "negative-huge",
        "nul",
        "empty-id",
        "float",
        "string",
        "non-ascii",
        "empty",
        "deep",
    ],
)
async def test_hostile_cursors_are_input_errors(store: Store, cursor: str) -> None:
    """A cursor list() did not make is an InvalidInputError, whatever it decodes to."""
    with pytest.raises(InvalidInputError, match="not a list\\(\\) cursor"):
        await store.list(cursor=cursor)


async def test_a_clock_that_gives_no_time_is_a_configuration_error(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A store's clock returning NaN fails the save with a ConfigurationError, not a raw one."""
    for kind in ("memory", "sqlite"):
        made = _make_store(kind, request, tmp_path, lambda: math.nan)  # type: ignore[arg-type]
        async with made:
            with pytest.raises(ConfigurationError, match="clock must give Unix seconds"):
                await made.save(rich(), None)


# The whole promise in one property: any id is either kept (round trip) or refused with
# InvalidInputError, by every store alike; nothing else ever comes out.
_ANY_ID = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.text(st.characters(exclude_categories=()), min_size=300, max_size=1100),
    st.sampled_from([LONGEST, LONGEST + "e", "x" * 1024, "x" * 1025, "\x00", " "]),
)


async def _keep_or_refuse(store: Store, chat_id: str, user_id: str | None) -> None:
    rule_holds = all(
        value is None
        or (value and "\x00" not in value and len(value.encode("utf-8", "replace")) <= 1024
            and not any(0xD800 <= ord(c) <= 0xDFFF for c in value))
        for value in (chat_id, user_id)
    )  # fmt: skip
    conversation = rich(chat_id, user_id=user_id)
    if not rule_holds:
        with pytest.raises(InvalidInputError):
            await store.save(conversation, None)
        return
    await store.save(conversation, None)
    assert await store.load(chat_id) == conversation
    assert chat_id in ids(await every_page(store, user_id, limit=1000))
    assert await store.delete(chat_id) is True


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgres"])
def test_any_id_is_kept_or_refused_by_the_rule(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Arbitrary chat and user ids (NUL, surrogates, 1024+ bytes): a round trip or an
    InvalidInputError, the same in every store."""
    loop = asyncio.new_event_loop()
    made = _make_store(kind, request, tmp_path, Ticker())
    try:
        loop.run_until_complete(made.__aenter__())

        @settings(max_examples=200, deadline=None)
        @given(chat_id=_ANY_ID, user_id=st.none() | _ANY_ID)
        def keep_or_refuse(chat_id: str, user_id: str | None) -> None:
            loop.run_until_complete(_keep_or_refuse(made, chat_id, user_id))

        keep_or_refuse()
    finally:
        loop.run_until_complete(made.aclose())
        if isinstance(made, RedisStore):
            loop.run_until_complete(
                _drop_redis_keys(request.getfixturevalue("redis_url"), made.prefix)
            )
        elif isinstance(made, PostgresStore):
            loop.run_until_complete(
                _drop_postgres_table(request.getfixturevalue("postgres_dsn"), made.table)
            )
        loop.close()


# --------------------------------------------------------------------------- driver errors


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_server_is_a_store_error_but_a_bad_id_is_caught_first() -> None:
    """Redis and PostgreSQL that are down give a StoreError saying so, the driver's error as
    its cause; a bad id is refused before the store tries to connect at all."""
    port = _dead_port()
    stores: list[tuple[Store, type[BaseException], str]] = [
        (RedisStore(f"redis://127.0.0.1:{port}/0"), redis.exceptions.ConnectionError,
         f"cannot reach Redis at 127.0.0.1:{port}"),
        (PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/postgres"),
         psycopg.OperationalError, "cannot reach PostgreSQL"),
    ]  # fmt: skip
    for made, cause, message in stores:
        calls = (
            functools.partial(made.load, "c1"),
            functools.partial(made.delete, "c1"),
            functools.partial(made.save, rich(), None),
            made.list,
        )
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert message in str(caught.value)
            assert "\n" not in str(caught.value)
            assert isinstance(caught.value.__cause__, cause)
        with pytest.raises(InvalidInputError, match="chat_id must be"):
            await made.load("")
        await made.aclose()


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """Pointing SQLiteStore at some other file gives a StoreError saying what to do."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    async with SQLiteStore(path) as made:
        calls = (
            lambda: made.load("c1"),
            lambda: made.save(rich(), None),
            lambda: made.list(),
            lambda: made.delete("c1"),
        )
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert str(caught.value) == (
                f"SQLiteStore({str(path)!r}): file is not a database: give SQLiteStore a new "
                "file, or one it created"
            )
            assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes().startswith(b"these are my notes")


async def test_a_sqlite_lock_held_past_the_timeout_is_a_store_error(tmp_path: Path) -> None:
    """Another process holding the write lock past timeout= gives a StoreError naming it."""
    path = tmp_path / "chats.db"
    async with SQLiteStore(path) as made:
        await made.save(rich(), None)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        async with SQLiteStore(path, timeout=0) as made:
            with pytest.raises(StoreError, match="database is locked: another writer held"):
                await made.save(bump(rich()), 2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SQLiteStore("chats\x00.db"), "SQLiteStore path must be a file name"),
        (lambda: SQLiteStore("c.db", timeout=math.nan), "timeout must be a finite number"),
        (lambda: RedisStore("localhost:6379"), "RedisStore needs a Redis URL"),
        (lambda: RedisStore("redis://x", prefix=None), "prefix must be a string"),  # type: ignore[arg-type]
        (lambda: RedisStopSignal("http://x"), "RedisStopSignal needs a Redis URL"),
        (lambda: PostgresStore("not a dsn"), "PostgresStore needs a libpq connection string"),
        (lambda: PostgresStore("postgresql://h/db", table="a.b.c"), "table must be a name"),
        (lambda: PostgresStore("postgresql://h/db", table=""), "table must be a name"),
        (lambda: PostgresStore("postgresql://h/db", min_size=5, max_size=2), "min_size <="),
    ],
)
def test_bad_store_settings_are_configuration_errors(build: Any, message: str) -> None:
    """Settings that could only fail at the first query are refused when the store is built."""
    with pytest.raises(ConfigurationError, match=message):
        build()


def _corrupt_payload(
    store: Store, request: pytest.FixtureRequest, data: Any, layout: str = "header"
) -> None:
    """Write ``data`` behind the store's back as chat-1's header (``layout="header"``), or
    as its whole payload the way agentfsm 0.1.0 stored it (``layout="whole"``)."""
    whole = layout == "whole"
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as connection:
            connection.execute(
                "UPDATE agentfsm_conversations SET data = ?, layout = ?", (data, 1 if whole else 2)
            )
    elif isinstance(store, RedisStore):
        client = redis_sync.Redis.from_url(request.getfixturevalue("redis_url"))
        if whole:
            client.delete(*redis_chat_keys(store.prefix, "chat-1"))
            client.hset(
                f"{store.prefix}chat:chat-1",
                mapping={"data": data, "version": "2", "phase": "done", "agent_name": "a"},
            )
        else:
            client.hset(redis_chat_keys(store.prefix, "chat-1")[0], "data", data)
        client.close()
    elif isinstance(store, PostgresStore):
        with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as db:
            db.execute(
                psycopg.sql.SQL("UPDATE {} SET data = %s::jsonb, layout = %s").format(
                    psycopg.sql.Identifier(store.table)
                ),
                (data, 1 if whole else 2),
            )
    else:  # pragma: no cover - durable_store holds only the three above
        raise AssertionError(f"cannot write behind a {type(store).__name__}'s back")


def redis_chat_keys(prefix: str, chat_id: str) -> list[str]:
    """The keys RedisStore keeps a chat under (its documented layout): header, messages,
    request records, transitions, lease."""
    base = f"{prefix}c{{{chat_id}}}:"
    return [f"{base}h", f"{base}m", f"{base}r", f"{base}t", f"{base}lease"]


@pytest.mark.parametrize("layout", ["header", "whole"])
@pytest.mark.parametrize(
    ("data", "says"),
    [
        ('{"schema_version": 1, "chat_id": "chat-1", "phase": 5}', "not a valid conversation"),
        ("[1, 2, 3]", "must be a JSON object"),
        ('{"schema_version": "one"}', "invalid schema_version"),
        ("[" * 5000 + "]" * 5000, "does not load"),
    ],
    ids=["wrong-shape", "array", "bad-schema-version", "deep"],
)
async def test_a_stored_payload_that_does_not_load_is_a_serialization_error(
    durable_store: Store, request: pytest.FixtureRequest, data: str, says: str, layout: str
) -> None:
    """A header or a whole (0.1.0) payload another program wrote (or broke) fails load()
    with a SerializationError naming the chat, never with the decoder's own exception."""
    await durable_store.save(rich(), None)
    _corrupt_payload(durable_store, request, data, layout)
    with pytest.raises(SerializationError) as caught:
        await durable_store.load("chat-1")
    assert str(caught.value).startswith("stored chat 'chat-1' does not load: ")
    assert says in str(caught.value)


async def test_foreign_data_under_a_redis_prefix_is_a_typed_error(redis_url: str) -> None:
    """A payload that is not UTF-8, a chat key of the wrong type and broken columns give a
    SerializationError or StoreError, not redis-py's or Python's own exceptions."""
    prefix = f"test-{uuid.uuid4().hex}:"
    client = redis_sync.Redis.from_url(redis_url)
    try:
        async with RedisStore(redis_url, prefix=prefix) as made:
            await made.save(rich(), None)
            header = redis_chat_keys(prefix, "chat-1")[0]
            client.hset(header, "data", b"\xff\xfe not utf-8")
            with pytest.raises(SerializationError, match="its data is not UTF-8 text"):
                await made.load("chat-1")
            await made.save(rich("chat-2"), None)
            client.lset(redis_chat_keys(prefix, "chat-2")[1], 0, b"\xff not utf-8")
            with pytest.raises(SerializationError, match="its data is not UTF-8 text"):
                await made.load("chat-2")
            client.hset(header, "phase", "dancing")
            with pytest.raises(SerializationError, match="'chat-1' has columns agentfsm did not"):
                await made.list()
            client.set(redis_chat_keys(prefix, "other")[0], "a plain string")
            with pytest.raises(StoreError, match="a key under the prefix holds something") as err:
                await made.load("other")
            client.delete(redis_chat_keys(prefix, "other")[0])
            client.set(f"{prefix}chat:other", "a plain string")
            with pytest.raises(StoreError, match="a key under the prefix holds something") as err:
                await made.load("other")
            assert isinstance(err.value.__cause__, redis.exceptions.ResponseError)
    finally:
        client.close()
        await _drop_redis_keys(redis_url, prefix)


async def test_postgres_names_a_nul_in_any_text_column(postgres_dsn: str) -> None:
    """A NUL in the agent name (a text column, not the jsonb) is the same StoreError."""
    table = f"chats_{uuid.uuid4().hex}"
    try:
        async with PostgresStore(postgres_dsn, table=table) as made:
            with pytest.raises(StoreError, match="holds a NUL character") as caught:
                await made.save(attrs.evolve(rich(), agent_name="bad\x00name"), None)
            assert isinstance(caught.value.__cause__, psycopg.DataError)
    finally:
        await _drop_postgres_table(postgres_dsn, table)


# --------------------------------------------------------------------------- SQLite processes

_WORKER = """
import asyncio, json, sys
import attrs
from agentfsm.store import ConcurrentUpdateError, SQLiteStore

async def main(path, name, target):
    async with SQLiteStore(path) as store:
        await store.load("race")  # open the file before the start line
        print("ready", flush=True)
        sys.stdin.readline()
        wins = conflicts = 0
        while True:
            conversation = await store.load("race")
            if conversation.version >= target:
                break
            log = [*conversation.metadata["log"], [conversation.version + 1, name]]
            version = conversation.version
            new = attrs.evolve(conversation, version=version + 1, metadata={"log": log})
            try:
                await store.save(new, version)
                wins += 1
            except ConcurrentUpdateError:
                conflicts += 1
    print(json.dumps({"wins": wins, "conflicts": conflicts}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_sqlite_processes_racing_lose_nothing(tmp_path: Path) -> None:
    """4 processes advancing one chat: one winner per version, every win in the log."""
    path, target = tmp_path / "race.db", 60
    async with SQLiteStore(path) as store:
        await store.save(Conversation(chat_id="race", metadata={"log": []}), None)
    workers = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", _WORKER, str(path), f"p{n}", str(target)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=tmp_path,
        )
        for n in range(4)
    ]
    for worker in workers:  # everyone is connected before anyone starts
        assert worker.stdout is not None
        assert await asyncio.wait_for(worker.stdout.readline(), 30) == b"ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
    outputs = [await asyncio.wait_for(w.communicate(), 60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0]
    results = {f"p{n}": json.loads(out) for n, (out, _) in enumerate(outputs)}

    async with SQLiteStore(path) as store:
        final = await store.load("race")
    assert final is not None
    assert final.version == target
    log = final.metadata["log"]
    assert [version for version, _ in log] == list(range(1, target + 1))
    assert sum(r["wins"] for r in results.values()) == target
    for name, result in results.items():
        assert [n for _, n in log].count(name) == result["wins"]


async def test_a_closed_sqlite_store_refuses_work(tmp_path: Path) -> None:
    """Using a SQLite store after aclose() is an error, not a hang."""
    store = SQLiteStore(tmp_path / "chats.db")
    await store.save(rich(), None)
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.load("chat-1")


# --------------------------------------------------------------------------- stop signal


async def test_redis_stop_signal_is_shared_between_instances(redis_url: str) -> None:
    """A stop requested through one instance is seen by another, with a TTL, until cleared."""
    prefix = f"test-{uuid.uuid4().hex}:"
    try:
        async with (
            RedisStopSignal(redis_url, prefix=prefix, ttl=60) as button,
            RedisStopSignal(redis_url, prefix=prefix) as watcher,
        ):
            assert await watcher(chat_id="c1") is False
            await button.request_stop("c1")
            assert await watcher(chat_id="c1") is True
            assert await watcher(chat_id="c2") is False
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                assert 0 < await client.ttl(f"{prefix}stop:c1") <= 60
            finally:
                await client.aclose()
            assert await watcher.clear("c1") is True
            assert await button(chat_id="c1") is False
    finally:
        await _drop_redis_keys(redis_url, prefix)


async def test_redis_stop_signal_stops_an_agent_run(
    redis_url: str, server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Passed as manual_stop_signal_function, a stop pressed elsewhere ends the run; a stale
    stop left from before is cleared when the next run starts."""
    prefix = f"test-{uuid.uuid4().hex}:"
    try:
        async with (
            RedisStopSignal(redis_url, prefix=prefix) as button,
            RedisStopSignal(redis_url, prefix=prefix) as signal,
        ):
            server.add(fault.hang(), text("fresh run"))

            async def press(event: Any) -> None:
                await button.request_stop(event.chat_id)

            agent = make_agent(
                manual_stop_signal_function=signal,
                check_for_stop_signal_time=0.05,
                hooks={"on_before_request": press},
            )
            response = await agent.send_message("hi", chat_id="c1")
            assert response.stop_reason is StopReason.USER_STOP
            assert len(server.requests) == 1
            assert await signal(chat_id="c1")  # still set: nobody cleared it yet

            quiet = make_agent(manual_stop_signal_function=signal)
            again = await quiet.send_message("again", conversation=response.conversation)
            assert again.output == "fresh run"
    finally:
        await _drop_redis_keys(redis_url, prefix)


# --------------------------------------------------------------------------- packaging


def test_importing_the_store_package_loads_no_client_library() -> None:
    """``import agentfsm.store`` works without redis or psycopg being imported."""
    code = (
        "import sys, agentfsm.store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'psycopg')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_store_exports_exactly_the_public_names() -> None:
    """``agentfsm.store.__all__`` is pinned: the stores, the protocols, their types, their
    errors."""
    import agentfsm.store

    assert set(agentfsm.store.__all__) == {
        "MAX_ID_BYTES",
        "ChatPage",
        "ChatSummary",
        "ConcurrentUpdateError",
        "LeaseLostError",
        "LeaseStore",
        "MemoryStore",
        "PostgresStore",
        "RedisStopSignal",
        "RedisStore",
        "SQLiteStore",
        "Store",
        "StoreError",
    }
