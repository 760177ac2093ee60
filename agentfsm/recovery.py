"""Leases on running chats, and the recovery of chats whose worker died.

A run holds a lease on its chat in the store (an owner naming the worker, and an expiry the
store times with its own clock) and renews it while it goes on; its saves are refused once
another worker has taken the lease over. ``recover()`` asks the store for the running chats
no live lease covers (their worker died) and resumes them, or stops them: the store leases
each to one caller only, however many workers ask at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Literal, Protocol, TypeGuard, TypeVar

from agentfsm import machine
from agentfsm._log import get_logger
from agentfsm.errors import AgentFSMError, ConfigurationError
from agentfsm.store._base import LeaseStore

if TYPE_CHECKING:
    from agentfsm.state import Conversation
    from agentfsm.store import Store

__all__ = [
    "ON_LOST",
    "OnLost",
    "by_hand",
    "leasing",
    "owner",
    "recover",
    "recovering",
    "renew",
    "renewing",
    "save",
    "take_over",
    "worker_id",
]

log = get_logger(__name__)

T = TypeVar("T")


class _Agent(Protocol):
    """What leases and recovery need of an agent."""

    lease_owner: str

    @property
    def store(self) -> Store | None: ...

    async def _resume(
        self, chat_id: str, user_id: str | None, debug_print: bool, *, claimed: bool
    ) -> Conversation | None: ...

    def _runtime(self, conversation: Conversation, debug: bool, sink: None) -> machine.Runtime: ...


OnLost = Literal["resume", "stop"]
ON_LOST = ("resume", "stop")
"""What ``recover()`` does with a chat whose worker died: finish its run, or stop it with
stop reason ``worker_lost`` (for its user to retry)."""


def worker_id() -> str:
    """A new lease owner naming this worker: its host, its process and a random part."""
    host = socket.gethostname()[:100] or "host"
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


_BY_HAND: contextvars.ContextVar[bool] = contextvars.ContextVar("agentfsm_by_hand", default=False)


@contextlib.contextmanager
def by_hand() -> Iterator[None]:
    """Within: transitions are stepped by the caller (``agent.step()``), not by a run, so
    their saves take no lease: the next step may come from another worker."""
    token = _BY_HAND.set(True)
    try:
        yield
    finally:
        _BY_HAND.reset(token)


def owner(agent: _Agent) -> str | None:
    """The lease owner ``agent``'s saves use now: its own in a run, none for a step driven
    by hand (such a save covers the chat for one lease length, whoever steps it next)."""
    return None if _BY_HAND.get() else agent.lease_owner


def leasing(store: object) -> TypeGuard[LeaseStore]:
    """True if ``store`` keeps leases (every store of ``agentfsm.store`` does; a store of
    your own written to the plain ``Store`` protocol does not, and still works)."""
    kind = type(store)
    known = _LEASING.get(kind)
    if known is None:  # a protocol check costs tens of µs: once per class, not per save
        known = _LEASING[kind] = isinstance(store, LeaseStore) and _takes_lease(kind)
    return known


def _takes_lease(kind: type) -> bool:
    """True if ``kind.save`` takes ``lease=``: a subclass of one of our stores may override
    ``save`` with the plain protocol's signature, and must keep working."""
    try:
        parameters = inspect.signature(kind.save).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False
    return "lease" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


_LEASING: dict[type, bool] = {}


async def save(
    store: Store, conversation: Conversation, expected_version: int | None, owner: str | None
) -> None:
    """``store.save``, under ``owner``'s lease when there is one and the store keeps leases."""
    if owner is not None and leasing(store):
        await store.save(conversation, expected_version, lease=owner)
    else:
        await store.save(conversation, expected_version)


async def renew(store: Store, chat_id: str, owner: str) -> bool:
    """Renew ``owner``'s lease on ``chat_id`` without force: False if another owner holds
    it now, or there is no such chat."""
    return not leasing(store) or await store.take_lease(chat_id, owner)


async def take_over(store: Store | None, chat_id: str, owner: str) -> None:
    """Take ``chat_id``'s lease for ``owner`` even from a live worker (``resume``)."""
    if leasing(store):
        await store.take_lease(chat_id, owner, steal=True)


async def renewing(store: Store | None, chat_id: str, owner: str | None, work: Awaitable[T]) -> T:
    """``await work`` (a step's action), renewing ``owner``'s lease on ``chat_id`` every third
    of its length meanwhile: a model call or a tool may outlast a lease, and each save
    renews it anyway.

    Renewing stops when the lease cannot be taken (the run finished, or another worker
    took the chat over: the run's next save then fails). A renewal the store fails is
    logged and tried again a third of the lease later.
    """
    if owner is None or not leasing(store):
        return await work
    renewer = asyncio.ensure_future(_renew(store, chat_id, owner))
    try:
        return await work
    finally:
        # Not awaited: a cancel of the caller must not wait on (or be eaten by) the renewer.
        renewer.cancel()


async def _renew(store: LeaseStore, chat_id: str, owner: str) -> None:
    # Real time, not the agent's injectable sleep: the store expires leases by its clock.
    while True:
        await asyncio.sleep(store.lease_ttl / 3)
        try:
            if not await store.take_lease(chat_id, owner):
                return
        except AgentFSMError as error:
            log.warning("lease_not_renewed", chat_id=chat_id, error=str(error))


def _lease_store(agent: _Agent) -> LeaseStore:
    store = agent.store
    if store is None:
        raise ConfigurationError("recover() needs an agent built with store=...")
    if not leasing(store):
        raise ConfigurationError(
            f"recover() needs a store that keeps leases (take_lease, release_lease, "
            f"claim_abandoned and save(..., lease=...): agentfsm.store.LeaseStore); "
            f"{type(store).__name__} has none: use one of agentfsm.store's stores, or add them"
        )
    return store


def _check_policy(on_lost: object, limit: object) -> None:
    if on_lost not in ON_LOST:
        raise ConfigurationError(f"on_lost must be 'resume' or 'stop', got {on_lost!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ConfigurationError(f"limit must be an int from 1 to 1000, got {limit!r}")


async def recover(
    agent: _Agent, *, limit: int = 100, on_lost: OnLost = "resume"
) -> list[Conversation]:
    """Resume (or stop) the running chats of ``agent``'s store whose worker died.

    See ``Agent.recover``.
    """
    store = _lease_store(agent)
    _check_policy(on_lost, limit)
    claimed = await store.claim_abandoned(agent.lease_owner, limit)
    if claimed:
        log.info("chats_claimed", count=len(claimed), on_lost=on_lost)
    finished = await asyncio.gather(*(_recover_one(agent, c, on_lost) for c in claimed))
    return [conversation for conversation in finished if conversation is not None]


async def _recover_one(agent: _Agent, chat_id: str, on_lost: OnLost) -> Conversation | None:
    """The claimed chat resumed (or stopped); ``None`` if that failed (logged: its lease
    runs out and a later ``recover()`` tries again)."""
    try:
        if on_lost == "resume":
            # Not resume(), which takes the lease by force: the claim may have run out by now
            # (a scan takes its time) and another worker claimed the chat; both would run it.
            return await agent._resume(chat_id, None, False, claimed=True)
        return await _stop(agent, chat_id)
    except AgentFSMError as error:
        log.warning("chat_not_recovered", chat_id=chat_id, error=str(error))
        return None


async def _stop(agent: _Agent, chat_id: str) -> Conversation | None:
    """Stop the claimed chat with stop reason ``worker_lost``, without running its action."""
    store = _lease_store(agent)
    if not await renew(store, chat_id, agent.lease_owner):  # claimed elsewhere by now
        log.info("chat_claimed_elsewhere", chat_id=chat_id)
        return None
    conversation = await store.load(chat_id)
    if conversation is None or conversation.finished:
        return conversation
    runtime = agent._runtime(conversation, False, None)
    stopped = await machine.worker_lost(runtime, conversation)
    await store.save(stopped, conversation.version, lease=agent.lease_owner)
    return stopped


@contextlib.asynccontextmanager
async def recovering(
    agent: _Agent, every: float = 30.0, *, limit: int = 100, on_lost: OnLost = "resume"
) -> AsyncIterator[None]:
    """Run ``recover()`` every ``every`` seconds while the body runs. See
    ``Agent.recovering``."""
    _lease_store(agent)
    _check_policy(on_lost, limit)
    if (
        isinstance(every, bool)
        or not isinstance(every, (int, float))
        or not math.isfinite(every)
        or every <= 0
    ):
        raise ConfigurationError(f"every must be a positive number of seconds, got {every!r}")
    done = asyncio.Event()
    sweeper = asyncio.ensure_future(_sweep(agent, every, limit, on_lost, done))
    try:
        yield
    finally:
        done.set()
        await sweeper  # the chats being recovered finish first; a cancel here cuts them


async def _sweep(
    agent: _Agent, every: float, limit: int, on_lost: OnLost, done: asyncio.Event
) -> None:
    while not done.is_set():
        try:
            await recover(agent, limit=limit, on_lost=on_lost)
        except AgentFSMError as error:  # the store is down, say: try again next time
            log.warning("recover_failed", error=str(error))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), every)
