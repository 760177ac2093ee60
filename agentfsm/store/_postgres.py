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
    check_lease_ttl,
    check_limit,
    check_owner,
    check_user_id,
    decode_cursor,
    default_clock,
    lease_lost,
    now_us,
    page,
    require,
    summary,
    translated,
)
from agentfsm.store._layout import (
    LAYOUT_PARTS,
    Checkpoint,
    Joined,
    Marks,
    PartsStore,
    checkpoint_off_loop,
    decode_off_loop,
    decode_parts_off_loop,
    loaded_mark,
    migrate_all,
    stored_mark,
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
# orders ties the same everywhere whatever the database's collation. A chat is a row of
# {table}: the columns list() reads, and `data`, the header of its items (layout 2) or, in
# rows written by agentfsm 0.1.0, the whole conversation (layout 1, migrated by the first
# save). Its items (messages, request records, transitions: kind 0, 1, 2) are rows of
# {items}, numbered from 0 within their kind.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    chat_id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C",
    agent_name text NOT NULL,
    phase text NOT NULL,
    version bigint NOT NULL,
    schema_version integer NOT NULL,
    updated_at timestamptz NOT NULL,
    data jsonb NOT NULL,
    layout smallint NOT NULL DEFAULT 1,
    n_messages integer NOT NULL DEFAULT 0,
    n_requests integer NOT NULL DEFAULT 0,
    n_transitions integer NOT NULL DEFAULT 0,
    tail text,
    lease_owner text,
    lease_until timestamptz
);
CREATE INDEX IF NOT EXISTS {recent} ON {table} (updated_at DESC, chat_id DESC);
CREATE INDEX IF NOT EXISTS {user_recent} ON {table} (user_id, updated_at DESC, chat_id DESC);
CREATE INDEX IF NOT EXISTS {running} ON {table} (updated_at)
    WHERE phase NOT IN ('done', 'stopped');
CREATE TABLE IF NOT EXISTS {items} (
    chat_id text COLLATE "C" NOT NULL,
    kind smallint NOT NULL,
    seq integer NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (chat_id, kind, seq)
);
"""

# The table of agentfsm 0.1.0 lacks the columns after `data`.
_UPGRADE = """
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS layout smallint NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS n_messages integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS n_requests integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS n_transitions integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tail text,
    ADD COLUMN IF NOT EXISTS lease_owner text,
    ADD COLUMN IF NOT EXISTS lease_until timestamptz
"""

_TTL = "now() + %(ttl)s * interval '1 second'"
# Another owner's live lease survives a save; a finished chat's own lease is released.
_KEPT = (
    "lease_owner IS NOT NULL AND lease_owner IS DISTINCT FROM %(owner)s::text "
    "AND lease_until >= now()"
)
_LEASE_SET = f"""
    lease_owner = CASE
        WHEN %(migrating)s THEN lease_owner
        WHEN NOT %(running)s THEN CASE WHEN {_KEPT} THEN lease_owner END
        WHEN %(owner)s::text IS NOT NULL THEN %(owner)s::text
        WHEN lease_owner IS NOT NULL AND lease_until >= now() THEN lease_owner
    END,
    lease_until = CASE
        WHEN %(migrating)s THEN lease_until
        WHEN NOT %(running)s THEN CASE WHEN {_KEPT} THEN lease_until END
        WHEN %(owner)s::text IS NOT NULL THEN {_TTL}
        WHEN lease_owner IS NOT NULL AND lease_until >= now() THEN lease_until
        ELSE {_TTL}
    END"""
_LEASE_FREE = (
    "(%(owner)s::text IS NULL OR lease_owner IS NULL OR lease_owner = %(owner)s::text "
    "OR lease_until < now())"
)

_HEADER_SET = f"""
SET user_id = %(user_id)s, agent_name = %(agent_name)s, phase = %(phase)s,
    version = %(version)s, schema_version = %(schema_version)s, updated_at = %(updated_at)s,
    data = %(data)s::jsonb, layout = 2, n_messages = %(n0)s, n_requests = %(n1)s,
    n_transitions = %(n2)s, tail = %(tail)s, {_LEASE_SET}
"""

_ITEMS_INSERT = """
INSERT INTO {items} (chat_id, kind, seq, data)
SELECT %(chat_id)s, x.kind, x.seq, x.data::jsonb
FROM unnest(%(kinds)s::smallint[], %(seqs)s::integer[], %(items)s::text[]) AS x(kind, seq, data)
ON CONFLICT (chat_id, kind, seq) DO UPDATE SET data = EXCLUDED.data
"""

# A save of a chat stored in parts: its new items and header in one statement, written only
# if the header is at the expected version and still marks the items the save follows.
_APPEND = f"""
WITH h AS (
    UPDATE {{table}} {_HEADER_SET}
    WHERE chat_id = %(chat_id)s AND version = %(expected)s AND layout = 2
        AND n_messages = %(b0)s AND n_requests = %(b1)s AND n_transitions = %(b2)s
        AND tail = %(btail)s AND {_LEASE_FREE}
    RETURNING chat_id
), i AS (
    INSERT INTO {{items}} (chat_id, kind, seq, data)
    SELECT h.chat_id, x.kind, x.seq, x.data::jsonb
    FROM h, unnest(%(kinds)s::smallint[], %(seqs)s::integer[], %(items)s::text[])
        AS x(kind, seq, data)
    ON CONFLICT (chat_id, kind, seq) DO UPDATE SET data = EXCLUDED.data
)
SELECT count(*) FROM h
"""

_CREATE = f"""
WITH h AS (
    INSERT INTO {{table}} (chat_id, user_id, agent_name, phase, version, schema_version,
        updated_at, data, layout, n_messages, n_requests, n_transitions, tail, lease_owner,
        lease_until)
    VALUES (%(chat_id)s, %(user_id)s, %(agent_name)s, %(phase)s, %(version)s,
        %(schema_version)s, %(updated_at)s, %(data)s::jsonb, 2, %(n0)s, %(n1)s, %(n2)s,
        %(tail)s, CASE WHEN %(running)s THEN %(owner)s::text END,
        CASE WHEN %(running)s THEN {_TTL} END)
    ON CONFLICT (chat_id) DO NOTHING
    RETURNING chat_id
), i AS (
    INSERT INTO {{items}} (chat_id, kind, seq, data)
    SELECT h.chat_id, x.kind, x.seq, x.data::jsonb
    FROM h, unnest(%(kinds)s::smallint[], %(seqs)s::integer[], %(items)s::text[])
        AS x(kind, seq, data)
    ON CONFLICT (chat_id, kind, seq) DO UPDATE SET data = EXCLUDED.data
)
SELECT count(*) FROM h
"""

# A save in full (the first of a 0.1.0 row, or of a conversation that does not continue
# the stored items): the header, then all items anew, in one transaction.
_REWRITE = f"""
UPDATE {{table}} {_HEADER_SET}
WHERE chat_id = %(chat_id)s AND version = %(expected)s AND {_LEASE_FREE}
    AND (NOT %(migrating)s OR layout <> 2)
"""

_STATE = """
SELECT version, layout, n_messages, n_requests, n_transitions, tail, lease_owner,
    lease_until >= now()
FROM {table} WHERE chat_id = %s
"""

# One statement, so the header and its items are of the same save; each kind's items come
# joined in one text (with their count), which is much cheaper to receive than an array.
_KIND = """
    (SELECT ARRAY[count(*)::text, string_agg(i.data::text, ',' ORDER BY i.seq)]
     FROM {{items}} i WHERE i.chat_id = t.chat_id AND i.kind = {kind} AND i.seq < t.{count})"""
_LOAD = f"""
SELECT t.layout, t.data::text, t.n_messages, t.n_requests, t.n_transitions, t.version, t.tail,
    {_KIND.format(kind=0, count="n_messages")},
    {_KIND.format(kind=1, count="n_requests")},
    {_KIND.format(kind=2, count="n_transitions")}
FROM {{table}} t WHERE t.chat_id = %s
"""

_TAKE = f"""
UPDATE {{table}} SET lease_owner = %(owner)s, lease_until = {_TTL}
WHERE chat_id = %(chat_id)s AND phase NOT IN ('done', 'stopped')
    AND (%(steal)s OR lease_owner IS NULL OR lease_owner = %(owner)s OR lease_until < now())
"""

_RELEASE = """
UPDATE {table} SET lease_owner = NULL, lease_until = NULL
WHERE chat_id = %(chat_id)s AND lease_owner = %(owner)s
"""

# SKIP LOCKED: callers claiming at once take different chats; the outer conditions are
# checked again on the row as it is once locked.
_ABANDONED = "phase NOT IN ('done', 'stopped') AND (lease_until IS NULL OR lease_until < now())"
_CLAIM = f"""
UPDATE {{table}} SET lease_owner = %(owner)s, lease_until = {_TTL}
WHERE chat_id IN (
    SELECT chat_id FROM {{table}} WHERE {_ABANDONED}
    ORDER BY updated_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AND {_ABANDONED}
RETURNING chat_id
"""

_COLUMNS = "chat_id, user_id, agent_name, phase, version, updated_at"


class PostgresStore(PartsStore, _Closing):
    """Conversations in PostgreSQL: for many workers on many machines.

    One row per chat in ``agentfsm_conversations`` (created if missing) holds the columns
    ``list()`` reads and the chat's header (``data jsonb``: the conversation without its
    messages, request records and transitions); the items of those three are rows of
    ``agentfsm_conversations_items``. A save is one statement that appends the new items and
    rewrites the header if the stored version is the expected one (a compare-and-set, atomic
    under any isolation level), so its cost does not grow with the history. A run's lease
    is two columns, timed by the database's ``now()``; ``claim_abandoned`` takes chats with
    ``FOR UPDATE SKIP LOCKED``. Rows written by agentfsm 0.1.0 (the whole conversation in
    ``data``) keep loading and are rewritten by their first save (or by ``migrate()``).
    Connections come from a psycopg pool, opened on first use (or by ``async with``).

    Args:
        dsn: a libpq connection string or URL, e.g. ``postgresql://user@host/db``.
        table: the table's name (schema-qualify it as ``"schema.table"``); the items table
            is named after it with ``_items``.
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most.
        clock: Unix time in seconds, for ``updated_at`` (default ``time.time``).
        lease_ttl: seconds a run's lease on its chat lasts unless renewed.

    Raises:
        ImportError: psycopg is missing (``pip install 'agentfsm[postgres]'``).
        ConfigurationError: ``dsn`` is not a connection string, ``table`` not a name, the
            pool sizes are not ``0 <= min_size <= max_size``, ``max_size >= 1``, or
            ``lease_ttl`` is not 0.01 to 86400 seconds.

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
        lease_ttl: float = 30.0,
    ) -> None:
        psycopg = require("psycopg", "postgres", "PostgresStore")
        self._pool_module = require("psycopg_pool", "postgres", "PostgresStore")
        _check_settings(psycopg, dsn, table, min_size, max_size)
        self.lease_ttl = check_lease_ttl(lease_ttl, "PostgresStore")
        self._errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._connect = psycopg.AsyncConnection.connect
        self.table = table
        self._dsn = dsn
        self._pool_size = (min_size, max_size)
        self._clock = clock
        self._pool: _Pool | None = None
        self._closed = False
        self._opening = asyncio.Lock()
        self._marks = Marks()
        psql = psycopg.sql
        *schema, name = table.split(".")
        names = {
            "table": psql.Identifier(*table.split(".")),
            "items": psql.Identifier(*schema, f"{name}_items"),
            "recent": psql.Identifier(f"{name}_recent"),
            "user_recent": psql.Identifier(f"{name}_user_recent"),
            "running": psql.Identifier(f"{name}_running"),
        }

        def query(text: str) -> sql.Composed:
            composed: sql.Composed = psql.SQL(text).format(**names)
            return composed

        self._sql = {
            "schema": query(_SCHEMA),
            "upgrade": query(_UPGRADE),
            "lock": psql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
                psql.Literal(table)
            ),
            "append": query(_APPEND),
            "create": query(_CREATE),
            "rewrite": query(_REWRITE),
            "clear": query("DELETE FROM {items} WHERE chat_id = %(chat_id)s"),
            "items": query(_ITEMS_INSERT),
            "state": query(_STATE),
            # As text: decode_parts() parses it, and judges what another writer broke.
            "load": query(_LOAD),
            "delete": query("DELETE FROM {table} WHERE chat_id = %s"),
            "delete_items": query("DELETE FROM {items} WHERE chat_id = %s"),
            "list": query(f"SELECT {_COLUMNS} FROM {{table}}"),
            "take": query(_TAKE),
            "release": query(_RELEASE),
            "claim": query(_CLAIM),
            "legacy": query(
                "SELECT chat_id FROM {table} WHERE layout <> 2 AND chat_id > %s "
                "ORDER BY chat_id LIMIT 100"
            ),
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
        if row is None:
            return None
        layout, data, n0, n1, n2, version, tail, *joined = row
        parts = [Joined(int(found), text) for found, text in joined]
        if layout != LAYOUT_PARTS:
            self._marks.forget(chat_id)
            return await decode_off_loop(data, chat_id)
        conversation = await decode_parts_off_loop(data, parts, (n0, n1, n2), chat_id)
        if isinstance(tail, str) and version == conversation.version:
            mark = loaded_mark(conversation, tail)
            self._marks.put(chat_id, conversation.version, mark)
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
        base = None if migrating else self._marks.get(chat_id, expected_version)
        with translated(self._errors, self._explain, chat_id):
            pool = await self._ready()
            async with pool.connection() as connection:
                if base is None and expected_version is not None and not migrating:
                    state = await (
                        await connection.execute(self._sql["state"], (chat_id,))
                    ).fetchone()
                    base = stored_mark(state, expected_version, LAYOUT_PARTS)
                for _ in range(3):
                    written = await checkpoint_off_loop(conversation, base)
                    params = self._params(conversation, expected_version, written, lease)
                    params["migrating"] = migrating
                    if expected_version is None:
                        cursor = await connection.execute(self._sql["create"], params)
                        done = await cursor.fetchone()
                        won = done is not None and done[0] == 1
                    elif written.base is not None:
                        cursor = await connection.execute(self._sql["append"], params)
                        done = await cursor.fetchone()
                        won = done is not None and done[0] == 1
                    else:
                        async with connection.transaction():
                            cursor = await connection.execute(self._sql["rewrite"], params)
                            won = cursor.rowcount == 1
                            if won:
                                await connection.execute(self._sql["clear"], params)
                                await connection.execute(self._sql["items"], params)
                    if won:
                        self._marks.put(chat_id, conversation.version, written.mark)
                        return True
                    self._marks.forget(chat_id)
                    cursor = await connection.execute(self._sql["state"], (chat_id,))
                    state = await cursor.fetchone()
                    actual = None if state is None else state[0]
                    if state is None or actual != expected_version or expected_version is None:
                        raise ConcurrentUpdateError(chat_id, expected_version, actual)
                    if lease is not None and state[6] not in (None, lease) and state[7]:
                        lease_lost(chat_id, expected_version, actual, state[6])
                    if migrating:
                        return False  # stored in parts already
                    base = stored_mark(state, expected_version, LAYOUT_PARTS)
        raise StoreError(f"{self!r}: chat {chat_id!r} could not be written", chat_id)

    def _params(
        self,
        conversation: Conversation,
        expected_version: int | None,
        written: Checkpoint,
        lease: str | None,
    ) -> dict[str, Any]:
        rows = list(written.rows())
        base = written.base
        b0, b1, b2 = base.counts if base is not None else (0, 0, 0)
        n0, n1, n2 = written.mark.counts
        return {
            "chat_id": conversation.chat_id,
            "user_id": conversation.user_id,
            "agent_name": conversation.agent_name,
            "phase": conversation.phase.value,
            "version": conversation.version,
            "schema_version": conversation.schema_version,
            "updated_at": _EPOCH + now_us(self._clock) * _MICROSECOND,
            "data": written.header,
            "expected": expected_version,
            "n0": n0,
            "n1": n1,
            "n2": n2,
            "tail": written.mark.tail,
            "b0": b0,
            "b1": b1,
            "b2": b2,
            "btail": base.tail if base is not None else None,
            "owner": lease,
            "running": not conversation.phase.terminal,
            "ttl": self.lease_ttl,
            "kinds": [kind for kind, _, _ in rows],
            "seqs": [seq for _, seq, _ in rows],
            "items": [item for _, _, item in rows],
        }

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        check_chat_id(chat_id)
        self._marks.forget(chat_id)
        with translated(self._errors, self._explain, chat_id):
            pool = await self._ready()
            async with pool.connection() as connection, connection.transaction():
                cursor = await connection.execute(self._sql["delete"], (chat_id,))
                await connection.execute(self._sql["delete_items"], (chat_id,))
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

    async def take_lease(self, chat_id: str, owner: str, *, steal: bool = False) -> bool:
        """Lease ``chat_id`` to ``owner`` (see ``LeaseStore.take_lease``)."""
        check_chat_id(chat_id)
        check_owner(owner)
        params = {"chat_id": chat_id, "owner": owner, "steal": steal, "ttl": self.lease_ttl}
        return await self._update(self._sql["take"], params, chat_id) == 1

    async def release_lease(self, chat_id: str, owner: str) -> bool:
        """End ``owner``'s lease on ``chat_id`` (see ``LeaseStore.release_lease``)."""
        check_chat_id(chat_id)
        check_owner(owner)
        params = {"chat_id": chat_id, "owner": owner}
        return await self._update(self._sql["release"], params, chat_id) == 1

    async def _update(self, query: sql.Composed, params: dict[str, Any], chat_id: str) -> int:
        with translated(self._errors, self._explain, chat_id):
            pool = await self._ready()
            async with pool.connection() as connection:
                cursor = await connection.execute(query, params)
                return cursor.rowcount

    async def claim_abandoned(self, owner: str, limit: int = 100) -> tuple[str, ...]:
        """Lease to ``owner`` the running chats no live lease covers (see ``LeaseStore``)."""
        check_owner(owner)
        check_limit(limit)
        params = {"owner": owner, "limit": limit, "ttl": self.lease_ttl}
        with translated(self._errors, self._explain):
            pool = await self._ready()
            async with pool.connection() as connection:
                cursor = await connection.execute(self._sql["claim"], params)
                return tuple(chat_id for (chat_id,) in await cursor.fetchall())

    async def migrate(self) -> int:
        """Rewrite every chat stored whole (by agentfsm 0.1.0) in the current layout, at the
        same version; the number rewritten. Safe while workers use the store: each chat is
        rewritten with a compare-and-set on its version, and a chat that does not load is
        left as it is (``load`` keeps saying why)."""

        async def legacy(after: str | None) -> list[str]:
            with translated(self._errors, self._explain):
                pool = await self._ready()
                async with pool.connection() as connection:
                    cursor = await connection.execute(self._sql["legacy"], (after or "",))
                    return [chat_id for (chat_id,) in await cursor.fetchall()]

        return await migrate_all(self, legacy)

    async def aclose(self) -> None:
        """Close the connection pool."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            with translated(self._errors, self._explain):
                await pool.close()

    async def _ready(self) -> _Pool:
        """The pool, with the tables created (or upgraded from 0.1.0's), on first use."""
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
                    await connection.execute(self._sql["upgrade"])
                pool: _Pool = self._pool_module.AsyncConnectionPool(
                    self._dsn,
                    min_size=self._pool_size[0],
                    max_size=self._pool_size[1],
                    open=False,
                    kwargs={"autocommit": True},
                    name="agentfsm-store",
                )
                await pool.open()
                if self._closed:  # aclose() ran while the pool was opening: nothing to leak
                    await pool.close()
                    raise StoreError(f"{self!r} is closed")
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
