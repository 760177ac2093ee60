"""``RedisStore``: conversations in Redis, shared by any number of workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfsm.serde import dumps, loads
from agentfsm.state import Conversation
from agentfsm.store._base import (
    ChatPage,
    Clock,
    ConcurrentUpdateError,
    _Closing,
    check_chat_id,
    check_limit,
    check_save,
    decode_cursor,
    default_clock,
    encode_cursor,
    now_us,
    require,
    summary,
)

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisStore"]

# The compare-and-set runs as one script, so nothing can come between the version check
# and the write. KEYS: the chat's hash, the global index, the user's index (if any).
# ARGV: expected version ("" = create), version, data, user_id, has user ("1"/"0"),
# agent_name, phase, schema_version, updated_at (µs), chat_id, the user-index key prefix.
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
    if current then return {0, current} end
elseif current ~= ARGV[1] then
    return {0, current or ''}
end
local old_user = redis.call('HGET', KEYS[1], 'user_id')
if old_user and (ARGV[5] ~= '1' or old_user ~= ARGV[4]) then
    redis.call('ZREM', ARGV[11] .. old_user, ARGV[10])
end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'version', ARGV[2], 'agent_name', ARGV[6],
    'phase', ARGV[7], 'schema_version', ARGV[8], 'updated_at', ARGV[9])
if ARGV[5] == '1' then
    redis.call('HSET', KEYS[1], 'user_id', ARGV[4])
    redis.call('ZADD', KEYS[3], ARGV[9], ARGV[10])
else
    redis.call('HDEL', KEYS[1], 'user_id')
end
redis.call('ZADD', KEYS[2], ARGV[9], ARGV[10])
return {1, ''}
"""

# KEYS: the chat's hash, the global index. ARGV: chat_id, the user-index key prefix.
_DELETE = """
local user = redis.call('HGET', KEYS[1], 'user_id')
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if user then redis.call('ZREM', ARGV[2] .. user, ARGV[1]) end
return existed
"""

_FIELDS = ("user_id", "agent_name", "phase", "version", "updated_at")


class RedisStore(_Closing):
    """Conversations in Redis: for many workers on many machines.

    Each chat is a hash ``{prefix}chat:{chat_id}`` holding the JSON of ``agentfsm.dumps``
    (``data``), the ``version`` and the listed columns; sorted sets ``{prefix}chats`` and
    ``{prefix}user:{user_id}`` index them by last update for ``list()``. A save is one Lua
    script: the version check and the write are atomic. Keys do not expire. One Redis
    server (or a primary behind Sentinel); Redis Cluster is not supported, since a save
    touches several keys.

    Args:
        url: a redis-py URL, e.g. ``redis://localhost:6379/0`` (``rediss://`` for TLS).
        prefix: put before every key, to share a database with other data.
        clock: Unix time in seconds, for ``updated_at`` (default ``time.time``).

    Raises:
        ImportError: the ``redis`` package is missing (``pip install 'agentfsm[redis]'``).
    """

    def __init__(
        self, url: str, *, prefix: str = "agentfsm:", clock: Clock = default_clock
    ) -> None:
        aioredis = require("redis.asyncio", "redis", "RedisStore")
        self.prefix = prefix
        self._clock = clock
        self._redis: redis.asyncio.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._save = self._redis.register_script(_SAVE)
        self._delete = self._redis.register_script(_DELETE)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    def _chat_key(self, chat_id: str) -> str:
        return f"{self.prefix}chat:{chat_id}"

    def _index_key(self, user_id: str | None) -> str:
        return f"{self.prefix}chats" if user_id is None else f"{self.prefix}user:{user_id}"

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        payload = await self._redis.hget(self._chat_key(check_chat_id(chat_id)), "data")
        return None if payload is None else loads(payload)

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        """Store ``conversation`` if the stored chat is at ``expected_version`` (see ``Store``)."""
        check_save(conversation, expected_version)
        chat_id, user_id = conversation.chat_id, conversation.user_id
        keys = [self._chat_key(chat_id), self._index_key(None)]
        if user_id is not None:
            keys.append(self._index_key(user_id))
        won, found = await self._save(
            keys=keys,
            args=[
                "" if expected_version is None else str(expected_version),
                str(conversation.version),
                dumps(conversation),
                user_id or "",
                "0" if user_id is None else "1",
                conversation.agent_name,
                conversation.phase.value,
                str(conversation.schema_version),
                str(now_us(self._clock)),
                chat_id,
                f"{self.prefix}user:",
            ],
        )
        if not int(won):
            raise ConcurrentUpdateError(chat_id, expected_version, int(found) if found else None)

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        existed = await self._delete(
            keys=[self._chat_key(check_chat_id(chat_id)), self._index_key(None)],
            args=[chat_id, f"{self.prefix}user:"],
        )
        return bool(existed)

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        """Stored chats, newest-updated first (see ``Store.list``)."""
        check_limit(limit)
        after = decode_cursor(cursor)
        index = self._index_key(user_id)
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
                pipe.hmget(self._chat_key(chat_id), _FIELDS)
            columns: list[list[Any]] = await pipe.execute()
        items = tuple(
            summary(chat_id, user, agent, phase, int(version), int(updated))
            for (chat_id, _), (user, agent, phase, version, updated) in zip(
                ranked, columns, strict=True
            )
            if version is not None  # deleted between the two reads
        )
        if not more:
            return ChatPage(items, None)
        last_id, last_score = ranked[-1]
        return ChatPage(items, encode_cursor(int(last_score), last_id))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
