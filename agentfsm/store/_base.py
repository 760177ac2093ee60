"""The store contract: the ``Store`` protocol, the types it returns, the errors it raises."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import importlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
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
from agentfsm.serde import dumps, loads, unstructure
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


# --------------------------------------------------------------------------- checkpoints
#
# A durable store keeps a chat as a header (the conversation without its three append-only
# sequences: messages, request records and transitions) and the items of those sequences,
# one JSON text each. A checkpoint writes the header and the items added since the stored
# ones; loading puts them back together and hands the whole to ``loads``, which checks it.
# The header records how many items of each kind there are and a fingerprint of the last
# of each (its *mark*): a conversation whose items do not continue the stored ones (someone
# saved an unrelated object with a matching version) is written in full instead.

LAYOUT_BLOB = 1
"""A chat stored whole, as ``agentfsm.dumps`` wrote it (agentfsm 0.1.0)."""

LAYOUT_PARTS = 2
"""A chat stored as a header and its items."""

KINDS = ("messages", "requests", "transitions")
"""The append-only sequences of a conversation, in the order stores number them (0, 1, 2)."""

OFF_LOOP_ITEMS = 200
"""Decoding or encoding more items than this runs in a worker thread, not on the event loop."""

Counts = tuple[int, int, int]


@attrs.frozen
class Mark:
    """What a stored header says of its items: how many of each kind there are, and a
    fingerprint of the last of each (token counts left out: they come and go).

    Known to the process that wrote or read the chat (not compared): ``last``, the last item
    objects themselves (items are immutable, so the same objects need no fingerprinting),
    and ``pending``, the indices of recent messages stored before their tokens were counted.
    """

    counts: Counts
    tail: str
    last: tuple[object, object, object] | None = attrs.field(default=None, eq=False)
    pending: tuple[int, ...] = attrs.field(default=(), eq=False)


PENDING = 64
"""Recent messages stored without token counts that a save watches, to store the counts once
the context step has made them (they save the next load a tokenizer pass)."""


@attrs.frozen
class Checkpoint:
    """What one save writes: the header, the items after ``base`` (all of them when ``base``
    is ``None``: a write in full), and messages stored again now that they carry their token
    counts (``recounted``: index and JSON)."""

    header: str
    mark: Mark
    base: Mark | None
    items: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
    recounted: tuple[tuple[int, str], ...] = ()

    @property
    def start(self) -> Counts:
        """The index of the first item written, per kind."""
        return self.base.counts if self.base is not None else (0, 0, 0)

    def rows(self) -> Iterator[tuple[int, int, str]]:
        """``(kind, index, json)`` of every item written (new, then recounted)."""
        for kind, (first, items) in enumerate(zip(self.start, self.items, strict=True)):
            for offset, item in enumerate(items):
                yield kind, first + offset, item
        for index, item in self.recounted:
            yield 0, index, item


def _sequences(conversation: Conversation) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any]]:
    return conversation.messages, conversation.requests, conversation.transitions


def _unicode(text: str, chat_id: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError as error:
        raise StoreError(
            f"chat {chat_id!r} holds text that is not valid Unicode (a lone surrogate, "
            f"{text[error.start : error.end]!r}), which no store can keep; replace it "
            "(in tool results, say: decode bytes with errors='replace')",
            chat_id,
        ) from error
    return text


def _json(data: Any, chat_id: str) -> str:
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise SerializationError(f"chat {chat_id!r} cannot be written as JSON: {error}") from error
    return _unicode(text, chat_id)


def _counted(message: object) -> bool:
    """True if ``message`` carries its token counts (set by the accurate counter)."""
    return getattr(message, "_tokens", None) is not None


def _fingerprint(last: tuple[str | None, str | None, str | None]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for item in last:
        digest.update(b"-" if item is None else b"+" + item.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


class _Items:
    """The items of one conversation, unstructured and encoded once each, on demand."""

    def __init__(self, conversation: Conversation) -> None:
        self.chat_id = conversation.chat_id
        self.sequences = _sequences(conversation)
        self._data: dict[tuple[int, int], Any] = {}
        self._text: dict[tuple[int, int], str] = {}

    def data(self, kind: int, index: int) -> Any:
        key = (kind, index)
        if key not in self._data:
            self._data[key] = unstructure(self.sequences[kind][index])
        return self._data[key]

    def text(self, kind: int, index: int) -> str:
        """The JSON stored for the item."""
        key = (kind, index)
        if key not in self._text:
            self._text[key] = _json(self.data(kind, index), self.chat_id)
        return self._text[key]

    def printed(self, kind: int, index: int) -> str:
        """The JSON the fingerprint reads: the item without its token counts."""
        data = self.data(kind, index)
        if isinstance(data, dict) and "tokens" in data:
            return _json({k: v for k, v in data.items() if k != "tokens"}, self.chat_id)
        return self.text(kind, index)

    def tail(self, counts: Counts) -> str:
        a, b, c = (self.printed(k, n - 1) if n else None for k, n in enumerate(counts))
        return _fingerprint((a, b, c))


def checkpoint(conversation: Conversation, base: Mark | None) -> Checkpoint:
    """What saving ``conversation`` over a stored chat marked ``base`` writes.

    Only the items after ``base`` are encoded when the conversation continues the stored
    one (at least as many items of each kind, and the same last items); otherwise, or with
    no ``base``, everything is. Recent messages ``base`` stored before their tokens were
    counted are written again if they carry their counts now.

    Raises:
        StoreError: the conversation holds text no store can keep (a lone surrogate).
        SerializationError: it holds a value JSON cannot carry.
    """
    items = _Items(conversation)
    sequences = items.sequences
    if base is not None and (
        any(n > len(seq) for n, seq in zip(base.counts, sequences, strict=True))
        or (
            _last_objects(sequences, base.counts) != base.last
            and items.tail(base.counts) != base.tail
        )
    ):
        base = None
    start = base.counts if base is not None else (0, 0, 0)
    new = tuple(
        tuple(items.text(k, i) for i in range(start[k], len(sequences[k]))) for k in range(3)
    )
    messages = sequences[0]
    recounted, pending = [], []
    for index in base.pending if base is not None else ():
        if _counted(messages[index]):
            recounted.append((index, items.text(0, index)))
        else:
            pending.append(index)
    pending += [i for i in range(start[0], len(messages)) if not _counted(messages[i])]
    counts = (len(sequences[0]), len(sequences[1]), len(sequences[2]))
    # No new item: the last ones are the stored ones, and so is their fingerprint.
    same = base is not None and counts == base.counts
    tail = base.tail if base is not None and same else items.tail(counts)
    mark = Mark(counts, tail, _last_objects(sequences, counts), tuple(pending[-PENDING:]))
    m, r, t = new
    return Checkpoint(_header(conversation), mark, base, (m, r, t), tuple(recounted))


def _last_objects(
    sequences: tuple[Sequence[Any], Sequence[Any], Sequence[Any]], counts: Counts
) -> tuple[object, object, object]:
    """The last item object of each kind up to ``counts`` (``None`` where there is none),
    each compared by identity."""
    a, b, c = (_Same(seq[n - 1]) if n else None for seq, n in zip(sequences, counts, strict=True))
    return a, b, c


class _Same:
    """Equal to another ``_Same`` only if both hold the very same object."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _header(conversation: Conversation) -> str:
    """The JSON of ``conversation`` without its three sequences (not even empty ones)."""
    bare = attrs.evolve(conversation, messages=(), requests=(), transitions=())
    try:
        data = json.loads(dumps(bare))
        for kind in KINDS:
            data.pop(kind, None)
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except SerializationError:
        raise
    except (TypeError, ValueError, RecursionError) as error:  # what json.dumps raises
        raise SerializationError(
            f"chat {conversation.chat_id!r} cannot be written as JSON: {error}"
        ) from error
    return _unicode(text, conversation.chat_id)


async def checkpoint_off_loop(conversation: Conversation, base: Mark | None) -> Checkpoint:
    """:func:`checkpoint`, in a worker thread when it may encode many items."""
    new = sum(len(seq) for seq in _sequences(conversation))
    if base is not None:
        new -= sum(base.counts)
    if new <= OFF_LOOP_ITEMS:
        return checkpoint(conversation, base)
    return await asyncio.to_thread(checkpoint, conversation, base)


@attrs.frozen
class Joined:
    """Items a store sends joined by commas in one text, with their number."""

    count: int
    text: str | None


def decode_parts(
    header: object, parts: Sequence[object], counts: Sequence[object], chat_id: str
) -> Conversation:
    """The conversation of a stored header and its items.

    The items' JSON texts are put into the header's as they are, so the whole is parsed
    once, by ``loads``, which also checks it (a header or item another program wrote can
    only give a conversation that checks, or this error).

    Args:
        header: the header's JSON text (an object without the three sequences).
        parts: per kind, the items' JSON texts in order (``None`` for none), or
            :class:`Joined`.
        counts: per kind, how many items the header counts.

    Raises:
        SerializationError: they do not make a conversation (another program wrote them,
            or a newer agentfsm did), naming the chat.
    """
    try:
        if not isinstance(header, str):
            raise SerializationError(
                f"its header must be a JSON object, not a {type(header).__name__}"
            )
        inner = header.strip()
        if not (inner.startswith("{") and inner.endswith("}")):
            raise SerializationError("its header must be a JSON object")
        inner = inner[1:-1].strip()
        pieces = [inner] if inner else []
        for kind, part, count in zip(KINDS, parts, counts, strict=True):
            if isinstance(part, Joined):
                found, text = part.count, part.text or ""
            else:
                items = [] if part is None else part
                if not isinstance(items, (list, tuple)):
                    raise SerializationError(f"its {kind} are not a list")
                found, text = len(items), ",".join(items)
            if found != count:
                raise SerializationError(
                    f"its header counts {count} {kind}, but {found} are stored"
                )
            pieces.append(f'"{kind}":[{text}]')  # the last key of a name wins
        return loads("{" + ",".join(pieces) + "}")
    except SerializationError as error:
        raise SerializationError(f"stored chat {chat_id!r} does not load: {error}") from error
    # Foreign data: whatever the decoder trips on means the same, that it does not load.
    except Exception as error:
        raise SerializationError(
            f"stored chat {chat_id!r} does not load: {type(error).__name__}: {error}"
        ) from error


async def decode_parts_off_loop(
    header: object, parts: Sequence[object], counts: Sequence[object], chat_id: str
) -> Conversation:
    """:func:`decode_parts`, in a worker thread when the chat is long."""
    many = sum(n for n in counts if isinstance(n, int)) > OFF_LOOP_ITEMS
    if not many:
        return decode_parts(header, parts, counts, chat_id)
    return await asyncio.to_thread(decode_parts, header, parts, counts, chat_id)


async def decode_off_loop(payload: object, chat_id: str) -> Conversation:
    """:func:`decode` of a whole stored payload (0.1.0), in a worker thread when large."""
    if isinstance(payload, (str, bytes)) and len(payload) > 256 * 1024:
        return await asyncio.to_thread(decode, payload, chat_id)
    return decode(payload, chat_id)


class Marks:
    """The marks of the chats this store instance saved or loaded last, by version: a save
    from the version it knows sends its items without reading the header first (the write
    itself checks the header is still what it was). Bounded; the oldest are forgotten."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._known: collections.OrderedDict[str, tuple[int, Mark]] = collections.OrderedDict()

    def get(self, chat_id: str, version: int | None) -> Mark | None:
        """The mark of ``chat_id`` at ``version``, if this instance knows it."""
        known = self._known.get(chat_id)
        if known is None or known[0] != version:
            return None
        self._known.move_to_end(chat_id)
        return known[1]

    def put(self, chat_id: str, version: int, mark: Mark) -> None:
        """Remember ``chat_id`` is stored at ``version`` with ``mark``."""
        self._known[chat_id] = (version, mark)
        self._known.move_to_end(chat_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def forget(self, chat_id: str) -> None:
        """Forget ``chat_id`` (deleted, or a save of it failed)."""
        self._known.pop(chat_id, None)


def loaded_mark(conversation: Conversation, tail: str) -> Mark:
    """The mark of a conversation just loaded from a header whose fingerprint is ``tail``."""
    sequences = _sequences(conversation)
    counts = (len(sequences[0]), len(sequences[1]), len(sequences[2]))
    messages = sequences[0]
    recent = range(max(0, len(messages) - PENDING), len(messages))
    pending = tuple(i for i in recent if not _counted(messages[i]))
    return Mark(counts, tail, _last_objects(sequences, counts), pending)


def stored_mark(found: Sequence[Any] | None, version: int, layout: int) -> Mark | None:
    """The mark of a header row ``(version, layout, n_messages, n_requests, n_transitions,
    tail, …)`` if it is stored in parts at ``version`` (and holds what agentfsm writes)."""
    if found is None or found[0] != version or found[1] != layout:
        return None
    counts, tail = tuple(found[2:5]), found[5]
    if not isinstance(tail, str) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts
    ):
        return None
    return Mark((counts[0], counts[1], counts[2]), tail)


async def migrate_all(store: Any, legacy: Callable[[str | None], Awaitable[Sequence[str]]]) -> int:
    """Rewrite in parts, at the same version, every chat ``legacy(after)`` pages through
    (ids in order); the number rewritten. A chat that does not load is skipped, as is one a
    worker saved meanwhile (its save wrote it in parts)."""
    count, after = 0, None
    while True:
        chat_ids = await legacy(after)
        if not chat_ids:
            return count
        for chat_id in chat_ids:
            try:
                conversation = await store.load(chat_id)
            except SerializationError:
                continue  # left as it is: load() keeps saying why
            if conversation is None:
                continue
            try:
                written = await store._write(
                    conversation, conversation.version, None, migrating=True
                )
            except ConcurrentUpdateError:
                continue
            count += bool(written)
        after = chat_ids[-1]
