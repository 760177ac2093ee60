"""``MemoryStore``: conversations in a dict of this process, for tests and scripts."""

from __future__ import annotations

from agentfsm.state import Conversation
from agentfsm.store._base import (
    ChatPage,
    ChatSummary,
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
    now_us,
    page,
    summary,
)

__all__ = ["MemoryStore"]


class MemoryStore(_Closing):
    """Conversations in memory, as the same JSON the other stores keep.

    Keeping the payload (not the object) means a conversation that would not survive a real
    store does not survive this one either. Nothing outlives the process.

    Args:
        clock: Unix time in seconds, for ``updated_at`` (default ``time.time``).
    """

    def __init__(self, *, clock: Clock = default_clock) -> None:
        self._clock = clock
        self._chats: dict[str, tuple[str, ChatSummary, int]] = {}  # payload, summary, µs

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        entry = self._chats.get(check_chat_id(chat_id))
        return None if entry is None else decode(entry[0], chat_id)

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        """Store ``conversation`` if the stored chat is at ``expected_version`` (see ``Store``)."""
        check_save(conversation, expected_version)
        payload = encode(conversation)
        updated_us = now_us(self._clock)
        chat_id = conversation.chat_id
        entry = self._chats.get(chat_id)
        actual = None if entry is None else entry[1].version
        if actual != expected_version:
            raise ConcurrentUpdateError(chat_id, expected_version, actual)
        item = summary(
            chat_id,
            conversation.user_id,
            conversation.agent_name,
            conversation.phase.value,
            conversation.version,
            updated_us,
        )
        self._chats[chat_id] = (payload, item, updated_us)

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        return self._chats.pop(check_chat_id(chat_id), None) is not None

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        """Stored chats, newest-updated first (see ``Store.list``)."""
        check_user_id(user_id)
        check_limit(limit)
        after = decode_cursor(cursor)
        rows = sorted(
            (
                (item, updated_us)
                for _, item, updated_us in self._chats.values()
                if (user_id is None or item.user_id == user_id)
                and (after is None or (updated_us, item.chat_id) < after)
            ),
            key=lambda row: (row[1], row[0].chat_id),
            reverse=True,
        )
        return page(tuple(rows[: limit + 1]), limit)

    async def aclose(self) -> None:
        """Nothing to release; the chats stay readable."""
