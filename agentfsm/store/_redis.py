"""``RedisStore``: conversations in Redis, shared by any number of workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfsm.errors import ConfigurationError, SerializationError
from agentfsm.state import Conversation
from agentfsm.store._base import (
    ChatPage,
    Clock,
    ConcurrentUpdateError,
    _Closing,
    check_chat_id,
    check_limit,
    check_save,
    check_user_id,
    decode,
    decode_cursor,
    default_clock,
    encode,
    encode_cursor,
    now_us,
    require,
    summary,
    translated,
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
        ConfigurationError: ``url`` is not a Redis URL, or ``prefix`` is not a string.

    Errors of Redis or of the connection to it come out as ``StoreError``, redis-py's own
    error as its ``__cause__``.
    """

    def __init__(
        self, url: str, *, prefix: str = "agentfsm:", clock: Clock = default_clock
    ) -> None:
        aioredis = require("redis.asyncio", "redis", "RedisStore")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"RedisStore prefix must be a string, got {prefix!r}")
        self.prefix = prefix
        self._clock = clock
        self._redis: redis.asyncio.Redis = redis_client(aioredis, url, "RedisStore")
        self._errors: tuple[type[Exception], ...] = (aioredis.RedisError,)
        self._save = self._redis.register_script(_SAVE)
        self._delete = self._redis.register_script(_DELETE)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    def _explain(self, error: BaseException) -> str:
        return explain_redis_error(self, self._redis, error)

    def _chat_key(self, chat_id: str) -> str:
        return f"{self.prefix}chat:{chat_id}"

    def _index_key(self, user_id: str | None) -> str:
        return f"{self.prefix}chats" if user_id is None else f"{self.prefix}user:{user_id}"

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        key = self._chat_key(check_chat_id(chat_id))
        with translated(self._errors, self._explain, chat_id):
            try:
                payload = await self._redis.hget(key, "data")
            except UnicodeDecodeError as error:  # written by another program, not by us
                raise SerializationError(
                    f"stored chat {chat_id!r} does not load: its data is not UTF-8 text"
                ) from error
        return None if payload is None else decode(payload, chat_id)

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        """Store ``conversation`` if the stored chat is at ``expected_version`` (see ``Store``)."""
        check_save(conversation, expected_version)
        chat_id, user_id = conversation.chat_id, conversation.user_id
        keys = [self._chat_key(chat_id), self._index_key(None)]
        if user_id is not None:
            keys.append(self._index_key(user_id))
        args = [
            "" if expected_version is None else str(expected_version),
            str(conversation.version),
            encode(conversation),
            user_id or "",
            "0" if user_id is None else "1",
            conversation.agent_name,
            conversation.phase.value,
            str(conversation.schema_version),
            str(now_us(self._clock)),
            chat_id,
            f"{self.prefix}user:",
        ]
        with translated((*self._errors, UnicodeError), self._explain, chat_id):
            won, found = await self._save(keys=keys, args=args)
        if not int(won):
            raise ConcurrentUpdateError(chat_id, expected_version, int(found) if found else None)

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        with translated(self._errors, self._explain, chat_id):
            existed = await self._delete(
                keys=[self._chat_key(check_chat_id(chat_id)), self._index_key(None)],
                args=[chat_id, f"{self.prefix}user:"],
            )
        return bool(existed)

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
                pipe.hmget(self._chat_key(chat_id), _FIELDS)
            columns: list[list[Any]] = await pipe.execute()
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

    async def aclose(self) -> None:
        """Close the connection pool."""
        with translated(self._errors, self._explain):
            await self._redis.aclose()


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
