"""``RedisStore``: conversations in Redis, shared by any number of workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfsm.errors import ConfigurationError, SerializationError
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
    encode_cursor,
    lease_lost,
    now_us,
    require,
    summary,
    translated,
)
from agentfsm.store._layout import (
    LAYOUT_PARTS,
    Checkpoint,
    Joined,
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

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisStore"]

# A chat's keys share the hash tag {chat}: the header hash (h), the lists of its messages
# (m), request records (r) and transitions (t), and its lease (lease), so the scripts below
# touch one cluster slot. The indexes list() and recover() read are kept by separate
# commands after a save (never inside a script, which could not reach their slots).

_SAVE = """
local legacy = KEYS[6]
local current = redis.call('HGET', legacy or KEYS[1], 'version')
if ARGV[1] == '' then
    if current then return {0, current} end
elseif current ~= ARGV[1] then
    return {0, current or ''}
end
if legacy and redis.call('EXISTS', KEYS[1]) == 1 then return {2, ''} end
if ARGV[10] == '1' and not legacy then return {4, ''} end
if ARGV[2] == '1' then
    local mark = redis.call('HMGET', KEYS[1], 'n_messages', 'n_requests', 'n_transitions', 'tail')
    if mark[1] ~= ARGV[3] or mark[2] ~= ARGV[4] or mark[3] ~= ARGV[5] or mark[4] ~= ARGV[6] then
        return {2, ''}
    end
end
local holder = redis.call('GET', KEYS[5])
if ARGV[7] ~= '' and holder and holder ~= '' and holder ~= ARGV[7] then
    return {3, holder}
end
if ARGV[10] ~= '1' then
    if ARGV[9] == '1' then
        if ARGV[7] ~= '' then
            redis.call('SET', KEYS[5], ARGV[7], 'PX', ARGV[8])
        elseif not holder or holder == '' then
            redis.call('SET', KEYS[5], '', 'PX', ARGV[8])
        end
    elseif holder and (holder == '' or holder == ARGV[7]) then
        redis.call('DEL', KEYS[5])
    end
end
local old_user = redis.call('HGET', legacy or KEYS[1], 'user_id')
if ARGV[2] ~= '1' then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) end
if legacy then redis.call('DEL', legacy) end
local i = 27
for k = 1, 3 do
    local left = tonumber(ARGV[22 + k])
    while left > 0 do
        local n = math.min(left, 1000)
        redis.call('RPUSH', KEYS[k + 1], unpack(ARGV, i, i + n - 1))
        i = i + n
        left = left - n
    end
end
for _ = 1, tonumber(ARGV[26]) do
    redis.call('LSET', KEYS[2], ARGV[i], ARGV[i + 1])
    i = i + 2
end
redis.call('HSET', KEYS[1], 'version', ARGV[11], 'data', ARGV[12], 'agent_name', ARGV[15],
    'phase', ARGV[16], 'schema_version', ARGV[17], 'updated_at', ARGV[18],
    'n_messages', ARGV[19], 'n_requests', ARGV[20], 'n_transitions', ARGV[21], 'tail', ARGV[22])
if ARGV[14] == '1' then
    redis.call('HSET', KEYS[1], 'user_id', ARGV[13])
else
    redis.call('HDEL', KEYS[1], 'user_id')
end
return {1, old_user or ''}
"""

# KEYS: h, m, r, t. The header's fields, then each list's length and items joined by commas
# (one reply to parse instead of one per item); nothing if there is no header.
_LOAD = """
local h = redis.call('HMGET', KEYS[1], 'version', 'data', 'n_messages', 'n_requests',
    'n_transitions', 'tail')
if not h[1] then return {} end
local out = {}
for i = 1, 6 do out[i] = h[i] or '' end
for k = 2, 4 do
    local items = redis.call('LRANGE', KEYS[k], 0, -1)
    out[#out + 1] = tostring(#items)
    out[#out + 1] = table.concat(items, ',')
end
return out
"""

# KEYS: h, m, r, t, lease.
_DELETE = """
local user = redis.call('HGET', KEYS[1], 'user_id')
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {existed, user or ''}
"""

# KEYS: h, lease. ARGV: owner, ttl (ms), steal ("1"/"0").
_TAKE = """
local phase = redis.call('HGET', KEYS[1], 'phase')
if not phase or phase == 'done' or phase == 'stopped' then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= '' and holder ~= ARGV[1] and ARGV[3] ~= '1' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: h, lease. ARGV: owner, ttl (ms). 1: claimed; 0: leased; -1: not running.
_CLAIM = """
local phase = redis.call('HGET', KEYS[1], 'phase')
if not phase or phase == 'done' or phase == 'stopped' then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the running index. ARGV: chat_id, its score when it was found finished: a chat that
# a new run saved since (a higher score) stays.
_UNLIST = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
    return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

_FIELDS = ("user_id", "agent_name", "phase", "version", "updated_at")
_HEADER = ("version", "data", "n_messages", "n_requests", "n_transitions", "tail")
_SCAN = 1000  # chats of the running index claim_abandoned() looks at per call, oldest first


def _count(value: object) -> object:
    """A stored count as an int, or as it is (decode_parts then says it is wrong)."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


class RedisStore(PartsStore, _Closing):
    """Conversations in Redis: for many workers on many machines.

    Each chat is a hash ``{prefix}c{<chat_id>}:h`` (its header: the conversation without
    its messages, request records and transitions, its ``version`` and the columns
    ``list()`` reads) and three lists of those items, ``…:m``, ``…:r`` and ``…:t``; a save
    appends the new items and rewrites the header in one Lua script, so the version check
    and the write are atomic and the cost of a save does not grow with the history. The
    keys of a chat share the hash tag ``{<chat_id>}``, so the script runs on Redis Cluster
    too (an id with ``}`` in it is tagged by its hex). Sorted sets ``{prefix}chats`` and
    ``{prefix}user:{user_id}`` index chats by last update for ``list()``, and
    ``{prefix}running`` the chats saved mid-run for ``claim_abandoned()``; they are updated
    right after the script. A run's lease is the key ``…:lease`` (``SET PX``: Redis expires
    it). Chats stored whole by agentfsm 0.1.0 (``{prefix}chat:{chat_id}``) keep loading and
    are rewritten by their first save (or by ``migrate()``). Keys do not expire.

    Args:
        url: a redis-py URL, e.g. ``redis://localhost:6379/0`` (``rediss://`` for TLS).
        prefix: put before every key, to share a database with other data.
        clock: Unix time in seconds, for ``updated_at`` (default ``time.time``).
        lease_ttl: seconds a run's lease on its chat lasts unless renewed.

    Raises:
        ImportError: the ``redis`` package is missing (``pip install 'agentfsm[redis]'``).
        ConfigurationError: ``url`` is not a Redis URL, ``prefix`` is not a string, or
            ``lease_ttl`` is not 0.01 to 86400 seconds.

    Errors of Redis or of the connection to it come out as ``StoreError``, redis-py's own
    error as its ``__cause__``.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "agentfsm:",
        clock: Clock = default_clock,
        lease_ttl: float = 30.0,
    ) -> None:
        aioredis = require("redis.asyncio", "redis", "RedisStore")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"RedisStore prefix must be a string, got {prefix!r}")
        self.lease_ttl = check_lease_ttl(lease_ttl, "RedisStore")
        self.prefix = prefix
        self._clock = clock
        self._redis: redis.asyncio.Redis = redis_client(aioredis, url, "RedisStore")
        self._errors: tuple[type[Exception], ...] = (aioredis.RedisError,)
        self._no_script: type[Exception] = require(
            "redis.exceptions", "redis", "RedisStore"
        ).NoScriptError
        self._save = self._redis.register_script(_SAVE)
        self._delete = self._redis.register_script(_DELETE)
        self._load = self._redis.register_script(_LOAD)
        self._take = self._redis.register_script(_TAKE)
        self._release = self._redis.register_script(_RELEASE)
        self._claim = self._redis.register_script(_CLAIM)
        self._unlist = self._redis.register_script(_UNLIST)
        self._marks = Marks()

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    def _explain(self, error: BaseException) -> str:
        return explain_redis_error(self, self._redis, error)

    def _keys(self, chat_id: str) -> list[str]:
        """The keys of ``chat_id``: header, messages, requests, transitions, lease."""
        tag = chat_id
        if "}" in chat_id or chat_id.startswith("~"):
            tag = "~" + chat_id.encode().hex()  # a tag cannot hold "}"; "~" marks the hex
        base = f"{self.prefix}c{{{tag}}}:"
        return [f"{base}h", f"{base}m", f"{base}r", f"{base}t", f"{base}lease"]

    def _legacy_key(self, chat_id: str) -> str:
        return f"{self.prefix}chat:{chat_id}"

    def _index_key(self, user_id: str | None) -> str:
        return f"{self.prefix}chats" if user_id is None else f"{self.prefix}user:{user_id}"

    def _running_key(self) -> str:
        return f"{self.prefix}running"

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        h, m, r, t, _ = self._keys(check_chat_id(chat_id))
        with translated(self._errors, self._explain, chat_id):
            try:
                found = await self._load(keys=[h, m, r, t])
                payload = None
                if not found:
                    payload = await self._redis.hget(self._legacy_key(chat_id), "data")
            except UnicodeDecodeError as error:  # written by another program, not by us
                raise SerializationError(
                    f"stored chat {chat_id!r} does not load: its data is not UTF-8 text"
                ) from error
        if not found:
            self._marks.forget(chat_id)
            return None if payload is None else await decode_off_loop(payload, chat_id)
        version, data, *counts, tail = found[:6]
        parts = [Joined(int(found[i]), found[i + 1]) for i in (6, 8, 10)]
        conversation = await decode_parts_off_loop(
            data, parts, [_count(n) for n in counts], chat_id
        )
        if version == str(conversation.version):
            self._marks.put(chat_id, conversation.version, loaded_mark(conversation, tail))
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
        chat_id, user_id = conversation.chat_id, conversation.user_id
        keys = self._keys(chat_id)
        running = not conversation.phase.terminal
        with translated((*self._errors, UnicodeError), self._explain, chat_id):
            base = self._marks.get(chat_id, expected_version)
            legacy = False
            if base is None:
                base, legacy = await self._stored_mark(chat_id, expected_version)
            for _ in range(3):
                written = await checkpoint_off_loop(conversation, base)
                updated_us = now_us(self._clock)
                args = self._save_args(conversation, expected_version, written, lease, migrating)
                args[17] = str(updated_us)
                chat_keys = [*keys, self._legacy_key(chat_id)] if legacy else keys
                async with self._redis.pipeline(transaction=False) as pipe:
                    if running:  # first, so a worker dying after the script is still found
                        pipe.zadd(self._running_key(), {chat_id: updated_us}, gt=True)
                    pipe.evalsha(self._save.sha, len(chat_keys), *chat_keys, *args)
                    results = await pipe.execute(raise_on_error=False)
                outcome = results[-1]
                if isinstance(outcome, self._no_script):
                    outcome = await self._save(keys=chat_keys, args=args)
                for result in results:
                    if isinstance(result, Exception) and not isinstance(result, self._no_script):
                        raise result
                code, found = int(outcome[0]), outcome[1]
                if code == 1:
                    self._marks.put(chat_id, conversation.version, written.mark)
                    await self._index(chat_id, user_id, found or None, updated_us)
                    return True
                self._marks.forget(chat_id)
                if code == 0:
                    actual = int(found) if found.isdigit() else None
                    raise ConcurrentUpdateError(chat_id, expected_version, actual)
                if code == 3:
                    lease_lost(chat_id, expected_version, expected_version, found)
                if code == 4:
                    return False
                base, legacy = await self._stored_mark(chat_id, expected_version)
        raise StoreError(f"{self!r}: chat {chat_id!r} could not be written", chat_id)

    def _save_args(
        self,
        conversation: Conversation,
        expected_version: int | None,
        written: Checkpoint,
        lease: str | None,
        migrating: bool,
    ) -> list[str]:
        base = written.base
        counts = base.counts if base is not None else (0, 0, 0)
        user_id = conversation.user_id
        return [
            "" if expected_version is None else str(expected_version),
            "0" if base is None else "1",
            *(str(n) for n in counts),
            "" if base is None else base.tail,
            lease or "",
            str(max(1, round(self.lease_ttl * 1000))),
            "0" if conversation.phase.terminal else "1",
            "1" if migrating else "0",
            str(conversation.version),
            written.header,
            user_id or "",
            "0" if user_id is None else "1",
            conversation.agent_name,
            conversation.phase.value,
            str(conversation.schema_version),
            "",  # updated_at, set by the caller
            *(str(n) for n in written.mark.counts),
            written.mark.tail,
            *(str(len(items)) for items in written.items),
            str(len(written.recounted)),
            *(item for items in written.items for item in items),
            *(part for index, item in written.recounted for part in (str(index), item)),
        ]

    async def _stored_mark(self, chat_id: str, version: int | None) -> tuple[Mark | None, bool]:
        """The mark of ``chat_id`` stored in parts at ``version``, and whether it is stored
        whole (0.1.0) instead."""
        h = self._keys(chat_id)[0]
        found = await self._redis.hmget(h, _HEADER)
        if found[0] is None:
            return None, bool(await self._redis.exists(self._legacy_key(chat_id)))
        row = [_count(found[0]), LAYOUT_PARTS, *(_count(n) for n in found[2:5]), found[5]]
        return stored_mark(row, version if version is not None else -1, LAYOUT_PARTS), False

    async def _index(
        self, chat_id: str, user_id: str | None, old_user: str | None, updated_us: int
    ) -> None:
        """List the chat where its save put it (a later save of it never moves it back)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._index_key(None), {chat_id: updated_us}, gt=True)
            if user_id is not None:
                pipe.zadd(self._index_key(user_id), {chat_id: updated_us}, gt=True)
            if old_user is not None and old_user != user_id:
                pipe.zrem(self._index_key(old_user), chat_id)
            await pipe.execute()

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        keys = self._keys(check_chat_id(chat_id))
        self._marks.forget(chat_id)
        with translated(self._errors, self._explain, chat_id):
            existed, user = await self._delete(keys=keys)
            legacy = self._legacy_key(chat_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hget(legacy, "user_id")
                pipe.delete(legacy)
                old_user, old_existed = await pipe.execute()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self._index_key(None), chat_id)
                pipe.zrem(self._running_key(), chat_id)
                for owner in {user, old_user} - {None, ""}:
                    pipe.zrem(self._index_key(owner), chat_id)
                await pipe.execute()
        return bool(existed) or bool(old_existed)

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        """Stored chats, newest-updated first (see ``Store.list``)."""
        check_user_id(user_id)
        check_limit(limit)
        after = decode_cursor(cursor)
        with translated(self._errors, self._explain):
            try:
                return await self._list(self._index_key(user_id), limit, after)
            except UnicodeDecodeError as error:  # a key another program wrote under our prefix
                raise SerializationError(
                    f"{self!r}: a stored chat's columns are not UTF-8 text"
                ) from error

    async def _list(self, index: str, limit: int, after: tuple[int, str] | None) -> ChatPage:
        async with self._redis.pipeline(transaction=True) as pipe:
            if after is None:
                pipe.zrevrange(index, 0, limit, withscores=True)
            else:
                score = str(after[0])
                pipe.zrevrangebyscore(index, score, score, withscores=True)
                pipe.zrevrangebyscore(
                    index, f"({score}", "-inf", start=0, num=limit + 1, withscores=True
                )
            found: list[list[tuple[str, float]]] = await pipe.execute()
        if after is None:
            ranked = found[0]
        else:
            # Chats saved in the same microsecond as the cursor's: Redis orders them by the
            # bytes of the id, as the cursor does; keep the ones after it.
            mark = after[1].encode()
            ranked = [(m, s) for m, s in found[0] if m.encode() < mark] + found[1]
        more = len(ranked) > limit
        ranked = ranked[:limit]
        async with self._redis.pipeline(transaction=False) as pipe:
            for chat_id, _ in ranked:
                pipe.hmget(self._keys(chat_id)[0], _FIELDS)
            columns: list[list[Any]] = await pipe.execute()
        whole = [i for i, row in enumerate(columns) if row[3] is None]
        if whole:  # chats stored whole by agentfsm 0.1.0
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in whole:
                    pipe.hmget(self._legacy_key(ranked[i][0]), _FIELDS)
                for i, row in zip(whole, await pipe.execute(), strict=True):
                    columns[i] = row
        items = tuple(
            summary(chat_id, user, agent, phase, version, updated)  # checks the columns
            for (chat_id, _), (user, agent, phase, version, updated) in zip(
                ranked, columns, strict=True
            )
            if version is not None  # deleted between the two reads
        )
        if not more:
            return ChatPage(items, None)
        last_id, last_score = ranked[-1]
        return ChatPage(items, encode_cursor(int(last_score), last_id))

    async def take_lease(self, chat_id: str, owner: str, *, steal: bool = False) -> bool:
        """Lease ``chat_id`` to ``owner`` (see ``LeaseStore.take_lease``)."""
        h, *_, lease = self._keys(check_chat_id(chat_id))
        check_owner(owner)
        ttl = str(max(1, round(self.lease_ttl * 1000)))
        with translated((*self._errors, UnicodeError), self._explain, chat_id):
            taken = await self._take(keys=[h, lease], args=[owner, ttl, "1" if steal else "0"])
        return bool(taken)

    async def release_lease(self, chat_id: str, owner: str) -> bool:
        """End ``owner``'s lease on ``chat_id`` (see ``LeaseStore.release_lease``)."""
        lease = self._keys(check_chat_id(chat_id))[-1]
        check_owner(owner)
        with translated((*self._errors, UnicodeError), self._explain, chat_id):
            return bool(await self._release(keys=[lease], args=[owner]))

    async def claim_abandoned(self, owner: str, limit: int = 100) -> tuple[str, ...]:
        """Lease to ``owner`` the running chats no live lease covers (see ``LeaseStore``).

        Looks at the oldest-saved chats of the running index first (a chat whose worker
        died stopped being saved); each claim is one script on the chat's own keys, so of
        any number of callers one wins it. Finished chats found there leave the index.
        """
        check_owner(owner)
        check_limit(limit)
        ttl = str(max(1, round(self.lease_ttl * 1000)))
        running = self._running_key()
        claimed: list[str] = []
        with translated((*self._errors, UnicodeError), self._explain):
            found: list[tuple[str, float]] = await self._redis.zrange(  # type: ignore[assignment]
                running, 0, _SCAN - 1, withscores=True
            )
            # Claims go in pipelined batches of as many as are still wanted (one round trip
            # each, never more claims than ``limit``): one round trip per chat made a scan of
            # a busy index outlast the leases it had taken at its start.
            while found and len(claimed) < limit:
                batch, found = found[: limit - len(claimed)], found[limit - len(claimed) :]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for chat_id, _ in batch:
                        h, *_, lease = self._keys(chat_id)
                        await self._claim(keys=[h, lease], args=[owner, ttl], client=pipe)
                    outcomes = await pipe.execute()
                    for (chat_id, score), outcome in zip(batch, outcomes, strict=True):
                        if outcome == 1:
                            claimed.append(chat_id)
                        elif outcome == -1:
                            args = [chat_id, repr(int(score))]
                            await self._unlist(keys=[running], args=args, client=pipe)
                    await pipe.execute()
        return tuple(claimed)

    async def migrate(self) -> int:
        """Rewrite every chat stored whole (by agentfsm 0.1.0) in the current layout, at the
        same version; the number rewritten. Safe while workers use the store: each chat is
        rewritten with a compare-and-set on its version, and a chat that does not load is
        left as it is (``load`` keeps saying why)."""
        pattern = _glob_escape(self.prefix) + "chat:*"
        cut = len(self.prefix) + len("chat:")
        with translated((*self._errors, UnicodeError), self._explain):
            legacy = sorted({key[cut:] async for key in self._redis.scan_iter(match=pattern)})

        async def pages(after: str | None) -> list[str]:
            return [c for c in legacy if after is None or c > after][:100]

        return await migrate_all(self, pages)

    async def aclose(self) -> None:
        """Close the connection pool."""
        with translated(self._errors, self._explain):
            await self._redis.aclose()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def redis_client(aioredis: Any, url: str, needed_by: str) -> redis.asyncio.Redis:
    """A client for ``url`` (connecting on first use).

    Raises:
        ConfigurationError: ``url`` is not a URL redis-py reads.
    """
    try:
        client: redis.asyncio.Redis = aioredis.Redis.from_url(url, decode_responses=True)
    except (TypeError, ValueError, AttributeError) as error:
        raise ConfigurationError(
            f"{needed_by} needs a Redis URL such as redis://localhost:6379/0, got {url!r}: {error}"
        ) from error
    return client


def explain_redis_error(owner: object, client: redis.asyncio.Redis, error: BaseException) -> str:
    """The message of the ``StoreError`` standing for redis-py's ``error``."""
    import redis.exceptions

    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    if isinstance(error, redis.exceptions.AuthenticationError):
        return f"{owner!r}: Redis at {where} refused the credentials: {error}"
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return (
            f"{owner!r}: cannot reach Redis at {where}: {error}; is the server running, and "
            "is the URL right?"
        )
    if isinstance(error, UnicodeError):
        return f"{owner!r}: text that is not valid Unicode cannot be sent to Redis: {error}"
    if isinstance(error, redis.exceptions.ResponseError) and "WRONGTYPE" in str(error):
        return (
            f"{owner!r}: a key under the prefix holds something agentfsm did not write "
            f"({error}); give the store a prefix of its own"
        )
    return f"{owner!r}: Redis failed: {type(error).__name__}: {error}"
