"""Stop signals: ``request_stop`` in-process, the user's polled function, and the stop watcher."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from agentfsm._log import get_logger
from agentfsm.errors import ConfigurationError

__all__ = ["STOPPED", "StopSignalFunction"]

log = get_logger(__name__)

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
        self._waiters: dict[
            str, dict[int, tuple[asyncio.AbstractEventLoop, Callable[[], None]]]
        ] = {}

    def request(self, chat_id: str) -> None:
        with self._lock:
            self._requested.add(chat_id)
            waiters = tuple(self._waiters.get(chat_id, {}).values())
        for loop, callback in waiters:
            loop.call_soon_threadsafe(callback)

    def is_requested(self, chat_id: str) -> bool:
        return chat_id in self._requested

    def clear(self, chat_id: str) -> None:
        with self._lock:
            self._requested.discard(chat_id)

    def register(self, chat_id: str, key: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` on this loop when a stop is requested for ``chat_id``."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._waiters.setdefault(chat_id, {})[key] = (loop, callback)
            requested = chat_id in self._requested
        if requested:
            loop.call_soon(callback)

    def unregister(self, chat_id: str, key: int) -> None:
        with self._lock:
            waiters = self._waiters.get(chat_id)
            if waiters is not None:
                waiters.pop(key, None)
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
        """The result of ``work``, or ``STOPPED`` if a stop came first (``work`` is cancelled).

        ``work`` runs in the calling task (no extra task per request: this is the hot path);
        a stop cancels that task and the cancellation is caught here, so it never leaks.
        """
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a task
            raise RuntimeError("the stop watch runs work inside an asyncio task")
        running = True

        def stop(source: str) -> None:
            if running and self.source is None:
                self.source = source
                task.cancel(_OWN_CANCEL)

        key = id(self)
        self._board.register(self._chat_id, key, lambda: stop("request_stop"))
        poller = (
            None
            if self._signal is None
            else asyncio.get_running_loop().create_task(self._poll(self._signal, stop))
        )
        try:
            result = await work
        except asyncio.CancelledError as error:
            if self.source is None or not _ours(task, error):
                raise  # a cancellation of the caller's, not ours: it always wins
            _uncancel(task)
            return STOPPED
        finally:
            running = False
            self._board.unregister(self._chat_id, key)
            if poller is not None:
                poller.cancel()
        return result

    async def _poll(self, signal: _StopSignal, stop: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(signal.interval)
            if await signal(self._chat_id, self._user_id):
                stop("stop_signal_function")
                return


_OWN_CANCEL: Final = "agentfsm: stop requested"
"""The message our stop cancels with: a tag telling our cancellation from a caller's."""


def _ours(task: asyncio.Task[Any], error: asyncio.CancelledError) -> bool:
    """Whether the cancellation that reached the watch is only our own stop.

    Tagged, as anyio tags its cancel scopes: a cancel carrying another message (or none) is
    the caller's. On Python >= 3.11 the task also counts pending requests, so a caller's
    cancel that came after ours (its message lost in the same delivery) still wins.
    """
    if sys.version_info >= (3, 11):
        return task.cancelling() == 1 and _OWN_CANCEL in error.args
    return _OWN_CANCEL in error.args


def _uncancel(task: asyncio.Task[Any]) -> None:
    """Withdraw our own cancellation so structured concurrency above us is not confused."""
    if sys.version_info >= (3, 11):
        task.uncancel()
