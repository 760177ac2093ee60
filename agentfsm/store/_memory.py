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
    check_lease_ttl,
    check_limit,
    check_owner,
    check_save,
    check_user_id,
    decode,
    decode_cursor,
    default_clock,
    encode,
    lease_after,
    lease_lost,
    now_us,
    page,
    summary,
)

__all__ = ["MemoryStore"]


class MemoryStore(_Closing):
    """Conversations in memory, as the same JSON the other stores keep.

    Keeping the payload (not the object) means a conversation that would not survive a real
    store does not survive this one either. Nothing outlives the process. Leases work as in
    the other stores, timed by ``clock``, among the agents of this process.

    Args:
        clock: Unix time in seconds, for ``updated_at`` and lease expiry (default
            ``time.time``).
        lease_ttl: seconds a run's lease on its chat lasts unless renewed.
    """

    def __init__(self, *, clock: Clock = default_clock, lease_ttl: float = 30.0) -> None:
        self._clock = clock
        self.lease_ttl = check_lease_ttl(lease_ttl, "MemoryStore")
        self._chats: dict[str, tuple[str, ChatSummary, int]] = {}  # payload, summary, µs
        self._leases: dict[str, tuple[str | None, int | None]] = {}  # owner, until (µs)

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None``."""
        entry = self._chats.get(check_chat_id(chat_id))
        return None if entry is None else decode(entry[0], chat_id)

    async def save(
        self,
        conversation: Conversation,
        expected_version: int | None,
        *,
        lease: str | None = None,
    ) -> None:
        """Store ``conversation`` if the stored chat is at ``expected_version`` (see ``Store``);
        with ``lease``, only while no other owner holds a live lease on it (see
        ``LeaseStore``)."""
        check_save(conversation, expected_version)
        if lease is not None:
            check_owner(lease)
        payload = encode(conversation)
        updated_us = now_us(self._clock)
        chat_id = conversation.chat_id
        entry = self._chats.get(chat_id)
        actual = None if entry is None else entry[1].version
        if actual != expected_version:
            raise ConcurrentUpdateError(chat_id, expected_version, actual)
        holder, until = self._leases.get(chat_id, (None, None))
        if self._held_by_another(chat_id, lease, updated_us) and lease is not None:
            lease_lost(chat_id, expected_version, actual, str(holder))
        ttl = round(self.lease_ttl * 1e6)
        running = not conversation.phase.terminal
        self._leases[chat_id] = lease_after(running, lease, holder, until, updated_us, ttl)
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
        self._leases.pop(check_chat_id(chat_id), None)
        return self._chats.pop(chat_id, None) is not None

    def _held_by_another(self, chat_id: str, owner: str | None, now: int) -> bool:
        holder, until = self._leases.get(chat_id, (None, None))
        return holder is not None and holder != owner and until is not None and until >= now

    async def take_lease(self, chat_id: str, owner: str, *, steal: bool = False) -> bool:
        """Lease ``chat_id`` to ``owner`` (see ``LeaseStore.take_lease``)."""
        entry = self._chats.get(check_chat_id(chat_id))
        check_owner(owner)
        now = now_us(self._clock)
        if entry is None or entry[1].phase.terminal:
            return False
        if self._held_by_another(chat_id, owner, now) and not steal:
            return False
        self._leases[chat_id] = (owner, now + round(self.lease_ttl * 1e6))
        return True

    async def release_lease(self, chat_id: str, owner: str) -> bool:
        """End ``owner``'s lease on ``chat_id`` (see ``LeaseStore.release_lease``)."""
        holder, _ = self._leases.get(check_chat_id(chat_id), (None, None))
        if holder != check_owner(owner):
            return False
        del self._leases[chat_id]
        return True

    async def claim_abandoned(self, owner: str, limit: int = 100) -> tuple[str, ...]:
        """Lease to ``owner`` the running chats no live lease covers (see ``LeaseStore``)."""
        check_owner(owner)
        check_limit(limit)
        now = now_us(self._clock)
        ttl = round(self.lease_ttl * 1e6)
        running = sorted(
            (updated_us, chat_id)
            for chat_id, (_, item, updated_us) in self._chats.items()
            if not item.phase.terminal
        )
        claimed: list[str] = []
        for _, chat_id in running:
            until = self._leases.get(chat_id, (None, None))[1]
            if until is None or until < now:
                self._leases[chat_id] = (owner, now + ttl)
                claimed.append(chat_id)
                if len(claimed) == limit:
                    break
        return tuple(claimed)

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
