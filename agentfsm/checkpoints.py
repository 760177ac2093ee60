"""Per-call checkpoints: a tool batch's results saved one by one as they finish.

A worker that dies in the middle of a batch leaves the results that had finished in the
store; the run resumed from there runs only the calls that had not (``pending_tool_calls``),
with ``ToolContext.attempt`` above 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable

import attrs

from agentfsm._log import get_logger
from agentfsm.messages import ToolMessage
from agentfsm.state import Conversation

__all__ = ["ResultCheckpoints"]

log = get_logger(__name__)

Save = Callable[[Conversation, int], Awaitable[None]]
"""``save(conversation, expected_version)``: a compare-and-set save (under the run's lease)."""


class ResultCheckpoints:
    """Saves ``conversation`` (in ``executing_tools``) with each result of its batch as it
    finishes, in call order, each save raising the stored version by one.

    Saves are serialized; one that fails (a lost lease, a store error) ends the checkpoints
    of this batch (the step's own save then says what happened). A save cut by a cancel
    still finishes: :meth:`settle` waits for it and tells the version it left.
    """

    __slots__ = (
        "_base",
        "_failed",
        "_lock",
        "_order",
        "_pending",
        "_results",
        "_save",
        "stored",
    )

    def __init__(self, conversation: Conversation, save: Save) -> None:
        self._base = conversation
        self._save = save
        self._order = {call.id: i for i, call in enumerate(conversation.pending_tool_calls)}
        self._results: list[ToolMessage] = []
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[None] | None = None
        self._failed = False
        self.stored = conversation
        """The conversation as the store holds it, as far as these saves know."""

    async def add(self, result: ToolMessage) -> None:
        """Checkpoint the batch with ``result`` added."""
        if self._failed or result.tool_call_id not in self._order:
            return
        self._results.append(result)
        async with self._lock:
            if self._failed:
                return
            finished = sorted(self._results, key=lambda r: self._order[r.tool_call_id])
            partial = attrs.evolve(
                self._base,
                messages=(*self._base.messages, *finished),
                version=self.stored.version + 1,
            )
            save = asyncio.ensure_future(self._save(partial, self.stored.version))
            save.add_done_callback(functools.partial(self._saved, partial))
            self._pending = save
            # A failed save is logged by _saved; the step's own save tells the caller.
            with contextlib.suppress(Exception):
                await asyncio.shield(save)

    def _saved(self, partial: Conversation, save: asyncio.Future[None]) -> None:
        if save.cancelled() or save.exception() is not None:
            self._failed = True
            error = None if save.cancelled() else save.exception()
            log.warning(
                "tool_result_checkpoint_failed",
                chat_id=self._base.chat_id,
                error=str(error) if error is not None else "cancelled",
            )
        else:
            self.stored = partial

    async def settle(self) -> Conversation:
        """The conversation as stored, once the save in flight (if any) has finished."""
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.shield(asyncio.wait([pending]))
        return self.stored
