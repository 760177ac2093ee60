"""The store contract: the ``Store`` protocol, the types it returns, the errors it raises."""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from agentfsm.errors import (
    AgentFSMError,
    ConcurrentUpdateError,
    ConfigurationError,
    InvalidInputError,
    LeaseLostError,
    SerializationError,
    StoreError,
)
from agentfsm.serde import dumps, loads
from agentfsm.state import Conversation, Phase

__all__ = [
    "MAX_ID_BYTES",
    "ChatPage",
    "ChatSummary",
    "ConcurrentUpdateError",
    "LeaseLostError",
    "LeaseStore",
    "Store",
    "StoreError",
]

_S = TypeVar("_S", bound="_Closing")
_T = TypeVar("_T")

Clock = Callable[[], float]
"""Unix time in seconds; stores stamp ``updated_at`` with it (injectable for tests)."""

MAX_LIMIT = 1000
"""The largest page ``list()`` returns."""

MAX_ID_BYTES = 1024
"""The longest chat or user id, in bytes of UTF-8. PostgreSQL indexes both in btrees, whose
entries cannot pass about 2.7 KB; 1024 leaves room for the rest of the index entry and is the
same for every store, so a chat that fits one store fits them all."""

ID_RULE = f"a non-empty string of at most {MAX_ID_BYTES} bytes of UTF-8, without NUL characters"
"""What every store accepts as a ``chat_id`` or ``user_id``, checked before any I/O."""

_MAX_VERSION = 2**63 - 1  # a signed 64-bit integer: SQLite INTEGER and PostgreSQL bigint
# list() cursors carry a time the stores can all represent: datetime's years 1 to 9999.
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999


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


@runtime_checkable
class LeaseStore(Store, Protocol):
    """A :class:`Store` that leases chats to one worker at a time: what ``agent.recover()``
    needs, and what a run uses to keep other workers off its chat while it goes on.

    A lease is an owner (any string naming a worker) and an expiry, kept by the store and
    timed by the store's own clock. A run holds its chat's lease and renews it; a worker
    that dies stops renewing, the lease runs out, and ``claim_abandoned`` hands the chat to
    whoever asks first. The stores of ``agentfsm.store`` are all lease stores; a store of
    your own need not be (``recover()`` then says so).

    Attributes:
        lease_ttl: seconds a lease lasts unless renewed (runs renew it every third of it).
    """

    lease_ttl: float

    async def save(
        self, conversation: Conversation, expected_version: int | None, *, lease: str | None = None
    ) -> None:
        """``Store.save``; with ``lease``, also refused (:class:`LeaseLostError`) while
        another owner holds a live lease on the chat, and the lease is then ``lease``'s:
        renewed while the conversation is running, released once it has finished."""
        ...

    async def take_lease(self, chat_id: str, owner: str, *, steal: bool = False) -> bool:
        """Lease ``chat_id`` to ``owner`` for ``lease_ttl`` seconds (or renew it); False if
        another owner holds a live lease (``steal=True`` takes it anyway) or there is no
        such chat."""
        ...

    async def release_lease(self, chat_id: str, owner: str) -> bool:
        """End ``owner``'s lease on ``chat_id``; False if ``owner`` did not hold it."""
        ...

    async def claim_abandoned(self, owner: str, limit: int = 100) -> tuple[str, ...]:
        """Lease to ``owner``, atomically, up to ``limit`` chats in a running phase that no
        live lease covers (their worker died); each chat goes to one caller only."""
        ...


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


def check_id(value: object, name: str = "chat_id") -> str:
    """``value`` if it follows :data:`ID_RULE`, the one rule of ids in every store.

    Raises:
        InvalidInputError: saying which part of the rule ``value`` breaks.
    """
    problem = _id_problem(value)
    if problem is not None or not isinstance(value, str):
        raise InvalidInputError(f"{name} must be {ID_RULE}; got {_shown(value)}, {problem}")
    return value


def _id_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"which is a {type(value).__name__}"
    if not value:
        return "which is empty"
    if "\x00" in value:
        return f"which has a NUL character at index {value.index(chr(0))}"
    try:
        size = len(value.encode())
    except UnicodeEncodeError as error:
        return f"which is not valid Unicode (a lone surrogate at index {error.start})"
    if size > MAX_ID_BYTES:
        return f"which is {size} bytes long"
    return None


def _shown(value: object) -> str:
    """A repr short enough for one line of an error message."""
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:50]}…{shown[-8:]}"


def check_chat_id(chat_id: object) -> str:
    """``chat_id`` if it follows :data:`ID_RULE`."""
    return check_id(chat_id, "chat_id")


def check_user_id(user_id: object) -> str | None:
    """``user_id`` if it is ``None`` or follows :data:`ID_RULE`."""
    return None if user_id is None else check_id(user_id, "user_id")


def check_save(conversation: Conversation, expected_version: int | None) -> None:
    """Reject a save that could not be a valid compare-and-set, before any I/O."""
    if not isinstance(conversation, Conversation):
        raise InvalidInputError(f"save() takes a Conversation, got {type(conversation).__name__}")
    check_chat_id(conversation.chat_id)
    check_user_id(conversation.user_id)
    version = conversation.version
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 0 <= version <= _MAX_VERSION
    ):
        raise InvalidInputError(
            f"chat {conversation.chat_id!r}: version must be an int from 0 to 2**63-1, "
            f"got {version!r}"
        )
    if expected_version is None:
        return
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or not 0 <= expected_version <= _MAX_VERSION
    ):
        raise InvalidInputError(
            f"expected_version must be None or an int from 0 to 2**63-1, got {expected_version!r}"
        )
    if conversation.version <= expected_version:
        # The same version written twice would let two writers both "win" from it.
        raise InvalidInputError(
            f"chat {conversation.chat_id!r}: saving version {conversation.version} over "
            f"expected_version {expected_version}; a save must raise the version"
        )


def encode(conversation: Conversation) -> str:
    """The JSON a store keeps of ``conversation``: ``agentfsm.dumps``, checked to be UTF-8.

    Raises:
        StoreError: the conversation holds text no store can keep (a lone surrogate).
        SerializationError: it holds a value JSON cannot carry.
    """
    chat_id = conversation.chat_id
    try:
        payload = dumps(conversation)
    except SerializationError:
        raise
    except (TypeError, ValueError, RecursionError) as error:  # what json.dumps raises
        raise SerializationError(f"chat {chat_id!r} cannot be written as JSON: {error}") from error
    try:
        payload.encode()
    except UnicodeEncodeError as error:
        raise StoreError(
            f"chat {chat_id!r} holds text that is not valid Unicode (a lone surrogate, "
            f"{payload[error.start : error.end]!r}), which no store can keep; replace it "
            "(in tool results, say: decode bytes with errors='replace')",
            chat_id,
        ) from error
    return payload


def decode(payload: object, chat_id: str) -> Conversation:
    """The conversation of a stored ``payload``.

    Raises:
        SerializationError: the payload does not load (written by a newer agentfsm, or not a
            conversation at all), naming the chat.
    """
    if not isinstance(payload, (str, bytes, Mapping)):
        raise SerializationError(
            f"stored chat {chat_id!r} does not load: a serialized conversation must be a "
            f"JSON object, not a {type(payload).__name__}"
        )
    try:
        return loads(payload)
    except SerializationError as error:
        raise SerializationError(f"stored chat {chat_id!r} does not load: {error}") from error
    # A stored payload is foreign data (another program may have written the key or row):
    # whatever its decoder trips on (a 100,000-deep nesting, a type it does not expect)
    # means the same thing, that it does not load.
    except Exception as error:
        raise SerializationError(
            f"stored chat {chat_id!r} does not load: {type(error).__name__}: {error}"
        ) from error


@contextlib.contextmanager
def translated(
    driver_errors: tuple[type[BaseException], ...],
    explain: Callable[[BaseException], str],
    chat_id: str | None = None,
) -> Iterator[None]:
    """Errors of a store's client library raised inside come out as :class:`StoreError`
    (``explain(error)`` its message on one line, the original its ``__cause__``); ours pass
    through."""
    try:
        yield
    except AgentFSMError:
        raise
    except driver_errors as error:
        # Drivers add DETAIL and HINT lines; a store error reads as one line in a log.
        raise StoreError(" ".join(explain(error).split()), chat_id) from error


def check_limit(limit: int) -> int:
    """``limit`` if it is a page size ``list()`` accepts."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def now_us(clock: Clock) -> int:
    """The clock's time as whole microseconds: exact in SQL, in JSON and as a Redis score.

    Raises:
        ConfigurationError: the store's clock gave no usable time.
    """
    now = clock()
    if (
        isinstance(now, bool)
        or not isinstance(now, (int, float))
        or not math.isfinite(now)
        or not _MIN_US <= now * 1_000_000 <= _MAX_US
    ):
        raise ConfigurationError(f"the store's clock must give Unix seconds, it gave {now!r}")
    return round(now * 1_000_000)


def default_clock() -> float:
    """``time.time()``."""
    return time.time()


def encode_cursor(updated_us: int, chat_id: str) -> str:
    """An opaque cursor pointing just after the chat ``(updated_us, chat_id)``."""
    raw = json.dumps([updated_us, chat_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    """The ``(updated_us, chat_id)`` of a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidInputError: ``cursor`` is not one of ours.
    """
    if cursor is None:
        return None
    bad = InvalidInputError(
        f"not a list() cursor: {_shown(cursor)}; pass a next_cursor list() returned"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_us, chat_id = json.loads(raw)
    except (TypeError, ValueError, RecursionError, binascii.Error) as error:
        raise bad from error
    if isinstance(updated_us, bool) or not isinstance(updated_us, int):
        raise bad
    if not _MIN_US <= updated_us <= _MAX_US or _id_problem(chat_id) is not None:
        raise bad
    return updated_us, chat_id


def summary(
    chat_id: str, user_id: str | None, agent_name: str, phase: str, version: Any, updated_us: Any
) -> ChatSummary:
    """A :class:`ChatSummary` from stored columns.

    Raises:
        SerializationError: a column holds what agentfsm never writes there.
    """
    try:
        return ChatSummary(
            chat_id=chat_id,
            user_id=user_id,
            agent_name=agent_name,
            phase=Phase(phase),
            version=int(version),
            updated_at=int(updated_us) / 1_000_000,
        )
    except (TypeError, ValueError) as error:
        raise SerializationError(
            f"stored chat {chat_id!r} has columns agentfsm did not write: {error}"
        ) from error


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


# --------------------------------------------------------------------------- leases


MAX_OWNER_BYTES = 200
"""The longest lease owner, in bytes of UTF-8."""


def check_owner(owner: object) -> str:
    """``owner`` if it can name a lease holder: 1 to 200 bytes of UTF-8, no NUL.

    Raises:
        InvalidInputError: saying what is wrong with it.
    """
    problem = _id_problem(owner)
    if problem is None and isinstance(owner, str) and len(owner.encode()) > MAX_OWNER_BYTES:
        problem = f"which is {len(owner.encode())} bytes long"
    if problem is not None or not isinstance(owner, str):
        raise InvalidInputError(
            f"a lease owner must be a non-empty string of at most {MAX_OWNER_BYTES} bytes of "
            f"UTF-8, without NUL characters; got {_shown(owner)}, {problem}"
        )
    return owner


def check_lease_ttl(ttl: object, store: str) -> float:
    """``ttl`` if it is a lease length a store takes (0.01 s to a day).

    Raises:
        ConfigurationError: naming the store.
    """
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not math.isfinite(ttl)
        or not 0.01 <= ttl <= 86_400
    ):
        raise ConfigurationError(
            f"{store} lease_ttl must be a number of seconds from 0.01 to 86400, got {ttl!r}"
        )
    return float(ttl)


def lease_after(
    running: bool,
    lease: str | None,
    holder: object,
    until: int | None,
    now: int,
    ttl: int,
) -> tuple[str | None, int | None]:
    """The lease a chat has after a save: the saver's (renewed) while it runs, none once it
    has finished; a save without an owner keeps another's live lease, or else covers the
    chat for one ``ttl`` so that recover() leaves it to whoever is stepping it."""
    alive = isinstance(holder, str) and until is not None and until >= now
    if not running:
        return (holder, until) if alive and holder != lease else (None, None)  # type: ignore[return-value]
    if lease is not None:
        return lease, now + ttl
    if alive:
        return holder, until  # type: ignore[return-value]
    return None, now + ttl


def lease_lost(chat_id: str, expected: int | None, actual: int | None, holder: str) -> None:
    """Raise the :class:`LeaseLostError` of a save refused for another owner's lease."""
    raise LeaseLostError(chat_id, expected, actual, holder)
