"""Stop signals: ``request_stop`` in-process, the user's polled function, and the stop watcher."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import structlog

from agentfsm.errors import ConfigurationError

__all__ = ["STOPPED", "StopSignalFunction"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

StopSignalFunction = Callable[..., "bool | Awaitable[bool]"]
"""``manual_stop_signal_function``: sync or async, may take ``chat_id`` and/or ``user_id``."""


class _Stopped:
    """The result of work the stop watcher cancelled."""

    def __repr__(self) -> str:
        return "STOPPED"


STOPPED: Final = _Stopped()


class _StopBoard:
    """Stop requests per chat, settable from any thread (``agent.request_stop``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested: set[str] = set()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def request(self, chat_id: str) -> None:
        with self._lock:
            self._requested.add(chat_id)
            waiters = tuple(self._waiters.get(chat_id, ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def is_requested(self, chat_id: str) -> bool:
        return chat_id in self._requested

    def clear(self, chat_id: str) -> None:
        with self._lock:
            self._requested.discard(chat_id)

    def register(self, chat_id: str, event: asyncio.Event) -> None:
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.setdefault(chat_id, set()).add(entry)
            if chat_id in self._requested:
                event.set()

    def unregister(self, chat_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(chat_id)
            if waiters is None:
                return
            waiters.difference_update({w for w in waiters if w[1] is event})
            if not waiters:
                del self._waiters[chat_id]


class _StopSignal:
    """The user's ``manual_stop_signal_function``, called with the arguments it accepts."""

    def __init__(self, func: StopSignalFunction, interval: float) -> None:
        if not callable(func):
            raise ConfigurationError(
                "manual_stop_signal_function must be a callable returning bool, "
                f"got {type(func).__name__}"
            )
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigurationError(
                f"check_for_stop_signal_time must be a positive number of seconds, got {interval!r}"
            )
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):  # builtins without a signature: call without arguments
            params = {}  # type: ignore[assignment]
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._names = tuple(n for n in ("chat_id", "user_id") if takes_all or n in params)
        self.func = func
        self.interval = float(interval)

    async def __call__(self, chat_id: str, user_id: str | None) -> bool:
        """True if the function says stop; a function that raises is logged and means "go on"."""
        values = {"chat_id": chat_id, "user_id": user_id}
        try:
            result: Any = self.func(**{n: values[n] for n in self._names})
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:
            log.warning(
                "stop_signal_function_failed",
                chat_id=chat_id,
                error_type=type(error).__name__,
                error=str(error),
            )
            return False
        return bool(result)


class _StopWatch:
    """Runs one action and cancels it the moment a stop arrives (request or polled function)."""

    __slots__ = ("_board", "_chat_id", "_signal", "_user_id", "source")

    def __init__(
        self, board: _StopBoard, signal: _StopSignal | None, chat_id: str, user_id: str | None
    ) -> None:
        self._board = board
        self._signal = signal
        self._chat_id = chat_id
        self._user_id = user_id
        self.source: str | None = None

    async def requested(self) -> bool:
        """Checks both sources once; remembers which one said stop."""
        if self._board.is_requested(self._chat_id):
            self.source = "request_stop"
        elif self._signal is not None and await self._signal(self._chat_id, self._user_id):
            self.source = "stop_signal_function"
        return self.source is not None

    async def run(self, work: Awaitable[T]) -> T | _Stopped:
        """The result of ``work``, or ``STOPPED`` if a stop came first (``work`` is cancelled)."""
        task = asyncio.ensure_future(work)
        event = asyncio.Event()
        self._board.register(self._chat_id, event)
        watcher = asyncio.ensure_future(self._wait(event))
        try:
            await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._board.unregister(self._chat_id, event)
            if not task.done():
                task.cancel()
            watcher.cancel()
            await asyncio.gather(task, watcher, return_exceptions=True)
        if task.cancelled() and self.source is not None:
            return STOPPED
        return task.result()

    async def _wait(self, event: asyncio.Event) -> None:
        if self._signal is None:
            await event.wait()
        else:
            while True:
                try:
                    await asyncio.wait_for(event.wait(), self._signal.interval)
                    break
                except asyncio.TimeoutError:
                    if await self._signal(self._chat_id, self._user_id):
                        self.source = "stop_signal_function"
                        return
        self.source = "request_stop"
