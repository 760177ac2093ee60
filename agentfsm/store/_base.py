"""The store contract: the ``Store`` protocol, the types it returns, the errors it raises."""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from agentfsm.errors import ConcurrentUpdateError, InvalidInputError, StoreError
from agentfsm.state import Conversation, Phase

__all__ = [
    "ChatPage",
    "ChatSummary",
    "ConcurrentUpdateError",
    "Store",
    "StoreError",
]

_S = TypeVar("_S", bound="_Closing")
_T = TypeVar("_T")

Clock = Callable[[], float]
"""Unix time in seconds; stores stamp ``updated_at`` with it (injectable for tests)."""

MAX_LIMIT = 1000
"""The largest page ``list()`` returns."""


@attrs.frozen(kw_only=True)
class ChatSummary:
    """What ``list()`` tells about one stored chat, without loading it.

    Attributes:
        chat_id: the conversation's id.
        user_id: who it belongs to.
        agent_name: the agent that runs it.
        phase: where it was when last saved.
        version: its stored version.
        updated_at: Unix time in seconds of its last save (the store's clock).
    """

    chat_id: str
    user_id: str | None
    agent_name: str
    phase: Phase
    version: int
    updated_at: float


@attrs.frozen
class ChatPage:
    """One page of ``list()``: newest-updated first.

    Attributes:
        items: the chats of this page.
        next_cursor: pass it as ``cursor=`` to get the next page; ``None`` on the last page.
    """

    items: tuple[ChatSummary, ...]
    next_cursor: str | None = None


@runtime_checkable
class Store(Protocol):
    """Where conversations live between requests; every method is a coroutine.

    Saves are compare-and-set on the conversation's ``version``, so two workers that load
    the same chat cannot both write over it: the second gets :class:`ConcurrentUpdateError`.
    """

    async def load(self, chat_id: str) -> Conversation | None:
        """The stored conversation of ``chat_id``, or ``None`` if there is none.

        Raises:
            SerializationError: the stored payload was written by a newer agentfsm.
        """
        ...

    async def save(self, conversation: Conversation, expected_version: int | None) -> None:
        """Store ``conversation`` if the stored chat is still at ``expected_version``.

        Args:
            conversation: the new state; its ``version`` becomes the stored version and must
                be greater than ``expected_version``.
            expected_version: the version the caller loaded, or ``None`` to create the chat
                (it must not exist yet).

        Raises:
            ConcurrentUpdateError: the stored version is not ``expected_version`` (or the chat
                exists when creating); nothing was written.
            InvalidInputError: ``conversation.version`` is not above ``expected_version``.
        """
        ...

    async def delete(self, chat_id: str) -> bool:
        """Delete ``chat_id``; True if it existed."""
        ...

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ChatPage:
        """Stored chats, newest-updated first, a page at a time.

        Args:
            user_id: only this user's chats (``None``: every chat).
            limit: the most chats in the page (1 to 1000).
            cursor: the ``next_cursor`` of the previous page.

        Raises:
            InvalidInputError: ``limit`` is out of range or ``cursor`` is not one of ours.
        """
        ...

    async def aclose(self) -> None:
        """Release connections, threads and pools; the store cannot be used afterwards."""
        ...

    async def __aenter__(self: _T) -> _T: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Closing:
    """``async with store:`` opens the store (if it has anything to open) and closes it."""

    async def _open(self) -> None:
        """Connect eagerly; stores that connect on first use need not."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _S) -> _S:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# --------------------------------------------------------------------------- shared checks


def check_chat_id(chat_id: object) -> str:
    """``chat_id`` if it is a non-empty string."""
    if not isinstance(chat_id, str) or not chat_id:
        raise InvalidInputError(f"chat_id must be a non-empty string, got {chat_id!r}")
    return chat_id


def check_save(conversation: Conversation, expected_version: int | None) -> None:
    """Reject a save that could not be a valid compare-and-set."""
    if not isinstance(conversation, Conversation):
        raise InvalidInputError(f"save() takes a Conversation, got {type(conversation).__name__}")
    check_chat_id(conversation.chat_id)
    if expected_version is None:
        return
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidInputError(
            f"expected_version must be an int or None, got {expected_version!r}"
        )
    if conversation.version <= expected_version:
        # The same version written twice would let two writers both "win" from it.
        raise InvalidInputError(
            f"chat {conversation.chat_id!r}: saving version {conversation.version} over "
            f"expected_version {expected_version}; a save must raise the version"
        )


def check_limit(limit: int) -> int:
    """``limit`` if it is a page size ``list()`` accepts."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def now_us(clock: Clock) -> int:
    """The clock's time as whole microseconds: exact in SQL, in JSON and as a Redis score."""
    return round(clock() * 1_000_000)


def default_clock() -> float:
    """``time.time()``."""
    return time.time()


def encode_cursor(updated_us: int, chat_id: str) -> str:
    """An opaque cursor pointing just after the chat ``(updated_us, chat_id)``."""
    raw = json.dumps([updated_us, chat_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    """The ``(updated_us, chat_id)`` of a cursor made by :func:`encode_cursor`."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_us, chat_id = json.loads(raw)
    except (TypeError, ValueError, binascii.Error) as error:
        raise InvalidInputError(f"not a list() cursor: {cursor!r}") from error
    if isinstance(updated_us, bool) or not isinstance(updated_us, int):
        raise InvalidInputError(f"not a list() cursor: {cursor!r}")
    if not isinstance(chat_id, str):
        raise InvalidInputError(f"not a list() cursor: {cursor!r}")
    return updated_us, chat_id


def summary(
    chat_id: str, user_id: str | None, agent_name: str, phase: str, version: int, updated_us: int
) -> ChatSummary:
    """A :class:`ChatSummary` from stored columns."""
    return ChatSummary(
        chat_id=chat_id,
        user_id=user_id,
        agent_name=agent_name,
        phase=Phase(phase),
        version=int(version),
        updated_at=updated_us / 1_000_000,
    )


def page(rows: tuple[tuple[ChatSummary, int], ...], limit: int) -> ChatPage:
    """The page of up to ``limit + 1`` rows ``(summary, updated_us)`` fetched in order."""
    items = rows[:limit]
    if len(rows) <= limit or not items:
        return ChatPage(tuple(s for s, _ in items), None)
    last, last_us = items[-1]
    return ChatPage(tuple(s for s, _ in items), encode_cursor(last_us, last.chat_id))


def require(module: str, extra: str, needed_by: str) -> Any:
    """Import the optional ``module``, or fail naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{needed_by} needs the {module.split('.')[0]!r} package: "
            f"pip install 'agentfsm[{extra}]'"
        ) from error
