"""Where conversations live between requests: the ``Store`` protocol and its stores."""

from agentfsm.store._base import (
    MAX_ID_BYTES,
    ChatPage,
    ChatSummary,
    ConcurrentUpdateError,
    LeaseLostError,
    LeaseStore,
    Store,
    StoreError,
)
from agentfsm.store._memory import MemoryStore
from agentfsm.store._postgres import PostgresStore
from agentfsm.store._redis import RedisStore
from agentfsm.store._sqlite import SQLiteStore
from agentfsm.store._stop import RedisStopSignal

__all__ = [
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
]
