"""``SQLiteStore``: the embedded default, one SQLite file shared by coroutines and processes."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agentfsm.errors import ConfigurationError
from agentfsm.state import Conversation
from agentfsm.store._base import (
    ChatPage,
    ChatSummary,
    Clock,
    ConcurrentUpdateError,
    StoreError,
    _Closing,
    check_chat_id,
    check_limit,
    check_save,
    check_user_id,
    decode,
    decode_cursor,
    default_clock,
    encode,
    now_us,
    page,
    summary,
    translated,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

TABLE = "agentfsm_conversations"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    chat_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT,
    agent_name TEXT NOT NULL,
    phase TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,  -- microseconds since the Unix epoch
    data TEXT NOT NULL  -- the JSON of agentfsm.dumps
);
CREATE INDEX IF NOT EXISTS {TABLE}_recent ON {TABLE} (updated_at DESC, chat_id DESC);
CREATE INDEX IF NOT EXISTS {TABLE}_user_recent
    ON {TABLE} (user_id, updated_at DESC, chat_id DESC);
"""

_INSERT = f"""
INSERT INTO {TABLE}
    (chat_id, user_id, agent_name, phase, version, schema_version, updated_at, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (chat_id) DO NOTHING
"""

_UPDATE = f"""
UPDATE {TABLE}
SET user_id = ?2, agent_name = ?3, phase = ?4, version = ?5, schema_version = ?6,
    updated_at = ?7, data = ?8
WHERE chat_id = ?1 AND version = ?9
"""

_COLUMNS = "chat_id, user_id, agent_name, phase, version, updated_at"

_Row = tuple[str, "str | None", str, str, int, int, int, str]

# What SQLite says, and what to do about it.
_ADVICE = {
    "file is not a database": "give SQLiteStore a new file, or one it created",
    "database is locked": "another writer held the lock for longer than the store's timeout: "
    "raise timeout=, or find the process that holds it",
    "unable to open database file": "check that its folder exists and is writable",
    "readonly database": "the file (or its folder) is read-only: the store needs to write",
}


class SQLiteStore(_Closing):
    """Conversations in one SQLite file: the embedded default, no server to run.

    The file is opened in WAL mode, so readers never wait for a writer; a save is a
    compare-and-set inside ``BEGIN IMMEDIATE``, so any number of coroutines, threads and
    processes on one machine can share the file safely. All SQLite work runs on one worker
    thread per store (the event loop never blocks on the disk); the table is created on
    first use. Do not put the file on a network file system: WAL needs shared memory.

    Args:
        path: the database file (created if missing), or ``":memory:"`` for a private one.
        timeout: seconds a save waits for another process's write lock before a
            ``StoreError`` ("database is locked").
        clock: Unix time in seconds, for ``updated_at`` (default ``time.time``).

    Raises:
        ConfigurationError: ``path`` holds a NUL character or ``timeout`` is not a finite
            number >= 0.

    Errors of SQLite itself (a file that is not a database, a lock held past ``timeout``)
    come out as ``StoreError``, SQLite's own error as its ``__cause__``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        clock: Clock = default_clock,
    ) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str) or "\x00" in self.path:
            raise ConfigurationError(f"SQLiteStore path must be a file name, got {path!r}")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise ConfigurationError(
                f"SQLiteStore timeout must be a finite number of seconds >= 0, got {timeout!r}"
            )
        self._timeout = timeout
        self._clock = clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentfsm-sqlite")
        self._connection: sqlite3.Connection | None = None  # touched by the worker only
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        check_chat_id(chat_id)
        payload = await self._run(_load, chat_id)
        return None if payload is None else decode(payload, chat_id)

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        """Store ``conversation`` if the stored chat is at ``expected_version`` (see ``Store``)."""
        check_save(conversation, expected_version)
        row: _Row = (
            conversation.chat_id,
            conversation.user_id,
            conversation.agent_name,
            conversation.phase.value,
            conversation.version,
            conversation.schema_version,
            now_us(self._clock),
            encode(conversation),
        )
        won, actual = await self._run(_save, row, expected_version)
        if not won:
            raise ConcurrentUpdateError(conversation.chat_id, expected_version, actual)

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        check_chat_id(chat_id)
        return await self._run(_delete, chat_id)

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        """Stored chats, newest-updated first (see ``Store.list``)."""
        check_user_id(user_id)
        check_limit(limit)
        after = decode_cursor(cursor)
        rows = await self._run(_list, user_id, limit + 1, after)
        return page(rows, limit)

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._worker, self._disconnect)
        finally:
            self._worker.shutdown(wait=True)

    # ------------------------------------------------------------------ worker thread

    async def _run(self, action: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

        def call() -> T:
            return action(self._connect(), *args)

        with translated((sqlite3.Error,), self._explain):
            return await asyncio.get_running_loop().run_in_executor(self._worker, call)

    def _explain(self, error: BaseException) -> str:
        text = str(error)
        advice = next((tip for cause, tip in _ADVICE.items() if cause in text), None)
        if advice is None:
            return f"{self!r}: SQLite failed: {type(error).__name__}: {text}"
        return f"{self!r}: {text}: {advice}"

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        # isolation_level=None: no implicit transactions; we BEGIN where we mean it.
        connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against a crash of the process in WAL mode; a power cut may
            # lose the last saves, never the file. A lost save is a version the next
            # compare-and-set sees, so it cannot be overwritten silently either.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _load(connection: sqlite3.Connection, chat_id: str) -> object:
    row = connection.execute(f"SELECT data FROM {TABLE} WHERE chat_id = ?", (chat_id,)).fetchone()
    return None if row is None else row[0]  # decode() judges what another writer put there


def _save(
    connection: sqlite3.Connection, row: _Row, expected_version: int | None
) -> tuple[bool, int | None]:
    """``(True, None)`` if written, else ``(False, the stored version)``."""
    connection.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write
    try:
        if expected_version is None:
            written = connection.execute(_INSERT, row).rowcount
        else:
            written = connection.execute(_UPDATE, (*row, expected_version)).rowcount
        if written == 1:
            connection.execute("COMMIT")
            return True, None
        found = connection.execute(
            f"SELECT version FROM {TABLE} WHERE chat_id = ?", (row[0],)
        ).fetchone()
        connection.execute("ROLLBACK")
        return False, None if found is None else int(found[0])
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _delete(connection: sqlite3.Connection, chat_id: str) -> bool:
    return connection.execute(f"DELETE FROM {TABLE} WHERE chat_id = ?", (chat_id,)).rowcount > 0


def _list(
    connection: sqlite3.Connection, user_id: str | None, limit: int, after: tuple[int, str] | None
) -> tuple[tuple[ChatSummary, int], ...]:
    where: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    if after is not None:
        where.append("(updated_at, chat_id) < (?, ?)")
        params.extend(after)
    sql = f"SELECT {_COLUMNS} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY updated_at DESC, chat_id DESC LIMIT ?"
    params.append(limit)
    rows = []
    for chat_id, user, agent, phase, version, updated in connection.execute(sql, params):
        item = summary(chat_id, user, agent, phase, version, updated)  # checks the columns
        rows.append((item, int(updated)))
    return tuple(rows)
