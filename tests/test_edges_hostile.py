"""Hostile input at the edges an agent meets: the caller's ids, a store's payloads, a tool's
text, and the clients of the scripted server. Each ends in an ``AgentFSMError`` subclass or a
finished conversation, never in a raw Python exception."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfsm import (
    AsyncOpenAISimpleAgent,
    InvalidInputError,
    Phase,
    SerializationError,
    tool,
)
from agentfsm.store import MemoryStore, SQLiteStore, Store, StoreError
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

NUL_ID = "chat\x00one"
LONG_ID = "é" * 513  # 1026 bytes of UTF-8
SURROGATE = "name-\udcff.txt"  # what os.fsdecode makes of a file name that is not UTF-8


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An embedded store (the networked ones run the same checks: tests/test_store.py)."""
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "c.db")
    async with made:
        yield made


def _agent(server: ScriptedOpenAIServer, store: Store | None, **options: Any) -> Any:
    return AsyncOpenAISimpleAgent(
        model="m",
        api_key="k",
        base_url=server.base_url,
        store=store,
        context_handling_method="simple",
        **options,
    )


# --------------------------------------------------------------------------- caller -> store


@pytest.mark.parametrize(
    ("ids", "names"),
    [
        ({"chat_id": ""}, "chat_id must be"),
        ({"chat_id": NUL_ID}, "chat_id must be"),
        ({"chat_id": LONG_ID}, "chat_id must be"),
        ({"chat_id": "c1", "user_id": NUL_ID}, "user_id must be"),
        ({"chat_id": "c1", "user_id": LONG_ID}, "user_id must be"),
        ({"chat_id": "c1", "user_id": ""}, "user_id must be"),
    ],
    ids=["empty", "nul", "1026-bytes", "user-nul", "user-1026-bytes", "user-empty"],
)
async def test_ids_no_store_can_keep_are_refused_before_anything_is_sent(
    store: Store, ids: dict[str, str], names: str
) -> None:
    """An empty, NUL-holding or over-long chat or user id is an InvalidInputError naming the
    rule: no chat is created under another id, and no model request is sent."""
    async with ScriptedOpenAIServer([text("never")]) as server, _agent(server, store) as agent:
        with pytest.raises(InvalidInputError, match=names):
            await agent.send_message("hi", **ids)
        assert server.requests == []
    assert (await store.list()).items == ()


# --------------------------------------------------------------------------- store -> agent


async def test_a_stored_chat_that_does_not_load_stops_the_agent_with_a_serialization_error(
    tmp_path: Path,
) -> None:
    """A chat another program broke in the database: send_message and resume raise a
    SerializationError naming the chat, and send nothing to the model."""
    path = tmp_path / "chats.db"
    async with (
        ScriptedOpenAIServer([text("first"), text("never")]) as server,
        SQLiteStore(path) as store,
        _agent(server, store) as agent,
    ):
        await agent.send_message("hi", chat_id="c1")
        with sqlite3.connect(path) as db:
            db.execute("UPDATE agentfsm_conversations SET data = '{\"messages\": 5}'")
        for attempt in (lambda: agent.send_message("again", chat_id="c1"),
                        lambda: agent.resume("c1")):  # fmt: skip
            with pytest.raises(SerializationError, match=r"^stored chat 'c1' does not load: "):
                await attempt()
        assert len(server.requests) == 1


async def test_a_store_that_is_not_a_database_is_a_store_error_for_the_agent(
    tmp_path: Path,
) -> None:
    """An agent whose SQLite file is something else fails with a StoreError saying so."""
    path = tmp_path / "chats.db"
    path.write_bytes(b"\x00\x01 not sqlite " * 100)
    async with (
        ScriptedOpenAIServer([text("never")]) as server,
        SQLiteStore(path) as store,
        _agent(server, store) as agent,
    ):
        with pytest.raises(StoreError, match="file is not a database: give") as caught:
            await agent.send_message("hi", chat_id="c1")
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
        assert server.requests == []


# --------------------------------------------------------------------------- tool -> store


@tool
def list_files(folder: str) -> str:
    """Lists a folder."""
    return f"{folder}: {SURROGATE}"


async def test_a_tool_result_no_store_can_keep_never_escapes_raw(store: Store) -> None:
    """A tool returning text that is not valid Unicode (a surrogate-escaped file name): the
    checkpoint fails with a StoreError saying what to replace (the last good checkpoint is
    kept), or the text was made storable first; never a UnicodeEncodeError."""
    script = [tool_calls(call("list_files", {"folder": "."})), text("done")]
    async with (
        ScriptedOpenAIServer(script) as server,
        _agent(server, store, tool_registry=[list_files]) as agent,
    ):
        refused: StoreError | None = None
        try:
            response = await agent.send_message("what is here?", chat_id="c1")
        except StoreError as error:
            refused = error
    stored = await store.load("c1")
    if refused is None:
        assert stored == response.conversation
    else:
        assert "lone surrogate, '\\udcff'" in str(refused)
        assert refused.chat_id == "c1"
        assert stored is not None
        assert stored.phase is Phase.EXECUTING_TOOLS


# --------------------------------------------------------------------------- client -> server

_BODIES: list[tuple[bytes, int, str]] = [
    (b"", 400, "not valid JSON"),
    (b"not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00\x01", 400, "not valid JSON"),
    (b"[1, 2]", 400, "not a JSON object"),
    (b"null", 400, "not a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    (b'{"messages": "not a list"}', 200, ""),
]


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    async with session.post(
        f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, json.loads(await response.read())


@pytest.mark.parametrize(("body", "status", "says"), _BODIES)
async def test_hostile_request_bodies_get_a_clear_answer_and_no_error_log(
    caplog: pytest.LogCaptureFixture, body: bytes, status: int, says: str
) -> None:
    """Bodies that are not JSON, not UTF-8, not an object or nested 100,000 deep get a 400
    saying so; the server logs no error and answers the next request."""
    caplog.set_level(logging.DEBUG)
    async with (
        ScriptedOpenAIServer([text("ok"), text("next")]) as server,
        aiohttp.ClientSession() as session,
    ):
        answered, payload = await _post(session, server.base_url, body)
        assert answered == status
        assert says in json.dumps(payload)
        again, _ = await _post(session, server.base_url, b'{"messages": []}')
        assert again == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_any_request_body_gets_an_answer_and_never_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Arbitrary bytes as a request body: a 200 for a JSON object, else a 400; the server
    never answers 500 and never logs at WARNING or above."""
    caplog.set_level(logging.DEBUG)
    loop = asyncio.new_event_loop()
    server = ScriptedOpenAIServer(lambda request: text("ok"))
    session: aiohttp.ClientSession | None = None
    try:
        loop.run_until_complete(server.__aenter__())
        session = loop.run_until_complete(_session())

        @settings(max_examples=200, deadline=None)
        @given(body=st.one_of(st.binary(max_size=64), _json_bytes()))
        def answers(body: bytes) -> None:
            assert session is not None
            status, _ = loop.run_until_complete(_post(session, server.base_url, body))
            assert status == (200 if _is_object(body) else 400)

        answers()
    finally:
        if session is not None:
            loop.run_until_complete(session.close())
        loop.run_until_complete(server.__aexit__(None, None, None))
        loop.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def _json_bytes() -> st.SearchStrategy[bytes]:
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
    return values.map(lambda value: json.dumps(value).encode())


def _is_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


# --------------------------------------------------------------------------- the promise


@pytest.mark.parametrize("with_store", [False, True])
async def test_a_message_that_is_not_valid_unicode_is_refused(
    tmp_path: Path, with_store: bool
) -> None:
    """A lone surrogate in the user's message cannot be sent to any model nor kept in any
    store: ``InvalidInputError`` before anything is sent or saved."""
    store = SQLiteStore(tmp_path / "c.db") if with_store else None
    async with ScriptedOpenAIServer([text("never")]) as server, _agent(server, store) as agent:
        try:
            with pytest.raises(InvalidInputError, match="lone surrogate at index"):
                await agent.send_message(f"open {SURROGATE}", chat_id="c1")
            assert server.requests == []
        finally:
            if store is not None:
                await store.aclose()


@pytest.mark.parametrize("with_store", [False, True])
async def test_a_tool_result_that_is_not_valid_unicode_is_made_sendable(
    tmp_path: Path, with_store: bool
) -> None:
    """A tool returning a lone surrogate (a file name decoded with surrogateescape): the
    character is replaced, the model reads the rest, and the run goes on (and is stored)."""
    store = SQLiteStore(tmp_path / "c.db") if with_store else None
    script = [tool_calls(call("list_files", {"folder": "."})), text("done")]
    async with (
        ScriptedOpenAIServer(script) as server,
        _agent(server, store, tool_registry=[list_files]) as agent,
    ):
        try:
            response = await agent.send_message("what is here?", chat_id="c1")
        finally:
            if store is not None:
                await store.aclose()
    assert response.output == "done"
    (result,) = [m["content"] for m in server.requests[1].messages if m["role"] == "tool"]
    assert SURROGATE not in result
    assert "?" in result
