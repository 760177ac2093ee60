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
    check_lease_ttl,
    check_limit,
    check_owner,
    check_user_id,
    decode_cursor,
    default_clock,
    lease_after,
    lease_lost,
    now_us,
    page,
    summary,
    translated,
)
from agentfsm.store._layout import (
    LAYOUT_PARTS,
    Checkpoint,
    Mark,
    Marks,
    PartsStore,
    checkpoint_off_loop,
    decode_off_loop,
    decode_parts_off_loop,
    loaded_mark,
    migrate_all,
    stored_mark,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

TABLE = "agentfsm_conversations"
ITEMS = "agentfsm_conversation_items"

# A chat is a row of TABLE: the columns list() reads, and `data`, which holds the header of
# the chat's items (layout 2) or, in rows written by agentfsm 0.1.0, the whole conversation
# (layout 1, migrated by the first save). The items (messages, request records, transitions:
# kind 0, 1, 2) are rows of ITEMS, numbered from 0 within their kind.
_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    chat_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT,
    agent_name TEXT NOT NULL,
    phase TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,  -- microseconds since the Unix epoch
    data TEXT NOT NULL  -- layout 2: the header; layout 1: the JSON of agentfsm.dumps
)
"""

# Columns added to the table of 0.1.0 (ALTER TABLE, in order) and created with it since.
_ADDED = (
    ("layout", "INTEGER NOT NULL DEFAULT 1"),
    ("n_messages", "INTEGER NOT NULL DEFAULT 0"),
    ("n_requests", "INTEGER NOT NULL DEFAULT 0"),
    ("n_transitions", "INTEGER NOT NULL DEFAULT 0"),
    ("tail", "TEXT"),
    ("lease_owner", "TEXT"),
    ("lease_until", "INTEGER"),  # microseconds since the Unix epoch, by the store's clock
)

_INDEXES = f"""
CREATE INDEX IF NOT EXISTS {TABLE}_recent ON {TABLE} (updated_at DESC, chat_id DESC);
CREATE INDEX IF NOT EXISTS {TABLE}_user_recent
    ON {TABLE} (user_id, updated_at DESC, chat_id DESC);
CREATE INDEX IF NOT EXISTS {TABLE}_running ON {TABLE} (updated_at)
    WHERE phase NOT IN ('done', 'stopped');
CREATE TABLE IF NOT EXISTS {ITEMS} (
    chat_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (chat_id, kind, seq)
);
"""

_HEADER = f"""
SELECT version, layout, n_messages, n_requests, n_transitions, tail, lease_owner, lease_until
FROM {TABLE} WHERE chat_id = ?
"""

_INSERT = f"""
INSERT INTO {TABLE} (chat_id, user_id, agent_name, phase, version, schema_version, updated_at,
    data, layout, n_messages, n_requests, n_transitions, tail, lease_owner, lease_until)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_UPDATE = f"""
UPDATE {TABLE}
SET user_id = ?2, agent_name = ?3, phase = ?4, version = ?5, schema_version = ?6,
    updated_at = ?7, data = ?8, layout = ?9, n_messages = ?10, n_requests = ?11,
    n_transitions = ?12, tail = ?13, lease_owner = ?14, lease_until = ?15
WHERE chat_id = ?1
"""

_INSERT_ITEM = f"INSERT OR REPLACE INTO {ITEMS} (chat_id, kind, seq, data) VALUES (?, ?, ?, ?)"

_COLUMNS = "chat_id, user_id, agent_name, phase, version, updated_at"

# What SQLite says, and what to do about it.
_ADVICE = {
    "file is not a database": "give SQLiteStore a new file, or one it created",
    "database is locked": "another writer held the lock for longer than the store's timeout: "
    "raise timeout=, or find the process that holds it",
    "unable to open database file": "check that its folder exists and is writable",
    "readonly database": "the file (or its folder) is read-only: the store needs to write",
}


class SQLiteStore(PartsStore, _Closing):
    """Conversations in one SQLite file: the embedded default, no server to run.

    The file is opened in WAL mode, so readers never wait for a writer; a save is a
    compare-and-set inside ``BEGIN IMMEDIATE``, so any number of coroutines, threads and
    processes on one machine can share the file safely. A save writes what changed since the
    stored version (the new messages, request records and transitions, and a small header),
    not the whole conversation. All SQLite work runs on one worker thread per store (the
    event loop never blocks on the disk); the tables are created on first use, and a file
    written by agentfsm 0.1.0 is upgraded in place (each chat on its first save, or all of
    them by ``agentfsm migrate``). Do not put the file on a network file system: WAL needs
    shared memory.

    Args:
        path: the database file (created if missing), or ``":memory:"`` for a private one.
        timeout: seconds a save waits for another process's write lock before a
            ``StoreError`` ("database is locked").
        clock: Unix time in seconds, for ``updated_at`` and lease expiry (default
            ``time.time``; every process sharing the file reads the same system clock).
        lease_ttl: seconds a run's lease on its chat lasts unless renewed.

    Raises:
        ConfigurationError: ``path`` holds a NUL character, ``timeout`` is not a finite
            number >= 0, or ``lease_ttl`` is not 0.01 to 86400 seconds.

    Errors of SQLite itself (a file that is not a database, a lock held past ``timeout``)
    come out as ``StoreError``, SQLite's own error as its ``__cause__``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        clock: Clock = default_clock,
        lease_ttl: float = 30.0,
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
        self.lease_ttl = check_lease_ttl(lease_ttl, "SQLiteStore")
        self._timeout = timeout
        self._clock = clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentfsm-sqlite")
        self._connection: sqlite3.Connection | None = None  # touched by the worker only
        self._closed = False
        self._marks = Marks()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        check_chat_id(chat_id)
        found = await self._run(_load, chat_id)
        if found is None:
            return None
        layout, data, parts, counts, version, tail = found
        if layout != LAYOUT_PARTS:
            conversation = await decode_off_loop(data, chat_id)
            self._marks.forget(chat_id)
            return conversation
        conversation = await decode_parts_off_loop(data, parts, counts, chat_id)
        if isinstance(tail, str) and version == conversation.version:
            self._marks.put(chat_id, version, loaded_mark(conversation, tail))
        return conversation

    async def _write(
        self,
        conversation: Conversation,
        expected_version: int | None,
        lease: str | None,
        *,
        migrating: bool = False,
    ) -> bool:
        """Write ``conversation`` (see ``save``); False if, migrating, it needed no rewrite."""
        chat_id = conversation.chat_id
        base = self._marks.get(chat_id, expected_version)
        if base is None and expected_version is not None and not migrating:
            base = await self._run(_mark, chat_id, expected_version)
        ttl = round(self.lease_ttl * 1e6)
        for _ in range(3):
            written = await checkpoint_off_loop(conversation, base)
            row = (
                chat_id,
                conversation.user_id,
                conversation.agent_name,
                conversation.phase.value,
                conversation.version,
                conversation.schema_version,
                now_us(self._clock),
                written.header,
            )
            outcome, found = await self._run(
                _save, row, written, expected_version, lease, ttl, migrating
            )
            if outcome == "ok":
                self._marks.put(chat_id, conversation.version, written.mark)
                return True
            if outcome == "skip":
                return False
            self._marks.forget(chat_id)
            if outcome == "conflict":
                raise ConcurrentUpdateError(chat_id, expected_version, found)
            if outcome == "leased":
                lease_lost(chat_id, expected_version, expected_version, found)
            base = None  # the stored items are not what this instance thought: write in full
        raise StoreError(f"{self!r}: chat {chat_id!r} could not be written", chat_id)

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        check_chat_id(chat_id)
        self._marks.forget(chat_id)
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

    async def take_lease(self, chat_id: str, owner: str, *, steal: bool = False) -> bool:
        """Lease ``chat_id`` to ``owner`` (see ``LeaseStore.take_lease``)."""
        check_chat_id(chat_id)
        check_owner(owner)
        return await self._run(
            _take_lease, chat_id, owner, steal, now_us(self._clock), round(self.lease_ttl * 1e6)
        )

    async def release_lease(self, chat_id: str, owner: str) -> bool:
        """End ``owner``'s lease on ``chat_id`` (see ``LeaseStore.release_lease``)."""
        check_chat_id(chat_id)
        check_owner(owner)
        return await self._run(_release_lease, chat_id, owner)

    async def claim_abandoned(self, owner: str, limit: int = 100) -> tuple[str, ...]:
        """Lease to ``owner`` the running chats no live lease covers (see ``LeaseStore``)."""
        check_owner(owner)
        check_limit(limit)
        return await self._run(
            _claim, owner, limit, now_us(self._clock), round(self.lease_ttl * 1e6)
        )

    async def migrate(self) -> int:
        """Rewrite every chat stored whole (by agentfsm 0.1.0) in the current layout, at the
        same version; the number rewritten. Safe while workers use the store: each chat is
        rewritten with a compare-and-set on its version, and a chat that does not load is
        left as it is (``load`` keeps saying why)."""

        async def legacy(after: str | None) -> tuple[str, ...]:
            return await self._run(_legacy, after, 100)

        return await migrate_all(self, legacy)

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
            _create(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _create(connection: sqlite3.Connection) -> None:
    """The tables, made or upgraded (from 0.1.0's) in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(_TABLE)
        have = {row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")}
        for name, kind in _ADDED:
            if name not in have:
                connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind}")
        for statement in _INDEXES.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _int(value: object) -> int | None:
    """A stored integer column, or None when another program put something else there."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_Loaded = tuple[object, object, tuple[list[object], ...], tuple[object, ...], object, object]


def _load(connection: sqlite3.Connection, chat_id: str) -> _Loaded | None:
    # One read transaction: the header and its items are of the same save.
    connection.execute("BEGIN")
    try:
        row = connection.execute(
            f"SELECT layout, data, n_messages, n_requests, n_transitions, version, tail "
            f"FROM {TABLE} WHERE chat_id = ?",
            (chat_id,),
        ).fetchone()
        if row is None:
            return None
        layout, data, *counts, version, tail = row
        parts: tuple[list[object], ...] = ([], [], [])
        if layout == LAYOUT_PARTS:
            parts = tuple(
                [
                    item
                    for (item,) in connection.execute(
                        f"SELECT data FROM {ITEMS} WHERE chat_id = ? AND kind = ? AND seq < ? "
                        "ORDER BY seq",
                        (chat_id, kind, count if isinstance(count, int) else 0),
                    )
                ]
                for kind, count in enumerate(counts)
            )
        return layout, data, parts, tuple(counts), version, tail  # decode judges them
    finally:
        connection.execute("COMMIT")


def _save(
    connection: sqlite3.Connection,
    row: tuple[Any, ...],
    written: Checkpoint,
    expected_version: int | None,
    lease: str | None,
    ttl: int,
    migrating: bool = False,
) -> tuple[str, Any]:
    """``("ok", None)`` if written; else ``("conflict", the stored version)``, ``("leased",
    the holder)`` or ``("stale", None)`` (the stored items are not the checkpoint's base)."""
    connection.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write
    try:
        chat_id, now = row[0], row[6]
        found = connection.execute(_HEADER, (chat_id,)).fetchone()
        actual = None if found is None else _int(found[0])
        if found is not None and actual is None:
            actual = -1  # a version another program wrote: no save can expect it
        if actual != expected_version:
            connection.execute("ROLLBACK")
            return "conflict", actual
        holder, until = (found[6], _int(found[7])) if found is not None else (None, None)
        if (
            lease is not None
            and isinstance(holder, str)
            and holder != lease
            and until is not None
            and until >= now
        ):
            connection.execute("ROLLBACK")
            return "leased", holder
        base = written.base
        if base is not None and (
            found is None
            or found[1] != LAYOUT_PARTS
            or (found[2], found[3], found[4]) != base.counts
            or found[5] != base.tail
        ):
            connection.execute("ROLLBACK")
            return "stale", None
        if migrating and (found is None or found[1] == LAYOUT_PARTS):
            connection.execute("ROLLBACK")
            return "skip", None  # already in parts: nothing to migrate
        running = row[3] not in _TERMINAL
        if migrating:
            owner, lease_until = holder, until
        else:
            owner, lease_until = lease_after(running, lease, holder, until, now, ttl)
        header = (*row, LAYOUT_PARTS, *written.mark.counts, written.mark.tail, owner, lease_until)
        if found is None:
            connection.execute(_INSERT, header)
        else:
            if base is None:
                connection.execute(f"DELETE FROM {ITEMS} WHERE chat_id = ?", (chat_id,))
            connection.execute(_UPDATE, header)
        connection.executemany(
            _INSERT_ITEM, ((chat_id, kind, seq, data) for kind, seq, data in written.rows())
        )
        connection.execute("COMMIT")
        return "ok", None
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


_TERMINAL = ("done", "stopped")


def _delete(connection: sqlite3.Connection, chat_id: str) -> bool:
    connection.execute("BEGIN IMMEDIATE")
    try:
        existed = (
            connection.execute(f"DELETE FROM {TABLE} WHERE chat_id = ?", (chat_id,)).rowcount > 0
        )
        connection.execute(f"DELETE FROM {ITEMS} WHERE chat_id = ?", (chat_id,))
        connection.execute("COMMIT")
        return existed
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _take_lease(
    connection: sqlite3.Connection, chat_id: str, owner: str, steal: bool, now: int, ttl: int
) -> bool:
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = connection.execute(
            f"SELECT phase, lease_owner, lease_until FROM {TABLE} WHERE chat_id = ?", (chat_id,)
        ).fetchone()
        if found is None or found[0] in _TERMINAL:
            connection.execute("ROLLBACK")
            return False
        phase, holder, until = found[0], found[1], _int(found[2])
        held = isinstance(holder, str) and holder != owner and until is not None and until >= now
        if held and not steal:
            connection.execute("ROLLBACK")
            return False
        connection.execute(
            f"UPDATE {TABLE} SET lease_owner = ?, lease_until = ? WHERE chat_id = ?",
            (owner, now + ttl, chat_id),
        )
        connection.execute("COMMIT")
        return phase is not None
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _release_lease(connection: sqlite3.Connection, chat_id: str, owner: str) -> bool:
    return (
        connection.execute(
            f"UPDATE {TABLE} SET lease_owner = NULL, lease_until = NULL "
            "WHERE chat_id = ? AND lease_owner = ?",
            (chat_id, owner),
        ).rowcount
        > 0
    )


def _claim(
    connection: sqlite3.Connection, owner: str, limit: int, now: int, ttl: int
) -> tuple[str, ...]:
    """Lease the oldest running chats without a live lease to ``owner``, in one transaction:
    two processes claiming at once take turns, and the second finds them leased."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        claimed = tuple(
            chat_id
            for (chat_id,) in connection.execute(
                f"SELECT chat_id FROM {TABLE} WHERE phase NOT IN ('done', 'stopped') "
                "AND (lease_until IS NULL OR lease_until < ?) ORDER BY updated_at LIMIT ?",
                (now, limit),
            ).fetchall()
        )
        connection.executemany(
            f"UPDATE {TABLE} SET lease_owner = ?, lease_until = ? WHERE chat_id = ?",
            ((owner, now + ttl, chat_id) for chat_id in claimed),
        )
        connection.execute("COMMIT")
        return claimed
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _legacy(connection: sqlite3.Connection, after: str | None, limit: int) -> tuple[str, ...]:
    """Up to ``limit`` chats after ``after`` (by id) still stored whole."""
    rows = connection.execute(
        f"SELECT chat_id FROM {TABLE} WHERE layout IS NOT ? AND chat_id > ? "
        "ORDER BY chat_id LIMIT ?",
        (LAYOUT_PARTS, "" if after is None else after, limit),
    ).fetchall()
    return tuple(chat_id for (chat_id,) in rows)


def _mark(connection: sqlite3.Connection, chat_id: str, version: int) -> Mark | None:
    """The mark of ``chat_id`` if it is stored in parts at ``version``."""
    found = connection.execute(_HEADER, (chat_id,)).fetchone()
    return stored_mark(found, version, LAYOUT_PARTS)


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
