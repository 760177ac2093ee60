"""``PostgresStore``: conversations in one PostgreSQL table, shared by any number of workers."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from agentfsm.errors import ConfigurationError
from agentfsm.state import Conversation
from agentfsm.store._base import (
    ChatPage,
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
    require,
    summary,
    translated,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection, sql
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    _Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]

__all__ = ["PostgresStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# chat_id and user_id compare as bytes ("C"), as in the other stores, so that list()
# orders ties the same everywhere whatever the database's collation.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    chat_id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C",
    agent_name text NOT NULL,
    phase text NOT NULL,
    version bigint NOT NULL,
    schema_version integer NOT NULL,
    updated_at timestamptz NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS {recent} ON {table} (updated_at DESC, chat_id DESC);
CREATE INDEX IF NOT EXISTS {user_recent} ON {table} (user_id, updated_at DESC, chat_id DESC);
"""

_INSERT = """
INSERT INTO {table}
    (chat_id, user_id, agent_name, phase, version, schema_version, updated_at, data)
VALUES (%(chat_id)s, %(user_id)s, %(agent_name)s, %(phase)s, %(version)s, %(schema_version)s,
    %(updated_at)s, %(data)s::jsonb)
ON CONFLICT (chat_id) DO NOTHING
"""

_UPDATE = """
UPDATE {table}
SET user_id = %(user_id)s, agent_name = %(agent_name)s, phase = %(phase)s,
    version = %(version)s, schema_version = %(schema_version)s, updated_at = %(updated_at)s,
    data = %(data)s::jsonb
WHERE chat_id = %(chat_id)s AND version = %(expected)s
"""

_COLUMNS = "chat_id, user_id, agent_name, phase, version, updated_at"


class PostgresStore(_Closing):
    """Conversations in a PostgreSQL table: for many workers on many machines.

    One row per chat in ``agentfsm_conversations`` (created if missing): the JSON of
    ``agentfsm.dumps`` as ``data jsonb`` next to the columns ``list()`` reads. A save is a
    single conditional ``INSERT … ON CONFLICT DO NOTHING`` or ``UPDATE … WHERE version =
    expected``, atomic under any isolation level. Connections come from a psycopg pool,
    opened on first use (or by ``async with``).

    Args:
        dsn: a libpq connection string or URL, e.g. ``postgresql://user@host/db``.
        table: the table's name (schema-qualify it as ``"schema.table"``).
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most.
        clock: Unix time in seconds, for ``updated_at`` (default ``time.time``).

    Raises:
        ImportError: psycopg is missing (``pip install 'agentfsm[postgres]'``).
        ConfigurationError: ``dsn`` is not a connection string, ``table`` not a name, or
            the pool sizes are not ``0 <= min_size <= max_size``, ``max_size >= 1``.

    Errors of PostgreSQL or of the connection to it (a server that is down, a pool that
    timed out) come out as ``StoreError``, psycopg's own error as its ``__cause__``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "agentfsm_conversations",
        min_size: int = 1,
        max_size: int = 10,
        clock: Clock = default_clock,
    ) -> None:
        psycopg = require("psycopg", "postgres", "PostgresStore")
        self._pool_module = require("psycopg_pool", "postgres", "PostgresStore")
        _check_settings(psycopg, dsn, table, min_size, max_size)
        self._errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._connect = psycopg.AsyncConnection.connect
        self.table = table
        self._dsn = dsn
        self._pool_size = (min_size, max_size)
        self._clock = clock
        self._pool: _Pool | None = None
        self._closed = False
        self._opening = asyncio.Lock()
        psql = psycopg.sql
        names = {
            "table": psql.Identifier(*table.split(".")),
            "recent": psql.Identifier(f"{table.split('.')[-1]}_recent"),
            "user_recent": psql.Identifier(f"{table.split('.')[-1]}_user_recent"),
        }

        def query(text: str) -> sql.Composed:
            composed: sql.Composed = psql.SQL(text).format(**names)
            return composed

        self._sql = {
            "schema": query(_SCHEMA),
            "lock": psql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
                psql.Literal(table)
            ),
            "insert": query(_INSERT),
            "update": query(_UPDATE),
            # As text: decode() parses it, and judges a payload another writer broke.
            "load": query("SELECT data::text FROM {table} WHERE chat_id = %s"),
            "version": query("SELECT version FROM {table} WHERE chat_id = %s"),
            "delete": query("DELETE FROM {table} WHERE chat_id = %s"),
            "list": query(f"SELECT {_COLUMNS} FROM {{table}}"),
        }
        self._composed = psql
        self._errors_module = psycopg.errors

    def __repr__(self) -> str:
        return f"PostgresStore(table={self.table!r})"

    def _explain(self, error: BaseException) -> str:
        errors = self._errors_module
        if isinstance(error, errors.UntranslatableCharacter) or (
            isinstance(error, errors.DataError) and "NUL" in str(error)
        ):
            return (
                f"{self!r}: the chat holds a NUL character (\\u0000), which PostgreSQL text "
                "and jsonb cannot store; remove it (from tool results, say) first"
            )
        if isinstance(error, errors.OperationalError):
            return (
                f"{self!r}: cannot reach PostgreSQL: {error}; is the server running, and is "
                "the DSN right?"
            )
        return f"{self!r}: PostgreSQL failed: {type(error).__name__}: {error}"

    async def _open(self) -> None:
        with translated(self._errors, self._explain):
            await self._ready()

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        check_chat_id(chat_id)
        with translated(self._errors, self._explain, chat_id):
            pool = await self._ready()
            async with pool.connection() as connection:
                cursor = await connection.execute(self._sql["load"], (chat_id,))
                row = await cursor.fetchone()
        return None if row is None else decode(row[0], chat_id)

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        """Store ``conversation`` if the stored chat is at ``expected_version`` (see ``Store``)."""
        check_save(conversation, expected_version)
        params = {
            "chat_id": conversation.chat_id,
            "user_id": conversation.user_id,
            "agent_name": conversation.agent_name,
            "phase": conversation.phase.value,
            "version": conversation.version,
            "schema_version": conversation.schema_version,
            "updated_at": _EPOCH + now_us(self._clock) * _MICROSECOND,
            "data": encode(conversation),
            "expected": expected_version,
        }
        query = self._sql["insert" if expected_version is None else "update"]
        with translated(self._errors, self._explain, conversation.chat_id):
            pool = await self._ready()
            async with pool.connection() as connection:
                cursor = await connection.execute(query, params)
                if cursor.rowcount == 1:
                    return
                cursor = await connection.execute(self._sql["version"], (conversation.chat_id,))
                row = await cursor.fetchone()
        actual = None if row is None else int(row[0])
        raise ConcurrentUpdateError(conversation.chat_id, expected_version, actual)

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        check_chat_id(chat_id)
        with translated(self._errors, self._explain, chat_id):
            pool = await self._ready()
            async with pool.connection() as connection:
                cursor = await connection.execute(self._sql["delete"], (chat_id,))
                return cursor.rowcount > 0

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        """Stored chats, newest-updated first (see ``Store.list``)."""
        check_user_id(user_id)
        check_limit(limit)
        after = decode_cursor(cursor)
        sql = self._composed
        where: list[Any] = []
        params: list[Any] = []
        if user_id is not None:
            where.append(sql.SQL("user_id = %s"))
            params.append(user_id)
        if after is not None:
            where.append(sql.SQL("(updated_at, chat_id) < (%s, %s)"))
            params.extend((_EPOCH + after[0] * _MICROSECOND, after[1]))
        parts = [self._sql["list"]]
        if where:
            parts += [sql.SQL(" WHERE "), sql.SQL(" AND ").join(where)]
        parts.append(sql.SQL(" ORDER BY updated_at DESC, chat_id DESC LIMIT %s"))
        params.append(limit + 1)
        with translated(self._errors, self._explain):
            pool = await self._ready()
            async with pool.connection() as connection:
                found = await connection.execute(sql.Composed(parts), params)
                fetched = await found.fetchall()
        rows = []
        for chat_id, user, agent, phase, version, updated_at in fetched:
            updated_us = (updated_at - _EPOCH) // _MICROSECOND
            rows.append((summary(chat_id, user, agent, phase, version, updated_us), updated_us))
        return page(tuple(rows), limit)

    async def aclose(self) -> None:
        """Close the connection pool."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            with translated(self._errors, self._explain):
                await pool.close()

    async def _ready(self) -> _Pool:
        """The pool, with the table created, on first use."""
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            if self._pool is None:
                # One plain connection first: a wrong DSN or a server that is down fails
                # here at once with libpq's own message, not after the pool's timeout.
                connect = self._connect(self._dsn, autocommit=True)
                async with await connect as connection, connection.transaction():
                    # Two processes creating the table at once would collide in the
                    # catalog; the advisory lock makes them take turns.
                    await connection.execute(self._sql["lock"])
                    await connection.execute(self._sql["schema"])
                pool: _Pool = self._pool_module.AsyncConnectionPool(
                    self._dsn,
                    min_size=self._pool_size[0],
                    max_size=self._pool_size[1],
                    open=False,
                    kwargs={"autocommit": True},
                    name="agentfsm-store",
                )
                await pool.open()
                self._pool = pool
        return self._pool


def _check_settings(
    psycopg: Any, dsn: object, table: object, min_size: object, max_size: object
) -> None:
    """Refuse settings that could only fail later, at the first query.

    Raises:
        ConfigurationError: naming the setting.
    """
    try:
        if not isinstance(dsn, str):
            raise TypeError(f"a string, not {type(dsn).__name__}")
        psycopg.conninfo.conninfo_to_dict(dsn)
    except (TypeError, psycopg.Error) as error:
        raise ConfigurationError(
            f"PostgresStore needs a libpq connection string or URL such as "
            f"postgresql://user@host/db: {error}"
        ) from error
    parts = table.split(".") if isinstance(table, str) else []
    if not 1 <= len(parts) <= 2 or not all(parts) or "\x00" in str(table):
        raise ConfigurationError(
            f"PostgresStore table must be a name or schema.name, got {table!r}"
        )
    sizes = (min_size, max_size)
    if (
        any(isinstance(size, bool) or not isinstance(size, int) for size in sizes)
        or not 0 <= min_size <= max_size  # type: ignore[operator]
        or max_size < 1  # type: ignore[operator]
    ):
        raise ConfigurationError(
            f"PostgresStore needs 0 <= min_size <= max_size and max_size >= 1, got "
            f"min_size={min_size!r}, max_size={max_size!r}"
        )
