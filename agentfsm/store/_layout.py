"""How a durable store lays a chat out: a header and one JSON item per message, request
record and transition; a checkpoint writes what changed since the stored ones, and loading
puts them back together."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import attrs

from agentfsm.errors import ConcurrentUpdateError, SerializationError, StoreError
from agentfsm.serde import dumps, loads, unstructure
from agentfsm.state import Conversation
from agentfsm.store._base import check_owner, check_save, decode

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


class PartsStore:
    """``save`` of a store that keeps chats in parts: the checks every store makes before any
    I/O, then the store's own ``_write``."""

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
        await self._write(conversation, expected_version, lease)

    async def _write(
        self,
        conversation: Conversation,
        expected_version: int | None,
        lease: str | None,
        *,
        migrating: bool = False,
    ) -> bool:
        """Write ``conversation`` (see ``save``); False if, migrating, it needed no rewrite."""
        raise NotImplementedError
