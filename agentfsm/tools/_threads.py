"""``ToolThreads``: the threads sync tools run in, apart from the event loop's default pool.

Python cannot kill a thread. A sync tool whose call is stopped (``request_stop``, a stop
signal, a timeout, a cancelled caller) keeps its thread until the function returns; the run
has moved on and the result is thrown away. In the loop's default pool (``asyncio.to_thread``)
such threads hold slots that everything else in the process needs too — other agents' sync
tools, and ``loop.getaddrinfo``, so even model requests to a new host wait.

So each agent runs its sync tools on a pool of its own, and a call abandoned while its thread
runs *retires* that pool: new calls go to a fresh pool of the same size, the retired one lets
its running calls finish (calls still waiting for them keep their results) and then its threads
exit. A stopped call never holds a slot that a live call could use; threads that will not
return are still threads, and they are the only ones that can pile up.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

__all__ = ["DEFAULT_TOOL_THREADS", "ToolThreads", "shared_threads"]

DEFAULT_TOOL_THREADS: Final = min(32, (os.cpu_count() or 1) + 4)
"""The default number of threads for one agent's sync tools: the standard library's default
for ``ThreadPoolExecutor`` (and so for ``asyncio.to_thread``), ``min(32, CPUs + 4)``."""


class ToolThreads:
    """Threads for sync tool calls: at most ``size`` calls run at once; a stopped call's
    thread leaves the count.

    Threads start on first use (an agent without sync tools starts none). Calls beyond
    ``size`` wait their turn on the event loop, not in a pool's queue, so a call never waits
    behind a thread that was abandoned after it queued.
    """

    __slots__ = ("_lock", "_name", "_pool", "_running", "_waiting", "size")

    def __init__(self, size: int = DEFAULT_TOOL_THREADS, name: str = "agentfsm-tool") -> None:
        self.size = size
        self._name = name
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._running = 0  # calls holding a slot (running, or handed a slot to run)
        self._waiting: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]
        self._waiting = collections.deque()

    def __repr__(self) -> str:
        return f"ToolThreads(size={self.size})"

    async def run(self, func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
        """``func(**kwargs)`` in one of the threads, in a copy of the caller's context (so
        context variables, such as a tracing span, reach the tool).

        Cancelled while the function runs, the call is abandoned: its result is discarded,
        its slot goes to the next call at once, and its thread exits when the function
        returns.
        """
        await self._enter()
        try:
            pool = self._current()
            call = functools.partial(contextvars.copy_context().run, func, **kwargs)
            future = pool.submit(call)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                if future.running():  # not cancellable: its thread runs on, out of our count
                    self._retire(pool)
                raise
        finally:
            self._leave()

    def shutdown(self) -> None:
        """Let the threads exit once their calls return (a later call starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    async def _enter(self) -> None:
        """Take a slot, waiting for one if all ``size`` are taken."""
        with self._lock:
            if self._running < self.size:
                self._running += 1
                return
            loop = asyncio.get_running_loop()
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting.append((loop, turn))
        try:
            await turn
        except asyncio.CancelledError:
            with self._lock:
                handed = (loop, turn) not in self._waiting
                if not handed:
                    self._waiting.remove((loop, turn))
            if handed and not turn.cancelled():  # a slot arrived with the cancellation
                self._leave()
            raise  # (a slot handed to a cancelled turn is passed on by _grant)

    def _leave(self) -> None:
        """Give a slot back: to the first call waiting (on its own loop), else to the count."""
        with self._lock:
            while self._waiting:
                loop, turn = self._waiting.popleft()
                try:
                    loop.call_soon_threadsafe(self._grant, turn)
                except RuntimeError:  # that loop is closed: its waiter is gone
                    continue
                return
            self._running -= 1

    def _grant(self, turn: asyncio.Future[None]) -> None:
        """On the waiter's loop: start it, or pass the slot on if it was cancelled."""
        if turn.done():
            self._leave()
        else:
            turn.set_result(None)

    def _current(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=self._name)
            return self._pool

    def _retire(self, pool: ThreadPoolExecutor) -> None:
        """New calls go to a fresh pool; ``pool`` finishes what it runs, then its threads
        exit (the calls it still runs keep their slots until they return)."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False)


@functools.cache
def shared_threads() -> ToolThreads:
    """The pool of tools invoked outside an agent (``Tool.invoke`` without ``threads=``)."""
    return ToolThreads()
