"""``RedisStopSignal``: a stop button shared by every worker, through Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfsm.errors import ConfigurationError
from agentfsm.store._base import _Closing, check_chat_id, require, translated
from agentfsm.store._redis import explain_redis_error, redis_client

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisStopSignal"]


class RedisStopSignal(_Closing):
    """Stop requests kept in Redis, so a stop pressed on one worker stops the run on another.

    Pass an instance as the agent's ``manual_stop_signal_function``: the agent calls it with
    ``chat_id=`` while a run goes on. ``request_stop`` sets a key with a time to live, so a
    request nobody acts on does not linger; ``clear`` removes it, and should be called when
    a new run of the chat starts (the agent cannot clear a signal it only reads).

    Args:
        url: a redis-py URL, e.g. ``redis://localhost:6379/0``.
        prefix: put before every key; the key of a chat is ``{prefix}stop:{chat_id}``.
        ttl: seconds a stop request stays set.

    Raises:
        ImportError: the ``redis`` package is missing (``pip install 'agentfsm[redis]'``).
        ConfigurationError: ``ttl`` is not a positive int, ``url`` not a Redis URL.

    Errors of Redis or of the connection to it come out as ``StoreError``.
    """

    def __init__(self, url: str, *, prefix: str = "agentfsm:", ttl: int = 3600) -> None:
        aioredis = require("redis.asyncio", "redis", "RedisStopSignal")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ConfigurationError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"RedisStopSignal prefix must be a string, got {prefix!r}")
        self.prefix = prefix
        self.ttl = ttl
        self._redis: redis.asyncio.Redis = redis_client(aioredis, url, "RedisStopSignal")
        self._errors: tuple[type[Exception], ...] = (aioredis.RedisError,)

    def __repr__(self) -> str:
        return f"RedisStopSignal(prefix={self.prefix!r}, ttl={self.ttl})"

    def _key(self, chat_id: str) -> str:
        return f"{self.prefix}stop:{check_chat_id(chat_id)}"

    def _explain(self, error: BaseException) -> str:
        return explain_redis_error(self, self._redis, error)

    async def __call__(self, chat_id: str) -> bool:
        """True if a stop was requested for ``chat_id`` and has not expired or been cleared."""
        key = self._key(chat_id)
        with translated(self._errors, self._explain, chat_id):
            return bool(await self._redis.exists(key))

    async def request_stop(self, chat_id: str) -> None:
        """Ask every worker running ``chat_id`` to stop it (for ``ttl`` seconds)."""
        key = self._key(chat_id)
        with translated(self._errors, self._explain, chat_id):
            await self._redis.set(key, "1", ex=self.ttl)

    async def clear(self, chat_id: str) -> bool:
        """Withdraw the stop request of ``chat_id``; True if there was one."""
        key = self._key(chat_id)
        with translated(self._errors, self._explain, chat_id):
            return bool(await self._redis.delete(key))

    async def aclose(self) -> None:
        """Close the connection pool."""
        with translated(self._errors, self._explain):
            await self._redis.aclose()
